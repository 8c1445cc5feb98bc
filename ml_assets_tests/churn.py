"""The churn model's assets, built by the same factories as the code location, for tests that
materialize a few of them on their own; and its drift monitor's tables."""

from ml_assets import names
from ml_assets.defs.models.assets import build_model
from ml_assets.defs.monitoring.quality import build_quality_monitoring
from ml_assets.defs.registry.assets import build_champion, build_version
from ml_assets.defs.serving.assets import build_serving
from ml_assets.lib.models.churn_classifier import CHURN_CLASSIFIER
from ml_assets.lib.monitoring.monitor import DriftMonitor

churn_classifier = build_model(CHURN_CLASSIFIER)
churn_classifier_version = build_version(CHURN_CLASSIFIER)
churn_classifier_champion = build_champion(CHURN_CLASSIFIER)
(churn_endpoint_config, churn_predictions, churn_inference_log), _config_checks = build_serving(
    CHURN_CLASSIFIER
)
_by_name = {next(iter(c.check_keys)).name: c for c in _config_checks}
routes_sum_to_100 = _by_name[names.CHECK_ROUTES_SUM]
served_entities_ready = _by_name[names.CHECK_ENTITIES_READY]
signatures_match_online_features = _by_name[names.CHECK_SIGNATURE_SERVABLE]

CHURN_MONITOR = DriftMonitor(CHURN_CLASSIFIER)
PREDICTIONS = CHURN_MONITOR.predictions
FEATURE_DRIFT = CHURN_MONITOR.feature_drift
PREDICTION_DRIFT = CHURN_MONITOR.prediction_drift

(churn_model_quality, churn_canary_verdict), _quality_checks = build_quality_monitoring(
    CHURN_CLASSIFIER
)
