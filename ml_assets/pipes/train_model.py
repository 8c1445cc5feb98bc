"""A declared model's training step as a remote job, launched by Dagster Pipes.

The ``training_launcher`` resource starts it: as a local subprocess
(``dagster.PipesSubprocessClient``: the context and messages travel through temporary files
named in environment variables) or as a Databricks job (``PipesDatabricksClient`` on a cluster,
``PipesDatabricksServerlessClient`` on serverless compute; the launcher passes
``--pipes-io volumes``, the bootstrap parameters as command-line arguments and ``--code``, the
zip of this package it uploaded beside this file, so the job runs the orchestrator's code).

It reads the extras ``training`` (a ``TrainingRequest``, naming the model in
``lib/models/catalog``) and ``tracking`` (a ``Tracking``),
reads the training set itself (delta-rs for a path, the job's Spark session for a table
name), runs ``lib.models.training.train`` (the same function the in-process asset calls) and
reports back through Pipes: logs as it goes, then the materialization's metadata and the two
checks. Run by hand, outside Dagster, it refuses to start rather than run with no one
listening.
"""

from __future__ import annotations

import sys


def _use_code(argv: list[str]) -> str | None:
    """``--code <zip>``: this package as shipped by the launcher, imported ahead of anything
    installed on the cluster."""
    if "--code" not in argv:
        return None
    code = argv[argv.index("--code") + 1]
    sys.path.insert(0, code)
    return code


def _pipes_io(argv: list[str]):
    """Where the context and messages are: temporary files named in the environment (a
    subprocess) or Unity Catalog volume files named on the command line (a Databricks job)."""
    from dagster_pipes import (
        PipesCliArgsParamsLoader,
        PipesEnvVarParamsLoader,
        PipesUnityCatalogVolumesContextLoader,
        PipesUnityCatalogVolumesMessageWriter,
    )

    io = argv[argv.index("--pipes-io") + 1] if "--pipes-io" in argv else "default"
    if io not in ("default", "volumes"):
        raise SystemExit(f"--pipes-io {io!r}: expected 'default' or 'volumes'.")
    cli = PipesCliArgsParamsLoader()
    params = cli if cli.is_dagster_pipes_process() else PipesEnvVarParamsLoader()
    if not params.is_dagster_pipes_process():
        raise SystemExit(
            "train_model.py runs as the training step of a Dagster asset models/<model>, "
            "launched by Dagster Pipes (no Pipes context was passed to this process). "
            "Materialize the asset instead, with the training_launcher of your deployment."
        )
    if io == "volumes":
        return {
            "params_loader": params,
            "context_loader": PipesUnityCatalogVolumesContextLoader(),
            "message_writer": PipesUnityCatalogVolumesMessageWriter(),
        }
    return {"params_loader": params}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    code = _use_code(argv)
    io = _pipes_io(argv)

    from dagster_pipes import open_dagster_pipes

    from ml_assets.lib.models.training import TrainingRequest, read_training_frame, train
    from ml_assets.lib.tracking import Tracking

    with open_dagster_pipes(**io) as pipes:
        if code:
            pipes.log.info(f"ml_assets code from {code}")
        request = TrainingRequest.from_json(pipes.get_extra("training"))
        tracking = Tracking.from_json(pipes.get_extra("tracking"))
        spark = None
        if not request.source.reference.startswith(("file://", "/")):
            from pyspark.sql import SparkSession

            spark = SparkSession.builder.getOrCreate()  # the job's own session
        frame = read_training_frame(request.source, request.declaration, spark)
        pipes.log.info(
            f"training set {request.source.reference} v{request.source.version}: "
            f"{len(frame)} rows; training {request.model}, tracking to {tracking.experiment_name}"
        )
        outcome = train(frame, request, tracking, log=pipes.log.info)
        report = outcome.report()
        pipes.report_asset_materialization(metadata=report.metadata)
        for check in report.checks:
            pipes.report_asset_check(
                check.name,
                check.passed,
                metadata={
                    **check.metadata,
                    "description": {"raw_value": check.description, "type": "text"},
                },
            )


if __name__ == "__main__":
    main()
