"""
Browser tests with hostile input: script payloads in names and messages, host pages
that restyle iframes and replace built-ins, and a host origin the forum does not allow.

Every payload tries to set `__pwned` on its own window, its parent and the top window,
and to open a dialog. The tests check that none of that happened in the widget frame or
in the host page.
"""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.browser.harness import FRAME_SELECTOR, BrowserTestCase, embed_page

PWN = "window.__pwned=1;parent.__pwned=1;top.__pwned=1;alert(document.domain)"
# Names use a shorter payload because the node limits names to 100 characters.
SHORT_PWN = "top.__pwned=1;alert(1)"
HOSTILE_NAMES = [
    f"<script>{SHORT_PWN}</script>Mallory",
    f'<img src=x onerror="{SHORT_PWN}">',
    f'"><svg onload="{SHORT_PWN}">',
]
HOSTILE_MESSAGES = [
    f"<script>{PWN}</script>",
    f'<img src=x onerror="{PWN}">',
    f'<svg xmlns="http://www.w3.org/2000/svg" onload="{PWN}"><circle r="5"/></svg>',
    f"[markdown javascript link](javascript:{PWN})",
    f'<a href="javascript:{PWN}">raw javascript link</a>',
    f"![image with javascript source](javascript:{PWN})",
    f'<iframe src="javascript:{PWN}"></iframe>',
    "[data link](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    f'<details open ontoggle="{PWN}">x</details>',
]
# Hostile markup for the widget's own form, typed by a reader.
TYPED_NAME = f'<img src=x onerror="{SHORT_PWN}">Typed'
TYPED_MESSAGE = f'Typed <svg onload="{PWN}"> and <script>{PWN}</script> [link](javascript:{PWN})'

# A host stylesheet that tries to hide, shrink and restyle every iframe.
HOSTILE_STYLES = """<style>
iframe { display: none !important; height: 0 !important; width: 10px !important; max-height: 0 !important;
         visibility: hidden !important; opacity: 0 !important; border: 30px solid red !important;
         position: absolute !important; left: -9999px !important; }
* { box-sizing: content-box !important; }
</style>"""
# A host script that replaces built-ins the loader might use.
HOSTILE_SCRIPT = """<script>
window.postMessage = function () { throw new Error('host replaced postMessage'); };
['forEach', 'map', 'filter', 'indexOf', 'includes', 'push', 'join', 'slice', 'some', 'every'].forEach(function (name) {
  Array.prototype[name] = function () { throw new Error('host replaced Array.prototype.' + name); };
});
Array.prototype.toJSON = function () { return 'host replaced Array.prototype.toJSON'; };
NodeList.prototype.forEach = function () { throw new Error('host replaced NodeList.prototype.forEach'); };
Object.prototype.polluted = 'host polluted Object.prototype';
</script>"""


class HostileContentTests(BrowserTestCase):
    """Payloads in names and messages, on a same-origin and a cross-origin host page."""

    def seed_hostile_posts(self, identifier: str, url: str) -> None:
        """Post every hostile message. Odd-numbered ones reply to the post before them."""
        thread = self.api.thread(identifier, url)
        previous_id = None
        for number, message in enumerate(HOSTILE_MESSAGES):
            name = HOSTILE_NAMES[number % len(HOSTILE_NAMES)]
            parent_id = previous_id if number % 2 == 1 else None
            previous_id = self.api.post(thread["id"], name, message, parent=parent_id)["post"]["id"]

    def assert_nothing_ran(self, frame: Any) -> None:
        self.page.wait_for_timeout(500)
        self.assertIsNone(self.page.evaluate("window.__pwned"), "a payload ran in the host page")
        self.assertIsNone(frame.evaluate("window.__pwned"), "a payload ran in the widget frame")
        self.assertEqual(self.dialogs, [], "a payload opened a dialog")

    def assert_messages_inert(self, frame: Any) -> None:
        comments = frame.locator(".cm-list")
        for tag in ("script", "svg", "iframe", "object", "embed", "details"):
            self.assertEqual(comments.locator(tag).count(), 0, f"a <{tag}> element reached the page")
        handlers = comments.evaluate(
            "list => [...list.querySelectorAll('*')].flatMap(element => [...element.attributes])"
            ".filter(attribute => attribute.name.startsWith('on')).map(attribute => attribute.name)")
        self.assertEqual(handlers, [], "an event handler attribute reached the page")
        hrefs = comments.evaluate("list => [...list.querySelectorAll('[href], [src]')]"
                                  ".map(element => element.getAttribute('href') || element.getAttribute('src'))")
        for href in hrefs:
            self.assertRegex(href, r"^(https?:|mailto:)", f"unsafe URL {href!r} in a message")
        for link in comments.locator(".cm-message a[href]").all():
            self.assertEqual(link.get_attribute("target"), "_blank")
            self.assertIn("noopener", link.get_attribute("rel") or "")

    def assert_names_literal(self, frame: Any, expected: list[str]) -> None:
        shown = frame.locator(".cm-author").all_inner_texts()
        for name in expected:
            self.assertIn(name, shown, "an author name was not shown as plain text")

    def check_hostile_thread(self, url: str, identifier: str) -> None:
        self.seed_hostile_posts(identifier, url)
        frame = self.open_widget(url)
        self.screenshot("seeded")
        self.assert_nothing_ran(frame)
        self.assert_messages_inert(frame)
        self.assert_names_literal(frame, HOSTILE_NAMES)
        expect(frame.locator(".cm-message", has_text="<script>").first).to_be_visible()

        self.post_comment(frame, TYPED_NAME, TYPED_MESSAGE)
        expect(frame.locator(".cm-author", has_text="Typed")).to_have_text(TYPED_NAME)
        self.screenshot("typed")
        # Links whose javascript: URL was removed must do nothing when clicked.
        for link in frame.locator(".cm-message a:not([href])").all():
            link.click()
        self.assert_nothing_ran(frame)
        self.assert_messages_inert(frame)

        frame = self.open_widget(url)
        self.assert_nothing_ran(frame)
        self.assert_messages_inert(frame)

    def test_hostile_content_same_origin_host(self) -> None:
        # Served on the node's own origin, the frame could reach its parent if a
        # payload ran, so this is the worst case for the host page.
        identifier = self.unique("same-origin")
        url = f"{self.node.url}/demo/{identifier}.html"
        html = embed_page(self.node.url, identifier=identifier, title="Hostile content, same origin")
        self.context.route(url, lambda route: route.fulfill(status=200, content_type="text/html", body=html))
        self.check_hostile_thread(url, identifier)

    def test_hostile_content_cross_origin_host(self) -> None:
        identifier = self.unique("cross-origin")
        url = self.host.add_page(f"/{identifier}.html", embed_page(
            self.node.url, identifier=identifier, title="Hostile content, other origin"))
        self.check_hostile_thread(url, identifier)


class HostilePageTests(BrowserTestCase):
    """Host pages that fight the loader, and a host origin that the forum does not allow."""

    # The hostile script's own replacements raise errors in the host page by design.
    allow_page_errors = True

    def check_widget_survives(self, url: str) -> None:
        frame = self.open_widget(url)
        self.screenshot("loaded")

        # Locator checks run in Playwright's isolated world, unlike page.evaluate, which
        # would call the replaced built-ins of this page.
        frame_element = self.page.locator(FRAME_SELECTOR)
        expect(frame_element).to_be_visible()
        box = frame_element.bounding_box()
        assert box is not None
        self.assertGreater(box["height"], 300)
        self.assertGreater(box["width"], 800)
        self.assertGreaterEqual(box["x"], 0, "the host stylesheet moved the iframe off screen")
        height_before = self.frame_height()

        self.post_comment(frame, "Survivor", "Posted from a hostile host page.")
        expect(frame.locator(".cm-author")).to_have_text("Survivor")
        self.wait_for_frame_height(height_before)
        self.screenshot("posted")

        own_errors = [error for error in self.page_errors if "host replaced" not in error]
        self.assertEqual(own_errors, [], "the loader raised an error")

    def test_hostile_host_cross_origin(self) -> None:
        identifier = self.unique("cross-origin")
        url = self.host.add_page(f"/{identifier}.html", embed_page(
            self.node.url, identifier=identifier, title="Hostile host", head=HOSTILE_STYLES + HOSTILE_SCRIPT))
        self.check_widget_survives(url)

    def test_hostile_host_same_origin(self) -> None:
        # On the node's origin the widget could read the replaced parent.postMessage.
        identifier = self.unique("same-origin")
        url = f"{self.node.url}/demo/{identifier}.html"
        html = embed_page(self.node.url, identifier=identifier, title="Hostile host, same origin",
                          head=HOSTILE_STYLES + HOSTILE_SCRIPT)
        self.context.route(url, lambda route: route.fulfill(status=200, content_type="text/html", body=html))
        self.check_widget_survives(url)

    def test_disallowed_origin_shows_notice(self) -> None:
        identifier = self.unique("disallowed")
        self.host.add_page(f"/{identifier}.html", embed_page(self.node.url, identifier=identifier))
        self.page.goto(f"{self.host.disallowed_origin}/{identifier}.html")

        notice = self.page.locator("#comments_thread [data-comments-error][role=alert]")
        expect(notice).to_be_visible(timeout=15000)
        expect(notice).to_contain_text("“demo”")
        expect(notice).to_contain_text(self.host.disallowed_origin)
        expect(self.page.locator(FRAME_SELECTOR)).to_have_count(0)
        self.screenshot("disallowed")


class ForumMismatchTests(BrowserTestCase):
    def test_fragment_cannot_borrow_another_forums_policy(self) -> None:
        """A widget page whose fragment names another forum than its query string loads nothing."""
        import json
        from urllib.parse import quote

        config = quote(json.dumps({"forum": "demo", "identifier": "demo-post-1", "url": f"{self.node.url}/x"}))
        identifier = self.unique("mismatch")
        html = (f'<!doctype html><title>mismatch</title><iframe id="probe" '
                f'src="{self.node.url}/widget/thread.html?forum=shortedit#{config}"></iframe>')
        self.host.add_page(f"/{identifier}.html", html)
        self.page.goto(f"{self.host.allowed_origin}/{identifier}.html")
        frame = self.page.wait_for_selector("#probe").content_frame()
        assert frame is not None
        notice = frame.wait_for_selector('#cm-root[aria-busy="false"] .cm-notice[role=alert]')
        self.assertTrue(notice.is_visible())
        self.assertEqual(frame.locator(".cm-count").count(), 0)
        self.screenshot("mismatch")
