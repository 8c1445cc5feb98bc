"""What makes an endpoint config undeployable, asked of the registry: the same rules for the
config asset's checks and for the gateway's ``PUT .../config`` (which refuses with 400 and
keeps serving the old config)."""

from __future__ import annotations

from collections.abc import Mapping

from mlflow.exceptions import MlflowException

from ml_assets.lib.registry.store import Registry, RegistryRuleError
from ml_assets.lib.serving.endpoint import Endpoint, route_problems, signature_problems


def entity_problems(endpoint: Endpoint, registry: Registry) -> list[str]:
    """Every served entity is an existing READY version of its registered model."""
    problems = []
    for entity in endpoint.config.served_entities:
        try:
            version = registry.version(entity.entity_name, entity.entity_version)
        except (MlflowException, RegistryRuleError) as exc:
            message = getattr(exc, "message", None) or str(exc)
            problems.append(
                f"{entity.name}: {entity.entity_name} v{entity.entity_version}: {message}"
            )
            continue
        if version.status != "READY":
            problems.append(f"{entity.name}: v{entity.entity_version} is {version.status}")
    return problems


def servable_problems(
    endpoint: Endpoint,
    registry: Registry,
    servable: Mapping[str, str],
    request_keys: Mapping[str, str],
) -> list[str]:
    """Every served model's input signature is made of what the gateway assembles."""
    problems = []
    for entity in endpoint.config.served_entities:
        try:
            signature = registry.signature(entity.entity_name, entity.entity_version)
        except (MlflowException, OSError) as exc:  # the version exists; its model cannot be read
            problems.append(f"{entity.name}: the model's signature cannot be read: {exc}")
            continue
        if signature is None:
            problems.append(f"{entity.name} has no signature")
            continue
        problems += signature_problems(
            entity.name, signature.inputs.to_dict(), dict(servable), dict(request_keys)
        )
    return problems


def config_problems(
    endpoint: Endpoint,
    registry: Registry,
    servable: Mapping[str, str],
    request_keys: Mapping[str, str],
) -> list[str]:
    """All of the above, in order; signatures are asked only of versions that exist."""
    problems = route_problems(endpoint)
    missing = entity_problems(endpoint, registry)
    problems += missing
    if not missing:
        problems += servable_problems(endpoint, registry, servable, request_keys)
    return problems
