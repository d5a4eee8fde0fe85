"""Browser tests of what a reader does with the widget: read, post, reply, vote, sort, edit."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.browser.harness import FRAME_SELECTOR, SEEDED_DEMO_NAMES, BrowserTestCase, embed_page


class DemoPageTests(BrowserTestCase):
    """The demo blog served by the node, with the thread seeded by the harness."""

    def test_demo_post_shows_seeded_thread(self) -> None:
        frame = self.open_widget(f"{self.node.url}/demo/post.html")
        self.screenshot("loaded")

        expect(frame.locator(".cm-count")).to_have_text("3 comments")
        # Best sorts equal scores newest first, and each reply follows its parent.
        ada, grace, linus = SEEDED_DEMO_NAMES
        expect(frame.locator(".cm-author")).to_have_text([grace, linus, ada])
        reply = frame.locator('.cm-item[aria-level="2"]')
        expect(reply.locator(".cm-author")).to_have_text(linus)
        parent_name = reply.locator("xpath=ancestor::li[1]").locator(":scope > article .cm-author")
        expect(parent_name).to_have_text(grace)
        expect(frame.locator(".cm-message strong")).to_have_text("thank you")

        self.assertEqual(self.page.get_attribute(FRAME_SELECTOR, "title"), "Comments")
        widget_height = frame.evaluate("Math.ceil(document.getElementById('cm-root').getBoundingClientRect().bottom)")
        self.assertAlmostEqual(self.frame_height(), widget_height, delta=2)

    def test_demo_index_fills_counts(self) -> None:
        self.page.goto(f"{self.node.url}/demo/")
        by_identifier = self.page.locator('a[data-disqus-identifier="demo-post-1"]')
        expect(by_identifier).to_have_text("3 comments")
        expect(self.page.locator('span[data-disqus-identifier="demo-post-1"]')).to_have_text("3 comments")
        by_url = self.page.locator('a[href="/demo/second.html#disqus_thread"]')
        expect(by_url).to_have_text("No comments")
        self.screenshot("counts")

    def test_second_demo_post_uses_comments_config(self) -> None:
        frame = self.open_widget(f"{self.node.url}/demo/second.html")

        expect(frame.locator(".cm-count")).to_have_text("No comments")
        thread = self.api.thread(None, f"{self.node.url}/demo/second.html")
        self.assertIsNone(thread["identifier"])
        self.assertEqual(thread["title"], "A second post")
        self.screenshot("empty-thread")


class ReaderTests(BrowserTestCase):
    """Host pages on another origin (localhost) that embed the widget with comments_config."""

    def embed(self, label: str, **options: object) -> str:
        identifier = self.unique(label)
        html = embed_page(self.node.url, identifier=identifier, **options)  # type: ignore[arg-type]
        return self.host.add_page(f"/{identifier}.html", html)

    def seeded_thread(self, label: str) -> tuple[str, dict[str, Any]]:
        """Return the URL of a new host page and its thread, created through the API."""
        url = self.embed(label)
        thread = self.api.thread(self.unique(label), url)
        return url, thread

    def test_post_comment_and_reply_nest(self) -> None:
        url = self.embed("thread")
        frame = self.open_widget(url)
        self.screenshot("empty")
        height_before = self.frame_height()

        self.post_comment(frame, "Margaret", "A **first** comment.", email="margaret@example.org")
        top = frame.locator('.cm-list > .cm-item[aria-level="1"]')
        expect(top).to_have_count(1)
        expect(top.locator(".cm-author")).to_have_text("Margaret")
        expect(frame.locator(".cm-count")).to_have_text("1 comment")
        expect(frame.locator(".cm-status")).to_contain_text("Your comment is posted")
        self.screenshot("posted")

        top.get_by_role("button", name="Reply", exact=True).click()
        reply_form = top.locator(".cm-reply-form")
        expect(reply_form.get_by_label("Name")).to_have_value("Margaret")
        expect(reply_form.get_by_label("Email (optional, never shown)")).to_have_value("margaret@example.org")
        reply_form.get_by_label("Reply to Margaret").fill("A reply to myself.")
        self.screenshot("reply-form")
        reply_form.get_by_role("button", name="Post reply").click()

        nested = top.locator('.cm-replies > .cm-item[aria-level="2"]')
        expect(nested).to_have_count(1)
        expect(nested.locator(".cm-message")).to_have_text("A reply to myself.")
        expect(frame.locator(".cm-count")).to_have_text("2 comments")
        expect(top.locator(".cm-reply-form")).to_have_count(0)
        self.wait_for_frame_height(height_before)
        self.screenshot("reply-posted")

        frame = self.open_widget(url)
        reloaded = frame.locator('.cm-list > .cm-item[aria-level="1"]')
        expect(reloaded.locator('.cm-replies > .cm-item[aria-level="2"] .cm-author')).to_have_text("Margaret")
        expect(reloaded.locator(':scope > article [data-action="edit"]')).to_have_count(1)
        self.screenshot("reloaded")

    def test_times_relative_with_exact_title(self) -> None:
        frame = self.open_widget(self.embed("times"))
        self.post_comment(frame, "Timely", "Posted a moment ago.")

        posted_time = frame.locator(".cm-list > .cm-item").first.locator("time.cm-time")
        expect(posted_time).to_have_text("just now")
        self.assertRegex(posted_time.get_attribute("datetime") or "", r"^\d{4}-\d\d-\d\dT")
        self.assertTrue(posted_time.get_attribute("title"), "the exact time is missing from the title")

    def test_vote_buttons_toggle_and_persist(self) -> None:
        url, thread = self.seeded_thread("votes")
        post = self.api.post(thread["id"], "Alan", "Vote on me.")["post"]
        frame = self.open_widget(url)
        item = self.item(frame, post["id"])
        up = item.get_by_role("button", name="Upvote")
        down = item.get_by_role("button", name="Downvote")
        score = item.locator(".cm-score > [aria-hidden]")

        up.click()
        expect(up).to_have_attribute("aria-pressed", "true")
        expect(score).to_have_text("1")
        self.screenshot("upvoted")

        down.click()
        expect(down).to_have_attribute("aria-pressed", "true")
        expect(up).to_have_attribute("aria-pressed", "false")
        expect(score).to_have_text("-1")

        frame = self.open_widget(url)
        item = self.item(frame, post["id"])
        expect(item.get_by_role("button", name="Downvote")).to_have_attribute("aria-pressed", "true")
        item.get_by_role("button", name="Downvote").click()
        expect(item.get_by_role("button", name="Downvote")).to_have_attribute("aria-pressed", "false")
        expect(item.locator(".cm-score > [aria-hidden]")).to_have_text("0")
        self.screenshot("withdrawn")

        stored = self.api.call("GET", f"/threads/{thread['id']}/posts?sort=best")["posts"][0]
        self.assertEqual((stored["likes"], stored["dislikes"], stored["score"]), (0, 0, 0))

    def test_sort_switch_reorders(self) -> None:
        url, thread = self.seeded_thread("sort")
        oldest = self.api.post(thread["id"], "Oldest", "first")["post"]
        middle = self.api.post(thread["id"], "Middle", "second")["post"]
        newest = self.api.post(thread["id"], "Newest", "third")["post"]
        self.api.vote(middle["id"], "voter-one-0000", 1)
        self.api.vote(middle["id"], "voter-two-0000", 1)
        self.api.vote(oldest["id"], "voter-one-0000", 1)
        self.assertTrue(newest["id"])
        frame = self.open_widget(url)
        authors = frame.locator(".cm-list > .cm-item > article .cm-author")

        expect(authors).to_have_text(["Middle", "Oldest", "Newest"])
        frame.get_by_label("Sort by").select_option("newest")
        expect(authors).to_have_text(["Newest", "Middle", "Oldest"])
        self.screenshot("newest")
        frame.get_by_label("Sort by").select_option("oldest")
        expect(authors).to_have_text(["Oldest", "Middle", "Newest"])
        self.screenshot("oldest")
        frame.get_by_label("Sort by").select_option("best")
        expect(authors).to_have_text(["Middle", "Oldest", "Newest"])

    def test_load_more_appends_next_page(self) -> None:
        url, thread = self.seeded_thread("pages")
        for number in range(25):
            self.api.post(thread["id"], f"Reader {number:02d}", f"Comment {number}")
        frame = self.open_widget(url)
        items = frame.locator(".cm-list > .cm-item")
        more = frame.get_by_role("button", name="Load more comments")

        expect(items).to_have_count(20)
        expect(more).to_be_visible()
        self.screenshot("first-page")
        more.click()
        expect(items).to_have_count(25)
        expect(more).to_be_hidden()
        names = items.locator(":scope > article .cm-author").all_inner_texts()
        self.assertEqual(len(set(names)), 25, f"a post appears twice: {names}")
        self.assertEqual(names[0], "Reader 24")
        self.assertEqual(names[-1], "Reader 00")
        self.screenshot("all-pages")

    def test_edit_and_delete_own_comment(self) -> None:
        url = self.embed("edit")
        frame = self.open_widget(url)
        self.post_comment(frame, "Barbara", "First version")
        item = frame.locator(".cm-list > .cm-item").first

        item.get_by_role("button", name="Edit").click()
        editor = item.get_by_label("Edit your comment")
        expect(editor).to_have_value("First version")
        editor.fill("Second **version**")
        self.screenshot("editing")
        item.get_by_role("button", name="Save").click()
        expect(item.locator(".cm-message")).to_have_text("Second version")
        expect(item.locator(".cm-message strong")).to_have_text("version")
        expect(item.locator(".cm-edited")).to_have_text("edited")
        self.screenshot("edited")

        item.get_by_role("button", name="Delete").click()
        expect(item.locator(".cm-confirm")).to_contain_text("Delete this comment?")
        self.screenshot("confirm-delete")
        item.locator(".cm-confirm").get_by_role("button", name="Delete").click()
        expect(frame.locator(".cm-list > .cm-item")).to_have_count(0)
        expect(frame.locator(".cm-count")).to_have_text("No comments")
        self.screenshot("deleted")

    def test_delete_keeps_replies_visible(self) -> None:
        url = self.embed("delete-with-reply")
        frame = self.open_widget(url)
        self.post_comment(frame, "Barbara", "I will delete this.")
        item = frame.locator(".cm-list > .cm-item").first
        post_id = item.get_attribute("data-id")
        thread = self.api.thread(self.unique("delete-with-reply"), url)
        self.api.post(thread["id"], "Edsger", "An answer that stays.", parent=post_id)
        frame = self.open_widget(url)
        item = self.item(frame, post_id or "")

        item.locator(":scope > article").get_by_role("button", name="Delete").click()
        item.locator(".cm-confirm").get_by_role("button", name="Delete").click()
        expect(item.locator(":scope > article .cm-message")).to_have_text("This comment was deleted")
        expect(item.locator(":scope > article .cm-author")).to_have_count(0)
        expect(item.locator(".cm-replies .cm-author")).to_have_text("Edsger")
        self.screenshot("deleted-parent")

        frame = self.open_widget(url)
        expect(self.item(frame, post_id or "").locator(":scope > article .cm-message")).to_have_text(
            "This comment was deleted")

    def test_deep_thread_continues_in_place(self) -> None:
        url, thread = self.seeded_thread("deep")
        parent = None
        for depth in range(1, 9):
            parent = self.api.post(thread["id"], f"Level {depth}", f"At depth {depth}",
                                   parent=parent["id"] if parent else None)["post"]
        frame = self.open_widget(url)

        expect(frame.locator(".cm-item")).to_have_count(5)
        more = frame.get_by_role("button", name="Continue this thread (3 more replies)")
        expect(more).to_be_visible()
        self.screenshot("collapsed")
        more.click()
        expect(frame.locator(".cm-item")).to_have_count(8)
        deepest = frame.locator('.cm-item[aria-level="8"]')
        expect(deepest.locator(".cm-author")).to_have_text("Level 8")
        expect(deepest.locator(".cm-replying-to")).to_have_text("In reply to Level 7")
        level6_indent = frame.locator('.cm-item[aria-level="6"]').evaluate("item => item.getBoundingClientRect().left")
        level8_indent = deepest.evaluate("item => item.getBoundingClientRect().left")
        self.assertEqual(level6_indent, level8_indent, "replies past level 5 must not indent further")
        self.screenshot("expanded")

    def test_keyboard_opens_and_cancels_reply(self) -> None:
        url, thread = self.seeded_thread("keyboard")
        post = self.api.post(thread["id"], "Radia", "Reply with the keyboard.")["post"]
        frame = self.open_widget(url)
        reply_button = self.item(frame, post["id"]).get_by_role("button", name="Reply", exact=True)

        reply_button.focus()
        self.page.keyboard.press("Enter")
        expect(reply_button).to_have_attribute("aria-expanded", "true")
        focused_label = frame.evaluate("document.activeElement.labels[0].textContent")
        self.assertEqual(focused_label, "Reply to Radia")
        self.page.keyboard.type("typed text")
        self.screenshot("reply-open")

        self.page.keyboard.press("Escape")
        expect(frame.locator(".cm-reply-form")).to_have_count(0)
        expect(reply_button).to_be_focused()
        expect(reply_button).to_have_attribute("aria-expanded", "false")

    def test_theme_follows_host_and_config(self) -> None:
        self.page.emulate_media(color_scheme="dark")
        frame = self.open_widget(self.embed("auto-theme"))
        expect(frame.locator("html")).to_have_attribute("data-theme", "dark")
        self.screenshot("dark")

        self.page.emulate_media(color_scheme="light")
        expect(frame.locator("html")).to_have_attribute("data-theme", "light")

        self.page.emulate_media(color_scheme="dark")
        frame = self.open_widget(self.embed("forced-light", theme="light"))
        expect(frame.locator("html")).to_have_attribute("data-theme", "light")
        self.screenshot("forced-light")

    def test_language_from_config(self) -> None:
        frame = self.open_widget(self.embed("german", language="de"))

        expect(frame.locator(".cm-count")).to_have_text("Keine Kommentare")
        expect(frame.get_by_role("button", name="Kommentar senden")).to_be_visible()
        self.assertEqual(self.page.get_attribute(FRAME_SELECTOR, "title"), "Kommentare")
        self.screenshot("german")

    def test_disqus_embed_names_work(self) -> None:
        identifier = self.unique("disqus")
        url = self.host.add_page(f"/{identifier}.html", embed_page(self.node.url, identifier=identifier,
                                                                   config="disqus"))
        thread = self.api.thread(identifier, url)
        self.api.post(thread["id"], "Migrated", "Imported from Disqus.")
        frame = self.open_widget(url)

        expect(frame.locator(".cm-author")).to_have_text("Migrated")
        self.assertEqual(self.page.locator("#disqus_thread iframe").count(), 1)

    def test_count_script_on_other_origin(self) -> None:
        identifiers = [self.unique(f"count-{n}") for n in range(3)]
        for count, identifier in enumerate(identifiers):
            thread = self.api.thread(identifier, f"{self.host.allowed_origin}/{identifier}.html")
            for number in range(count):
                self.api.post(thread["id"], "Counter", f"Comment {number}")
        links = "\n".join(
            f'<p><a href="/{i}.html#disqus_thread" data-disqus-identifier="{i}">Comments</a></p>'
            for i in identifiers)
        spans = "\n".join(f'<p><span data-comments-identifier="{i}"></span></p>' for i in identifiers)
        page = self.host.add_page(f"/{self.unique('index')}.html", f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Index</title></head>
<body>{links}{spans}<script src="{self.node.url}/count.js" data-forum="demo" async></script></body></html>""")

        self.page.goto(page)
        expected = ["No comments", "1 comment", "2 comments"]
        expect(self.page.locator("a[data-disqus-identifier]")).to_have_text(expected)
        expect(self.page.locator("span[data-comments-identifier]")).to_have_text(expected)
        self.screenshot("counts")
