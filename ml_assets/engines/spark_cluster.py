"""The ``spark`` lane: a standalone Apache Spark 4.2 cluster with Delta Lake on 127.0.0.1.

A master, ``workers`` workers and a Spark Connect server, each its own JVM, started from the
jars of the pyspark wheel (which ships Spark and its Spark Connect server) plus the pinned Delta
jars (``ml_assets.engines.jars``). Everything binds to 127.0.0.1. Each process runs in its own
process group (executors are children of their worker), and carries a marker on its command line
(``-Dml_assets.lane=<state_dir>``), so a later start or stop finds every process of this lane,
including those a killed run left behind, and nothing else.

    python -m ml_assets.engines spark up|down|status      (make spark-up / spark-down)

``start`` is idempotent: a healthy cluster of the same state folder is reused; a partial or
stale one is stopped and started again. ``running()`` starts it when needed and stops it on exit
only if it started it. The catalog (``spark_catalog``, a Hive metastore in Derby) and managed
tables live under the state folder, so catalog tables survive a restart, as in Unity Catalog.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from ml_assets.engines.errors import EngineError
from ml_assets.engines.jars import MAVEN_CENTRAL, ensure_jars

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
MARKER = "-Dml_assets.lane="
MIN_JAVA = 17
CONNECT_SERVER = "org.apache.spark.sql.connect.service.SparkConnectServer"


@dataclass(frozen=True)
class SparkClusterConfig:
    state_dir: Path  # logs, pids, worker folders, the metastore and the managed-table warehouse
    jar_cache: Path  # the pinned Delta jars, fetched once
    connect_port: int = 15102
    master_port: int = 7177
    master_ui_port: int = 8190
    workers: int = 2
    worker_cores: int = 1
    worker_memory: str = "3g"
    executor_memory: str = "2g"
    driver_memory: str = "2g"
    # 2 workers x 1 core: Spark's default of 200 shuffle partitions is 200 tasks per stage for
    # tables of thousands of rows; adaptive execution still coalesces small partitions.
    shuffle_partitions: int = 8
    maven_repository: str = MAVEN_CENTRAL
    start_timeout_s: float = 120.0

    @property
    def remote(self) -> str:
        return f"sc://{HOST}:{self.connect_port}"

    @property
    def master_url(self) -> str:
        return f"spark://{HOST}:{self.master_port}"

    @property
    def marker(self) -> str:
        return MARKER + str(self.state_dir.resolve())

    @property
    def warehouse_dir(self) -> Path:
        return self.state_dir / "warehouse"


@dataclass(frozen=True)
class ClusterProcess:
    pid: int
    command: str


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def java_executable() -> str:
    """``$JAVA_HOME/bin/java`` or ``java`` on the PATH, at least Java 17, or an error saying how
    to get one."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise EngineError(
            "The spark lane needs Java 17 or newer, and found none "
            f"({'JAVA_HOME=' + java_home + ' has no bin/java' if java_home else 'no java on PATH'}"
            "). Install one (Debian: apt-get install openjdk-17-jre-headless) or set JAVA_HOME."
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    major = int(found.group(1)) if found else 0
    if major == 1 and found and found.group(2):  # "1.8.0" is Java 8
        major = int(found.group(2))
    if major < MIN_JAVA:
        raise EngineError(
            f"The spark lane needs Java {MIN_JAVA} or newer (Apache Spark 4.2); {java} is "
            f"{(out.stderr or out.stdout).splitlines()[0] if (out.stderr or out.stdout) else '?'}"
            ". Install Java 17 or set JAVA_HOME to one."
        )
    return java


def port_is_free(port: int) -> bool:
    """Whether a server could listen on the port now. With SO_REUSEADDR, as the JVM's servers
    bind: a port whose last connections linger in TIME_WAIT after a stop is free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def port_answers(port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _lane_processes(marker: str) -> list[ClusterProcess]:
    """Every process whose command line carries this lane's marker (the master, the workers,
    the Spark Connect server and the executors), found with ``ps`` (Linux and macOS)."""
    out = subprocess.run(
        ["ps", "-eww", "-o", "pid=,args="], capture_output=True, text=True, check=True
    ).stdout
    own = os.getpid()
    found = []
    for line in out.splitlines():
        pid, _, command = line.strip().partition(" ")
        # the marker ends at a space: a lane whose folder is a prefix of ours is not ours
        if pid.isdigit() and int(pid) != own and (marker + " ") in (command + " "):
            found.append(ClusterProcess(int(pid), command))
    return found


class SparkCluster:
    """Start, reuse, inspect and stop the ``spark`` lane's processes."""

    def __init__(self, config: SparkClusterConfig) -> None:
        self.config = config
        self.logs = config.state_dir / "logs"
        self.state_file = config.state_dir / "cluster.json"
        self._java = "java"  # checked, and replaced by the full path, when start() runs

    # -- inspection ------------------------------------------------------------------------
    def processes(self) -> list[ClusterProcess]:
        return _lane_processes(self.config.marker)

    def alive_workers(self) -> int:
        url = f"http://{HOST}:{self.config.master_ui_port}/json/"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return int(json.load(response).get("aliveworkers", 0))
        except (OSError, ValueError):
            return 0

    def healthy(self) -> bool:
        roles = {"master", "connect"} | {f"worker-{i}" for i in range(1, self.config.workers + 1)}
        recorded = self._recorded()
        alive = {p.pid for p in self.processes()}
        return (
            set(recorded) == roles
            and set(recorded.values()) <= alive
            and port_answers(self.config.connect_port)
            and self.alive_workers() == self.config.workers
        )

    def status(self) -> dict[str, object]:
        return {
            "remote": self.config.remote,
            "healthy": self.healthy(),
            "processes": {role: pid for role, pid in self._recorded().items()},
            "lane_processes_running": len(self.processes()),
            "alive_workers": self.alive_workers(),
            "master_ui": f"http://{HOST}:{self.config.master_ui_port}",
            "state_dir": str(self.config.state_dir),
        }

    def _recorded(self) -> dict[str, int]:
        try:
            return {k: int(v) for k, v in json.loads(self.state_file.read_text())["pids"].items()}
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    # -- start -----------------------------------------------------------------------------
    def start(self) -> bool:
        """Start the cluster; False when a healthy one of this state folder was already up."""
        if self.healthy():
            log.info("Reusing the running Spark cluster at %s", self.config.remote)
            return False
        leftovers = self.processes()
        if leftovers:
            log.warning(
                "Stopping %d leftover process(es) of an earlier spark lane in %s: %s",
                len(leftovers),
                self.config.state_dir,
                [p.pid for p in leftovers],
            )
            self.stop()
        self._java = java_executable()
        self._check_ports()
        jars = ensure_jars(self.config.jar_cache / "delta", repository=self.config.maven_repository)
        self.logs.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.config.state_dir / "work", ignore_errors=True)
        started: dict[str, int] = {}
        try:
            self._start_master(started)
            self._start_workers(started)
            self._start_connect(jars, started)
        except BaseException:
            self.stop()
            raise
        self.state_file.write_text(
            json.dumps({"pids": started, "config": asdict(self.config)}, default=str, indent=1)
        )
        log.info(
            "Spark cluster up: %s (master UI %s)", self.config.remote, self.status()["master_ui"]
        )
        return True

    def _check_ports(self) -> None:
        ports = {
            "Spark Connect server": (self.config.connect_port, "ML_ASSETS_SPARK_CONNECT_PORT"),
            "master": (self.config.master_port, "ML_ASSETS_SPARK_MASTER_PORT"),
            "master web UI": (self.config.master_ui_port, "ML_ASSETS_SPARK_MASTER_UI_PORT"),
        }
        for role, (port, variable) in ports.items():
            if not port_is_free(port):
                raise EngineError(
                    f"Port {port} on {HOST} is already in use by another process, and the spark "
                    f"lane's {role} needs it. Stop that process (see: ss -ltnp | grep {port}), "
                    f"or choose another port with {variable}=<port>."
                )

    def _env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "SPARK_HOME": str(spark_home()),
            "SPARK_LOCAL_IP": HOST,  # every listener of every JVM on the loopback only
            "SPARK_LOG_DIR": str(self.logs),
            "SPARK_PID_DIR": str(self.config.state_dir),
            "SPARK_WORKER_DIR": str(self.config.state_dir / "work"),
            "SPARK_CONF_DIR": str(self._conf_dir()),
            "SPARK_NO_DAEMONIZE": "1",
            # master and workers take their JVM options from here (spark-class)
            "SPARK_DAEMON_JAVA_OPTS": f"{self.config.marker} -Dspark.master.rest.enabled=false",
        }
        env.pop("PYSPARK_GATEWAY_PORT", None)
        if os.environ.get("JAVA_HOME") is None:
            # the JVM start scripts find java through JAVA_HOME: the one checked by start()
            env["JAVA_HOME"] = str(Path(self._java).resolve().parents[1])
        return env

    def _conf_dir(self) -> Path:
        """An empty configuration folder: a user's ``$SPARK_CONF_DIR`` is not read."""
        conf = self.config.state_dir / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        return conf

    def _spawn(self, role: str, command: list[str], started: dict[str, int]) -> subprocess.Popen:
        log_path = self.logs / f"{role}.log"
        with log_path.open("ab") as out:
            process = subprocess.Popen(
                command,
                env=self._env(),
                cwd=self.config.state_dir,  # Derby writes derby.log in the working folder
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, with its executors
            )
        started[role] = process.pid
        return process

    def _wait(self, role: str, process: subprocess.Popen, ready, what: str) -> None:
        deadline = time.monotonic() + self.config.start_timeout_s
        while not ready():
            if process.poll() is not None:
                raise EngineError(
                    f"The spark lane's {role} exited with status {process.returncode} before "
                    f"{what}. Last lines of {self.logs / (role + '.log')}:\n" + self._tail(role)
                )
            if time.monotonic() > deadline:
                raise EngineError(
                    f"The spark lane's {role} did not get to {what} within "
                    f"{self.config.start_timeout_s:.0f} s. Last lines of its log:\n"
                    + self._tail(role)
                )
            time.sleep(0.2)

    def _tail(self, role: str, lines: int = 20) -> str:
        try:
            return "\n".join((self.logs / f"{role}.log").read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _spark_class(self, *args: str) -> list[str]:
        return [str(spark_home() / "bin" / "spark-class"), *args]

    def _start_master(self, started: dict[str, int]) -> None:
        process = self._spawn(
            "master",
            self._spark_class(
                "org.apache.spark.deploy.master.Master",
                "--host", HOST,
                "--port", str(self.config.master_port),
                "--webui-port", str(self.config.master_ui_port),
            ),
            started,
        )  # fmt: skip
        self._wait("master", process, lambda: port_answers(self.config.master_port), "listening")

    def _start_workers(self, started: dict[str, int]) -> None:
        processes = [
            self._spawn(
                f"worker-{i}",
                self._spark_class(
                    "org.apache.spark.deploy.worker.Worker",
                    "--host",
                    HOST,
                    "--cores",
                    str(self.config.worker_cores),
                    "--memory",
                    self.config.worker_memory,
                    "--webui-port",
                    "0",
                    "--work-dir",
                    str(self.config.state_dir / "work"),
                    self.config.master_url,
                ),
                started,
            )  # fmt: skip
            for i in range(1, self.config.workers + 1)
        ]
        for i, process in enumerate(processes, start=1):
            self._wait(
                f"worker-{i}",
                process,
                lambda: self.alive_workers() >= self.config.workers,
                f"registering with the master ({self.config.workers} workers)",
            )

    def _start_connect(self, jars: list[Path], started: dict[str, int]) -> None:
        state = self.config.state_dir.resolve()
        conf = {
            "spark.connect.grpc.binding.address": HOST,
            "spark.connect.grpc.binding.port": str(self.config.connect_port),
            "spark.driver.host": HOST,
            "spark.driver.bindAddress": HOST,
            "spark.driver.memory": self.config.driver_memory,
            "spark.executor.memory": self.config.executor_memory,
            "spark.executor.cores": str(self.config.worker_cores),
            "spark.cores.max": str(self.config.workers * self.config.worker_cores),
            "spark.executor.extraJavaOptions": self.config.marker,
            "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
            "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
            "spark.sql.catalogImplementation": "hive",
            "spark.hadoop.javax.jdo.option.ConnectionURL": (
                f"jdbc:derby:;databaseName={state / 'metastore_db'};create=true"
            ),
            "spark.sql.warehouse.dir": str(self.config.warehouse_dir.resolve()),
            "spark.sql.session.timeZone": "UTC",
            "spark.sql.shuffle.partitions": str(self.config.shuffle_partitions),
            "spark.ui.showConsoleProgress": "false",
            # Files are "local" to host names, executors run on 127.0.0.1: without this, each
            # file-reading task waits spark.locality.wait (3 s) per locality level for a
            # local executor that never comes (measured: 5 s to read a 3-row table).
            "spark.locality.wait": "0s",
            # Delta rebuilds a table's state from its log in 50 partitions by default: 50
            # tasks per snapshot of a table of a few files
            "spark.databricks.delta.snapshotPartitions": "2",
            # VACUUM lists a table's files in this many tasks (default 10,000): 79 s for a
            # table of 3 files on 2 cores, 3 s with 4
            "spark.sql.sources.parallelPartitionDiscovery.parallelism": str(
                2 * self.config.workers * self.config.worker_cores
            ),
        }
        command = [
            str(spark_home() / "bin" / "spark-submit"),
            "--class", CONNECT_SERVER,
            "--name", "ml_assets spark lane",
            "--master", self.config.master_url,
            "--jars", ",".join(str(p) for p in jars),
            "--driver-java-options", f"{self.config.marker} -Dderby.system.home={state}",
        ]  # fmt: skip
        for key, value in conf.items():
            command += ["--conf", f"{key}={value}"]
        process = self._spawn("connect", command, started)
        self._wait(
            "connect",
            process,
            lambda: port_answers(self.config.connect_port),
            f"serving Spark Connect on {HOST}:{self.config.connect_port}",
        )

    # -- stop ------------------------------------------------------------------------------
    def stop(self, timeout_s: float = 20.0) -> int:
        """Stop every process of this lane (recorded or left over); the number stopped."""
        victims = self.processes()
        recorded = self._recorded()
        # the Spark Connect server first (its executors end with it), the master last
        order = sorted(victims, key=lambda p: 0 if p.pid == recorded.get("connect") else 1)
        for process in order:
            _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.2)
        for process in self.processes():
            log.warning("Killing spark lane process %d, still up after SIGTERM", process.pid)
            _signal_group(process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.state_file.unlink(missing_ok=True)
        return len(victims)


def _signal_group(pid: int, sig: int) -> None:
    """Signal the process's group when it leads one (our JVMs do), else the process."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


@contextlib.contextmanager
def running(config: SparkClusterConfig) -> Iterator[SparkCluster]:
    """The cluster for the duration of the block: started if needed, stopped afterwards only
    when this block started it."""
    cluster = SparkCluster(config)
    started = cluster.start()
    try:
        yield cluster
    finally:
        if started:
            cluster.stop()
