"""Take the README's screenshot of the asset graph: ``make ui`` on a home that ``make run``
materialized, then headless Chromium (Debian's ``chromium`` package) on the global asset
lineage page, every group expanded (over the DevTools protocol).

    apt-get install chromium      # once
    make run                      # something to show
    .venv/bin/python docs/screenshot_asset_graph.py [--home .ml_assets] [--out docs/asset-graph.png]
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from websockets.sync.client import connect

from ml_assets.deployments import REPO_ROOT
from ml_assets_tests.dagster_dev import dagster_dev, free_port


class DevTools:
    """The Chrome DevTools Protocol over a websocket: enough to load a page, press a key and
    take a screenshot."""

    def __init__(self, socket):
        self.socket = socket
        self.next_id = 0

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})


def capture(browser: str, url: str, size: str) -> bytes:
    """Load ``url``, expand every asset group (the UI's Alt+E), return a PNG of the page."""
    width, height = (int(n) for n in size.split(","))
    port = free_port()
    with tempfile.TemporaryDirectory() as profile:
        chrome = subprocess.Popen(
            [
                browser,
                "--headless",
                "--no-sandbox",  # running as root in a container
                "--disable-gpu",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--remote-debugging-port={port}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            pages = _wait_json(f"http://127.0.0.1:{port}/json/list")
            page = next(p for p in pages if p["type"] == "page")
            with connect(page["webSocketDebuggerUrl"], max_size=None) as socket:
                return _shoot(DevTools(socket), url, width, height)
        finally:
            chrome.terminate()
            chrome.wait(timeout=30)


def _shoot(tools: DevTools, url: str, width: int, height: int) -> bytes:
    """Load the page, focus the graph, press Alt+E (expand all groups), screenshot it."""
    tools.call("Page.enable")
    tools.call("Page.navigate", url=url)
    time.sleep(15)  # the app loads, fetches the graph and lays it out
    for kind in ("mousePressed", "mouseReleased"):  # focus the graph
        tools.call(
            "Input.dispatchMouseEvent",
            type=kind,
            x=width * 0.7,
            y=height * 0.85,
            button="left",
            clickCount=1,
        )
    for kind in ("rawKeyDown", "keyUp"):  # Alt+E: expand all groups
        tools.call(
            "Input.dispatchKeyEvent",
            type=kind,
            modifiers=1,
            key="e",
            code="KeyE",
            windowsVirtualKeyCode=69,
        )
    time.sleep(8)
    shot = tools.call("Page.captureScreenshot", format="png")
    return base64.b64decode(shot["data"])


def _wait_json(url: str, timeout: float = 30) -> list:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=5).json()
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", default=str(REPO_ROOT / ".ml_assets"))
    parser.add_argument("--out", default=str(REPO_ROOT / "docs" / "asset-graph.png"))
    parser.add_argument("--page", default="/asset-groups", help="UI path to capture")
    parser.add_argument("--size", default="1800,1100")
    args = parser.parse_args(argv)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("chromium not found: apt-get install chromium", file=sys.stderr)
        return 2
    with dagster_dev(Path(args.home).resolve()) as server:
        server.wait_for_location("ml_assets")
        png = capture(browser, f"{server.url}{args.page}", args.size)
    Path(args.out).write_bytes(png)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
