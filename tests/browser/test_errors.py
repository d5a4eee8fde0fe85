"""Browser tests of what the reader sees when posting, editing or storing fails."""

from __future__ import annotations

import time
from typing import Any

from playwright.sync_api import expect

from tests.browser.harness import (
    RESTRICTED_POSTS_PER_MINUTE,
    SHORT_EDIT_WINDOW,
    BrowserTestCase,
    embed_page,
    restricted_node,
    start_chromium,
    stop_chromium,
)


class FormErrorTests(BrowserTestCase):
    """Errors shown in the comment form, each tied to the field it is about."""

    def open_embed(self, label: str, node_url: str | None = None, forum: str = "demo") -> Any:
        identifier = self.unique(label)
        url = self.host.add_page(f"/{identifier}.html",
                                 embed_page(node_url or self.node.url, identifier=identifier, forum=forum))
        return self.open_widget(url)

    def assert_field_error(self, frame: Any, label: str, text: str) -> None:
        form = frame.locator(".cm-composer form")
        alert = form.locator(".cm-form-error")
        expect(alert).to_be_visible()
        expect(alert).to_contain_text(text)
        field = form.get_by_label(label)
        expect(field).to_have_attribute("aria-invalid", "true")
        described_by = field.get_attribute("aria-describedby") or ""
        self.assertIn(alert.get_attribute("id"), described_by.split())
        expect(field).to_be_focused()

    def test_missing_name_checked_locally(self) -> None:
        frame = self.open_embed("missing-name")
        form = frame.locator(".cm-composer form")
        form.get_by_label("Comment").fill("A comment without a name.")
        form.get_by_role("button", name="Post comment").click()

        self.assert_field_error(frame, "Name", "Enter your name.")
        self.screenshot("missing-name")

    def test_invalid_email_shows_server_message(self) -> None:
        frame = self.open_embed("invalid-email")
        self.post_comment(frame, "Ida", "Hello.", email="not-an-address")

        self.assert_field_error(frame, "Email (optional, never shown)", "is not an e-mail address")
        expect(frame.locator(".cm-list > .cm-item")).to_have_count(0)
        self.screenshot("invalid-email")

        frame.locator(".cm-composer form").get_by_label("Email (optional, never shown)").fill("ida@example.org")
        frame.locator(".cm-composer").get_by_role("button", name="Post comment").click()
        expect(frame.locator(".cm-list > .cm-item")).to_have_count(1)
        expect(frame.locator(".cm-composer .cm-form-error")).to_be_hidden()

    def test_overlong_message_shows_server_message(self) -> None:
        forum = self.api.call("GET", "/forums/demo")["forum"]
        frame = self.open_embed("long-message")
        self.post_comment(frame, "Ida", "x" * (forum["max_message_length"] + 1))

        self.assert_field_error(frame, "Comment", f"the limit is {forum['max_message_length']}")
        self.screenshot("long-message")

    def test_network_failure_message(self) -> None:
        frame = self.open_embed("network")

        def abort_posts(route: Any) -> None:
            if route.request.method == "POST":
                route.abort("connectionrefused")
            else:
                route.continue_()

        self.context.route(f"{self.node.url}/api/v1/threads/*/posts", abort_posts)
        self.post_comment(frame, "Ida", "Lost on the way.")

        alert = frame.locator(".cm-composer .cm-form-error")
        expect(alert).to_have_text("Could not reach the comments server. Check your connection and try again.")
        expect(frame.locator(".cm-composer").get_by_role("button", name="Post comment")).to_be_enabled()
        expect(frame.locator(".cm-composer form").get_by_label("Comment")).to_have_value("Lost on the way.")
        self.screenshot("network")

    def test_rate_limit_message(self) -> None:
        node = restricted_node()
        frame = self.open_embed("rate-limit", node_url=node.url)
        for number in range(RESTRICTED_POSTS_PER_MINUTE):
            self.post_comment(frame, "Ida", f"Allowed comment {number}")
            expect(frame.locator(".cm-list > .cm-item")).to_have_count(number + 1)

        self.post_comment(frame, "Ida", "One too many.")
        alert = frame.locator(".cm-composer .cm-form-error")
        expect(alert).to_contain_text("too many comments")
        expect(alert).to_contain_text("seconds")
        expect(frame.locator(".cm-list > .cm-item")).to_have_count(RESTRICTED_POSTS_PER_MINUTE)
        expect(frame.locator(".cm-status")).to_have_text("")
        self.screenshot("rate-limited")


class EditWindowTests(BrowserTestCase):
    """Edit and Delete controls follow the edit window and the stored edit token."""

    def test_controls_vanish_when_window_closes(self) -> None:
        identifier = self.unique("short-window")
        url = self.host.add_page(f"/{identifier}.html",
                                 embed_page(self.node.url, identifier=identifier, forum="shortedit"))
        frame = self.open_widget(url)
        self.post_comment(frame, "Ida", "Editable for a few seconds.")
        posted_at = time.monotonic()
        item = frame.locator(".cm-list > .cm-item").first
        expect(item.get_by_role("button", name="Edit")).to_be_visible()
        expect(item.get_by_role("button", name="Delete")).to_be_visible()
        self.screenshot("editable")

        time.sleep(max(0.0, posted_at + SHORT_EDIT_WINDOW + 1 - time.monotonic()))
        expect(item.get_by_role("button", name="Edit")).to_have_count(0)
        expect(item.get_by_role("button", name="Delete")).to_have_count(0)
        self.screenshot("window-closed")

    def test_open_editor_reports_closed_window(self) -> None:
        identifier = self.unique("late-save")
        url = self.host.add_page(f"/{identifier}.html",
                                 embed_page(self.node.url, identifier=identifier, forum="shortedit"))
        frame = self.open_widget(url)
        self.post_comment(frame, "Ida", "Saved too late.")
        posted_at = time.monotonic()
        item = frame.locator(".cm-list > .cm-item").first
        item.get_by_role("button", name="Edit").click()
        item.get_by_label("Edit your comment").fill("An edit after the window.")

        time.sleep(max(0.0, posted_at + SHORT_EDIT_WINDOW + 1 - time.monotonic()))
        item.get_by_role("button", name="Save").click()
        expect(item.locator(".cm-form-error")).to_have_text("The time for editing this comment has run out.")
        self.screenshot("late-save")

    def test_rejected_token_shows_server_message(self) -> None:
        identifier = self.unique("bad-token")
        url = self.host.add_page(f"/{identifier}.html", embed_page(self.node.url, identifier=identifier))
        frame = self.open_widget(url)
        self.post_comment(frame, "Ida", "My token gets corrupted.")
        item = frame.locator(".cm-list > .cm-item").first
        expect(item.get_by_role("button", name="Edit")).to_be_visible()
        frame.evaluate("""() => {
            const tokens = JSON.parse(localStorage.getItem('comments:edit-tokens'));
            for (const id of Object.keys(tokens)) tokens[id].token = 'not-the-token';
            localStorage.setItem('comments:edit-tokens', JSON.stringify(tokens));
        }""")

        item.get_by_role("button", name="Edit").click()
        item.get_by_label("Edit your comment").fill("Rejected edit.")
        item.get_by_role("button", name="Save").click()
        expect(item.locator(".cm-form-error")).to_have_text("the edit token does not match this post")
        self.screenshot("rejected")

        item.get_by_role("button", name="Cancel").click()
        expect(item.get_by_role("button", name="Edit")).to_have_count(0)
        self.assertEqual(frame.evaluate("localStorage.getItem('comments:edit-tokens')"), "{}")


class BlockedStorageTests(BrowserTestCase):
    """A browser that denies storage to third-party frames."""

    def test_posting_works_without_storage(self) -> None:
        # This is the switch that Playwright's own launch adds. With partitioning off,
        # Chromium denies localStorage to the cross-site widget frame.
        chromium, endpoint = start_chromium(("--disable-features=ThirdPartyStoragePartitioning",))
        browser = self.playwright.chromium.connect_over_cdp(endpoint)
        self.addCleanup(stop_chromium, browser, chromium)
        self.page = browser.new_context().new_page()
        self.page.on("dialog", self._record_dialog)
        self.page.on("pageerror", lambda error: self.page_errors.append(str(error)))

        identifier = self.unique("no-storage")
        url = self.host.add_page(f"/{identifier}.html", embed_page(self.node.url, identifier=identifier))
        frame = self.open_widget(url)
        denied = frame.evaluate("() => { try { localStorage.length; return false; } catch (error) { return true; } }")
        self.assertTrue(denied, "this Chromium allowed third-party storage, so the test checks nothing")

        self.post_comment(frame, "Ida", "Posted without storage.")
        expect(frame.locator(".cm-status")).to_contain_text("only while this page stays open")
        item = frame.locator(".cm-list > .cm-item").first
        item.get_by_role("button", name="Edit").click()
        item.get_by_label("Edit your comment").fill("Edited without storage.")
        item.get_by_role("button", name="Save").click()
        expect(item.locator(".cm-message")).to_have_text("Edited without storage.")
        self.screenshot("no-storage")
