"""What the gateway serves with: a loaded config (``Deployment``), how a request's records
are scored (``scorer``), and one request's answer (``Scored``)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ml_assets.lib.models.encoding import FeatureEncoding, predict, records_frame
from ml_assets.lib.models.served import ProbabilityModel
from ml_assets.lib.serving.api import InvocationResponse
from ml_assets.lib.serving.endpoint import Endpoint, ServedEntity

log = logging.getLogger(__name__)


@dataclass
class Deployment:
    endpoint: Endpoint
    models: dict[str, object]  # served entity name -> PyFuncModel
    inputs: dict[str, dict[str, str]]  # served entity name -> signature input name -> type
    # served entity name -> its inputs in signature order, string inputs categorical: how the
    # assembled records become its request frame, whatever the model
    encodings: dict[str, FeatureEncoding] = field(init=False)
    entities: dict[str, ServedEntity] = field(init=False)  # served entity name -> its entity
    scorers: dict[str, Callable[[list[dict]], np.ndarray]] = field(init=False)

    def __post_init__(self) -> None:
        self.entities = {e.name: e for e in self.endpoint.config.served_entities}
        self.encodings = {
            served: FeatureEncoding(
                tuple(signature), {c: () for c, kind in signature.items() if kind == "string"}
            )
            for served, signature in self.inputs.items()
        }
        self.scorers = {
            served: scorer(model, self.encodings[served]) for served, model in self.models.items()
        }


def scorer(model, encoding: FeatureEncoding) -> Callable[[list[dict]], np.ndarray]:
    """How a request's records (its features, after lookup and overrides) are scored: the
    project's ``ProbabilityModel`` directly, or any other model through pyfunc's ``predict``
    on a frame of the signature (``records_frame``).

    For a ``ProbabilityModel`` nothing of pandas or pyfunc is in the way, which is where a
    single-record request spent most of its time (CPU per request, measured in-process over
    1,000 requests: 3.6 ms -> 1.8 ms -> 0.8 ms, the same predictions):

    - the booster predicts on one thread. With XGBoost's default, OpenMP's threads spin on the
      other core after every one-row prediction: half of the request's CPU, and the core the
      event loop and a second scoring thread need;
    - the records go straight to the booster's matrix (``FeatureEncoding.encode_records``),
      without a request frame and pandas' per-column encoding;
    - pyfunc's schema enforcement is not repeated: each request was validated against the
      signature already (``validate_rows``)."""

    def via_pyfunc(records: list[dict]) -> np.ndarray:
        return np.asarray(model.predict(records_frame(records, encoding)))

    try:
        inner = model.unwrap_python_model()
    except Exception:  # not a PythonModel (a flavor's own pyfunc): pyfunc's predict
        return via_pyfunc
    # by name: MLflow unpickles the class each version logged, by value (its own code)
    kind = type(inner)
    own = (kind.__module__, kind.__qualname__) == (
        ProbabilityModel.__module__,
        ProbabilityModel.__qualname__,
    )
    if not own or not set(inner.encoding.columns) <= set(encoding.columns):
        # another model, or a signature without one of the model's columns: pyfunc says so
        return via_pyfunc
    inner.booster.set_param({"nthread": 1})  # this gateway's own copy of the model
    # the version carries the code it was logged with: this code's encoding of its columns
    # and levels is used only if it scores a probe exactly as the version's own predict does
    mine = FeatureEncoding(tuple(inner.encoding.columns), dict(inner.encoding.categories))
    probe = probe_records(mine)
    own_scores = np.asarray(inner.predict(None, records_frame(probe, encoding)), dtype="float64")
    if not np.array_equal(predict(inner.booster, mine.encode_records(probe)), own_scores):
        log.warning(
            "the fast scorer disagrees with the model's own predict on a probe: "
            "the version's own predict scores its requests"
        )
        return lambda records: np.asarray(inner.predict(None, records_frame(records, encoding)))
    return lambda records: predict(inner.booster, mine.encode_records(records))


def probe_records(encoding: FeatureEncoding) -> list[dict[str, object]]:
    """Records that reach every categorical level, an unseen level, missing values and a
    spread of numbers: what a scorer is compared on before it serves."""
    width = max([len(levels) for levels in encoding.categories.values()] + [1]) + 2
    records = []
    for k in range(width):
        record: dict[str, object] = {}
        for j, column in enumerate(encoding.columns):
            levels = list(encoding.categories.get(column, ()))
            if column in encoding.categories:
                options = [*levels, "an unseen level", None]
                record[column] = options[k % len(options)]
            else:
                record[column] = None if (k + j) % 5 == 4 else float((k * 7 + j * 3) % 50)
        records.append(record)
    return records


@dataclass(frozen=True)
class Scored:
    """One request's answer, and what the inference log keeps of it."""

    served: str
    model_name: str
    model_version: str
    feature_time: dt.datetime
    keys: list[object]
    features: list[dict[str, object]]  # the model's inputs per record, after overrides
    predictions: list[float]
    misses: list[list[str]]

    def response(self) -> dict[str, object]:
        return InvocationResponse(
            predictions=self.predictions,
            served_model_name=self.served,
            lookup_missed=[bool(m) for m in self.misses],
            lookup_missed_tables=self.misses,
        ).model_dump()
