"""``serving/<stem>_inference_log``: the gateway's inference-log files into the Delta table
``main.serving.<endpoint>_inference_log`` (lib/serving/inference_log).

Each materialization ingests the files written since the last one, merged on (request_id,
row_index), so a run that dies after the merge and before the files move re-reads them without
writing any row twice. Read files move to ``_ingested/``; a file with an unreadable line moves to
``_quarantine/`` (its readable rows are ingested; the bad lines are counted in the metadata).
"""

import time

import dagster as dg
import pandas as pd
from pyspark.sql import functions as F

from ml_assets import names
from ml_assets.defs.metadata import table_asset_spec, write_metadata
from ml_assets.lib.models.declaration import ModelDeclaration
from ml_assets.lib.serving import inference_log
from ml_assets.resources.lakehouse import Lakehouse
from ml_assets.resources.serving import EndpointDeployer
from ml_assets.resources.spark import SparkResource


def build_inference_log(model: ModelDeclaration) -> dg.AssetsDefinition:
    table = inference_log.inference_log_table(
        model.inference_log_table, model.endpoint, model.training_set.owner
    )
    key = dg.AssetKey(model.inference_log_key)

    @dg.multi_asset(
        specs=[
            table_asset_spec(
                key, table, group=names.SERVING, deps=[dg.AssetKey(model.endpoint_config_key)]
            )
        ],
        name=model.inference_log_key[-1],
    )
    def _inference_log(
        context: dg.AssetExecutionContext,
        lakehouse: Lakehouse,
        spark: SparkResource,
        endpoint_deployer: EndpointDeployer,
    ) -> dg.MaterializeResult:
        """Every answer the gateway logged since the last run, one row per scored record."""
        started = time.perf_counter()
        root = endpoint_deployer.inference_log_dir(model.endpoint)
        if root is None:
            raise dg.Failure(
                f"The {type(endpoint_deployer).__name__} writes no inference-log files: on "
                "Databricks, Model Serving writes the endpoint's inference table itself "
                "(auto_capture_config, the deployer's inference_table_catalog/schema)."
            )
        logged = inference_log.read_files(inference_log.pending_files(root))
        rows = spark.get_session().createDataFrame(
            [tuple(row[c] for c in table.column_names) for row in logged.rows], table.spark_schema
        )
        commit = lakehouse.merge(table, rows)
        inference_log.done_with(logged, root)
        frame = pd.DataFrame(logged.rows, columns=list(table.column_names))
        context.log.info(
            "%s: %d rows from %d files (%d unreadable lines)",
            table.name.table,
            len(frame),
            len(logged.files),
            sum(logged.unreadable.values()),
        )
        totals = lakehouse.read(table).agg(
            F.count(F.lit(1)).alias("rows"),
            F.countDistinct(F.when(~F.col("shadow"), F.col("request_id"))).alias("requests"),
        )
        total = totals.first()
        return dg.MaterializeResult(
            metadata={
                **write_metadata(table, commit, lakehouse.uri(table), total_rows=total["rows"]),
                "requests_total": int(total["requests"]),
                "files_ingested": len(logged.files),
                "rows_ingested": len(frame),
                "unreadable_lines": sum(logged.unreadable.values()),
                "quarantined_files": dg.MetadataValue.json(logged.unreadable),
                "log_directory": dg.MetadataValue.path(str(root)),
                **_run_summary(frame),
                "seconds": round(time.perf_counter() - started, 2),
            }
        )

    return _inference_log


def _run_summary(frame: pd.DataFrame) -> dict[str, object]:
    """What this run ingested: per served entity, status codes and latency of the requests
    answered (a shadow's copies are counted apart: the client never waited for them), the
    days."""
    if frame.empty:
        return {}
    shadow = frame[frame["shadow"]]
    requests = frame[~frame["shadow"]].drop_duplicates("request_id")
    scored = frame[frame["status_code"] == 200]
    per_entity = scored.groupby(["served_entity_name", "model_version"]).size()
    latency = requests["execution_time_ms"]
    return {
        "rows_per_served_entity": dg.MetadataValue.json(
            {f"{e} (v{v})": int(n) for (e, v), n in per_entity.items()}
        ),
        "requests_per_status": dg.MetadataValue.json(
            {str(s): int(n) for s, n in requests["status_code"].value_counts().items()}
        ),
        "shadow_rows": len(shadow),
        "latency_p50_ms": round(float(latency.quantile(0.5)), 2),
        "latency_p99_ms": round(float(latency.quantile(0.99)), 2),
        "days": f"{min(frame['date'])}..{max(frame['date'])}",
    }
