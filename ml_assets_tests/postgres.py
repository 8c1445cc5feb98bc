"""A real PostgreSQL server for the tests, installed and started by the project itself.

Finds ``pg_ctl`` (on PATH or under /usr/lib/postgresql/<version>/bin); when it is missing and
we are root on a Debian-like machine, installs the ``postgresql`` package with apt-get. Starts
a throwaway cluster on a free port on 127.0.0.1 (as the ``postgres`` user when running as
root, since PostgreSQL refuses to run as root) and stops it afterwards. When none of that is
possible, ``start`` raises ``PostgresUnavailable`` saying why, and the tests skip with it.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    pass


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


def _install() -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise PostgresUnavailable(
            "PostgreSQL is not installed and cannot be installed here (needs root and apt-get); "
            "install the Debian package 'postgresql' to run these tests."
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "postgresql"]):
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
        if done.returncode != 0:
            raise PostgresUnavailable(
                f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-500:]}"
            )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def start() -> Iterator[str]:
    """A running server; yields its SQLAlchemy URL (psycopg driver, trust auth)."""
    bin_dir = _pg_bin()
    if bin_dir is None:
        _install()
        bin_dir = _pg_bin()
        if bin_dir is None:
            raise PostgresUnavailable("apt-get installed postgresql but no pg_ctl was found.")
    data = Path(tempfile.mkdtemp(prefix="ml_assets_pg_"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()

    def run(*args: str) -> None:
        done = subprocess.run([*as_user, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise PostgresUnavailable(
                f"{args[0]} failed: {done.stdout[-500:]} {done.stderr[-500:]}"
            )

    cluster = data / "cluster"
    run(str(bin_dir / "initdb"), "-D", str(cluster), "-A", "trust", "-U", "postgres")
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(
        str(bin_dir / "pg_ctl"),
        "-D",
        str(cluster),
        "-o",
        options,
        "-l",
        str(data / "log"),
        "-w",
        "start",
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(cluster), "-m", "fast", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(data, ignore_errors=True)
