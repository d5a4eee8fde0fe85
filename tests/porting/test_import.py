"""Tests for importing Disqus and WordPress exports into a forum of the real test cluster.

Each test starts from an empty cluster with one forum, ``site``, and checks the rows on
the forum's shard after the import.
"""

from __future__ import annotations

import io
import itertools
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from comments.cli import main
from comments.db.admin import ForumRecord, load_shard_map
from comments.db.migrations import blocking_connection
from comments.porting import detect_format, import_rows, import_sql, importer
from comments.porting.commands import CommandError, ProgressReporter, import_file, run_import
from comments.porting.importer import ImportSummary, IssueGroup
from comments.render import sanitize_html
from tests.support import make_forum, reset_data, test_database

FIXTURES = Path(__file__).parent / "fixtures"
MALFORMED = FIXTURES / "disqus-malformed-deleted-thread.xml"


def disqus_document(*elements: str) -> str:
    """Wrap `elements` in a Disqus export root element."""
    body = "\n".join(elements)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<disqus xmlns="http://disqus.com" xmlns:dsq="http://disqus.com/disqus-internals">\n'
        f"{body}\n</disqus>\n"
    )


def disqus_thread(
    thread_id: str, identifier: str = "", link: str = "https://example.org/page/", title: str = "Page"
) -> str:
    """Return a Disqus ``<thread>`` element."""
    return (
        f'<thread dsq:id="{thread_id}"><id>{identifier}</id><forum>site</forum><link>{link}</link>'
        f"<title>{title}</title><createdAt>2020-01-01T00:00:00Z</createdAt></thread>"
    )


def disqus_post(
    post_id: str,
    thread_id: str,
    *,
    parent: str | None = None,
    message: str = "<p>Hello</p>",
    created_at: str = "2020-01-02T03:04:05Z",
    name: str = "Reader",
    email: str | None = "reader@example.org",
    username: str | None = None,
    ip: str = "192.0.2.1",
    flags: str = "",
) -> str:
    """Return a Disqus ``<post>`` element. A `username` makes the author registered."""
    author = f"<name>{name}</name>"
    if email is not None:
        author += f"<email>{email}</email>"
    if username is None:
        author += "<isAnonymous>true</isAnonymous>"
    else:
        author += f"<isAnonymous>false</isAnonymous><username>{username}</username>"
    parent_element = "" if parent is None else f'<parent dsq:id="{parent}"/>'
    return (
        f'<post dsq:id="{post_id}"><message><![CDATA[{message}]]></message>'
        f"<createdAt>{created_at}</createdAt>{flags}<author>{author}</author>"
        f'<ipAddress>{ip}</ipAddress><thread dsq:id="{thread_id}"/>{parent_element}</post>'
    )


def wxr_document(items: str) -> str:
    """Wrap `items` in a WXR 1.2 channel."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rss version="2.0" xmlns:wp="http://wordpress.org/export/1.2/" xmlns:dsq="http://www.disqus.com/">\n'
        f"<channel><title>Blog</title>\n{items}\n</channel>\n</rss>\n"
    )


def wxr_comment(comment_id: str, **fields: str) -> str:
    """Return a ``<wp:comment>`` with valid defaults, overridden by `fields`."""
    values = {
        "comment_author": "Reader",
        "comment_author_email": "reader@example.org",
        "comment_author_url": "https://reader.example.org/",
        "comment_author_IP": "192.0.2.9",
        "comment_date_gmt": "2020-01-02 03:04:05",
        "comment_content": "Hello",
        "comment_approved": "1",
        "comment_type": "",
        "comment_parent": "0",
        "comment_user_id": "0",
    }
    values.update(fields)
    children = "".join(f"<wp:{name}>{value}</wp:{name}>" for name, value in values.items())
    return f"<wp:comment><wp:comment_id>{comment_id}</wp:comment_id>{children}</wp:comment>"


class ShardTestCase(SynchronousTestCase):
    """A test case with an empty test cluster, the forum ``site`` and helpers to import and to query its shard."""

    def setUp(self) -> None:
        self.database = test_database()
        reset_data(self.database)
        self.forum = make_forum(self.database, "site")
        self.directory = Path(self.mktemp())
        self.directory.mkdir(parents=True)
        self.progress = io.StringIO()

    def write_file(self, name: str, text: str) -> Path:
        path = self.directory / name
        path.write_text(text, encoding="utf-8")
        return path

    def import_path(self, path: Path, forum: str = "site", parse_in_worker: bool | None = None) -> ImportSummary:
        return import_file(self.database, detect_format(path), str(path), forum, progress_stream=self.progress,
                           parse_in_worker=parse_in_worker)

    def import_text(self, text: str, forum: str = "site") -> ImportSummary:
        return self.import_path(self.write_file(f"export-{len(list(self.directory.iterdir()))}.xml", text), forum)

    def shard_rows(self, query: str, parameters: tuple[Any, ...] = (), forum: ForumRecord | None = None) -> list[Any]:
        """Run `query` on the forum's shard and return its rows, with ``{schema}`` replaced by the shard's schema."""
        forum = forum or self.forum
        assert self.database.meta
        with blocking_connection(self.database.meta) as meta:
            database_index, schema = load_shard_map(meta, self.database)[forum.shard]
        with blocking_connection(self.database.shards[database_index]) as shard, shard, shard.cursor() as cursor:
            cursor.execute(query.format(schema=schema), parameters)
            return cursor.fetchall() if cursor.description is not None else []

    def count_rows(self) -> tuple[int, int, int]:
        """Return the numbers of threads and posts on the forum's shard and of accounts."""
        threads = self.shard_rows("SELECT count(*) FROM {schema}.threads")[0][0]
        posts = self.shard_rows("SELECT count(*) FROM {schema}.posts")[0][0]
        assert self.database.users
        with blocking_connection(self.database.users) as users, users.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM users.accounts")
            accounts = cursor.fetchone()
        assert accounts is not None
        return int(threads), int(posts), int(accounts[0])

    def posts_by_source(self) -> dict[str, dict[str, Any]]:
        """Return the forum's posts as dictionaries keyed by source id."""
        rows = self.shard_rows(
            """SELECT source_id, id, thread_id, parent_id, root_id, depth, state, kind, raw, html, author_name,
                      author_email, author_url, author_user_id, host(ip), created_at
               FROM {schema}.posts"""
        )
        names = ("source_id", "id", "thread_id", "parent_id", "root_id", "depth", "state", "kind", "raw", "html",
                 "author_name", "author_email", "author_url", "author_user_id", "ip", "created_at")
        return {row[0]: dict(zip(names, row, strict=True)) for row in rows}

    def threads_by_source(self) -> dict[str, dict[str, Any]]:
        """Return the forum's threads as dictionaries keyed by source id."""
        rows = self.shard_rows(
            "SELECT source_id, id, identifier, url, url_key, title, created_at, closed, deleted, posts, version"
            " FROM {schema}.threads"
        )
        names = ("source_id", "id", "identifier", "url", "url_key", "title", "created_at", "closed", "deleted",
                 "posts", "version")
        return {row[0]: dict(zip(names, row, strict=True)) for row in rows}


class CorpusImportTests(ShardTestCase):
    """Every real export of the corpus imports with the expected counts."""

    def test_corpus_counts(self) -> None:
        """Each fixture creates its threads and posts, and skips and notes what it must."""
        expected = {
            # file: (threads created, posts created, skipped, stored with changes)
            "disqus-import-docs-sample.xml": (1, 1, 0, 0),
            "disqus-isso-tests.xml": (3, 5, 1, 0),
            "disqus-real-export-2013.xml": (71, 17, 6, 0),
            "disqus-schnack-test.xml": (2, 5, 0, 0),
            "wxr-1.1-crlf.xml": (2, 1, 0, 0),
            "wxr-1.2-note-comments.xml": (1, 1, 2, 0),
            "wxr-isso-tests.xml": (3, 8, 0, 0),
        }
        for index, (name, (threads, posts, skipped, adjusted)) in enumerate(sorted(expected.items())):
            forum = make_forum(self.database, f"corpus-{index}")
            summary = self.import_path(FIXTURES / name, forum=forum.shortname)

            self.assertEqual(summary.threads_created, threads, name)
            self.assertEqual(summary.posts_created, posts, name)
            self.assertEqual(summary.skipped_total, skipped, name)
            self.assertEqual(summary.adjusted_total, adjusted, name)
            stored_threads = self.shard_rows(
                "SELECT count(*) FROM {schema}.threads WHERE forum_id = %s", (forum.id,), forum=forum
            )
            stored_posts = self.shard_rows(
                "SELECT count(*) FROM {schema}.posts WHERE forum_id = %s", (forum.id,), forum=forum
            )
            self.assertEqual(stored_threads[0][0], threads, name)
            self.assertEqual(stored_posts[0][0], posts, name)

    def test_isso_orphan_and_deleted_parent(self) -> None:
        """The post of a missing thread is skipped, and a reply to a deleted post stays under its placeholder."""
        summary = self.import_path(FIXTURES / "disqus-isso-tests.xml")
        posts = self.posts_by_source()

        self.assertEqual(summary.skipped, (IssueGroup(
            "The post's thread is not in the file, or the parser skipped it.", 1, 66),))
        self.assertNotIn("disqus:6", posts)
        self.assertEqual(posts["disqus:9"]["state"], "deleted")
        self.assertEqual(posts["disqus:11"]["parent_id"], posts["disqus:9"]["id"])
        self.assertEqual(posts["disqus:11"]["root_id"], posts["disqus:9"]["id"])
        self.assertEqual(posts["disqus:11"]["depth"], 1)

    def test_thread_counts_approved_comments(self) -> None:
        """threads.posts counts approved comments only, and version is bumped for threads with new posts."""
        self.import_path(FIXTURES / "disqus-isso-tests.xml")
        threads = self.threads_by_source()

        # Thread 2 has posts 4, 5 and 11 approved and post 9 deleted.
        self.assertEqual(threads["disqus:2"]["posts"], 3)
        self.assertEqual(threads["disqus:2"]["version"], 2)
        self.assertEqual(threads["disqus:7"]["posts"], 1)
        self.assertEqual(threads["disqus:3"]["posts"], 0)
        self.assertEqual(threads["disqus:3"]["version"], 1)

    def test_parser_process_same_result(self) -> None:
        """Parsing in a child process stores the same rows as parsing in this process."""
        in_process = make_forum(self.database, "in-process")
        self.import_path(FIXTURES / "disqus-real-export-2013.xml", forum="in-process", parse_in_worker=False)
        summary = self.import_path(FIXTURES / "disqus-real-export-2013.xml", parse_in_worker=True)
        query = (
            "SELECT p.source_id, p.raw, p.html, p.depth, p.state, t.source_id FROM {schema}.posts p"
            " JOIN {schema}.threads t ON t.id = p.thread_id WHERE p.forum_id = %s ORDER BY p.source_id"
        )

        self.assertEqual((summary.threads_created, summary.posts_created, summary.skipped_total), (71, 17, 6))
        self.assertEqual(
            self.shard_rows(query, (self.forum.id,)),
            self.shard_rows(query, (in_process.id,), forum=in_process),
        )

    def test_schnack_reply_chain(self) -> None:
        """A four-level reply chain keeps its parents, root and depths."""
        self.import_path(FIXTURES / "disqus-schnack-test.xml")
        posts = self.posts_by_source()
        chain = ["disqus:1664694813", "disqus:1664831530", "disqus:1690922142", "disqus:1690992879"]
        root = posts[chain[0]]["id"]

        for depth, source_id in enumerate(chain):
            self.assertEqual(posts[source_id]["depth"], depth, source_id)
            self.assertEqual(posts[source_id]["root_id"], root, source_id)
        for parent, child in itertools.pairwise(chain):
            self.assertEqual(posts[child]["parent_id"], posts[parent]["id"])

    def test_editor_notes_skipped(self) -> None:
        """WordPress editor notes are skipped and counted under their reason."""
        summary = self.import_path(FIXTURES / "wxr-1.2-note-comments.xml")

        self.assertEqual(summary.skipped_total, 2)
        self.assertEqual(summary.skipped[0].count, 2)
        self.assertIn("editor note", summary.skipped[0].reason)
        self.assertEqual(summary.skipped[0].first_line, 70)
        self.assertEqual(list(self.posts_by_source()), ["wxr:10:4"])


class IdempotenceTests(ShardTestCase):
    """Importing a file again, or a newer export that overlaps it, adds no duplicates."""

    def test_second_import_adds_nothing(self) -> None:
        """A second import of the same file creates no thread, post or account and changes no counter."""
        first = self.import_path(FIXTURES / "disqus-isso-tests.xml")
        counts = self.count_rows()
        threads = self.threads_by_source()

        second = self.import_path(FIXTURES / "disqus-isso-tests.xml")

        self.assertEqual(first.posts_created, 5)
        self.assertEqual(second.threads_created, 0)
        self.assertEqual(second.threads_matched, 3)
        self.assertEqual(second.posts_created, 0)
        self.assertEqual(second.posts_existing, 5)
        self.assertEqual(second.accounts_created, 0)
        self.assertEqual(second.accounts_linked, 2)
        self.assertEqual(self.count_rows(), counts)
        self.assertEqual(self.threads_by_source(), threads)

    def test_overlapping_newer_export(self) -> None:
        """A newer export adds only its new posts, and a new reply to a stored post nests under it."""
        older = disqus_document(
            disqus_thread("10", "page-1"),
            disqus_thread("20", "page-2"),
            disqus_post("101", "10"),
            disqus_post("102", "10", parent="101"),
            disqus_post("201", "20"),
        )
        # The newer export lacks thread 20 and post 101, as an export filtered by date would.
        newer = disqus_document(
            disqus_thread("10", "page-1"),
            disqus_post("102", "10", parent="101"),
            disqus_post("103", "10", parent="102"),
            disqus_post("202", "20"),
        )
        self.import_text(older)
        summary = self.import_text(newer)
        posts = self.posts_by_source()
        threads = self.threads_by_source()

        self.assertEqual(summary.posts_created, 2)
        self.assertEqual(summary.posts_existing, 1)
        self.assertEqual(summary.skipped_total, 0)
        self.assertEqual(sorted(posts), ["disqus:101", "disqus:102", "disqus:103", "disqus:201", "disqus:202"])
        self.assertEqual(posts["disqus:103"]["parent_id"], posts["disqus:102"]["id"])
        self.assertEqual(posts["disqus:103"]["root_id"], posts["disqus:101"]["id"])
        self.assertEqual(posts["disqus:103"]["depth"], 2)
        self.assertEqual(posts["disqus:202"]["thread_id"], threads["disqus:20"]["id"])
        self.assertEqual(threads["disqus:10"]["posts"], 3)
        self.assertEqual(threads["disqus:20"]["posts"], 2)

    def test_thread_matched_by_identifier(self) -> None:
        """A thread that readers already started through the widget receives the imported posts."""
        self.shard_rows(
            "INSERT INTO {schema}.threads (forum_id, identifier, url, url_key, title, posts)"
            " VALUES (%s, 'page-1', 'https://example.org/live', 'https://example.org/live', 'Live', 0)",
            (self.forum.id,),
        )
        summary = self.import_text(disqus_document(disqus_thread("10", "page-1"), disqus_post("101", "10")))
        rows = self.shard_rows("SELECT title, source_id, posts FROM {schema}.threads")

        self.assertEqual(summary.threads_created, 0)
        self.assertEqual(summary.threads_matched, 1)
        self.assertEqual(rows, [("Live", None, 1)])

    def test_threads_merged_by_url(self) -> None:
        """Two threads without identifier for one page become one thread, and a live one is reused."""
        self.shard_rows(
            "INSERT INTO {schema}.threads (forum_id, identifier, url, url_key, title)"
            " VALUES (%s, NULL, 'https://example.org/live/', 'https://example.org/live', 'Live')",
            (self.forum.id,),
        )
        summary = self.import_text(disqus_document(
            disqus_thread("10", link="https://example.org/page/"),
            disqus_thread("11", link="https://EXAMPLE.org/page?utm_source=feed"),
            disqus_thread("12", link="https://example.org/live"),
            disqus_post("101", "10"),
            disqus_post("111", "11"),
            disqus_post("121", "12"),
        ))
        posts = self.posts_by_source()

        self.assertEqual(summary.threads_created, 1)
        self.assertEqual(summary.threads_matched, 1)
        self.assertEqual(posts["disqus:101"]["thread_id"], posts["disqus:111"]["thread_id"])
        self.assertEqual(len(self.threads_by_source()), 2)


# Posts and threads in the order that makes segment boundaries matter: threads after
# their posts, replies before their parents and across segments, loops, repeated ids,
# threads merged across segments, and a thread dated by a post that comes later.
SEGMENT_CASE = disqus_document(
    disqus_post("100", "10", created_at="2020-01-03T00:00:00Z"),
    disqus_post("101", "10", parent="100", username="alex", name="Alex First"),
    disqus_post("102", "20", parent="103"),
    disqus_thread("20", "page-2"),
    disqus_post("103", "20", username="sam", name="Sam"),
    disqus_thread("10", "page-1"),
    disqus_post("104", "20", parent="105"),
    disqus_post("105", "20", parent="104"),
    disqus_post("106", "20", parent="404"),
    disqus_post("107", "20", parent="100"),
    disqus_post("103", "20", message="<p>A second copy</p>"),
    disqus_thread("20", "page-2-copy"),
    disqus_thread("30", "page-1"),
    disqus_post("301", "30", parent="101", username="alex", name="Alex Later"),
    '<thread dsq:id="40"><id>page-4</id><link>https://example.org/4</link><title>Undated</title></thread>',
    disqus_post("401", "40", created_at="2020-03-01T00:00:00Z"),
    disqus_post("402", "40", parent="401", created_at="2020-02-01T00:00:00Z"),
    disqus_post("405", "40", created_at="2020-04-01T00:00:00Z"),
    disqus_thread("50", link="https://example.org/five/"),
    disqus_post("501", "50"),
    disqus_thread("51", link="https://EXAMPLE.org/five"),
    disqus_post("511", "51", parent="501"),
    disqus_post("512", "51"),
    disqus_post("203", "20", parent="501"),
    disqus_post("110", "10", parent="101", flags="<isDeleted>true</isDeleted>"),
    disqus_post("111", "10", parent="110", username="kim"),
    disqus_post("112", "10", parent="111", flags="<isSpam>true</isSpam>"),
    disqus_post("901", "90"),
    disqus_post("113", "10", parent="112"),
)

# A newer export of the same forum: known posts, replies to stored posts, a thread that
# only the earlier import stored, and a repeated post.
SEGMENT_CASE_NEWER = disqus_document(
    disqus_post("113", "10", parent="112"),
    disqus_post("114", "10", parent="113"),
    disqus_post("403", "40", parent="402"),
    disqus_thread("10", "page-1"),
    disqus_post("115", "10", parent="114", username="new"),
    disqus_post("116", "10", parent="999"),
    disqus_post("114", "10"),
    disqus_thread("60", "page-6"),
    disqus_post("601", "60", parent="113"),
)

SEGMENT_CASE_WXR = wxr_document(
    "<item><title>Post</title><link>https://example.org/post/</link>"
    + wxr_comment("1")
    + wxr_comment("3", comment_parent="2")
    + "<wp:post_id>7</wp:post_id>"
    + wxr_comment("2", comment_type="pingback", comment_parent="1")
    + wxr_comment("4", comment_type="trackback", comment_approved="spam")
    + "</item>"
    + "<item><title>Page</title><link>https://example.org/page/</link><wp:post_id>8</wp:post_id>"
    + wxr_comment("1", comment_parent="5")
    + wxr_comment("5", comment_user_id="3")
    + "</item>"
)


@contextmanager
def segments_of(posts: int | None) -> Iterator[None]:
    """Cut imports into segments of `posts` posts and batches of one post, or leave the defaults for None."""
    saved = (importer._SEGMENT_POSTS, import_rows.BATCH_POSTS)
    if posts is not None:
        importer._SEGMENT_POSTS, import_rows.BATCH_POSTS = posts, 1
    try:
        yield
    finally:
        importer._SEGMENT_POSTS, import_rows.BATCH_POSTS = saved


class SegmentTests(ShardTestCase):
    """Imports cut into many small segments store what one segment stores."""

    def snapshot(self) -> dict[str, Any]:
        """Return the forum's threads, posts and accounts without their generated ids."""
        posts = self.shard_rows(
            """SELECT p.source_id, t.source_id, t.identifier, parent.source_id, root.source_id, p.depth, p.state,
                      p.kind, p.raw, p.html, p.author_name, p.author_email, p.author_url, p.author_user_id IS NULL,
                      host(p.ip), p.created_at
               FROM {schema}.posts p
               JOIN {schema}.threads t ON t.id = p.thread_id
               LEFT JOIN {schema}.posts parent ON parent.id = p.parent_id
               JOIN {schema}.posts root ON root.id = p.root_id
               ORDER BY p.source_id"""
        )
        # A thread dated by now() gets the time of its own transaction, so that date is left out.
        threads = self.shard_rows(
            """SELECT source_id, identifier, url, url_key, title,
                      CASE WHEN created_at < '2025-01-01' THEN created_at END, closed, deleted, posts, version
               FROM {schema}.threads ORDER BY source_id NULLS FIRST"""
        )
        assert self.database.users
        with blocking_connection(self.database.users) as users, users.cursor() as cursor:
            cursor.execute("SELECT username, display_name, email FROM users.accounts ORDER BY username")
            accounts = cursor.fetchall()
        return {"posts": posts, "threads": threads, "accounts": accounts}

    def import_sequence(self, texts: list[str], segment_posts: int | None) -> list[Any]:
        """Import `texts` one after another into a fresh forum and return each summary and the end state."""
        reset_data(self.database)
        self.forum = make_forum(self.database, "site")
        # A thread that readers started before the import, which the file's page-1 matches.
        self.shard_rows(
            "INSERT INTO {schema}.threads (forum_id, identifier, url, url_key, title)"
            " VALUES (%s, 'page-1', 'https://example.org/live', 'https://example.org/live', 'Live')",
            (self.forum.id,),
        )
        results: list[Any] = []
        with segments_of(segment_posts):
            for text in texts:
                results.append(self.import_text(text))
        results.append(self.snapshot())
        return results

    def assert_same_as_one_segment(self, texts: list[str]) -> None:
        expected = self.import_sequence(texts, None)
        for segment_posts in (1, 2, 3):
            actual = self.import_sequence(texts, segment_posts)
            for step, (want, got) in enumerate(zip(expected, actual, strict=True)):
                self.assertEqual(got, want, f"segments of {segment_posts} posts, step {step}")

    def test_out_of_order_disqus_export(self) -> None:
        """Late threads and parents, loops, repeats and merges come out as with one segment."""
        self.assert_same_as_one_segment([SEGMENT_CASE])

    def test_second_and_newer_export(self) -> None:
        """A second import and a newer overlapping export come out as with one segment."""
        self.assert_same_as_one_segment([SEGMENT_CASE, SEGMENT_CASE, SEGMENT_CASE_NEWER])

    def test_wxr_export(self) -> None:
        """WXR comments before their post id, pingbacks and late parents come out as with one segment."""
        self.assert_same_as_one_segment([SEGMENT_CASE_WXR, SEGMENT_CASE_WXR])

    def test_corpus(self) -> None:
        """Every fixture comes out as with one segment."""
        for path in sorted(FIXTURES.glob("*.xml")):
            if path != MALFORMED:
                self.assert_same_as_one_segment([path.read_text(encoding="utf-8")])

    def test_syntax_error_after_segments_commits_nothing(self) -> None:
        """A syntax error after segments that inserted posts and linked accounts rolls all of them back."""
        text = disqus_document(
            disqus_thread("10"), *(disqus_post(str(100 + i), "10", username=f"user{i}") for i in range(5))
        )
        path = self.write_file("broken.xml", text.replace("</disqus>", "<post>\n</disqus>"))

        for parse_in_worker in (False, True):
            with segments_of(1), self.assertRaises(CommandError) as raised:
                self.import_path(path, parse_in_worker=parse_in_worker)

            self.assertIn("not well-formed XML at line", str(raised.exception))
            self.assertEqual(self.count_rows(), (0, 0, 0))

    def test_settled_posts_inserted_early(self) -> None:
        """Segments before the last insert the posts whose thread and parent are already stored."""
        placed: list[int] = []
        place_posts = import_sql._place_posts

        def counting_place_posts(cursor: Any, **arguments: Any) -> tuple[int, int]:
            inserted = place_posts(cursor, **arguments)
            placed.append(inserted[0])
            return inserted

        self.patch(import_sql, "_place_posts", counting_place_posts)
        with segments_of(1):
            summary = self.import_text(SEGMENT_CASE)

        # Posts 103, 401, 402, 405, 501, 511 and 512. The others wait for a later thread
        # or parent, repeat an id, or are in the last segment.
        self.assertEqual(sum(placed), 7)
        self.assertEqual(summary.posts_created, 20)

class FileErrorTests(ShardTestCase):
    """Files that are not valid exports commit nothing and explain why."""

    def run_command(self, fmt: str, path: Path | str, forum: str = "site") -> tuple[int, str, str]:
        """Run run_import and return its exit status, standard output and standard error."""
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        status = run_import(self.database, fmt, str(path), forum)
        return status, out.getvalue(), err.getvalue()

    def test_malformed_file_commits_nothing(self) -> None:
        """A syntax error after several posts rolls back the whole import and names the position."""
        status, out, err = self.run_command("disqus", MALFORMED)

        self.assertEqual(status, 1)
        self.assertEqual(out, "")
        self.assertIn("line 147, column 24", err)
        self.assertIn("Fix the file or export it again.", err)
        self.assertIn("Nothing was imported, and forum site is unchanged.", err)
        self.assertEqual(self.count_rows(), (0, 0, 0))

    def test_malformed_file_after_import(self) -> None:
        """A failed import leaves the posts of an earlier import as they were."""
        self.import_path(FIXTURES / "disqus-isso-tests.xml")
        counts = self.count_rows()
        threads = self.threads_by_source()

        status, _out, _err = self.run_command("disqus", MALFORMED)

        self.assertEqual(status, 1)
        self.assertEqual(self.count_rows(), counts)
        self.assertEqual(self.threads_by_source(), threads)

    def test_truncated_file_commits_nothing(self) -> None:
        """A file cut off in the middle of a post raises with a position and imports nothing."""
        text = disqus_document(disqus_thread("10"), *(disqus_post(str(100 + i), "10") for i in range(50)))
        path = self.write_file("truncated.xml", text[: len(text) // 2])

        with self.assertRaises(CommandError) as raised:
            self.import_path(path)

        self.assertIn("not well-formed XML at line", str(raised.exception))
        self.assertEqual(self.count_rows(), (0, 0, 0))

    def test_malformed_file_in_parser_process(self) -> None:
        """A syntax error found by the parser process keeps its position and commits nothing."""
        with self.assertRaises(CommandError) as raised:
            self.import_path(MALFORMED, parse_in_worker=True)

        self.assertIn("line 147, column 24", str(raised.exception))
        self.assertEqual(self.count_rows(), (0, 0, 0))

    def test_rss_feed_rejected(self) -> None:
        """An RSS feed is rejected by its content under either format name."""
        path = self.write_file(
            "feed.xml",
            '<?xml version="1.0"?><rss version="2.0"><channel><title>Blog</title>'
            "<item><title>Post</title><link>https://example.org/post</link></item></channel></rss>",
        )
        for fmt in ("wxr", "disqus"):
            status, _out, err = self.run_command(fmt, path)

            self.assertEqual(status, 1, fmt)
            self.assertIn("is an RSS feed, not a WordPress export (WXR)", err, fmt)
        self.assertEqual(self.count_rows(), (0, 0, 0))

    def test_wrong_format_named(self) -> None:
        """A WordPress export imported as Disqus names the right command."""
        status, _out, err = self.run_command("disqus", FIXTURES / "wxr-isso-tests.xml")

        self.assertEqual(status, 1)
        self.assertIn("is a WordPress export (WXR), not a Disqus export", err)
        self.assertIn("comments import wxr", err)

    def test_missing_file(self) -> None:
        """A missing file gives a message with the path."""
        status, _out, err = self.run_command("disqus", self.directory / "missing.xml")

        self.assertEqual(status, 1)
        self.assertIn("cannot read", err)
        self.assertIn("missing.xml", err)

    def test_unknown_forum(self) -> None:
        """An unknown forum shortname names the command that creates it."""
        status, _out, err = self.run_command("disqus", FIXTURES / "disqus-isso-tests.xml", forum="nope")

        self.assertEqual(status, 1)
        self.assertIn("forum 'nope' not found", err)
        self.assertIn("comments forum create nope", err)

    def test_concurrent_import_rejected(self) -> None:
        """While another import holds the forum's lock, an import exits with a message and changes nothing."""
        assert self.database.meta
        with blocking_connection(self.database.meta) as meta:
            database_index, _schema = load_shard_map(meta, self.database)[self.forum.shard]
        with blocking_connection(self.database.shards[database_index]) as holder, holder.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"comments-import:{self.forum.id}",))
            status, _out, err = self.run_command("disqus", FIXTURES / "disqus-isso-tests.xml")
            holder.rollback()

        self.assertEqual(status, 1)
        self.assertIn("another import into forum", err)
        self.assertEqual(self.count_rows(), (0, 0, 0))

    def test_summary_output(self) -> None:
        """A successful import prints the counts and each skip reason with its count and first line."""
        status, out, _err = self.run_command("disqus", FIXTURES / "disqus-isso-tests.xml")

        self.assertEqual(status, 0)
        self.assertIn("threads: 3 new, 0 already in the forum", out)
        self.assertIn("posts: 5 new, 0 imported before", out)
        self.assertIn("skipped: 1", out)
        self.assertIn("1 x The post's thread is not in the file, or the parser skipped it. (first at line 66)", out)


class MappingTests(ShardTestCase):
    """Fields of the file land in the right columns."""

    def test_post_fields(self) -> None:
        """Source HTML is kept as raw, sanitized into html, and the date, IP and state are stored."""
        message = '<p onclick="x()">Hi <a href="https://example.org/">there</a><script>alert(1)</script></p>'
        self.import_text(disqus_document(
            disqus_thread("10", "page-1"),
            disqus_post("101", "10", message=message, created_at="2013-10-10T21:20:29+02:00", ip="::ffff:192.0.2.7"),
            disqus_post("102", "10", ip="not an address", flags="<isSpam>true</isSpam>"),
            disqus_post("103", "10", flags="<isApproved>false</isApproved>"),
        ))
        posts = self.posts_by_source()
        first = posts["disqus:101"]

        self.assertEqual(first["raw"], message)
        self.assertNotIn("script", first["html"])
        self.assertNotIn("onclick", first["html"])
        self.assertIn('rel="nofollow ugc noopener"', first["html"])
        self.assertEqual(first["created_at"], datetime(2013, 10, 10, 19, 20, 29, tzinfo=UTC))
        self.assertEqual(first["ip"], "192.0.2.7")
        self.assertEqual(first["kind"], "comment")
        self.assertEqual(first["author_name"], "Reader")
        self.assertEqual(first["author_email"], "reader@example.org")
        self.assertIsNone(posts["disqus:102"]["ip"])
        self.assertEqual(posts["disqus:102"]["state"], "spam")
        self.assertEqual(posts["disqus:103"]["state"], "pending")

    def test_thread_fields(self) -> None:
        """Identifier, url, title, date and flags are stored, and an empty identifier becomes NULL."""
        self.import_text(disqus_document(
            '<thread dsq:id="10"><id>page-1</id><link>https://Example.org/Page/#c</link><title>Ünïcode 日本</title>'
            "<createdAt>2012-12-12T12:12:12Z</createdAt><isClosed>true</isClosed><isDeleted>true</isDeleted></thread>",
            '<thread dsq:id="11"><id></id><link>https://example.org/other</link><title/></thread>',
            disqus_post("111", "11", created_at="2014-01-01T00:00:00Z"),
        ))
        threads = self.threads_by_source()
        first, second = threads["disqus:10"], threads["disqus:11"]

        self.assertEqual(first["identifier"], "page-1")
        self.assertEqual(first["url"], "https://Example.org/Page/#c")
        self.assertEqual(first["url_key"], "https://example.org/Page")
        self.assertEqual(first["title"], "Ünïcode 日本")
        self.assertEqual(first["created_at"], datetime(2012, 12, 12, 12, 12, 12, tzinfo=UTC))
        self.assertTrue(first["closed"])
        self.assertTrue(first["deleted"])
        self.assertIsNone(second["identifier"])
        self.assertEqual(second["title"], "")
        # A thread without a date takes the date of its first post.
        self.assertEqual(second["created_at"], datetime(2014, 1, 1, tzinfo=UTC))

    def test_threads_without_identifier_or_url(self) -> None:
        """Threads with neither identifier nor a usable url get distinct import keys instead of colliding."""
        summary = self.import_text(disqus_document(
            disqus_thread("10", link=""),
            disqus_thread("11", link=""),
            disqus_thread("12", link="/relative/path"),
            disqus_post("101", "10"),
            disqus_post("111", "11"),
        ))
        threads = self.threads_by_source()

        self.assertEqual(summary.threads_created, 3)
        self.assertEqual(threads["disqus:10"]["url_key"], "import:disqus:10")
        self.assertEqual(threads["disqus:11"]["url_key"], "import:disqus:11")
        self.assertEqual(threads["disqus:12"]["url_key"], "import:disqus:12")
        self.assertEqual(threads["disqus:12"]["url"], "/relative/path")

    def test_thread_after_its_posts(self) -> None:
        """Posts placed before their thread, and replies before their parents, are linked all the same."""
        self.import_text(disqus_document(
            disqus_post("103", "10", parent="102"),
            disqus_post("102", "10", parent="101"),
            disqus_post("101", "10"),
            disqus_thread("10", "page-1"),
        ))
        posts = self.posts_by_source()

        self.assertEqual(posts["disqus:103"]["depth"], 2)
        self.assertEqual(posts["disqus:103"]["root_id"], posts["disqus:101"]["id"])
        self.assertEqual(posts["disqus:102"]["parent_id"], posts["disqus:101"]["id"])

    def test_nesting_ten_deep(self) -> None:
        """A chain of ten replies, written children first, gets depths 0 to 10 under one root."""
        chain = [disqus_post("100", "10")]
        chain += [disqus_post(str(100 + level), "10", parent=str(99 + level)) for level in range(1, 11)]
        self.import_text(disqus_document(disqus_thread("10"), *reversed(chain)))
        posts = self.posts_by_source()
        root = posts["disqus:100"]["id"]

        for level in range(11):
            post = posts[f"disqus:{100 + level}"]
            self.assertEqual(post["depth"], level)
            self.assertEqual(post["root_id"], root)
            if level:
                self.assertEqual(post["parent_id"], posts[f"disqus:{99 + level}"]["id"])
            else:
                self.assertIsNone(post["parent_id"])

    def test_missing_parent_becomes_top_level(self) -> None:
        """A reply whose parent is absent, or in another thread, becomes a top-level post with a note."""
        summary = self.import_text(disqus_document(
            disqus_thread("10", "page-1"),
            disqus_thread("20", "page-2"),
            disqus_post("101", "10", parent="999"),
            disqus_post("201", "20"),
            disqus_post("102", "10", parent="201"),
            disqus_post("103", "10", parent="101"),
        ))
        posts = self.posts_by_source()

        self.assertEqual(summary.adjusted_total, 2)
        self.assertIn("became a top-level post", summary.adjusted[0].reason)
        for source_id in ("disqus:101", "disqus:102"):
            self.assertIsNone(posts[source_id]["parent_id"])
            self.assertEqual(posts[source_id]["depth"], 0)
            self.assertEqual(posts[source_id]["root_id"], posts[source_id]["id"])
        self.assertEqual(posts["disqus:103"]["parent_id"], posts["disqus:101"]["id"])

    def test_parent_cycle_broken(self) -> None:
        """Replies whose parents loop become top-level posts instead of being lost."""
        summary = self.import_text(disqus_document(
            disqus_thread("10"),
            disqus_post("101", "10", parent="102"),
            disqus_post("102", "10", parent="101"),
            disqus_post("103", "10", parent="103"),
        ))
        posts = self.posts_by_source()

        self.assertEqual(summary.posts_created, 3)
        self.assertEqual(summary.adjusted_total, 3)
        self.assertIn("loops back on itself", summary.adjusted[0].reason)
        for post in posts.values():
            self.assertIsNone(post["parent_id"])
            self.assertEqual(post["depth"], 0)

    def test_duplicate_post_ids(self) -> None:
        """A post id repeated in the file keeps its first copy and skips the others."""
        summary = self.import_text(disqus_document(
            disqus_thread("10"),
            disqus_post("101", "10", message="first"),
            disqus_post("101", "10", message="second"),
        ))

        self.assertEqual(summary.posts_created, 1)
        self.assertEqual(summary.skipped_total, 1)
        self.assertIn("appears earlier in the file", summary.skipped[0].reason)
        self.assertEqual(self.posts_by_source()["disqus:101"]["raw"], "first")

    def test_ids_beyond_53_bits(self) -> None:
        """Disqus ids above 2**53 are stored exactly and still link replies to parents."""
        big = 2**53 + 1
        summary = self.import_text(disqus_document(
            disqus_thread(str(2**62)),
            disqus_post(str(big), str(2**62)),
            disqus_post(str(big + 1), str(2**62), parent=str(big)),
        ))
        posts = self.posts_by_source()

        self.assertEqual(summary.posts_created, 2)
        self.assertIn(f"disqus:{big}", posts)
        self.assertIn(f"disqus:{2**62}", self.threads_by_source())
        self.assertEqual(posts[f"disqus:{big + 1}"]["parent_id"], posts[f"disqus:{big}"]["id"])

    def test_new_ids_carry_the_shard(self) -> None:
        """Every new thread and post id comes from the forum's shard."""
        from comments.ids import shard_of

        self.import_path(FIXTURES / "disqus-real-export-2013.xml")
        rows = self.shard_rows("SELECT id FROM {schema}.threads UNION ALL SELECT id FROM {schema}.posts")
        ids = [row[0] for row in rows]

        self.assertEqual(len(ids), 88)
        self.assertEqual({shard_of(item) for item in ids}, {self.forum.shard})


class AuthorTests(ShardTestCase):
    """Guests stay guests, and registered authors are linked to accounts."""

    def accounts(self) -> dict[str, tuple[int, str, str | None]]:
        assert self.database.users
        with blocking_connection(self.database.users) as users, users.cursor() as cursor:
            cursor.execute("SELECT username, id, display_name, email FROM users.accounts")
            return {row[0]: (row[1], row[2], row[3]) for row in cursor.fetchall()}

    def test_guests_never_merged(self) -> None:
        """Guests with the same name and e-mail stay separate guests without an account."""
        summary = self.import_text(disqus_document(
            disqus_thread("10"),
            disqus_post("101", "10", name="Sam", email="sam@example.org"),
            disqus_post("102", "10", name="Sam", email="sam@example.org"),
        ))
        posts = self.posts_by_source()

        self.assertEqual(summary.accounts_linked, 0)
        self.assertEqual(self.accounts(), {})
        self.assertIsNone(posts["disqus:101"]["author_user_id"])
        self.assertIsNone(posts["disqus:102"]["author_user_id"])
        self.assertEqual(posts["disqus:102"]["author_email"], "sam@example.org")

    def test_registered_authors_linked(self) -> None:
        """Posts of one username share one new account, and an existing account is linked unchanged."""
        assert self.database.users
        with blocking_connection(self.database.users) as users, users, users.cursor() as cursor:
            cursor.execute(
                "INSERT INTO users.accounts (username, display_name, email) VALUES ('kim', 'Kim Local', NULL)"
            )
        summary = self.import_text(disqus_document(
            disqus_thread("10"),
            disqus_post("101", "10", name="Alex A.", email="alex@example.org", username="alex"),
            disqus_post("102", "10", name="Alex B.", username="alex"),
            disqus_post("103", "10", name="Kim Imported", username="kim"),
        ))
        posts = self.posts_by_source()
        accounts = self.accounts()

        self.assertEqual(summary.accounts_linked, 2)
        self.assertEqual(summary.accounts_created, 1)
        self.assertEqual(accounts["alex"][1:], ("Alex A.", "alex@example.org"))
        self.assertEqual(accounts["kim"][1:], ("Kim Local", None))
        self.assertEqual(posts["disqus:101"]["author_user_id"], accounts["alex"][0])
        self.assertEqual(posts["disqus:102"]["author_user_id"], accounts["alex"][0])
        self.assertEqual(posts["disqus:103"]["author_user_id"], accounts["kim"][0])
        self.assertEqual(posts["disqus:102"]["author_name"], "Alex B.")


class PingbackTests(ShardTestCase):
    """Pingbacks and trackbacks are stored with their kind and kept out of the comment count."""

    def test_pingbacks_kept_apart(self) -> None:
        """Kinds are stored, and threads.posts counts the approved comment only."""
        summary = self.import_text(wxr_document(
            "<item><title>Post</title><link>https://example.org/post/</link><wp:post_id>7</wp:post_id>"
            + wxr_comment("1")
            + wxr_comment("2", comment_type="pingback", comment_content="[...] linked [...]")
            + wxr_comment("3", comment_type="trackback")
            + "</item>"
        ))
        posts = self.posts_by_source()
        threads = self.threads_by_source()

        self.assertEqual(summary.posts_created, 3)
        self.assertEqual(summary.pingbacks, 2)
        self.assertEqual(posts["wxr:7:1"]["kind"], "comment")
        self.assertEqual(posts["wxr:7:2"]["kind"], "pingback")
        self.assertEqual(posts["wxr:7:3"]["kind"], "trackback")
        self.assertEqual(posts["wxr:7:1"]["author_url"], "https://reader.example.org/")
        self.assertEqual(threads["wxr:7"]["posts"], 1)


class WordPressLayoutTests(ShardTestCase):
    """WordPress comments get the paragraphs and line breaks WordPress shows them with."""

    def test_plain_lines_become_paragraphs(self) -> None:
        """Blank lines make paragraphs and other line breaks <br>; the source text and marked-up comments stay."""
        typed = "First line\nsecond line\n\nNew paragraph & more"
        self.import_text(wxr_document(
            "<item><title>Post</title><link>https://example.org/post/</link><wp:post_id>7</wp:post_id>"
            + wxr_comment("1", comment_content=typed.replace("&", "&amp;"))
            + wxr_comment("2", comment_content="&lt;p&gt;Own markup&lt;/p&gt;\nafter")
            + wxr_comment("3", comment_content="One line")
            + "</item>"
        ))
        posts = self.posts_by_source()

        self.assertEqual(posts["wxr:7:1"]["raw"], typed)
        self.assertEqual(posts["wxr:7:1"]["html"],
                         "<p>First line<br>\nsecond line</p>\n<p>New paragraph &amp; more</p>\n")
        self.assertEqual(posts["wxr:7:2"]["html"], "<p>Own markup</p>\nafter")
        self.assertEqual(posts["wxr:7:3"]["html"], "One line")


class CommandLineTests(ShardTestCase):
    """The ``comments import`` command with a configuration file."""

    def write_config(self) -> Path:
        shards = ", ".join(f'"{dsn}"' for dsn in self.database.shards)
        return self.write_file(
            "comments.toml",
            f'[database]\nmeta = "{self.database.meta}"\nusers = "{self.database.users}"\n'
            f"shards = [{shards}]\nlogical_shards = {self.database.logical_shards}\n",
        )

    def test_cli_import(self) -> None:
        """`comments import` exits 0, prints the summary and stores the posts."""
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)

        status = main(["--config", str(self.write_config()), "import", "wxr",
                       str(FIXTURES / "wxr-isso-tests.xml"), "--forum", "site"])

        self.assertEqual(status, 0, err.getvalue())
        self.assertIn("posts: 8 new", out.getvalue())
        self.assertEqual(self.count_rows()[:2], (3, 8))

    def test_cli_import_malformed(self) -> None:
        """`comments import` of a malformed file exits 1 and stores nothing."""
        err = io.StringIO()
        self.patch(sys, "stdout", io.StringIO())
        self.patch(sys, "stderr", err)

        status = main(["--config", str(self.write_config()), "import", "disqus", str(MALFORMED), "--forum", "site"])

        self.assertEqual(status, 1)
        self.assertIn("line 147, column 24", err.getvalue())
        self.assertEqual(self.count_rows(), (0, 0, 0))


class SanitizeMessageTests(SynchronousTestCase):
    """The shortcut for plain-text messages returns what sanitize_html returns."""

    def test_every_code_point(self) -> None:
        """Each code point between two letters, the surrogates excepted, gives sanitize_html's result."""
        for code_point in itertools.chain(range(0xD800), range(0xE000, 0x110000, 7), (0xFFFE, 0xFFFF, 0x10FFFF)):
            text = f"a{chr(code_point)}b"
            self.assertEqual(import_rows.sanitize_message(text), sanitize_html(text), hex(code_point))

    def test_plain_text_comments(self) -> None:
        """Plain comments as WordPress stores them, links and line breaks included, give sanitize_html's result."""
        texts = [
            "",
            " ",
            "Thanks!\n\nSecond paragraph.\n",
            "Windows line ends\r\nhere",
            "See https://example.org/a?b=1&c=2 or www.example.org",
            "mail me at reader@example.org",
            "5 > 3 and 2 < 4",
            "AT&amp;T &copy; &#169;",
            "Café 日本語 🎉 \u00a0non-breaking",
            "  leading and trailing  ",
            "\ttabbed\x0bvertical\x0cform feed",
            "quotes \" and ' and `backticks`",
            "[...] a pingback excerpt [...]",
        ]
        for text in texts:
            self.assertEqual(import_rows.sanitize_message(text), sanitize_html(text), repr(text))


class ProgressTests(SynchronousTestCase):
    """Progress lines on a terminal and in logs."""

    def test_terminal_redraw_rate_limited(self) -> None:
        """On a terminal, updates within 0.1 s of the last one are not drawn, and the line is redrawn in place."""
        now = [0.0]
        stream = io.StringIO()
        reporter = ProgressReporter(stream, verb="importing", interactive=True, total_bytes=1000,
                                    clock=lambda: now[0])
        for step in range(100):
            now[0] = step * 0.01
            reporter.posts_staged(step * 10, 500)
        reporter.finish()
        drawn = stream.getvalue().split("\r")

        self.assertLessEqual(len(drawn) - 1, 10)
        self.assertIn("[##########..........]  50%", drawn[-1])
        self.assertIn("posts/s", drawn[-1])
        self.assertTrue(stream.getvalue().endswith("\n"))

    def test_log_lines_every_ten_seconds(self) -> None:
        """Elsewhere, a plain line is written at most every 10 seconds, without terminal control codes."""
        now = [0.0]
        stream = io.StringIO()
        reporter = ProgressReporter(stream, verb="importing", interactive=False, clock=lambda: now[0])
        for second in range(35):
            now[0] = float(second)
            reporter.posts_staged(second * 1000)
        lines = stream.getvalue().splitlines()

        self.assertEqual(len(lines), 3)
        self.assertEqual(lines[0], "comments: importing: 10,000 posts, 1,000 posts/s")
        self.assertNotIn("\r", stream.getvalue())
        self.assertNotIn("\x1b", stream.getvalue())

