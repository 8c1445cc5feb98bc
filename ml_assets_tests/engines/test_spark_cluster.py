"""The spark lane's cluster: started by the project, loopback only, found again after a crash,
stopped without leftovers; and every bad input fails within seconds, naming the fix."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import time
from pathlib import Path

import pytest

from ml_assets.deployments import DeploymentError, current_settings
from ml_assets.engines import jars as jar_lock
from ml_assets.engines.errors import EngineError
from ml_assets.engines.jars import JarChecksumError, ensure_jars, read_lock
from ml_assets.engines.spark_cluster import SparkCluster, SparkClusterConfig, port_answers
from ml_assets.resources.spark import SparkConnectRemote, close_session
from ml_assets_tests.gateway_process import free_port


def _config(tmp_path: Path, **kw) -> SparkClusterConfig:
    """A cluster of its own (folder and ports), beside any the session's tests use; the jar
    cache is the project's, so the jars are not downloaded again."""
    shared = current_settings(dict(os.environ)).spark_cluster
    return SparkClusterConfig(
        state_dir=tmp_path / "spark",
        jar_cache=kw.pop("jar_cache", shared.jar_cache),
        connect_port=kw.pop("connect_port", free_port()),
        master_port=kw.pop("master_port", free_port()),
        master_ui_port=kw.pop("master_ui_port", free_port()),
        start_timeout_s=kw.pop("start_timeout_s", 180),
        **kw,
    )


def _listening(pids: set[int]) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state owned by one of ``pids`` (Linux)."""
    inodes: set[str] = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address, port = fields[1].split(":")
                found.append((address, int(port, 16)))
    return found


LOOPBACK = {
    "0100007F",  # 127.0.0.1
    "0000000000000000FFFF00000100007F",  # ::ffff:127.0.0.1
    "00000000000000000000000001000000",  # ::1
}


@pytest.mark.lanes
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc")
def test_the_cluster_runs_on_loopback_survives_a_crash_and_stops_without_leftovers(tmp_path):
    cluster = SparkCluster(_config(tmp_path))
    try:
        assert cluster.start() is True
        status = cluster.status()
        assert status["healthy"] and status["alive_workers"] == 2
        roles = status["processes"]
        assert set(roles) == {"master", "worker-1", "worker-2", "connect"}
        assert len(set(roles.values())) == 4  # each its own JVM
        processes = {p.pid for p in cluster.processes()}
        assert len(processes) >= 6  # and an executor per worker
        listening = _listening(processes)
        assert listening and {a for a, _ in listening} <= LOOPBACK, listening

        # a Delta round trip through the cluster: executors write, the driver commits
        remote = SparkConnectRemote(remote=cluster.config.remote, engine="spark")
        session = remote.get_session()
        path = str(tmp_path / "t")
        session.range(10).write.format("delta").save(path)
        assert session.read.format("delta").load(path).count() == 10
        close_session(cluster.config.remote)

        assert cluster.start() is False  # a second start reuses the healthy cluster

        # a crash: the Spark Connect server and a worker die, the rest is left behind
        for role in ("connect", "worker-1"):
            os.killpg(roles[role], signal.SIGKILL)
        time.sleep(1)
        assert not cluster.healthy() and cluster.processes()
        assert cluster.start() is True  # finds the leftovers, stops them, starts afresh
        assert cluster.healthy()
        assert not ({p.pid for p in cluster.processes()} & processes)  # none of the old ones
    finally:
        cluster.stop()
    assert cluster.processes() == []
    assert not port_answers(cluster.config.connect_port)
    assert not cluster.state_file.exists()


def test_a_port_already_taken_fails_at_once_and_starts_nothing(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cluster = SparkCluster(_config(tmp_path, connect_port=port))
        started = time.monotonic()
        with pytest.raises(EngineError, match=f"Port {port} .* ML_ASSETS_SPARK_CONNECT_PORT"):
            cluster.start()
        assert time.monotonic() - started < 15
    assert cluster.processes() == []


def test_no_java_fails_at_once_and_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    cluster = SparkCluster(_config(tmp_path))
    with pytest.raises(EngineError, match="needs Java 17 or newer.*JAVA_HOME"):
        cluster.start()
    monkeypatch.delenv("JAVA_HOME")
    bin_dir = tmp_path / "bin"  # a PATH with ps (to look for leftovers) and no java
    bin_dir.mkdir()
    (bin_dir / "ps").symlink_to(shutil.which("ps"))
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(EngineError, match="no java on PATH"):
        cluster.start()
    assert cluster.processes() == []


def test_a_corrupt_cached_jar_is_refused_with_the_fix_and_starts_nothing(tmp_path):
    cache = tmp_path / "jars"
    shared = current_settings(dict(os.environ)).spark_cluster.jar_cache / "delta"
    ensure_jars(shared)  # fetched once into the project's cache
    shutil.copytree(shared, cache / "delta")
    victim = cache / "delta" / read_lock()[0].file_name
    victim.write_bytes(victim.read_bytes()[:-10] + b"corrupted!")
    cluster = SparkCluster(_config(tmp_path, jar_cache=cache))
    with pytest.raises(JarChecksumError, match=f"{victim.name}.*corrupt or was replaced.*rm "):
        cluster.start()
    assert cluster.processes() == []


def test_a_repository_serving_a_different_jar_is_refused_and_nothing_is_kept(tmp_path):
    lock = tmp_path / "one.lock"
    pinned = read_lock()[-1]
    lock.write_text(f"{pinned.coordinate}\t{pinned.sha256}\t{pinned.size}\n")
    repository = tmp_path / "repo"
    served = Path(pinned.url(str(repository)))
    served.parent.mkdir(parents=True)
    served.write_bytes(b"not the jar")
    with pytest.raises(JarChecksumError, match=f"{pinned.coordinate} downloaded from .*pins"):
        ensure_jars(tmp_path / "cache", repository=repository.as_uri(), lock=lock)
    assert list((tmp_path / "cache").iterdir()) == []


def test_the_lock_lists_pinned_delta_jars_with_checksums():
    pinned = {j.artifact: j for j in read_lock()}
    assert pinned["delta-spark_4.2_2.13"].version.startswith("4.4.")
    assert all(len(j.sha256) == 64 and j.size > 0 for j in pinned.values())
    bad = jar_lock.LOCK_FILE.with_name("does-not-matter")
    assert not bad.exists()


def test_an_unreachable_spark_connect_address_fails_within_seconds():
    port = free_port()  # nothing listens there
    started = time.monotonic()
    with pytest.raises(ConnectionError, match=f"No Spark Connect server answers at .*:{port}"):
        SparkConnectRemote(remote=f"sc://127.0.0.1:{port}").get_session()
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"ML_ASSETS_ENGINE": "flink"}, "'flink' is not an engine lane; expected one of"),
        ({"ML_ASSETS_SPARK_CONNECT_PORT": "80"}, "expected a port number from 1024"),
        ({"ML_ASSETS_SPARK_MASTER_PORT": "15102"}, "ports must differ"),
    ],
)
def test_bad_engine_settings_are_refused_by_name(environ, message):
    with pytest.raises(DeploymentError, match=message):
        current_settings(environ)
