"""Tests for importing an export back into the forum it came from.

The forum mixes posts that readers wrote through the storage layer with posts of a
Disqus and a WordPress import, and replies across both groups. An export of it carries
this service's own ids, which the import must recognise as the forum's own rows.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from twisted.internet import reactor

from comments.api.app import CommentsAPI
from comments.config import Config
from comments.db.admin import ForumRecord
from comments.porting import detect_format
from comments.porting.commands import export_file, import_file
from comments.porting.importer import ImportSummary
from comments.render import render_markdown
from comments.storage.posts import NewPost, Post
from comments.storage.threads import Thread
from comments.urls import normalise_url
from tests.harness import ClusterTestCase
from tests.porting.test_import import (
    disqus_document,
    disqus_post,
    disqus_thread,
    segments_of,
    wxr_comment,
    wxr_document,
)
from tests.support import make_forum

IMPORTED_DISQUS = disqus_document(
    disqus_thread("10", "page-1"),
    disqus_post("101", "10", username="alex", name="Alex"),
    disqus_post("102", "10", parent="101"),
)

IMPORTED_WXR = wxr_document(
    "<item><title>Post</title><link>https://example.org/wp/</link><wp:post_id>7</wp:post_id>"
    + wxr_comment("1")
    + wxr_comment("2", comment_parent="1")
    + "</item>"
)


class ReimportTestCase(ClusterTestCase):
    """A forum ``site`` with imported and native posts, and helpers to export and import it."""

    async def _setUp(self) -> None:
        await super()._setUp()
        self.api = CommentsAPI(config=Config(), cluster=self.cluster, reactor=reactor)
        self.addCleanup(lambda: self.api.close())
        self.directory = Path(self.mktemp())
        self.directory.mkdir(parents=True)
        self.native: dict[str, Post] = {}
        await self.fill_forum()

    async def fill_forum(self) -> None:
        """Import IMPORTED_DISQUS and IMPORTED_WXR, then add native threads, posts and replies to both groups."""
        self.import_text(IMPORTED_DISQUS)
        self.import_text(IMPORTED_WXR)
        imported = {row[0]: row[1] for row in await self.query(
            "SELECT source_id, id FROM {schema}.posts WHERE forum_id = %s", (self.forum_record.id,)
        )}
        page_2 = await self.find_thread("page-2", "https://example.org/page-2")
        page_1 = await self.find_thread("page-1", "https://example.org/page/")
        wordpress_thread = (await self.query(
            "SELECT thread_id FROM {schema}.posts WHERE id = %s", (imported["wxr:7:1"],)
        ))[0][0]

        self.native["top"] = await self.create_post(page_2.id, None, "A **native** post")
        self.native["reply"] = await self.create_post(page_2.id, self.native["top"].id, "A native reply")
        self.native["under disqus"] = await self.create_post(page_1.id, imported["disqus:101"], "Under Alex")
        self.native["under wxr"] = await self.create_post(wordpress_thread, imported["wxr:7:2"], "Under a WP reply")
        self.native["beside disqus"] = await self.create_post(page_1.id, None, "Next to Alex")
        self.native["deep"] = await self.create_post(page_1.id, self.native["under disqus"].id, "Third level")

    async def find_thread(self, identifier: str, url: str) -> Thread:
        forum = await self.api.forums.by_shortname("site")
        assert forum is not None
        thread, _created = await self.api.threads.find_or_create(
            forum, identifier=identifier, url=url, url_key=normalise_url(url), title="Page"
        )
        return thread

    async def create_post(self, thread_id: int, parent_id: int | None, text: str) -> Post:
        return await self.api.posts.create(
            NewPost(thread_id=thread_id, parent_id=parent_id, raw=text, html=render_markdown(text),
                    author_name="Reader", author_email=None, ip="192.0.2.7"),
            edit_token="token",
        )

    async def query(self, sql: str, parameters: tuple[Any, ...] = (), forum: ForumRecord | None = None) -> list[Any]:
        """Run `sql` on the forum's shard, with ``{schema}`` replaced by the shard's schema, and return its rows."""
        shard = self.cluster.shard((forum or self.forum_record).shard)
        return await shard.pool.run_query("test_query", sql.format(schema=shard.schema), parameters,
                                          shard=shard.number)

    def import_path(self, path: Path, forum: str = "site") -> ImportSummary:
        return import_file(self.database, detect_format(path), str(path), forum, progress_stream=io.StringIO())

    def import_text(self, text: str, forum: str = "site") -> ImportSummary:
        path = self.directory / f"import-{len(list(self.directory.iterdir()))}.xml"
        path.write_text(text, encoding="utf-8")
        return self.import_path(path, forum)

    def export(self, export_format: str) -> Path:
        path = self.directory / f"export-{len(list(self.directory.iterdir()))}.{export_format}.xml"
        export_file(self.database, export_format, "site", str(path), progress_stream=io.StringIO())
        return path

    async def snapshot(self) -> dict[str, Any]:
        """Return every thread and post row of ``site``, and each thread's listing through the storage layer."""
        forum_id = self.forum_record.id
        threads = await self.query("SELECT * FROM {schema}.threads WHERE forum_id = %s ORDER BY id", (forum_id,))
        posts = await self.query("SELECT * FROM {schema}.posts WHERE forum_id = %s ORDER BY id", (forum_id,))
        listings = []
        for thread in threads:
            listings.append(await self.api.posts.page(thread[0], sort="oldest", limit=100, cursor=None))
        return {"threads": threads, "posts": posts, "listings": listings}


class SameForumTests(ReimportTestCase):
    """An export imported back into its own forum adds nothing, in either format."""

    async def check_adds_nothing(self, export_format: str) -> None:
        before = await self.snapshot()
        path = self.export(export_format)
        for segment_posts in (None, 1):
            with segments_of(segment_posts):
                summary = self.import_path(path)

            label = f"{export_format}, segments of {segment_posts} posts"
            self.assertEqual(summary.threads_created, 0, label)
            self.assertEqual(summary.threads_matched, len(before["threads"]), label)
            self.assertEqual(summary.posts_created, 0, label)
            self.assertEqual(summary.posts_existing, len(before["posts"]), label)
            self.assertEqual(summary.skipped_total, 0, label)
            self.assertEqual(summary.adjusted_total, 0, label)
            after = await self.snapshot()
            self.assertEqual(after["threads"], before["threads"], label)
            self.assertEqual(after["posts"], before["posts"], label)
            self.assertEqual(after["listings"], before["listings"], label)

    async def test_disqus_export_adds_nothing(self) -> None:
        """A Disqus export of native, Disqus and WordPress posts changes no row or listing of its forum."""
        await self.check_adds_nothing("disqus")

    async def test_wxr_export_adds_nothing(self) -> None:
        """A WXR export of native, Disqus and WordPress posts changes no row or listing of its forum."""
        await self.check_adds_nothing("wxr")

    async def test_original_file_still_matches(self) -> None:
        """After a round trip, the original Disqus file still adds nothing, and native posts keep no source id."""
        self.import_path(self.export("disqus"))
        summary = self.import_text(IMPORTED_DISQUS)
        native_sources = await self.query(
            "SELECT source_id FROM {schema}.posts WHERE id = ANY(%s)", ([post.id for post in self.native.values()],)
        )

        self.assertEqual(summary.posts_created, 0)
        self.assertEqual(summary.posts_existing, 2)
        self.assertEqual(native_sources, [(None,)] * len(self.native))

    async def test_new_replies_to_native_posts(self) -> None:
        """New posts in an export nest under the native posts that they name by this service's id."""
        top, reply = self.native["top"], self.native["reply"]
        with segments_of(1):
            # Segments of one post place 5000 and 5001 before the end of the file, under
            # parents that only this service's ids name.
            first = self.import_text(disqus_document(
                disqus_thread(str(top.thread_id), "page-2", link="https://example.org/page-2"),
                disqus_post("5000", str(top.thread_id), parent=str(top.id)),
                disqus_post("5001", str(top.thread_id), parent=str(reply.id)),
            ))
            # The file lacks the thread, so 5002 waits for the end of the file, where its
            # thread and parent are found by this service's ids.
            second = self.import_text(disqus_document(
                disqus_post("5002", str(top.thread_id), parent=str(reply.id)),
            ))
        posts = {row[0]: row[1:] for row in await self.query(
            "SELECT source_id, thread_id, parent_id, root_id, depth FROM {schema}.posts WHERE source_id = ANY(%s)",
            (["disqus:5000", "disqus:5001", "disqus:5002"],),
        )}

        self.assertEqual((first.threads_created, first.posts_created), (0, 2))
        self.assertEqual((second.posts_created, second.skipped_total), (1, 0))
        self.assertEqual(posts["disqus:5000"], (top.thread_id, top.id, top.id, 1))
        self.assertEqual(posts["disqus:5001"], (top.thread_id, reply.id, top.id, 2))
        self.assertEqual(posts["disqus:5002"], (top.thread_id, reply.id, top.id, 2))


class OtherForumTests(ReimportTestCase):
    """An export imported into another forum creates every thread and post, as before."""

    async def check_copy(self, export_format: str) -> None:
        copy = make_forum(self.database, f"copy-{export_format}")
        site = await self.snapshot()
        path = self.export(export_format)

        summary = self.import_path(path, forum=copy.shortname)
        again = self.import_path(path, forum=copy.shortname)
        rows = await self.query(
            """SELECT p.source_id, t.source_id, parent.source_id, p.depth FROM {schema}.posts p
               JOIN {schema}.threads t ON t.id = p.thread_id
               LEFT JOIN {schema}.posts parent ON parent.id = p.parent_id
               WHERE p.forum_id = %s""",
            (copy.id,), copy,
        )

        # Every copied id names the original row, the post's own id last in WXR's composite form.
        def own_id(source_id: str | None) -> int | None:
            return None if source_id is None else int(source_id.rsplit(":", 1)[-1])

        copied = {own_id(post): (own_id(thread), own_id(parent), depth) for post, thread, parent, depth in rows}
        original = await self.query(
            "SELECT id, thread_id, parent_id, depth FROM {schema}.posts WHERE forum_id = %s",
            (self.forum_record.id,),
        )
        self.assertEqual(summary.threads_created, len(site["threads"]))
        self.assertEqual(summary.posts_created, len(site["posts"]))
        self.assertEqual(copied, {row[0]: tuple(row[1:]) for row in original})
        self.assertEqual((again.threads_created, again.posts_created), (0, 0))

    async def test_disqus_export_into_new_forum(self) -> None:
        """A Disqus export creates every thread and post of the mixed forum, with the same tree, elsewhere."""
        await self.check_copy("disqus")

    async def test_wxr_export_into_new_forum(self) -> None:
        """A WXR export creates every thread and post of the mixed forum, with the same tree, elsewhere."""
        await self.check_copy("wxr")
