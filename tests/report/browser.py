"""Open a page in headless Chromium over the DevTools protocol (``--remote-debugging-pipe``: no port, no extra
package) and report what a person would see: how many Plotly plots drew, how long until they had, what the console
said, which requests left the page.

Also a tool: ``python -m tests.report.browser results/default/report.html docs/`` prints the report's size and
open time and writes the README's two screenshots (docs/report_summary.png, docs/report_profile.png).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
# Plots that drew: a Plotly div holding its rendered SVG (every trace type, parcoords included, draws one).
DRAWN = "[...document.querySelectorAll('.plotly-graph-div')].filter(d => d.querySelector('.plot-container .main-svg')).length"  # noqa: E501
TOTAL = "document.querySelectorAll('.plotly-graph-div').length"


def find_chromium() -> str | None:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageLoad:
    plots: int  # Plotly divs in the page
    drawn: int  # of which drew their SVG
    seconds: float  # navigation start until every plot had drawn (or the timeout)
    load_event_ms: float  # the page's own loadEventEnd (parsing + running every script)
    first_paint_ms: float  # first contentful paint: when the page's text first showed
    first_view_ms: float  # the page's own mark: the plots in the first screen have drawn (the page is open)
    all_drawn_ms: float  # the page's own mark: every plot has drawn (those below the first screen in background)
    errors: list[str] = field(default_factory=list)  # console errors, uncaught exceptions, error log entries
    warnings: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL the page asked for (itself included)


class Browser:
    """One headless Chromium; ``with Browser() as b: b.open(path)``."""

    def __init__(self, executable: str | None = None, *, width: int = 1280, height: int = 900) -> None:
        exe = executable or find_chromium()
        if exe is None:
            raise FileNotFoundError("no Chromium found (apt-get install chromium)")
        self.profile = tempfile.mkdtemp(prefix="autoslim-chromium-")
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()

        def wire() -> None:  # the protocol's pipe: the browser reads fd 3 and writes fd 4
            os.dup2(to_browser, 3)
            os.dup2(from_browser, 4)

        args = [exe, "--headless=new", "--disable-gpu", "--no-sandbox", "--remote-debugging-pipe", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
                f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "about:blank"]  # fmt: skip
        self.proc = subprocess.Popen(args, pass_fds=(3, 4), preexec_fn=wire, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)  # fmt: skip
        os.close(to_browser)
        os.close(from_browser)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=True)
        screen = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        self.call("Emulation.setDeviceMetricsOverride", screen, session=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._send({"id": self._next(), "method": "Browser.close"})
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self.profile, ignore_errors=True)

    # --- the protocol: JSON messages, each ended by a NUL byte ---
    def _next(self) -> int:
        self._id += 1
        return self._id

    def _send(self, message: dict[str, Any]) -> None:
        os.write(self._write, json.dumps(message).encode() + b"\0")

    def _receive(self, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                return None
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe (it exited)")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, *, session: bool = False, timeout: float = 60) -> dict:
        mid = self._next()
        message: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        self._send(message)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self._receive(deadline - time.monotonic())
            if reply is None:
                break
            if reply.get("id") == mid:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)
        raise TimeoutError(f"{method}: no reply in {timeout} s")

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=True)
        return result.get("result", {}).get("value")

    # --- what a test asks ---
    def open(self, path: Path, *, timeout: float = 60) -> PageLoad:
        """Load ``path`` and wait until its load event and every Plotly plot has drawn."""
        self.events.clear()
        start = time.monotonic()
        self.call("Page.navigate", {"url": Path(path).resolve().as_uri()}, session=True)
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            event = self._receive(max(0.0, start + timeout - time.monotonic()))
            if event is None:
                break
            self.events.append(event)
        plots, drawn = 0, 0
        while time.monotonic() < start + timeout:
            plots, drawn = self.evaluate(TOTAL), self.evaluate(DRAWN)
            if drawn >= plots:
                break
            time.sleep(0.02)
        seconds = time.monotonic() - start
        load = self.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd") or 0.0
        paint = self.evaluate("(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime") or 0.0
        marks = {name: self.evaluate(f"(performance.getEntriesByName('autoslim:{name}')[0] || {{}}).startTime") or 0.0
                 for name in ("first-view", "all-drawn")}  # fmt: skip
        time.sleep(0.2)  # let late console messages (a plot's promise rejecting) arrive
        while (event := self._receive(0.05)) is not None:
            self.events.append(event)
        return PageLoad(plots, drawn, seconds, float(load), float(paint), float(marks["first-view"]),
                        float(marks["all-drawn"]), *self._console())  # fmt: skip

    def _console(self) -> tuple[list[str], list[str], list[str]]:
        errors, warnings, requests = [], [], []
        for e in self.events:
            method, p = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = p.get("exceptionDetails", {})
                errors.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
            elif method == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
                kind = p.get("type")
                (errors if kind in ("error", "assert") else warnings).append(f"console.{kind}: {text}")
            elif method == "Log.entryAdded":
                entry = p.get("entry", {})
                line = f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip()
                (errors if entry.get("level") == "error" else warnings).append(line)
            elif method == "Network.requestWillBeSent":
                requests.append(p.get("request", {}).get("url", ""))
        return errors, warnings, requests

    def screenshot(self, out: Path, top: str, bottom: str) -> None:
        """A PNG of the page from the top of element ``top`` to the bottom of element ``bottom`` (CSS selectors)."""
        box = self.evaluate(
            f"(() => {{ const a = document.querySelector({json.dumps(top)}).getBoundingClientRect(), "
            f"b = document.querySelector({json.dumps(bottom)}).getBoundingClientRect(); "
            "return [a.top + scrollY - 12, b.bottom + scrollY + 12, document.documentElement.clientWidth]; })()"
        )
        clip = {"x": 0, "y": box[0], "width": box[2], "height": box[1] - box[0], "scale": 1}
        shot = self.call("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True},
                         session=True)  # fmt: skip
        Path(out).write_bytes(base64.b64decode(shot["data"]))


def main(report: str, out_dir: str, profile: str = "mcu-cortex-m7") -> None:
    path, out = Path(report), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with Browser() as browser:
        load = browser.open(path)
        print(
            f"{path}: {path.stat().st_size / 1e6:.2f} MB; text shown {load.first_paint_ms / 1000:.2f} s, first "
            f"screen's plots drawn {load.first_view_ms / 1000:.2f} s, load event {load.load_event_ms / 1000:.2f} s, "
            f"all {load.drawn}/{load.plots} plots drawn {load.all_drawn_ms / 1000:.2f} s (seen by the test "
            f"{load.seconds:.2f} s); errors: {load.errors or 'none'}"
        )
        browser.screenshot(out / "report_summary.png", "h1", "pre.commands")
        # With a front point's hover box showing, as a person pointing at it sees it.
        plot = browser.evaluate(f"document.querySelector('#profile-{profile} + p + .fig .plotly-graph-div').id")
        browser.evaluate(f"(() => {{ const gd = document.getElementById('{plot}'); "
                         "const i = gd.data.findIndex(t => t.name.startsWith('Pareto front')); "
                         "Plotly.Fx.hover(gd, [{curveNumber: i, pointNumber: 0}]); })()")  # fmt: skip
        browser.screenshot(out / "report_profile.png", f"#profile-{profile}", f"#profile-{profile} + p + .fig")


if __name__ == "__main__":
    main(*sys.argv[1:])
