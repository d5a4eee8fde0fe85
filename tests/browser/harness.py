"""
Shared fixtures of the browser tests: Debian's Chromium driven by Playwright, a real
node, a server for host pages on another origin, and direct API calls for seeding.

Trial (Twisted 26.10) does not call setUpClass on unittest.TestCase classes, so every fixture is a
process-wide singleton created by the first test that needs it and stopped at exit.
All servers listen on 127.0.0.1, and Chromium resolves no other host name.

The harness starts Chromium itself and attaches Playwright over the DevTools protocol,
in place of playwright.chromium.launch. Playwright's launch adds
--disable-features=ThirdPartyStoragePartitioning (Playwright 1.65), which makes
Chromium deny localStorage to the cross-site widget iframe. Chromium's defaults give
that iframe partitioned storage, as browsers do for readers.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

from tests import support

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Any name other than localhost fails to resolve, so no page can reach another host.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]
ARTIFACTS = support.REPOSITORY / "artifacts" / "browser"
FRAME_SELECTOR = "iframe[data-comments-frame]"
# Edit window of the forum "shortedit", in seconds: long enough to open an edit form,
# short enough to wait out in a test.
SHORT_EDIT_WINDOW = 6
# Posts per minute on the rate-limited node.
RESTRICTED_POSTS_PER_MINUTE = 2
SEEDED_DEMO_NAMES = ("Ada", "Grace", "Linus")

_fixtures: dict[str, Any] = {}


def start_chromium(extra_args: tuple[str, ...] = ()) -> tuple[subprocess.Popen[bytes], str]:
    """Start headless Chromium with a DevTools port on 127.0.0.1 and return the process and endpoint."""
    profile = Path(tempfile.mkdtemp(prefix="comments-chromium-"))
    with open(profile / "chromium.log", "ab") as log:
        process = subprocess.Popen(
            [str(CHROMIUM), *CHROMIUM_ARGS, *extra_args, "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
            stdout=log, stderr=subprocess.STDOUT,
        )
    # Chromium writes the port it picked and the browser's path to DevToolsActivePort.
    active_port = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Chromium exited with {process.returncode}: {(profile / 'chromium.log').read_text()}")
        lines = active_port.read_text().split() if active_port.exists() else []
        if len(lines) >= 2:
            return process, f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"Chromium did not open its DevTools port within 30 s; see {profile / 'chromium.log'}")


def stop_chromium(browser: Any, process: subprocess.Popen[bytes]) -> None:
    """Close Chromium over DevTools, which lets it reap its own helper processes, then wait."""
    try:
        browser.new_browser_cdp_session().send("Browser.close")
    except PlaywrightError as error:
        # The browser may be gone already, and SIGTERM follows below anyway.
        print(f"closing Chromium over DevTools failed: {error}", file=sys.stderr)
    try:
        process.wait(timeout=10)
        return
    except subprocess.TimeoutExpired:
        process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def require_chromium() -> None:
    """Raise SkipTest when Chromium is missing, unless the CI variable is set."""
    if CHROMIUM.exists():
        return
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing on CI; install Debian's chromium package (apt-get install chromium)")
    raise unittest.SkipTest(f"{CHROMIUM} is missing; install Debian's chromium package to run the browser tests")


class HostServer:
    """
    Serve registered host pages on 127.0.0.1, so that pages can embed the widget from a
    different origin than the node's.

    The same server is reached as http://localhost:PORT, which the test forums allow,
    and as http://127.0.0.1:PORT, which no forum allows.
    """

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path.split("?", 1)[0])
                status = 200 if body is not None else 404
                data = (body if body is not None else "no such host page").encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.allowed_origin = f"http://localhost:{self.port}"
        self.disallowed_origin = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="host-pages", daemon=True)
        self.thread.start()

    def add_page(self, path: str, html: str) -> str:
        """Register ``html`` at ``path`` and return its URL on the allowed origin."""
        self.pages[path] = html
        return self.allowed_origin + path

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ApiClient:
    """Blocking JSON calls to a node's /api/v1, for seeding data and checking results."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode("utf-8") if body is not None else None
        request = urllib.request.Request(
            f"{self.base_url}/api/v1{path}", data=data, method=method,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.load(response)  # type: ignore[no-any-return]
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{method} {path} failed with {error.code}: {error.read()!r}") from None

    def thread(self, identifier: str | None, url: str, forum: str = "demo", title: str = "Test page") -> dict[str, Any]:
        """Find or create a thread and return it."""
        body = {"forum": forum, "identifier": identifier, "url": url, "title": title}
        thread: dict[str, Any] = self.call("POST", "/threads", body)["thread"]
        return thread

    def post(self, thread_id: str, name: str, message: str, parent: str | None = None) -> dict[str, Any]:
        """Create a post and return the whole response (post, edit_token, edit_until)."""
        body: dict[str, Any] = {"author_name": name, "message": message}
        if parent is not None:
            body["parent"] = parent
        return self.call("POST", f"/threads/{thread_id}/posts", body)

    def vote(self, post_id: str, voter: str, value: int) -> dict[str, Any]:
        return self.call("POST", f"/posts/{post_id}/vote", {"voter": voter, "value": value})

    def counts(self, forum: str, identifiers: list[str]) -> dict[str, Any]:
        query = "&".join([f"forum={forum}"] + [f"identifier={i}" for i in identifiers])
        return self.call("GET", f"/counts?{query}")


def _script_literal(value: Any) -> str:
    """Return ``value`` as a JavaScript literal that is safe inside an inline <script>."""
    return json.dumps(value).replace("</", "<\\/")


def embed_page(node_url: str, *, identifier: str | None, forum: str = "demo", title: str = "Test page",
               head: str = "", theme: str | None = None, language: str | None = None,
               config: str = "comments", body_before: str = "") -> str:
    """
    Return a host page that embeds the widget from ``node_url``.

    ``config="comments"`` uses comments_config and #comments_thread. ``config="disqus"``
    uses Disqus's names: disqus_shortname, disqus_config and #disqus_thread.
    """
    lines = []
    if identifier is not None:
        lines.append(f"this.page.identifier = {_script_literal(identifier)};")
    lines.append(f"this.page.title = {_script_literal(title)};")
    if theme is not None:
        lines.append(f"this.theme = {_script_literal(theme)};")
    if language is not None:
        lines.append(f"this.language = {_script_literal(language)};")
    if config == "disqus":
        setup = (f"var disqus_shortname = {_script_literal(forum)};\n"
                 f"var disqus_config = function () {{ {' '.join(lines)} }};")
        container = "disqus_thread"
    else:
        setup = f"var comments_config = function () {{ this.forum = {_script_literal(forum)}; {' '.join(lines)} }};"
        container = "comments_thread"
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}</title>{head}</head>
<body>
<h1>{title}</h1>
{body_before}
<div id="{container}"></div>
<script>{setup}</script>
<script src="{node_url}/embed.js" async></script>
</body>
</html>
"""


def _start_node(database: Any, posts_per_minute: int = 0) -> support.NodeProcess:
    node = support.NodeProcess(database, posts_per_minute=posts_per_minute)
    node.start()
    atexit.register(node.stop)
    return node


def environment() -> dict[str, Any]:
    """
    Return the shared fixtures, starting them on first use: the database with forums
    "demo" and "shortedit", the node, the seeded demo thread, the host server and Chromium.
    """
    if "node" in _fixtures:
        return _fixtures
    require_chromium()
    database = support.test_database()
    support.reset_data(database)
    host = HostServer()
    atexit.register(host.stop)
    node = _start_node_with_forums(database, host)

    api = ApiClient(node.url)
    thread = api.thread("demo-post-1", f"{node.url}/demo/post.html", title="Moving a blog off Disqus")
    first = api.post(thread["id"], SEEDED_DEMO_NAMES[0], "Great write-up, **thank you**.")["post"]
    second = api.post(thread["id"], SEEDED_DEMO_NAMES[1], "Does this work with third-party cookies blocked?")["post"]
    api.post(thread["id"], SEEDED_DEMO_NAMES[2], "Yes: the widget keeps its state in its own storage.",
             parent=second["id"])

    chromium, endpoint = start_chromium()
    playwright = sync_playwright().start()
    browser = playwright.chromium.connect_over_cdp(endpoint)

    def stop_browser() -> None:
        stop_chromium(browser, chromium)
        playwright.stop()

    atexit.register(stop_browser)
    _fixtures.update(database=database, host=host, node=node, api=api, playwright=playwright, browser=browser,
                     demo_thread=thread, demo_first_post=first)
    return _fixtures


def _start_node_with_forums(database: Any, host: HostServer) -> support.NodeProcess:
    # The forums are created before the node starts, because the node caches forums,
    # and they need the node's origin, which NodeProcess picks when it is created.
    node = support.NodeProcess(database)
    origins = [node.url, host.allowed_origin]
    support.make_forum(database, "demo", origins=origins)
    support.make_forum(database, "shortedit", origins=origins, settings={"edit_window_seconds": SHORT_EDIT_WINDOW})
    node.start()
    atexit.register(node.stop)
    return node


def restricted_node() -> support.NodeProcess:
    """Return a second node on the same database that allows only a few posts per minute."""
    if "restricted_node" not in _fixtures:
        _fixtures["restricted_node"] = _start_node(environment()["database"], RESTRICTED_POSTS_PER_MINUTE)
    return _fixtures["restricted_node"]  # type: ignore[no-any-return]


class BrowserTestCase(unittest.TestCase):
    """
    A test with a fresh browser context (empty localStorage) and one page.

    Every JavaScript dialog and uncaught page error is recorded, and the test fails at
    cleanup if any occurred, unless it sets ``allow_page_errors``.
    """

    allow_page_errors = False

    def setUp(self) -> None:
        fixtures = environment()
        self.node: support.NodeProcess = fixtures["node"]
        self.host: HostServer = fixtures["host"]
        self.api: ApiClient = fixtures["api"]
        self.playwright = fixtures["playwright"]
        self.context = fixtures["browser"].new_context(viewport={"width": 900, "height": 900}, color_scheme="light")
        self.addCleanup(self.context.close)
        self.page = self.context.new_page()
        self.page.set_default_timeout(15000)
        self.dialogs: list[str] = []
        self.page_errors: list[str] = []
        self.page.on("dialog", self._record_dialog)
        self.page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        self.step = 0
        self.addCleanup(self._check_page_events)

    def _record_dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def _check_page_events(self) -> None:
        self.assertEqual(self.dialogs, [], "a JavaScript dialog opened")
        if not self.allow_page_errors:
            self.assertEqual(self.page_errors, [], "the page raised uncaught errors")

    def unique(self, label: str) -> str:
        """Return an identifier that no other test uses."""
        return f"{self.id().rsplit('.', 1)[-1]}-{label}"

    def screenshot(self, name: str) -> None:
        """Save a full-page screenshot as artifacts/browser/<Class>.<test>-<step>-<name>.png."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.step += 1
        test_name = ".".join(self.id().rsplit(".", 2)[-2:])
        safe_name = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)
        self.page.screenshot(path=str(ARTIFACTS / f"{test_name}-{self.step:02d}-{safe_name}.png"), full_page=True)

    def open_widget(self, url: str) -> Any:
        """Load a host page, wait until the widget has loaded its thread, and return its Frame."""
        self.page.goto(url)
        return self.wait_for_widget()

    def wait_for_widget(self) -> Any:
        frame_element = self.page.wait_for_selector(FRAME_SELECTOR, state="attached")
        frame = frame_element.content_frame()
        assert frame is not None, "the widget iframe has no document"
        frame.wait_for_selector('#cm-root[aria-busy="false"] .cm-count')
        # The loader resizes the iframe from the widget's first height message.
        self.wait_for_frame_height(160)
        return frame

    def frame_height(self) -> float:
        # bounding_box runs in Playwright's isolated world, so it works on host pages
        # that replace built-ins, where page.evaluate and wait_for_function fail.
        box = self.page.locator(FRAME_SELECTOR).bounding_box()
        return 0.0 if box is None else float(box["height"])

    def wait_for_frame_height(self, minimum: float, timeout: float = 10.0) -> None:
        """Wait until the widget iframe is taller than ``minimum`` CSS pixels."""
        deadline = time.monotonic() + timeout
        while self.frame_height() <= minimum:
            if time.monotonic() > deadline:
                raise AssertionError(f"the widget iframe stayed at {self.frame_height()}px, "
                                     f"not taller than {minimum}px, for {timeout} s")
            time.sleep(0.05)

    def item(self, frame: Any, post_id: str) -> Any:
        """Return the locator of the list item of post ``post_id``."""
        return frame.locator(f'.cm-item[data-id="{post_id}"]')

    def post_comment(self, frame: Any, name: str, message: str, email: str = "") -> None:
        """Fill the top-level form and submit it."""
        form = frame.locator(".cm-composer form")
        form.get_by_label("Comment").fill(message)
        form.get_by_label("Name").fill(name)
        if email:
            form.get_by_label("Email (optional, never shown)").fill(email)
        form.get_by_role("button", name="Post comment").click()
