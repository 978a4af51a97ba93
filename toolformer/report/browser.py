"""Headless Chromium driven over the DevTools pipe: open a local page, time its load, collect
console errors, run JavaScript in it, take a screenshot.

Used by `toolformer report --screenshot`, the report tests and bench/report_page.py. No Python
dependency: Chromium reads DevTools commands from fd 3 and writes replies to fd 4, one JSON
message per NUL-terminated chunk (`--remote-debugging-pipe`). Install the browser with
`apt-get install -y chromium` (Debian) or point $CHROMIUM at any Chrome/Chromium binary.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

# quiet, offline, reproducible: no sandbox (root in containers), no GPU, no network side traffic
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars")
INSTALL_HINT = "install it with `apt-get install -y chromium` (Debian/Ubuntu) or set $CHROMIUM"


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary: $CHROMIUM, else the usual names on PATH."""
    if os.environ.get("CHROMIUM"):
        return shutil.which(os.environ["CHROMIUM"])
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        if path := shutil.which(name):
            return path
    return None


class BrowserError(RuntimeError):
    pass


def _above_4(fd: int) -> int:
    """A close-on-exec copy of `fd` numbered 5 or higher (the original is closed)."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 5)
    os.close(fd)
    return moved


class Chromium:
    """One headless browser with one page. Use as a context manager."""

    def __init__(self, binary: str | None = None, width: int = 1400, height: int = 1000,
                 timeout_s: float = 30.0):
        binary = binary or find_chromium()
        if binary is None:
            raise BrowserError(f"no Chromium found: {INSTALL_HINT}")
        self.timeout_s = timeout_s
        self.console_errors: list[str] = []
        self._profile = tempfile.TemporaryDirectory(prefix="toolformer-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # the child's ends move above 4 first, so that placing them at 3 and 4 clobbers neither
        to_browser_r, from_browser_w = (_above_4(to_browser_r), _above_4(from_browser_w))

        def wire_pipe() -> None:  # in the child: fd 3 reads our commands, fd 4 writes replies
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self._proc = subprocess.Popen(
            [binary, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={self._profile.name}",
             f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=wire_pipe, close_fds=False)  # dup2 leaves 3 and 4 inheritable; the rest are CLOEXEC
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict] = []
        try:
            target = self.send("Target.createTarget", url="about:blank")["targetId"]
            self._session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                self.send(f"{domain}.enable", session=True)
            self.send("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                      deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.close()
            raise

    # ---- protocol
    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise BrowserError(f"Chromium did not answer within {self.timeout_s:g} s")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise BrowserError("Chromium exited")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def _note_event(self, message: dict) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text", "")
            self.console_errors.append(f"uncaught: {text}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.console_errors.append(f"console.{params['type']}: {args}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            entry = params["entry"]
            self.console_errors.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip())
        self._events.append(message)

    def send(self, method: str, session: bool = False, **params) -> dict:
        """Send one command and wait for its reply; events that arrive meanwhile are kept."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout_s
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self._note_event(reply)

    def wait_for_event(self, method: str) -> dict:
        for i, event in enumerate(self._events):
            if event.get("method") == method:
                return self._events.pop(i)
        deadline = time.monotonic() + self.timeout_s
        while True:
            message = self._read_message(deadline)
            self._note_event(message)
            if message.get("method") == method:
                return self._events.pop()

    # ---- page
    def open(self, path: str | Path) -> float:
        """Load a local file; return the seconds from navigation until the loaded page has painted
        (the load event, then the next animation frame)."""
        url = Path(path).resolve().as_uri()
        self._events.clear()
        t0 = time.perf_counter()
        self.send("Page.navigate", session=True, url=url)
        self.wait_for_event("Page.loadEventFired")
        self.eval("new Promise(done => requestAnimationFrame(() => setTimeout(done, 0)))")
        return time.perf_counter() - t0

    def type_text(self, selector: str, text: str) -> None:
        """Focus an element and type into it as a keyboard would (input events fire)."""
        self.eval(f"document.querySelector({json.dumps(selector)}).focus()")
        self.send("Input.insertText", session=True, text=text)

    def eval(self, expression: str):
        """Value of a JavaScript expression in the page (awaits promises)."""
        reply = self.send("Runtime.evaluate", session=True, expression=expression,
                          returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            raise BrowserError(details.get("exception", {}).get("description") or details.get("text"))
        return reply["result"].get("value")

    def screenshot(self, path: str | Path, full_page: bool = False) -> Path:
        params = {"format": "png"}
        if full_page:
            size = self.send("Page.getLayoutMetrics", session=True)["cssContentSize"]
            params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": size["width"],
                                                             "height": size["height"], "scale": 1})
        data = self.send("Page.captureScreenshot", session=True, **params)["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self.send("Browser.close")
            except (BrowserError, OSError):
                pass
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        self._profile.cleanup()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
