"""Drive the demo page in headless Chromium: a static file server on 127.0.0.1 and Selenium WebDriver running Debian's
`chromium` through Debian's `chromium-driver` (bash scripts/install_chromium.sh; selenium is in the `dev` extra).
Used by tests/test_android_demo.py, android_demo/bench_wasm.py and android_demo/screenshot.py.

Both binaries are named explicitly (Service(chromedriver), Options.binary_location), so Selenium Manager is never
asked to find or download a driver or a browser.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import threading
import time
from pathlib import Path

WEB_DIR = Path(__file__).resolve().parent / "web"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update", "--disable-extensions",
                  "--disable-sync", "--no-first-run", "--disable-default-apps", "--mute-audio", "--hide-scrollbars"]
INSTALL_HINT = "bash scripts/install_chromium.sh; pip install -e '.[dev]'"


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def chromedriver_binary() -> str | None:
    return shutil.which("chromedriver")


def missing() -> str | None:
    """Why the browser cannot be driven here (for a test's skip reason), or None when chromium, chromedriver and
    selenium are all there."""
    gone = [name for name, ok in (("chromium", chromium_binary()), ("chromedriver", chromedriver_binary()))
            if not ok]
    try:
        import selenium  # noqa: F401
    except ImportError:
        gone.append("selenium (Python)")
    return f"{', '.join(gone)} not installed ({INSTALL_HINT})" if gone else None


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
# Chromium through Selenium

# The source runs as by a global eval (expressions or statements, in the page's global scope, like the console);
# its completion value (or its promise's) comes back as JSON, a thrown error or a rejection as {error: its stack}.
_EVALUATE = """const done = arguments[arguments.length - 1];
Promise.resolve(arguments[0]).then((src) => (0, eval)(src))
  .then((v) => done({value: v === undefined ? null : v}),
        (e) => done({error: e && e.stack ? String(e.stack) : String(e)}));"""


class PageError(RuntimeError):
    pass


class Chromium:
    """Headless Chromium with one page, driven by Selenium. Use as a context manager."""

    def __init__(self, width: int = 1100, height: int = 1300, timeout: float = 60.0):
        reason = missing()
        if reason:
            raise FileNotFoundError(reason)
        self.binary, self.driver_binary = chromium_binary(), chromedriver_binary()
        self.width, self.height, self.timeout = width, height, timeout
        self.driver = None
        self._console: list[str] = []

    def __enter__(self):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = self.binary
        for flag in (*CHROMIUM_FLAGS, f"--window-size={self.width},{self.height}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(self.driver_binary), options=options)
        self.driver.set_page_load_timeout(self.timeout)
        return self

    def __exit__(self, *exc):
        if self.driver is not None:
            with contextlib.suppress(Exception):
                self.driver.quit()
            self.driver = None

    @property
    def console(self) -> list[str]:
        """The page's console messages and uncaught errors so far."""
        with contextlib.suppress(Exception):
            self._console += [e.get("message", "") for e in self.driver.get_log("browser")]
        return self._console

    def navigate(self, url: str) -> None:
        self.driver.get(url)

    def evaluate(self, expression: str, timeout: float | None = None):
        """Evaluate JS (awaiting a promise) and return its JSON value; a thrown error raises PageError."""
        from selenium.common.exceptions import JavascriptException, TimeoutException

        self.driver.set_script_timeout(timeout or self.timeout)
        try:
            res = self.driver.execute_async_script(_EVALUATE, expression)
        except TimeoutException as e:
            raise TimeoutError(f"{expression[:80]!r} did not settle in {timeout or self.timeout} s") from e
        except JavascriptException as e:  # not expected (eval's own errors are caught in the page)
            raise PageError(e.msg) from e
        if "error" in res:
            raise PageError(res["error"])
        return res["value"]

    def wait_title(self, accept=("READY", "DONE"), timeout: float | None = None) -> str:
        """Poll document.title until it is one of `accept` or starts with 'ERROR' (raises)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        title = ""
        while time.monotonic() < deadline:
            title = self.driver.title or ""
            if title in accept:
                return title
            if title.startswith("ERROR"):
                raise PageError(f"page: {title}; console: {self.console[-5:]}")
            time.sleep(0.1)
        raise TimeoutError(f"page title stayed {title!r}; console: {self.console[-5:]}")

    def set_viewport(self, width: int, height: int) -> None:
        """Size the window so that the page's viewport is width x height (headless Chromium's window still counts a
        frame around the page)."""
        self.driver.set_window_size(width, height)
        dw, dh = self.evaluate("[outerWidth - innerWidth, outerHeight - innerHeight]")
        if dw or dh:
            self.driver.set_window_size(width + dw, height + dh)

    def screenshot(self, path: str | os.PathLike) -> Path:
        """PNG of the whole page at the viewport's width (the viewport grows to the page's height)."""
        self.set_viewport(self.width, self.height)
        h = self.evaluate("Math.ceil(document.documentElement.scrollHeight)") or self.height
        self.set_viewport(self.width, int(h))
        path = Path(path)
        if not self.driver.save_screenshot(str(path)):
            raise PageError(f"screenshot to {path} failed")
        return path
