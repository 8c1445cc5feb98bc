"""A stand-in Databricks workspace for the Databricks resources' tests: an HTTP server answering
the parts of the REST API that ``databricks-sdk`` calls for a Pipes job (the Files API on
volume paths, ``jobs/runs/submit``, ``runs/get``, ``runs/cancel``) and for Lakehouse
Monitoring (``unity-catalog/tables/{name}/monitor`` and its refreshes), so the real SDK and the
real ``dagster-databricks`` Pipes client run unchanged against it.

Volume paths are this machine's own paths under ``root`` (the launcher's volume is set to a
directory there), so the submitted script, started as a local subprocess with the task's own
``python_file`` and ``parameters``, reads and writes the same files as a job reads
``/Volumes/...`` through its FUSE mount. Submitted tasks are recorded as the SDK serialised
them; a run is RUNNING until its process exits, then TERMINATED with SUCCESS or FAILED.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

FILES, DIRECTORIES = "/api/2.0/fs/files", "/api/2.0/fs/directories"
TABLES = "/api/2.1/unity-catalog/tables/"
INFERENCE_LOG_FIELDS = {"granularities", "model_id_col", "prediction_col", "problem_type"}


class FakeWorkspace:
    def __init__(self, root: Path, token: str, python: str = sys.executable):
        self.root, self.token, self.python = root.resolve(), token, python
        self.submitted: list[dict] = []  # the runs/submit bodies
        self.runs: dict[int, subprocess.Popen] = {}
        self.logs: dict[int, Path] = {}
        self.monitors: dict[str, dict] = {}  # table -> MonitorInfo
        self.monitor_calls: list[tuple[str, str]] = []  # (method, path) of monitor requests
        self.monitor_status = "MONITOR_STATUS_ACTIVE"  # what a monitor reports
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.host = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeWorkspace:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        for process in self.runs.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        self._server.shutdown()
        self._server.server_close()

    def log(self, run_id: int) -> str:
        return self.logs[run_id].read_text()

    # -- the API ---------------------------------------------------------------------------
    def _local(self, path: str) -> Path:
        local = Path(unquote(path)).resolve()
        if local != self.root and self.root not in local.parents:
            raise PermissionError(f"{path} is outside this workspace's volumes")
        return local

    def _submit(self, body: dict) -> dict:
        (task,) = body["tasks"]
        if "existing_cluster_id" not in task and "environment_key" not in task:
            raise ValueError("a task needs existing_cluster_id, new_cluster or environment_key")
        if "environment_key" in task:
            keys = {e["environment_key"] for e in body.get("environments", [])}
            if task["environment_key"] not in keys:
                raise ValueError(f"environment {task['environment_key']!r} is not in the run")
        python = task["spark_python_task"]
        command = [self.python, str(self._local(python["python_file"])), *python["parameters"]]
        with self._lock:
            run_id = len(self.submitted) + 1
            self.submitted.append(body)
            self.logs[run_id] = self.root / f"run-{run_id}.log"
            with self.logs[run_id].open("w") as log:
                self.runs[run_id] = subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, cwd=self.root
                )
        return {"run_id": run_id}

    def _run(self, run_id: int) -> dict:
        code = self.runs[run_id].poll()
        if code is None:
            state = {"life_cycle_state": "RUNNING", "state_message": ""}
        else:
            state = {
                "life_cycle_state": "TERMINATED",
                "result_state": "SUCCESS" if code == 0 else "FAILED",
                "state_message": "" if code == 0 else f"exit code {code}",
            }
        return {
            "run_id": run_id,
            "state": state,
            "run_page_url": f"{self.host}/#job/runs/{run_id}",
        }

    def _monitor(self, method: str, table: str, rest: str, body: dict) -> tuple[int, dict]:
        self.monitor_calls.append((method, f"{table}/{rest}"))
        current = self.monitors.get(table)
        if rest == "monitor/refreshes" and method == "POST":
            if current is None:
                return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": table}
            current["refreshes"] = current.get("refreshes", 0) + 1
            return 200, {"refresh_id": current["refreshes"], "state": "PENDING"}
        if rest != "monitor":
            return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": rest}
        if method == "GET":
            if current is None:
                return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"{table}"}
            return 200, {**current, "status": self.monitor_status}
        if method in ("POST", "PUT"):
            if method == "POST" and current is not None:
                return 409, {"error_code": "RESOURCE_ALREADY_EXISTS", "message": table}
            if method == "PUT" and current is None:
                return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": table}
            log = body.get("inference_log") or {}
            required = INFERENCE_LOG_FIELDS | {"timestamp_col"}
            missing = sorted(required - set(log)) + [
                f for f in ("output_schema_name",) if f not in body
            ]
            if method == "POST" and "assets_dir" not in body:
                missing.append("assets_dir")
            if missing:
                return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": f"{missing}"}
            version = 1 if current is None else int(current["monitor_version"]) + 1
            schema = body["output_schema_name"]
            name = table.rpartition(".")[2]
            self.monitors[table] = {
                **(current or {}),
                **body,
                "table_name": table,
                "monitor_version": str(version),
                "profile_metrics_table_name": f"{schema}.{name}_profile_metrics",
                "drift_metrics_table_name": f"{schema}.{name}_drift_metrics",
                "dashboard_id": f"dashboard-{name}",
            }
            return 200, {**self.monitors[table], "status": self.monitor_status}
        return 405, {"error_code": "BAD_REQUEST", "message": method}

    def _handler(self):
        workspace = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _answer(self, status: int, body: object = None, raw: bytes | None = None):
                data = raw if raw is not None else json.dumps(body or {}).encode()
                self.send_response(status)
                kind = "application/octet-stream" if raw is not None else "application/json"
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _error(self, status: int, code: str, message: str) -> None:
                self._answer(status, {"error_code": code, "message": message})

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _route(self) -> None:
                url = urlparse(self.path)
                if url.path == "/.well-known/databricks-config":
                    return self._error(404, "NOT_FOUND", "no such page")
                if self.headers.get("Authorization") != f"Bearer {workspace.token}":
                    return self._error(401, "UNAUTHENTICATED", "Missing or wrong token")
                try:
                    return self._api(url.path, parse_qs(url.query))
                except PermissionError as exc:
                    return self._error(403, "PERMISSION_DENIED", str(exc))
                except (KeyError, ValueError) as exc:
                    return self._error(400, "INVALID_PARAMETER_VALUE", str(exc))

            def _api(self, path: str, query: dict) -> None:
                method = self.command
                if path.startswith(DIRECTORIES):
                    local = workspace._local(path.removeprefix(DIRECTORIES))
                    if method == "PUT":
                        local.mkdir(parents=True, exist_ok=True)
                        return self._answer(200)
                    if not local.is_dir():
                        return self._error(404, "NOT_FOUND", f"no directory {local}")
                    if method == "DELETE":
                        local.rmdir()  # as the API: only an empty directory
                        return self._answer(200)
                    contents = [
                        {"path": str(p), "name": p.name, "is_directory": p.is_dir()}
                        for p in sorted(local.iterdir())
                    ]
                    return self._answer(200, {"contents": contents})
                if path.startswith(FILES):
                    local = workspace._local(path.removeprefix(FILES))
                    if method == "PUT":
                        if local.exists() and query.get("overwrite") == ["false"]:
                            return self._error(409, "ALREADY_EXISTS", f"{local} exists")
                        local.parent.mkdir(parents=True, exist_ok=True)
                        local.write_bytes(self._body())
                        return self._answer(200)
                    if not local.is_file():
                        return self._error(404, "NOT_FOUND", f"no file {local}")
                    if method == "DELETE":
                        local.unlink()
                        return self._answer(200)
                    return self._answer(200, raw=local.read_bytes())
                if path.startswith(TABLES):
                    table, _, rest = path.removeprefix(TABLES).partition("/")
                    body = json.loads(self._body() or b"{}") if method in ("POST", "PUT") else {}
                    status, answer = workspace._monitor(method, unquote(table), rest, body)
                    return self._answer(status, answer)
                if path == "/api/2.2/jobs/runs/submit" and method == "POST":
                    return self._answer(200, workspace._submit(json.loads(self._body())))
                if path == "/api/2.2/jobs/runs/get" and method == "GET":
                    run_id = int(query["run_id"][0])
                    if run_id not in workspace.runs:
                        return self._error(404, "RESOURCE_DOES_NOT_EXIST", f"no run {run_id}")
                    return self._answer(200, workspace._run(run_id))
                if path == "/api/2.2/jobs/runs/cancel" and method == "POST":
                    workspace.runs[int(json.loads(self._body())["run_id"])].terminate()
                    return self._answer(200)
                return self._error(404, "ENDPOINT_NOT_FOUND", f"{method} {path}")

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _route

        return Handler
