"""A Databricks Lakehouse Monitoring *inference-log* monitor, declared as data and checked
against the table it watches before anything is sent.

On Databricks the drift monitor can also hand a scored table to Lakehouse Monitoring, which
then keeps its own profile and drift metrics tables and a dashboard, refreshed on each batch.
``InferenceLogMonitor`` is the declaration; ``body`` is the request the Quality Monitors API
(``/api/2.1/unity-catalog/tables/{name}/monitor``) takes, in the field names of its
``MonitorInferenceLog``. The Databricks resource sends it with ``databricks-sdk``
(``resources/lakehouse_monitoring.py``).

Choice for churn predictions: the table holds probabilities, not decisions, and no label yet
(outcomes arrive 30 days later), so the profile treats ``churn_probability`` as a numeric
prediction (``PROBLEM_TYPE_REGRESSION``): Lakehouse Monitoring then reports its distribution and
its drift per model version and day. A classification profile needs the predicted class and,
for quality metrics, the label column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ml_assets.lib.lakehouse import TableId, TableSpec

PROBLEM_TYPES = ("PROBLEM_TYPE_REGRESSION", "PROBLEM_TYPE_CLASSIFICATION")
# the granularities the API accepts (MonitorInferenceLog.granularities)
GRANULARITY = re.compile(r"(5 minutes|30 minutes|1 hour|1 day|[1-4] weeks?|1 month|1 year)")
NUMERIC = ("double", "float", "bigint", "int", "smallint", "tinyint")
TIMESTAMPS = ("timestamp", "timestamp_ntz")


class MonitorDeclarationError(ValueError):
    """A monitor whose columns or settings do not fit the table it watches."""


@dataclass(frozen=True)
class InferenceLogMonitor:
    table: TableSpec
    timestamp_col: str
    model_id_col: str
    prediction_col: str
    problem_type: str = "PROBLEM_TYPE_REGRESSION"
    granularities: tuple[str, ...] = ("1 day",)
    label_col: str | None = None
    slicing_exprs: tuple[str, ...] = ()

    def problems(self) -> list[str]:
        types = {c.name: c.spark_type.simpleString() for c in self.table.columns}
        found = []
        for role, column, allowed in (
            ("timestamp_col", self.timestamp_col, TIMESTAMPS),
            ("model_id_col", self.model_id_col, None),
            ("prediction_col", self.prediction_col, NUMERIC if self.is_regression else None),
            ("label_col", self.label_col, NUMERIC if self.is_regression else None),
        ):
            if column is None:
                continue
            if column not in types:
                found.append(
                    f"{role}={column!r} is not a column of {self.table.name} "
                    f"(columns: {', '.join(types)})"
                )
            elif allowed is not None and types[column] not in allowed:
                found.append(
                    f"{role}={column!r} is {types[column]}; expected one of {', '.join(allowed)}"
                )
        if self.problem_type not in PROBLEM_TYPES:
            found.append(f"problem_type={self.problem_type!r}; expected one of {PROBLEM_TYPES}")
        bad = [g for g in self.granularities if not GRANULARITY.fullmatch(g)]
        if bad or not self.granularities:
            found.append(
                f"granularities={list(self.granularities)!r}: expected one or more of '5 minutes', "
                "'30 minutes', '1 hour', '1 day', 'N week(s)' (N = 1..4), '1 month', '1 year'"
            )
        return found

    @property
    def is_regression(self) -> bool:
        return self.problem_type == "PROBLEM_TYPE_REGRESSION"

    def full_name(self, catalog: str | None = None) -> str:
        """``catalog.schema.table``, the deployment's catalog in place of the declared one."""
        name: TableId = self.table.name
        return f"{catalog or name.catalog}.{name.schema}.{name.table}"

    def inference_log(self) -> dict[str, object]:
        problems = self.problems()
        if problems:
            raise MonitorDeclarationError(
                f"The inference-log monitor of {self.table.name} has {len(problems)} "
                "problem(s):\n- " + "\n- ".join(problems)
            )
        log: dict[str, object] = {
            "granularities": list(self.granularities),
            "model_id_col": self.model_id_col,
            "prediction_col": self.prediction_col,
            "problem_type": self.problem_type,
            "timestamp_col": self.timestamp_col,
        }
        if self.label_col is not None:
            log["label_col"] = self.label_col
        return log

    def body(self, *, output_schema: str, assets_dir: str) -> dict[str, object]:
        """The create request (``table_name`` goes in the path)."""
        body: dict[str, object] = {
            "assets_dir": assets_dir,
            "output_schema_name": output_schema,
            "inference_log": self.inference_log(),
        }
        if self.slicing_exprs:
            body["slicing_exprs"] = list(self.slicing_exprs)
        return body
