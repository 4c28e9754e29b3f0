"""Drive the demo page in headless Chromium: a static file server on 127.0.0.1 and a tiny Chrome DevTools Protocol
client (stdlib only: socket + the WebSocket framing CDP needs). Used by tests/test_android_demo.py,
android_demo/bench_wasm.py and android_demo/screenshot.py.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

WEB_DIR = Path(__file__).resolve().parent / "web"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-extensions", "--disable-sync", "--no-first-run",
                  "--disable-default-apps", "--mute-audio", "--hide-scrollbars"]


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


# ------------------------------------------------------------------------------------------------------------
# static server


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".wasm": "application/wasm", ".js": "text/javascript", ".mjs": "text/javascript",
                      ".tflite": "application/octet-stream", ".json": "application/json"}
    mounts: dict[str, Path] = {}

    def translate_path(self, path):
        path = path.split("?", 1)[0].split("#", 1)[0]
        for prefix, root in sorted(self.mounts.items(), key=lambda kv: -len(kv[0])):
            if path.startswith(prefix):
                rel = path[len(prefix):].lstrip("/")
                full = (root / rel).resolve()
                if full != root.resolve() and root.resolve() not in full.parents:
                    return str(root / "__forbidden__")
                return str(full)
        return str(Path(self.directory) / "__not_found__")

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, *args):  # quiet
        pass


@contextlib.contextmanager
def serve(mounts: dict[str, str | os.PathLike]):
    """Serve {url prefix: directory} on 127.0.0.1 (random port); yields the base URL 'http://127.0.0.1:PORT'."""
    handler = type("Handler", (_Handler,), {"mounts": {k: Path(v) for k, v in mounts.items()}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(WEB_DIR)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------------------------------------------------
# minimal WebSocket client (RFC 6455, client side, text frames)


class _WebSocket:
    def __init__(self, url: str, timeout: float):
        m = re.match(r"ws://([^:/]+):(\d+)(/.*)", url)
        if not m:
            raise ValueError(f"unsupported websocket url {url}")
        host, port, path = m.group(1), int(m.group(2)), m.group(3)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(req.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("websocket handshake: connection closed")
            head += chunk
        head, self._buf = head.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"websocket handshake failed: {head[:200]!r}")

    def send(self, text: str) -> None:
        payload = text.encode()
        n = len(payload)
        header = bytes([0x81])
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _read(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self._buf)))
            if not chunk:
                raise ConnectionError("websocket closed")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def recv(self) -> str:
        parts = []
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            data = self._read(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            op = b0 & 0x0F
            if op == 0x8:
                raise ConnectionError("websocket closed by peer")
            if op in (0x9, 0xA):  # ping/pong: ignore
                continue
            parts.append(data)
            if b0 & 0x80:
                return b"".join(parts).decode()

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()


# ------------------------------------------------------------------------------------------------------------
# Chromium + CDP


class PageError(RuntimeError):
    pass


class Chromium:
    """Headless Chromium with one page, driven over CDP. Use as a context manager."""

    def __init__(self, width: int = 1100, height: int = 1300, timeout: float = 60.0):
        self.binary = chromium_binary()
        if not self.binary:
            raise FileNotFoundError("chromium is not installed (bash scripts/install_chromium.sh)")
        self.width, self.height, self.timeout = width, height, timeout
        self.proc = None
        self.ws = None
        self._id = 0
        self.console: list[str] = []

    def __enter__(self):
        self._profile = tempfile.mkdtemp(prefix="edge_boneage_chromium_")
        cmd = [self.binary, *CHROMIUM_FLAGS, "--remote-debugging-port=0", f"--user-data-dir={self._profile}",
               f"--window-size={self.width},{self.height}", "about:blank"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        port = None
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                if self.proc.poll() is not None:
                    break
                continue
            m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if m:
                port = int(m.group(1))
                break
        if port is None:
            self.__exit__(None, None, None)
            raise RuntimeError("chromium did not start (no 'DevTools listening' line)")
        threading.Thread(target=self._drain, daemon=True).start()
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(t for t in targets if t.get("type") == "page")
        self.ws = _WebSocket(page["webSocketDebuggerUrl"], timeout=self.timeout)
        self.call("Runtime.enable")
        self.call("Page.enable")
        return self

    def _drain(self):
        for _ in iter(self.proc.stderr.readline, ""):
            pass

    def __exit__(self, *exc):
        if self.ws:
            self.ws.close()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(getattr(self, "_profile", ""), ignore_errors=True)

    def call(self, method: str, params: dict | None = None, timeout: float | None = None) -> dict:
        self._id += 1
        my = self._id
        self.ws.send(json.dumps({"id": my, "method": method, "params": params or {}}))
        self.ws.sock.settimeout(timeout or self.timeout)
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("method") == "Runtime.consoleAPICalled":
                args = msg["params"].get("args", [])
                self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
            elif msg.get("method") == "Runtime.exceptionThrown":
                self.console.append(str(msg["params"]["exceptionDetails"].get("exception", {}).get("description")))
            if msg.get("id") == my:
                if "error" in msg:
                    raise PageError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", {"url": url})

    def evaluate(self, expression: str, timeout: float | None = None):
        """Evaluate JS (awaiting a promise) and return its JSON value; a thrown error raises PageError."""
        res = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True},
                        timeout=timeout)
        if "exceptionDetails" in res:
            det = res["exceptionDetails"]
            desc = det.get("exception", {}).get("description") or det.get("text")
            raise PageError(f"{desc}")
        return res.get("result", {}).get("value")

    def wait_title(self, accept=("READY", "DONE"), timeout: float | None = None) -> str:
        """Poll document.title until it is one of `accept` or starts with 'ERROR' (raises)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        title = ""
        while time.monotonic() < deadline:
            title = self.evaluate("document.title") or ""
            if title in accept:
                return title
            if title.startswith("ERROR"):
                raise PageError(f"page: {title}; console: {self.console[-5:]}")
            time.sleep(0.1)
        raise TimeoutError(f"page title stayed {title!r}; console: {self.console[-5:]}")

    def screenshot(self, path: str | os.PathLike) -> Path:
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})
        h = self.evaluate("Math.ceil(document.documentElement.scrollHeight)") or self.height
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": int(h), "deviceScaleFactor": 1, "mobile": False})
        data = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path
