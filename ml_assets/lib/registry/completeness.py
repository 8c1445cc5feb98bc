"""Whether a registered version is complete: a signature (inputs and output) and an input
example a serving stack can validate against, and every lineage tag the registry's readers
rely on (the model card, the gate's test set, an audit of where the model came from)."""

from __future__ import annotations

from collections.abc import Mapping

from mlflow.models.model import ModelInfo

from ml_assets import names
from ml_assets.lib.models.declaration import ModelDeclaration
from ml_assets.lib.quality import CheckOutcome
from ml_assets.lib.training_sets.declaration import SPLITS

REQUIRED_TAGS = (
    names.TAG_MODEL,
    names.TAG_TRAINING_SET,
    names.TAG_TRAINING_SET_VERSION,
    names.TAG_TRAINING_SET_HASH,
    names.TAG_GIT_COMMIT,
    names.TAG_DAGSTER_RUN_ID,
    names.TAG_DAGSTER_RUN_URL,
    names.TAG_LOGGED_MODEL_ID,
    names.TAG_REGISTERED_BY_RUN,
)


def required_tags(model: ModelDeclaration) -> tuple[str, ...]:
    """The fixed tags, each feature table's Delta version and each split's time window."""
    return (
        *REQUIRED_TAGS,
        *(names.TAG_TABLE_VERSION_PREFIX + t for t in model.training_set.feature_tables),
        *(names.TAG_WINDOW_PREFIX + split for split in SPLITS),
    )


def version_completeness(
    model: ModelDeclaration, version: str, tags: Mapping[str, str], info: ModelInfo
) -> CheckOutcome:
    problems = []
    signature = info.signature
    if signature is None:
        problems.append("no signature")
    else:
        if not signature.inputs or not signature.inputs.input_names():
            problems.append("the signature has no inputs")
        outputs = [] if signature.outputs is None else signature.outputs.input_names()
        if outputs != [model.output]:
            problems.append(f"the signature's output is {outputs}, expected [{model.output!r}]")
    if not info.saved_input_example_info:
        problems.append("no input example")
    missing = [t for t in required_tags(model) if not str(tags.get(t, "")).strip()]
    if missing:
        problems.append(f"lineage tags missing or empty: {missing}")
    commit = tags.get(names.TAG_GIT_COMMIT, "")
    if commit.startswith("unknown"):
        problems.append(f"{names.TAG_GIT_COMMIT} is {commit!r}: the code is not identified")
    observed = {
        "version": version,
        "signature_inputs": 0 if signature is None else len(signature.inputs.input_names()),
        "input_example": bool(info.saved_input_example_info),
        "lineage_tags_required": len(required_tags(model)),
        "lineage_tags_missing": missing,
    }
    if problems:
        return CheckOutcome(False, f"v{version}: " + "; ".join(problems), observed)
    return CheckOutcome(
        True,
        f"v{version}: signature ({observed['signature_inputs']} inputs -> {model.output}), "
        f"input example and all {len(required_tags(model))} lineage tags present",
        observed,
    )
