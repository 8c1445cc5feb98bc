"""Point-in-time join: the project's join on Sail beside DuckDB ASOF and pandas merge_asof.

    .venv/bin/python benchmarks/pit_join.py [--sizes 100000x1000000 1000000x10000000]
                                            [--entities 100000] [--home .ml_assets]
                                            [--engines sail sail-cluster spark]

``--engines`` runs the project's join on each engine lane in turn (the spark lane's local
cluster is started when it is not running, and stopped afterwards if so), each beside the same
DuckDB run, and reports the peak resident memory of each lane's processes.

Every engine reads the same parquet files, joins and writes parquet, in one run, with a 30-day
lookback and without one (where a range join would blow up); the outputs are compared row by
row (sorted) and must agree. Reports seconds and ratios to DuckDB (the anchor; target <= 1.2x).
The project's join runs as users get it (``strategy="auto"``, its plan-choosing count timed
with it) and with the window plan forced, beside it; ``--entities 1000`` gives each key 100x
the history and spine times, where ``auto`` should choose the window.

What is timed is what a user waits for: read the inputs, join, write the result, with the
engine warm. Each side runs once untimed (the engine has planned the query once and the input
files are in the OS page cache for both: before, the project's join ran first, cold, and paid
the disk reads that DuckDB, run second, did not), then ``--repeats`` timed runs, alternating
sides; the median is reported, and the cold first run beside it.

With ``--home`` holding a materialized ``features/user_daily_activity`` (after ``make run``),
it also times ``user_activity`` for one new day against the full backfill of every day.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from ml_assets.deployments import current_settings, spark_resource
from ml_assets.lib.features import user_activity, user_daily_activity
from ml_assets.lib.training_sets import point_in_time_join
from ml_assets.lib.training_sets.pit import PAIRS_PER_SORTED_ROW, choose_strategy
from ml_assets.programs.lanes import engine_lane, lane_peak_rss_mib
from ml_assets.resources.lakehouse import LocalDeltaLakehouse

DAY_S = 86_400
LOOKBACK = dt.timedelta(days=30)
COLUMNS = {
    "lookup_key": "user_id",
    "timestamp_lookup_key": "label_ts",
    "feature_timestamp_key": "feature_ts",
}


def make_data(root: Path, n_spine: int, n_features: int, n_entities: int) -> None:
    rng = np.random.default_rng(0)
    start = np.datetime64("2026-01-01T00:00:00", "s")
    f_ts = start + rng.integers(0, 180 * DAY_S, n_features).astype("timedelta64[s]")
    features = pd.DataFrame(
        {
            "user_id": rng.integers(0, n_entities, n_features),
            "feature_ts": f_ts.astype("datetime64[us]"),
            "f1": rng.random(n_features),
            "f2": rng.integers(0, 100, n_features),
        }
    ).drop_duplicates(["user_id", "feature_ts"])
    s_ts = start + rng.integers(30 * DAY_S, 180 * DAY_S, n_spine).astype("timedelta64[s]")
    spine = pd.DataFrame(
        {
            "user_id": rng.integers(0, n_entities, n_spine),
            "label_ts": s_ts.astype("datetime64[us]"),
            "label": rng.integers(0, 2, n_spine),
        }
    )
    features.to_parquet(root / "features.parquet", index=False)
    spine.to_parquet(root / "spine.parquet", index=False)


def run_project(spark, root: Path, lookback: dt.timedelta | None, strategy: str = "auto") -> float:
    started = time.perf_counter()
    joined = point_in_time_join(
        spark.read.parquet(str(root / "spine.parquet")),
        spark.read.parquet(str(root / "features.parquet")),
        **COLUMNS,
        lookback_window=lookback,
        strategy=strategy,
    )
    joined.write.mode("overwrite").parquet(str(root / f"out_project_{strategy}"))
    return time.perf_counter() - started


def run_duckdb(root: Path, lookback: dt.timedelta | None) -> float:
    started = time.perf_counter()
    usable = "f.feature_ts IS NOT NULL"
    if lookback is not None:
        usable += (
            f" AND s.label_ts - f.feature_ts <= INTERVAL {int(lookback.total_seconds())} SECOND"
        )
    duckdb.connect().execute(
        f"""
        COPY (
            SELECT s.*, CASE WHEN {usable} THEN f.f1 END AS f1,
                        CASE WHEN {usable} THEN f.f2 END AS f2
            FROM read_parquet('{root / "spine.parquet"}') s
            ASOF LEFT JOIN read_parquet('{root / "features.parquet"}') f
              ON s.user_id = f.user_id AND s.label_ts >= f.feature_ts
        ) TO '{root / "out_duckdb.parquet"}' (FORMAT parquet)
        """
    )
    return time.perf_counter() - started


def run_pandas(root: Path, lookback: dt.timedelta | None) -> float:
    started = time.perf_counter()
    spine = pd.read_parquet(root / "spine.parquet").sort_values("label_ts")
    features = pd.read_parquet(root / "features.parquet").sort_values("feature_ts")
    out = pd.merge_asof(
        spine,
        features,
        left_on="label_ts",
        right_on="feature_ts",
        by="user_id",
        direction="backward",
        tolerance=pd.Timedelta(lookback) if lookback else None,
    )
    out.drop(columns=["feature_ts"]).to_parquet(root / "out_pandas.parquet", index=False)
    return time.perf_counter() - started


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame[["user_id", "label_ts", "label", "f1", "f2"]].copy()
    frame["label_ts"] = pd.to_datetime(frame["label_ts"]).dt.tz_localize(None).astype("int64")
    frame["f2"] = frame["f2"].astype("float64")
    return frame.sort_values(["user_id", "label_ts", "label", "f1"]).reset_index(drop=True)


def check_agreement(root: Path, n_spine: int) -> None:
    sail = _sorted(pd.read_parquet(root / "out_project_auto"))
    for other in ("out_project_window", "out_duckdb.parquet", "out_pandas.parquet"):
        theirs = _sorted(pd.read_parquet(root / other))
        assert len(sail) == len(theirs) == n_spine, (other, len(sail), len(theirs))
        pd.testing.assert_frame_equal(sail, theirs, check_dtype=False)


def timed(runs: dict[str, object], repeats: int) -> dict[str, tuple[float, float]]:
    """(cold first run, median of ``repeats`` warm runs) per side, the sides alternating."""
    cold = {name: run() for name, run in runs.items()}
    warm: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(repeats):
        order = list(runs) if i % 2 == 0 else list(reversed(runs))
        for name in order:
            warm[name].append(runs[name]())
    return {name: (cold[name], float(np.median(warm[name]))) for name in runs}


def benchmark_join(
    engine: str,
    spark,
    n_spine: int,
    n_features: int,
    n_entities: int,
    data_dir: Path,
    repeats: int = 3,
) -> None:
    root = data_dir / f"{n_spine}x{n_features}"
    if not root.exists():
        root.mkdir()
        make_data(root, n_spine, n_features, n_entities)
    choice = choose_strategy(
        spark.read.parquet(str(root / "spine.parquet")),
        spark.read.parquet(str(root / "features.parquet")),
        **COLUMNS,
    )
    chosen = f"auto: {choice.strategy}"
    print(f"\n{n_spine:,} spine rows x {n_features:,} feature rows, {n_entities:,} entities")
    if choice.pairs is None:
        print(
            f"  auto: at most {choice.most_spine_rows_per_key} spine rows per key (<= "
            f"{PAIRS_PER_SORTED_ROW}): {choice.strategy}, the features not counted"
        )
    else:
        print(
            f"  auto: {choice.pairs:,} (spine row, feature time) pairs sharing a key against "
            f"{choice.rows:,} rows to sort: {choice.strategy}"
        )
    for label, lookback in (("30-day lookback", LOOKBACK), ("no lookback", None)):
        times = timed(
            {
                engine: lambda lookback=lookback: run_project(spark, root, lookback),
                "window": lambda lookback=lookback: run_project(spark, root, lookback, "window"),
                "duckdb": lambda lookback=lookback: run_duckdb(root, lookback),
                "pandas": lambda lookback=lookback: run_pandas(root, lookback),
            },
            repeats,
        )
        check_agreement(root, n_spine)
        (cold, ours), (_, window_s), (duck_cold, duck_s), (_, pandas_s) = (
            times[engine],
            times["window"],
            times["duckdb"],
            times["pandas"],
        )
        print(
            f"  {label:16s} warm median of {repeats}: {engine} {ours:5.2f} s ({chosen})  "
            f"window plan {window_s:5.2f} s  duckdb {duck_s:5.2f} s  pandas {pandas_s:5.2f} s  "
            f"| {engine}/duckdb {ours / duck_s:4.2f}  window/duckdb {window_s / duck_s:4.2f}  "
            f"{engine}/pandas {ours / pandas_s:4.2f}  (results agree)\n"
            f"  {'':16s} cold first run: {engine} {cold:5.2f} s  duckdb {duck_cold:5.2f} s  "
            f"| {engine}/duckdb {cold / duck_cold:4.2f}"
        )


def benchmark_user_activity(spark_resource, home: Path) -> None:
    lakehouse = LocalDeltaLakehouse(warehouse_dir=str(home / "warehouse"), spark=spark_resource)
    daily_spec = user_daily_activity.CONTRACT.table_spec
    if not lakehouse.exists(daily_spec):
        print(f"\nuser_activity: no user_daily_activity under {home}; run `make run` first")
        return
    daily = lakehouse.read(daily_spec)
    first, last = daily.selectExpr("min(activity_date)", "max(activity_date)").first()
    with tempfile.TemporaryDirectory() as tmp:
        timings = {}
        for label, start in (("one new day", last), ("full backfill", first)):
            started = time.perf_counter()
            user_activity.compute_features(daily, start, last).write.parquet(f"{tmp}/{label}")
            timings[label] = time.perf_counter() - started
    days = (last - first).days + 1
    print(
        f"\nuser_activity from {daily.count():,} daily rows over {days} days: one new day "
        f"{timings['one new day']:.1f} s, full backfill {timings['full backfill']:.1f} s "
        f"(ratio {timings['full backfill'] / timings['one new day']:.1f}x for {days}x the days)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["100000x1000000", "1000000x10000000"])
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--home", default=os.environ.get("ML_ASSETS_HOME", ".ml_assets"))
    parser.add_argument("--engines", nargs="+", default=["sail"])
    parser.add_argument("--repeats", type=int, default=3, help="warm timed runs per side")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        for engine in args.engines:
            settings = current_settings({**os.environ, "ML_ASSETS_ENGINE": engine})
            with engine_lane(settings):
                resource = spark_resource(settings)
                spark = resource.get_session()
                spark.range(1).count()
                print(f"\n== engine {engine}")
                for size in args.sizes:
                    n_spine, n_features = (int(x) for x in size.split("x"))
                    benchmark_join(
                        engine,
                        spark,
                        n_spine,
                        n_features,
                        args.entities,
                        Path(data_dir),
                        args.repeats,
                    )
                print(
                    f"  peak RSS (MiB; this process holds every in-process engine so far): "
                    f"{lane_peak_rss_mib(settings)}"
                )
                if engine == args.engines[0]:
                    benchmark_user_activity(resource, Path(args.home))


if __name__ == "__main__":
    main()
