"""Serving endpoint configuration in the shape of the Databricks serving-endpoints API.

The JSON written here is the body Databricks takes to create or update an endpoint
(``name``, ``config.served_entities[]``, ``config.traffic_config.routes[]``,
``config.auto_capture_config``), so the same body deploys there (``EndpointDeployer``); the
local gateway reads the same file. A route names its served entity in ``served_entity_name``,
the field the API expects for served entities (``served_model_name``, the field of the older
``served_models``, is read too). Unknown keys are refused (``extra="forbid"``): a typo in a
hand-edited config is an error, not an ignored field.

The policy: the champion alone takes 100 % of the traffic; a pending challenger (registered,
not refused by the gate) gets a canary share and the champion the rest, or, in shadow mode, a
route of 0 %: the gateway sends it a copy of every request, logs its prediction and never
returns it (``shadows``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

WorkloadSize = Literal["Small", "Medium", "Large"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServedEntity(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,63}$")
    entity_name: str = Field(min_length=1, description="registered model, catalog.schema.model")
    entity_version: str = Field(pattern=r"^[0-9]+$")
    workload_size: WorkloadSize = "Small"
    scale_to_zero_enabled: bool = True


class Route(_Strict):
    served_entity_name: str | None = None
    served_model_name: str | None = None  # the legacy field, for ``served_models``
    traffic_percentage: int = Field(ge=0, le=100)

    @model_validator(mode="after")
    def _one_target(self) -> Route:
        if (self.served_entity_name is None) == (self.served_model_name is None):
            raise ValueError(
                "a route names its served entity in served_entity_name (or, for the legacy "
                f"served_models, served_model_name); found {self.model_dump(exclude_none=True)}"
            )
        return self

    @property
    def target(self) -> str:
        return self.served_entity_name or self.served_model_name or ""


class TrafficConfig(_Strict):
    routes: list[Route]


class AutoCaptureConfig(_Strict):
    """Inference tables on Databricks (``<catalog>.<schema>.<prefix>_payload``)."""

    catalog_name: str = Field(pattern=r"^[a-z0-9_]{1,255}$")
    schema_name: str = Field(pattern=r"^[a-z0-9_]{1,255}$")
    table_name_prefix: str = Field(pattern=r"^[a-z0-9_]{1,100}$")
    enabled: bool = True


class EndpointCoreConfig(_Strict):
    served_entities: list[ServedEntity] = Field(min_length=1)
    traffic_config: TrafficConfig
    auto_capture_config: AutoCaptureConfig | None = None


class Endpoint(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,63}$")
    config: EndpointCoreConfig

    def shares(self) -> dict[str, int]:
        """Traffic percentage by served entity name."""
        return {r.target: r.traffic_percentage for r in self.config.traffic_config.routes}

    def shadows(self) -> list[str]:
        """Served entities routed at 0 %: they score a copy of every request, off the answer."""
        return [r.target for r in self.config.traffic_config.routes if r.traffic_percentage == 0]

    def entity(self, name: str) -> ServedEntity:
        for entity in self.config.served_entities:
            if entity.name == name:
                return entity
        raise KeyError(name)

    def body(self) -> dict[str, object]:
        """The JSON body of the serving-endpoints API (fields that are not set left out)."""
        return self.model_dump(exclude_none=True)


def route_problems(endpoint: Endpoint) -> list[str]:
    """What makes the routing unusable: shares that do not sum to 100, routes to unknown
    served entities, repeated names. (Types and unknown keys are the model's job.)"""
    problems = []
    names = [e.name for e in endpoint.config.served_entities]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        problems.append(f"served entity names repeat: {repeated}")
    routes = endpoint.config.traffic_config.routes
    unknown = [r.target for r in routes if r.target not in names]
    if unknown:
        problems.append(f"routes name no served entity: {unknown} (served entities: {names})")
    total = sum(r.traffic_percentage for r in routes)
    if total != 100:
        shares = ", ".join(f"{r.target}={r.traffic_percentage}" for r in routes)
        problems.append(f"traffic percentages sum to {total}, expected 100 ({shares})")
    return problems


def served_entity_name(model_name: str, version: str) -> str:
    """Databricks' convention: the model's short name and the version, e.g. churn_classifier-3."""
    return f"{model_name.rsplit('.', 1)[-1]}-{version}"


def plan_endpoint(
    name: str,
    model_name: str,
    champion_version: str,
    challenger_version: str | None = None,
    *,
    canary_percentage: int = 10,
    shadow: bool = False,
    workload_size: WorkloadSize = "Small",
    scale_to_zero_enabled: bool = True,
) -> Endpoint:
    """Champion only: 100 %. With a pending challenger: ``canary_percentage`` to it, the rest
    to the champion; in ``shadow`` mode 0 % to it (a copy of every request, never answered)."""
    if not 0 < canary_percentage < 100:
        raise ValueError(f"canary_percentage must be between 1 and 99, found {canary_percentage}.")
    versions = [str(champion_version)]
    if challenger_version is not None and str(challenger_version) != str(champion_version):
        versions.append(str(challenger_version))
    entities = [
        ServedEntity(
            name=served_entity_name(model_name, v),
            entity_name=model_name,
            entity_version=v,
            workload_size=workload_size,
            scale_to_zero_enabled=scale_to_zero_enabled,
        )
        for v in versions
    ]
    challenger_share = 0 if shadow else canary_percentage
    shares = [100] if len(entities) == 1 else [100 - challenger_share, challenger_share]
    routes = [
        Route(served_entity_name=e.name, traffic_percentage=share)
        for e, share in zip(entities, shares, strict=True)
    ]
    return Endpoint(
        name=name,
        config=EndpointCoreConfig(
            served_entities=entities, traffic_config=TrafficConfig(routes=routes)
        ),
    )


def signature_problems(
    model: str,
    inputs: list[dict[str, object]],
    servable: dict[str, str],
    request_keys: dict[str, str],
) -> list[str]:
    """A served model's inputs must be columns the gateway can assemble (the online features,
    what is derived from them, or the request keys) with the same types."""
    available = {**servable, **request_keys}
    problems = []
    for column in inputs:
        name, kind = str(column.get("name")), column.get("type")
        if name not in available:
            problems.append(
                f"{model} needs {name!r}, which neither the online features nor the request keys "
                f"provide (they provide {sorted(available)})"
            )
        elif available[name] != kind:
            problems.append(
                f"{model} takes {name!r} as {kind}, the gateway provides {available[name]}"
            )
    return problems
