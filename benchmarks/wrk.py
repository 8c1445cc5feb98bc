"""``wrk``, the HTTP load generator (C, epoll): fetched once from Debian's packages, pinned by
version and sha256, and run with a Lua script that sends recorded request bodies in turn and
reports latency percentiles and counts as one JSON line.

The serving benchmark uses it so that the client does not dominate what is measured: a Python
client on the same 2 cores takes a core of its own at a few hundred requests a second.

The two packages (wrk and the LuaJIT library it links) are Debian 12's, downloaded over HTTPS
from deb.debian.org into ``.venv/tools/wrk`` and unpacked there (a ``.deb`` is an ``ar``
archive holding ``data.tar.xz``; no ``dpkg`` or root needed). A file whose sha256 is not the
pinned one is refused and deleted.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

MIRROR = "https://deb.debian.org/debian/pool/main"
PACKAGES = {  # pool path -> sha256
    "w/wrk/wrk_4.1.0-3+b2_amd64.deb": (
        "b0206dc74df85365a248ddac2433c0ee3f210579fc5ed83758e73354bb1bbefb"
    ),
    "l/luajit/libluajit-5.1-2_2.1.0~beta3+git20220320+dfsg-4.1+deb12u1_amd64.deb": (
        "1f0ea919d09d47420993aca0102ec0aed46338b2bf7e072a4b4566c5616f09d2"
    ),
}
LIBS = "usr/lib/x86_64-linux-gnu"

SCRIPT = r"""
local bodies = {}
local next_body = 0
local threads = 0

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  for line in io.lines(args[1]) do
    bodies[#bodies + 1] = line
  end
  next_body = (tonumber(args[2]) + id * 7919) % #bodies
end

function request()
  next_body = next_body % #bodies + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, bodies[next_body])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "p999_us": %d, ' ..
    '"max_us": %d, "non_2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), latency.max, e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def _unpack_deb(deb: bytes, into: Path) -> None:
    """The ``data.tar.*`` member of a ``.deb`` (an ``ar`` archive) extracted under ``into``."""
    if not deb.startswith(b"!<arch>\n"):
        raise ValueError("not a Debian package (no ar header)")
    at = 8
    while at < len(deb):
        header = deb[at : at + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = deb[at + 60 : at + 60 + size]
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                tar.extractall(into, filter="data")
            return
        at += 60 + size + (size % 2)
    raise ValueError("the package has no data.tar member")


def ensure_wrk(root: Path) -> Path:
    """The ``wrk`` binary under ``root``, fetched, verified and unpacked when missing."""
    binary = root / "usr" / "bin" / "wrk"
    if binary.exists():
        return binary
    root.mkdir(parents=True, exist_ok=True)
    for path, sha256 in PACKAGES.items():
        url = f"{MIRROR}/{path}"
        with urllib.request.urlopen(url, timeout=60) as answer:  # noqa: S310 (a fixed https URL)
            deb = answer.read()
        found = hashlib.sha256(deb).hexdigest()
        if found != sha256:
            raise RuntimeError(
                f"{url} has sha256 {found}, expected the pinned {sha256}: not unpacked. "
                "If Debian rebuilt the package, pin the new file in benchmarks/wrk.py."
            )
        _unpack_deb(deb, root)
    if not binary.exists():
        raise RuntimeError(f"{binary} is missing after unpacking {list(PACKAGES)}")
    return binary


@dataclass(frozen=True)
class Load:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def run(
    binary: Path, url: str, bodies: list[bytes], connections: int, seconds: float, seed: int = 0
) -> Load:
    """``connections`` keep-alive connections (at most two threads: the machine has 2 cores)
    sending ``bodies`` in turn for ``seconds``."""
    with tempfile.TemporaryDirectory(prefix="wrk_") as tmp:
        script, recorded = Path(tmp) / "bodies.lua", Path(tmp) / "bodies.jsonl"
        script.write_text(SCRIPT)
        recorded.write_bytes(b"\n".join(b.replace(b"\n", b" ") for b in bodies) + b"\n")
        threads = min(2, connections)
        command = [str(binary), f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s"]
        command += ["--timeout", "30s", "-s", str(script), url, "--", str(recorded), str(seed)]
        env = {**os.environ, "LD_LIBRARY_PATH": str(binary.parents[2] / LIBS)}
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-1000:]}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    ms = {k.removesuffix("_us"): v / 1000 for k, v in found.items() if k.endswith("_us")}
    return Load(
        requests=found["requests"],
        seconds=ms["duration"] / 1000,
        p50_ms=ms["p50"],
        p99_ms=ms["p99"],
        p999_ms=ms["p999"],
        max_ms=ms["max"],
        non_2xx=found["non_2xx"],
        socket_errors=found["socket_errors"],
    )
