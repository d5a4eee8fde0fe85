"""Tests for exporting a forum, and for reading an export back into another forum."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

from comments.cli import main
from comments.porting import SourcePost, SourceThread, parse_disqus, parse_wxr
from comments.porting.commands import CommandError, export_file
from comments.porting.exporter import ExportSummary
from tests.porting.test_import import (
    FIXTURES,
    ShardTestCase,
    disqus_document,
    disqus_post,
    disqus_thread,
    wxr_comment,
    wxr_document,
)
from tests.support import make_forum

# Threads and posts that cover the fields an export must carry: identifiers and urls
# present or empty, closed and deleted threads, every post state, nesting, guests and
# registered authors, Unicode, HTML with links, and ids beyond 2**53.
RICH_EXPORT = disqus_document(
    '<thread dsq:id="10"><id>page-1</id><link>https://example.org/page-1/</link><title>Zoë &amp; 日本</title>'
    "<createdAt>2012-12-12T12:12:12Z</createdAt><isClosed>true</isClosed></thread>",
    '<thread dsq:id="11"><id/><link>https://example.org/page-2/</link><title/>'
    "<createdAt>2013-01-01T00:00:00Z</createdAt><isDeleted>true</isDeleted></thread>",
    disqus_thread("12", link=""),
    disqus_thread(str(2**60), "big"),
    disqus_post("101", "10", message='<p>See <a href="https://example.org/">this</a> — ✓</p>', username="alex",
                name="Alex Ä"),
    disqus_post("102", "10", parent="101", message="<p>Reply</p>", name="Guest", email=None),
    disqus_post("103", "10", parent="102", flags="<isDeleted>true</isDeleted>", message=""),
    disqus_post("104", "10", parent="103", message="<p>Under a deleted post</p>",
                created_at="2020-01-03T00:00:00Z"),
    disqus_post("105", "10", flags="<isSpam>true</isSpam>", ip="2001:db8::1"),
    disqus_post("106", "11", flags="<isApproved>false</isApproved>"),
    disqus_post("107", "12", message="<p>Line one\nline two\twith a tab \\ and a backslash</p>"),
    disqus_post(str(2**53 + 1), str(2**60), message="<p>Big ids</p>"),
)


class RoundTripTestCase(ShardTestCase):
    """Helpers that export forum ``site`` and import the file into forum ``copy``."""

    def setUp(self) -> None:
        super().setUp()
        self.copy = make_forum(self.database, "copy")

    def export(self, fmt: str, forum: str = "site") -> tuple[Path, ExportSummary]:
        path = self.directory / f"{forum}-{fmt}.xml"
        summary = export_file(self.database, fmt, forum, str(path), progress_stream=self.progress)
        return path, summary

    def round_trip(self, fmt: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
        """Export ``site``, import the file into ``copy``, and return both forums' threads and posts by id."""
        path, _summary = self.export(fmt)
        self.import_path(path, forum="copy")
        return (
            self.rows_by_id(self.forum.id, "threads"),
            self.rows_by_id(self.forum.id, "posts"),
            self.rows_by_id(self.copy.id, "threads"),
            self.rows_by_id(self.copy.id, "posts"),
        )

    def rows_by_id(self, forum_id: int, table: str) -> dict[str, Any]:
        forum = self.forum if forum_id == self.forum.id else self.copy
        if table == "threads":
            columns = ("id", "source_id", "identifier", "url", "title", "created_at", "closed", "deleted", "posts")
        else:
            columns = ("id", "source_id", "thread_id", "parent_id", "depth", "state", "kind", "raw", "html",
                       "author_name", "author_email", "author_url", "author_user_id", "host(ip)", "created_at")
        rows = self.shard_rows(
            f"SELECT {', '.join(columns)} FROM {{schema}}.{table} WHERE forum_id = %s", (forum_id,), forum=forum
        )
        names = [column.replace("host(ip)", "ip") for column in columns]
        return {row[0]: dict(zip(names, row, strict=True)) for row in rows}


class RoundTripTests(RoundTripTestCase):
    """An export read back into another forum gives the same threads and posts."""

    def check_round_trip(self, fmt: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Compare every thread and post of ``site`` with its copy, and return both forums' posts by original id."""
        threads, posts, copied_threads, copied_posts = self.round_trip(fmt)
        prefix = f"{fmt}:"
        thread_copies = {row["source_id"].removeprefix(prefix): row for row in copied_threads.values()}
        post_copies = {row["source_id"].removeprefix(prefix).split(":")[-1]: row for row in copied_posts.values()}

        self.assertEqual(len(copied_threads), len(threads))
        self.assertEqual(len(copied_posts), len(posts))
        for thread_id, thread in threads.items():
            copy = thread_copies[str(thread_id)]
            for field in ("identifier", "url", "title", "created_at", "closed", "deleted", "posts"):
                self.assertEqual(copy[field], thread[field], f"thread {thread['source_id']} {field}")
        for post_id, post in posts.items():
            copy = post_copies[str(post_id)]
            for field in ("raw", "html", "author_name", "author_email", "state", "kind", "depth", "ip",
                          "created_at"):
                self.assertEqual(copy[field], post[field], f"post {post['source_id']} {field}")
            self.assertEqual(copy["thread_id"], thread_copies[str(post["thread_id"])]["id"])
            expected_parent = None if post["parent_id"] is None else post_copies[str(post["parent_id"])]["id"]
            self.assertEqual(copy["parent_id"], expected_parent, f"post {post['source_id']} parent")
        return posts, post_copies

    def test_disqus_round_trip(self) -> None:
        """A Disqus export keeps identifiers, urls, titles, messages, names, states, nesting, dates and accounts."""
        self.import_text(RICH_EXPORT)
        posts, post_copies = self.check_round_trip("disqus")

        registered = [post for post in posts.values() if post["author_user_id"] is not None]
        self.assertEqual(len(registered), 1)
        self.assertEqual(post_copies[str(registered[0]["id"])]["author_user_id"], registered[0]["author_user_id"])

    def test_wxr_round_trip(self) -> None:
        """A WXR export keeps the same fields, pingbacks and author urls included."""
        self.import_text(RICH_EXPORT)
        self.import_text(wxr_document(
            "<item><title>Post</title><link>https://example.org/wp/</link><wp:post_id>7</wp:post_id>"
            + wxr_comment("1")
            + wxr_comment("2", comment_parent="1")
            + wxr_comment("3", comment_type="pingback")
            + "</item>"
        ))
        posts, post_copies = self.check_round_trip("wxr")

        pingbacks = [post_copies[str(post_id)] for post_id, post in posts.items() if post["kind"] == "pingback"]
        self.assertEqual(len(pingbacks), 1)
        urls = {copy["author_url"] for copy in post_copies.values()}
        self.assertIn("https://reader.example.org/", urls)

    def test_corpus_round_trip(self) -> None:
        """Every thread and post of a real export survives a Disqus round trip."""
        self.import_path(FIXTURES / "disqus-real-export-2013.xml")
        self.check_round_trip("disqus")

    def test_many_posts_round_trip(self) -> None:
        """A forum with more posts than one fetch of the server-side cursor is exported whole."""
        posts = [disqus_post(str(1000 + index), str(10 + index % 3), message=f"<p>{index}</p>")
                 for index in range(4500)]
        self.import_text(disqus_document(*(disqus_thread(str(10 + t), f"page-{t}") for t in range(3)), *posts))

        for fmt in ("disqus", "wxr"):
            path, summary = self.export(fmt)
            parse = parse_disqus if fmt == "disqus" else parse_wxr
            records = list(parse(path))

            self.assertEqual(summary.posts, 4500, fmt)
            self.assertEqual(summary.threads, 3, fmt)
            self.assertEqual(sum(isinstance(record, SourcePost) for record in records), 4500, fmt)
            self.assertEqual(sum(isinstance(record, SourceThread) for record in records), 3, fmt)


class ExportContentTests(RoundTripTestCase):
    """What the exported file contains."""

    def test_ids_are_service_ids(self) -> None:
        """Thread and post ids in the file are this service's 64-bit ids, written exactly."""
        self.import_text(RICH_EXPORT)
        path, _summary = self.export("disqus")
        records = list(parse_disqus(path))
        post_ids = {record.source_id for record in records if isinstance(record, SourcePost)}
        thread_ids = {record.source_id for record in records if isinstance(record, SourceThread)}

        self.assertEqual(post_ids, {str(post_id) for post_id in self.rows_by_id(self.forum.id, "posts")})
        self.assertEqual(thread_ids, {str(thread_id) for thread_id in self.rows_by_id(self.forum.id, "threads")})
        self.assertTrue(all(int(post_id) > 2**53 for post_id in post_ids))

    def test_live_posts_export_html(self) -> None:
        """A post written through the widget, whose source is Markdown, is exported as its HTML."""
        self.shard_rows(
            """WITH thread AS (
                   INSERT INTO {schema}.threads (forum_id, identifier, url, url_key)
                   VALUES (%s, 'live', 'https://example.org/live', 'https://example.org/live') RETURNING id)
               INSERT INTO {schema}.posts (thread_id, forum_id, root_id, state, raw, html, author_name)
               SELECT id, %s, 0, 'approved', '**bold**', '<p><strong>bold</strong></p>', 'Reader' FROM thread""",
            (self.forum.id, self.forum.id),
        )
        path, _summary = self.export("disqus")
        posts = [record for record in parse_disqus(path) if isinstance(record, SourcePost)]

        self.assertEqual([post.message for post in posts], ["<p><strong>bold</strong></p>"])

    def test_disqus_export_leaves_out_pingbacks(self) -> None:
        """The Disqus format cannot mark pingbacks, so they are left out and counted."""
        self.import_text(wxr_document(
            "<item><title>Post</title><link>https://example.org/wp/</link><wp:post_id>7</wp:post_id>"
            + wxr_comment("1") + wxr_comment("2", comment_type="pingback") + wxr_comment("3", comment_type="trackback")
            + "</item>"
        ))
        path, summary = self.export("disqus")
        posts = [record for record in parse_disqus(path) if isinstance(record, SourcePost)]

        self.assertEqual(summary.posts, 1)
        self.assertEqual(summary.pingbacks_left_out, 2)
        self.assertEqual(len(posts), 1)

    def test_empty_forum(self) -> None:
        """A forum without threads exports as a valid, empty file in both formats."""
        for fmt in ("disqus", "wxr"):
            path, summary = self.export(fmt)
            parse = parse_disqus if fmt == "disqus" else parse_wxr

            self.assertEqual((summary.threads, summary.posts), (0, 0))
            self.assertEqual(list(parse(path)), [])

    def test_unknown_forum_writes_no_file(self) -> None:
        """An export of a missing forum raises and leaves no file behind."""
        with self.assertRaises(CommandError) as raised:
            self.export("disqus", forum="nope")

        self.assertIn("forum 'nope' not found", str(raised.exception))
        self.assertEqual(list(self.directory.iterdir()), [])

    def test_unwritable_output(self) -> None:
        """An output path in a missing folder gives a message with the path."""
        with self.assertRaises(CommandError) as raised:
            export_file(self.database, "wxr", "site", str(self.directory / "missing" / "out.xml"),
                        progress_stream=self.progress)

        self.assertIn("cannot write", str(raised.exception))

    def test_cli_export(self) -> None:
        """`comments export` writes the file, exits 0 and reports the counts on standard error."""
        self.import_path(FIXTURES / "disqus-isso-tests.xml")
        shards = ", ".join(f'"{dsn}"' for dsn in self.database.shards)
        config = self.write_file(
            "comments.toml",
            f'[database]\nmeta = "{self.database.meta}"\nusers = "{self.database.users}"\n'
            f"shards = [{shards}]\nlogical_shards = {self.database.logical_shards}\n",
        )
        output = self.directory / "out.xml"
        err = io.StringIO()
        self.patch(sys, "stderr", err)

        status = main(["--config", str(config), "export", "wxr", "--forum", "site", "-o", str(output)])
        records = list(parse_wxr(output))

        self.assertEqual(status, 0, err.getvalue())
        self.assertIn("exported 3 threads and 5 posts of forum site", err.getvalue())
        self.assertEqual(sum(isinstance(record, SourcePost) for record in records), 5)
