"""Registered models through one interface, with Unity Catalog's rules everywhere.

Everything the project does with registered models (register a logged model, aliases, tags,
load by version, signature, the version's run) goes through ``Registry``. It runs on any MLflow
registry: the local SQLite store and Unity Catalog (``databricks-uc``). The rules are Unity
Catalog's on both, so that a model that Unity Catalog would refuse is refused on a laptop
first:

- names have three parts, ``catalog.schema.model`` (MLflow's own ``split_uc_model_name``),
  each a lower-case identifier; a deployment may put the declared model in another catalog
  (``catalog``), as the catalog lakehouse does with tables;
- aliases only: there are no stage methods here, and nothing calls ``get_latest_versions``
  (both raise on ``databricks-uc``); the aliases ``latest`` and ``vN`` are reserved (MLflow's
  own alias validators);
- a version is registered only from a model whose signature has inputs and outputs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import mlflow
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.tracking import MlflowClient
from mlflow.utils._unity_catalog_utils import split_uc_model_name
from mlflow.utils.validation import (
    _validate_model_alias_name,
    _validate_model_alias_name_reserved,
)

UNITY_CATALOG_REGISTRY = "databricks-uc"
_PART = re.compile(r"[a-z0-9_]{1,255}")
SIGNATURE_REQUIRED = (
    "Unity Catalog registers only models logged with a signature that has both inputs and "
    "outputs: log the model with mlflow.<flavor>.log_model(..., signature=infer_signature("
    "inputs, outputs))."
)


class RegistryError(RuntimeError):
    """A registry operation that cannot be done (nothing to roll back to, a version that is
    not READY)."""


class RegistryRuleError(ValueError):
    """A name, alias or model that Unity Catalog's registry would refuse."""


def check_model_name(name: str) -> tuple[str, str, str]:
    """``catalog.schema.model``, each part a lower-case identifier (letters, digits, _)."""
    try:
        parts = split_uc_model_name(str(name))
    except MlflowException as exc:
        raise RegistryRuleError(
            f"Registered model name {name!r} has {len(str(name).split('.'))} part(s); Unity "
            "Catalog needs three, catalog.schema.model (e.g. main.models.churn_classifier). "
            f"MLflow says: {exc.message}"
        ) from None
    bad = [p for p in parts if not _PART.fullmatch(p)]
    if bad:
        raise RegistryRuleError(
            f"Registered model name {name!r}: {bad} must be lower-case identifiers (letters, "
            "digits and underscores, at most 255 characters) to be a Unity Catalog name."
        )
    return parts


def check_alias(alias: str) -> str:
    """MLflow's own alias validators: word characters and '-', and not ``latest`` or ``vN``
    (reserved: ``models:/name@latest`` and ``@v3`` mean something else)."""
    try:
        _validate_model_alias_name(alias)
        _validate_model_alias_name_reserved(alias)
    except MlflowException as exc:
        raise RegistryRuleError(f"Alias {alias!r} cannot be set: {exc.message}") from None
    return alias


def check_signature(uri: str, signature: ModelSignature | None) -> ModelSignature:
    if signature is None:
        raise RegistryRuleError(f"{uri} has no signature. {SIGNATURE_REQUIRED}")
    if signature.outputs is None:
        raise RegistryRuleError(
            f"{uri} has a signature with inputs only, no outputs. {SIGNATURE_REQUIRED}"
        )
    return signature


def _run_id(version: ModelVersion) -> str:
    if not version.run_id:
        raise RegistryError(f"{version.name} v{version.version} names no MLflow run.")
    return version.run_id


def _missing(exc: MlflowException) -> bool:
    if exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
        return True
    # the SQLite store reports a missing alias as INVALID_PARAMETER_VALUE "... not found."
    return "alias" in exc.message and "not found" in exc.message


@dataclass
class Registry:
    """One registry. ``catalog``, when set, replaces the declared names' catalog (Unity
    Catalog: the deployment's catalog). No client is built until the first call."""

    tracking_uri: str
    registry_uri: str
    catalog: str | None = None

    @cached_property
    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)

    def full_name(self, declared: str) -> str:
        """The declared ``catalog.schema.model`` in this registry (checked)."""
        catalog, schema, model = check_model_name(declared)
        if self.catalog is not None:
            catalog = check_model_name(f"{self.catalog}.{schema}.{model}")[0]
        return f"{catalog}.{schema}.{model}"

    # -- versions --------------------------------------------------------------------------
    def register(
        self,
        declared: str,
        model_id: str,
        run_id: str,
        *,
        description: str,
        tags: Mapping[str, str],
        model_description: str,
        model_tags: Mapping[str, str] | None = None,
    ) -> ModelVersion:
        """A new version of ``declared`` from the logged model ``models:/<model_id>``; the
        signature is checked first. The registered model is created with ``model_description``
        (or brought up to date with it) and carries ``model_tags``. Raises ``RegistryError``
        unless the version is READY."""
        name = self.full_name(declared)
        source = f"models:/{model_id}"
        self._use()
        check_signature(source, mlflow.models.get_model_info(source).signature)
        try:
            registered = self.client.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
                raise
            registered = self.client.create_registered_model(name, description=model_description)
        if registered.description != model_description:
            self.client.update_registered_model(name, description=model_description)
        for key, value in (model_tags or {}).items():
            if registered.tags.get(key) != value:
                self.client.set_registered_model_tag(name, key, value)
        version = self.client.create_model_version(
            name,
            source=source,
            run_id=run_id,
            tags=dict(tags),
            description=description,
            model_id=model_id,
        )
        if version.status != "READY":
            raise RegistryError(
                f"{name} v{version.version} is {version.status}, not READY: "
                f"{version.status_message or 'no message from the registry'}."
            )
        return version

    def version(self, declared: str, version: str | int) -> ModelVersion:
        return self.client.get_model_version(self.full_name(declared), str(version))

    def by_alias(self, declared: str, alias: str) -> ModelVersion | None:
        """The version holding ``alias``, or None when the alias (or the model) does not exist."""
        try:
            return self.client.get_model_version_by_alias(
                self.full_name(declared), check_alias(alias)
            )
        except MlflowException as exc:
            if _missing(exc):
                return None
            raise

    def set_alias(self, declared: str, alias: str, version: str | int) -> None:
        self.client.set_registered_model_alias(
            self.full_name(declared), check_alias(alias), str(version)
        )

    def delete_alias(self, declared: str, alias: str) -> None:
        self.client.delete_registered_model_alias(self.full_name(declared), check_alias(alias))

    def set_tag(self, declared: str, version: str | int, key: str, value: str) -> None:
        self.client.set_model_version_tag(self.full_name(declared), str(version), key, value)

    # -- models ----------------------------------------------------------------------------
    def uri(self, declared: str, version: str | int) -> str:
        """By version, never by alias: an alias may move while the model is in use."""
        return f"models:/{self.full_name(declared)}/{version}"

    def load(self, declared: str, version: str | int) -> mlflow.pyfunc.PyFuncModel:
        self._use()
        return mlflow.pyfunc.load_model(self.uri(declared, version))

    def model_info(self, declared: str, version: str | int) -> mlflow.models.model.ModelInfo:
        """The logged model behind a version: signature, input example, flavours."""
        self._use()
        return mlflow.models.get_model_info(self.uri(declared, version))

    def signature(self, declared: str, version: str | int) -> ModelSignature | None:
        self._use()
        return mlflow.models.get_model_info(self.uri(declared, version)).signature

    def run(self, version: ModelVersion | str) -> Run:
        """The MLflow run that made ``version`` (its metrics, lineage tags and artifacts), or
        the run of that id."""
        return self.client.get_run(version if isinstance(version, str) else _run_id(version))

    def log_text(self, version: ModelVersion, text: str, artifact_file: str) -> str:
        """A text artifact on the version's run; returns its ``runs:/`` URI."""
        run_id = _run_id(version)
        self.client.log_text(run_id, text, artifact_file)
        return f"runs:/{run_id}/{artifact_file}"

    def _use(self) -> None:
        """``mlflow.pyfunc`` and ``mlflow.models`` read the process's URIs: point them here."""
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.registry_uri)
