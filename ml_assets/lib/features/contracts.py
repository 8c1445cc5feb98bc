"""Feature table contracts: one declarative spec per feature table.

From a ``FeatureTableContract`` come the table's declared schema (``table_spec``), the asset's
description and column metadata, the SQL constraints, the null-rate ceilings and the default
values a training-set lookup uses. A malformed contract raises ``ContractError`` when it is
constructed, that is when the code location loads, with every problem listed.

Constraint forms (one per feature), chosen to read like the contract tables data teams write:
``">= 0"`` (also ``>``, ``<=``, ``<``), ``"in [0, 1]"`` (closed interval) and
``"in {'free', 'plus'}"`` (a set of values).
"""

from __future__ import annotations

import ast
import datetime as dt
import re
from dataclasses import dataclass

from ml_assets.lib.lakehouse import SUPPORTED_DTYPES, Column, TableId, TableSpec

NUMERIC_DTYPES = ("bigint", "int", "double")
NULL_POLICIES = ("not_null", "nullable")
# matched with fullmatch: '$' would also accept a trailing newline
_COMPARISON = re.compile(r"(>=|>|<=|<)\s*(-?\d+(?:\.\d+)?)")
_INTERVAL = re.compile(r"in\s*\[\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*\]")
_SET = re.compile(r"in\s*(\{.*\})")
_WINDOW = re.compile(r"[1-9]\d*d")
_CONSTRAINT_FORMS = "'>= 0' (or >, <=, <), 'in [0, 1]' or \"in {'a', 'b'}\""


class ContractError(ValueError):
    """A feature table contract that cannot be right (unknown dtype, duplicate name, ...)."""


@dataclass(frozen=True)
class Feature:
    """One feature column.

    ``window``: the aggregation window (``"7d"``) or None for a point value. ``null_policy``:
    ``not_null`` (ceiling 0) or ``nullable`` with a ``max_null_rate`` ceiling (default 1.0).
    ``default``: the value a training-set lookup puts in when no row matches (None: stay null).
    """

    name: str
    dtype: str
    description: str
    window: str | None = None
    null_policy: str = "not_null"
    max_null_rate: float | None = None
    default: object = None
    constraint: str | None = None

    @property
    def null_rate_ceiling(self) -> float:
        if self.null_policy == "not_null":
            return 0.0
        return 1.0 if self.max_null_rate is None else self.max_null_rate

    def problems(self) -> list[str]:
        where = f"feature {self.name!r}"
        found: list[str] = []
        if self.dtype not in SUPPORTED_DTYPES:
            found.append(
                f"{where} has unknown dtype {self.dtype!r} "
                f"(supported: {', '.join(SUPPORTED_DTYPES)})"
            )
        if not self.description.strip():
            found.append(f"{where} needs a description")
        if self.window is not None and not _WINDOW.fullmatch(self.window):
            found.append(f"{where} has window {self.window!r}; expected days such as '7d'")
        if self.null_policy not in NULL_POLICIES:
            found.append(
                f"{where} has null_policy {self.null_policy!r}; expected one of {NULL_POLICIES}"
            )
        elif self.null_policy == "not_null" and self.max_null_rate not in (None, 0, 0.0):
            found.append(f"{where} is not_null but sets max_null_rate={self.max_null_rate}")
        if self.max_null_rate is not None and not 0 <= self.max_null_rate <= 1:
            found.append(f"{where} has max_null_rate {self.max_null_rate}; expected 0..1")
        fits = self.dtype not in SUPPORTED_DTYPES or _value_fits(self.default, self.dtype)
        if self.default is not None and not fits:
            found.append(f"{where} has default {self.default!r}, which is not a {self.dtype} value")
        if self.constraint is not None:
            try:
                constraint_sql(self.name, self.dtype, self.constraint)
            except ContractError as exc:
                found.append(str(exc))
        return found


def _value_fits(value: object, dtype: str) -> bool:
    if dtype in ("bigint", "int"):
        return isinstance(value, int) and not isinstance(value, bool)
    if dtype == "double":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if dtype == "boolean":
        return isinstance(value, bool)
    if dtype == "string":
        return isinstance(value, str)
    return False  # dates and timestamps have no defaults in a contract


def _sql_literal(value: object) -> str:
    if isinstance(value, str):
        if "'" in value or "\\" in value:
            raise ContractError(f"value {value!r} in a constraint may not contain quotes")
        return f"'{value}'"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value)
    raise ContractError(f"value {value!r} in a constraint is neither a string nor a number")


def constraint_sql(column: str, dtype: str, constraint: str) -> str:
    """The SQL boolean expression of a constraint written in contract form."""
    text = constraint.strip()
    where = f"constraint {constraint!r} of feature {column!r}"
    numeric = dtype in NUMERIC_DTYPES
    if m := _COMPARISON.fullmatch(text):
        if not numeric:
            raise ContractError(f"{where} compares numbers, but the feature is a {dtype}")
        return f"{column} {m.group(1)} {m.group(2)}"
    if m := _INTERVAL.fullmatch(text):
        if not numeric:
            raise ContractError(f"{where} is an interval, but the feature is a {dtype}")
        low, high = float(m.group(1)), float(m.group(2))
        if low > high:
            raise ContractError(f"{where} has an empty interval ({low} > {high})")
        return f"{column} BETWEEN {m.group(1)} AND {m.group(2)}"
    if m := _SET.fullmatch(text):
        try:
            values = ast.literal_eval(m.group(1))
        except (ValueError, SyntaxError) as exc:
            raise ContractError(f"{where} is not a set of literals: {exc}") from exc
        if not isinstance(values, set) or not values:
            raise ContractError(f"{where} must list at least one value in braces")
        if not all(_value_fits(v, dtype) for v in values):
            raise ContractError(f"{where} lists values that are not {dtype} values")
        return f"{column} IN ({', '.join(_sql_literal(v) for v in sorted(values))})"
    raise ContractError(f"{where} is not understood; expected {_CONSTRAINT_FORMS}")


@dataclass(frozen=True)
class FeatureTableContract:
    """A feature table: time-versioned, one row per entity per feature timestamp.

    ``columns`` declares the identity columns (entity keys, the timestamp key and any other
    non-feature column such as a partition date); ``features`` the feature columns.
    ``refresh_cadence`` is how often it is recomputed (``daily``, ``on change``, ...);
    ``freshness_sla`` how far its newest feature timestamp may lag the data it is built from.
    """

    name: str
    entity_keys: tuple[str, ...]
    timestamp_key: str
    columns: tuple[Column, ...]
    features: tuple[Feature, ...]
    owner: str
    refresh_cadence: str
    freshness_sla: dt.timedelta
    description: str
    partition_by: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problems: list[str] = []
        try:
            TableId.parse(self.name)
        except ValueError as exc:
            problems.append(str(exc))
        declared = [c.name for c in self.columns]
        feature_names = [f.name for f in self.features]
        if not self.entity_keys:
            problems.append("it declares no entity keys")
        for key in (*self.entity_keys, self.timestamp_key, *self.partition_by):
            if key not in declared:
                problems.append(
                    f"key {key!r} is not in the schema (declared columns: {declared}); "
                    "declare it in columns"
                )
        ts = next((c for c in self.columns if c.name == self.timestamp_key), None)
        if ts is not None and ts.dtype != "timestamp":
            problems.append(f"timestamp key {ts.name!r} is a {ts.dtype}, expected timestamp")
        if not self.features:
            problems.append("it declares no features")
        for dupe in sorted({n for n in feature_names if feature_names.count(n) > 1}):
            problems.append(f"duplicate feature name {dupe!r}")
        for clash in sorted(set(feature_names) & set(declared)):
            problems.append(f"feature {clash!r} has the name of an identity column")
        for feature in self.features:
            problems += feature.problems()
        if self.freshness_sla <= dt.timedelta(0):
            problems.append(f"freshness_sla must be positive, found {self.freshness_sla}")
        if not self.owner.strip():
            problems.append("it needs an owner")
        if problems:
            raise ContractError(
                f"Invalid feature table contract {self.name!r}: {len(problems)} problem(s):\n"
                + "\n".join(f"  - {p}" for p in problems)
            )
        try:
            self.table_spec  # noqa: B018 - the declared table must be valid too
        except ValueError as exc:
            raise ContractError(f"Invalid feature table contract {self.name!r}: {exc}") from exc

    @property
    def table_id(self) -> TableId:
        return TableId.parse(self.name)

    @property
    def primary_key(self) -> tuple[str, ...]:
        return (*self.entity_keys, self.timestamp_key)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def table_spec(self) -> TableSpec:
        identity = tuple(
            Column(c.name, c.dtype, False, c.description) if c.name in self.primary_key else c
            for c in self.columns
        )
        feature_columns = tuple(
            Column(f.name, f.dtype, f.null_policy == "nullable", _column_description(f))
            for f in self.features
        )
        return TableSpec(
            name=self.table_id,
            columns=identity + feature_columns,
            partition_by=self.partition_by,
            primary_key=self.primary_key,
            description=self.description,
            owner=self.owner,
        )

    @property
    def constraints(self) -> dict[str, str]:
        """Named SQL constraints for ``quality.constraints_hold``."""
        return {
            f"{f.name}_constraint": constraint_sql(f.name, f.dtype, f.constraint)
            for f in self.features
            if f.constraint is not None
        }

    @property
    def null_rate_ceilings(self) -> dict[str, float]:
        return {f.name: f.null_rate_ceiling for f in self.features}

    @property
    def default_values(self) -> dict[str, object]:
        return {f.name: f.default for f in self.features if f.default is not None}

    def markdown(self) -> str:
        """The asset description shown in the UI."""
        rows = "\n".join(
            f"| `{f.name}` | {f.dtype} | {f.window or ''} | {f.null_policy}"
            f"{'' if f.null_policy == 'not_null' else f' (≤ {f.null_rate_ceiling:.0%})'} | "
            f"{'' if f.default is None else f.default} | {f.constraint or ''} | {f.description} |"
            for f in self.features
        )
        return (
            f"{self.description}\n\n"
            f"Keys: {', '.join(self.entity_keys)}; timestamp: `{self.timestamp_key}`; "
            f"owner: {self.owner}; refresh: {self.refresh_cadence}; "
            f"freshness SLA: {self.freshness_sla}.\n\n"
            "| feature | dtype | window | nulls | default | constraint | description |\n"
            "|---|---|---|---|---|---|---|\n" + rows
        )


def _column_description(feature: Feature) -> str:
    parts = [feature.description]
    if feature.window:
        parts.append(f"window {feature.window}")
    if feature.constraint:
        parts.append(f"constraint {feature.constraint}")
    return "; ".join(parts)
