"""Tests for the WordPress export (WXR) parser and writer.

The fixtures are real exports, anonymised: e-mail addresses, IP addresses and
author names were replaced. Each corpus test names the quirk that the file shows.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from comments.porting import (
    ImportFormatError,
    Skipped,
    SourcePost,
    SourceRecord,
    SourceThread,
    detect_format,
    parse_wxr,
    write_wxr,
)

FIXTURES = Path(__file__).parent / "fixtures"
WXR_1_2 = "http://wordpress.org/export/1.2/"


def _parse_fixture(name: str) -> list[SourceRecord]:
    return list(parse_wxr(FIXTURES / name))


def _parse_bytes(data: bytes) -> list[SourceRecord]:
    return list(parse_wxr(io.BytesIO(data)))


def _parse_until_error(
    source: Path | io.BytesIO,
) -> tuple[list[SourceRecord], ImportFormatError]:
    """Parse `source`, which must fail, and return the records yielded before the error."""
    records: list[SourceRecord] = []
    iterator = parse_wxr(source)
    while True:
        try:
            records.append(next(iterator))
        except ImportFormatError as error:
            return records, error
        except StopIteration:
            raise AssertionError("parsing finished without ImportFormatError") from None


def _threads(records: list[SourceRecord]) -> dict[str, SourceThread]:
    return {r.source_id: r for r in records if isinstance(r, SourceThread)}


def _posts(records: list[SourceRecord]) -> dict[str, SourcePost]:
    return {r.source_id: r for r in records if isinstance(r, SourcePost)}


def _skipped(records: list[SourceRecord]) -> list[Skipped]:
    return [r for r in records if isinstance(r, Skipped)]


def _document(items: str, namespace: str = WXR_1_2) -> bytes:
    """Wrap `items` in a WXR channel that declares the ``wp`` namespace `namespace`."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<rss version="2.0" xmlns:wp="{namespace}" xmlns:dsq="http://www.disqus.com/">\n'
        "<channel>\n"
        f"{items}\n"
        "</channel>\n"
        "</rss>\n"
    ).encode()


def _item(post_id: str | None = "10", body: str = "") -> str:
    post_id_element = "" if post_id is None else f"<wp:post_id>{post_id}</wp:post_id>"
    return (
        "<item><title>Post</title><link>https://example.org/post/</link>"
        f"{post_id_element}{body}</item>"
    )


def _comment(comment_id: str | None = "1", **fields: str | None) -> str:
    """Return a ``<wp:comment>`` with valid defaults. A field set to None is left out."""
    values: dict[str, str | None] = {
        "comment_id": comment_id,
        "comment_author": "Commenter",
        "comment_date_gmt": "2020-01-02 03:04:05",
        "comment_content": "Hello",
        "comment_approved": "1",
        "comment_type": "",
        "comment_parent": "0",
        "comment_user_id": "0",
    }
    values.update(fields)
    children = "".join(
        f"<wp:{name}>{value}</wp:{name}>"
        for name, value in values.items()
        if value is not None
    )
    return f"<wp:comment>{children}</wp:comment>"


def _sample_thread(source_id: str = "10", **changes: object) -> SourceThread:
    values: dict[str, object] = {
        "source_id": source_id,
        "identifier": None,
        "url": "https://example.org/post/",
        "title": "Post",
        "created_at": datetime(2020, 1, 1, 12, 0, tzinfo=UTC),
        "closed": False,
        "deleted": False,
        "line": 0,
    }
    values.update(changes)
    return SourceThread(**values)  # type: ignore[arg-type]


def _sample_post(source_id: str = "10:1", **changes: object) -> SourcePost:
    values: dict[str, object] = {
        "source_id": source_id,
        "thread_source_id": "10",
        "parent_source_id": None,
        "message": "<p>Hello</p>",
        "author_name": "Commenter",
        "author_email": "user@example.org",
        "author_username": None,
        "author_is_guest": True,
        "author_url": "https://example.org/~commenter",
        "ip": "192.0.2.1",
        "created_at": datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC),
        "state": "approved",
        "kind": "comment",
        "line": 0,
    }
    values.update(changes)
    return SourcePost(**values)  # type: ignore[arg-type]


def _write(threads_with_posts: list[tuple[SourceThread, list[SourcePost]]]) -> bytes:
    out = io.BytesIO()
    write_wxr(out, "Example site", "https://example.org/", threads_with_posts)
    return out.getvalue()


def _round_trip(thread: SourceThread, posts: list[SourcePost]) -> list[SourceRecord]:
    return _parse_bytes(_write([(thread, posts)]))


class WxrCorpusTests(SynchronousTestCase):
    """Quirks of real WordPress exports and of Disqus's import dialect."""

    def test_isso_repeated_comment_id(self) -> None:
        """Comment id 11 appears in two items and gives two distinct source ids."""
        posts = _posts(_parse_fixture("wxr-isso-tests.xml"))

        self.assertIn("18:11", posts)
        self.assertIn("http://example.tld/?p=4:11", posts)
        self.assertEqual(posts["18:11"].author_name, "commenter4")
        self.assertEqual(posts["http://example.tld/?p=4:11"].author_name, "commenter5")

    def test_isso_item_without_post_id(self) -> None:
        """An item without wp:post_id uses its link as thread source id."""
        records = _parse_fixture("wxr-isso-tests.xml")
        threads = _threads(records)
        post = _posts(records)["http://example.tld/?p=4:11"]

        self.assertEqual(
            threads["http://example.tld/?p=4"].url, "http://example.tld/?p=4"
        )
        self.assertEqual(post.thread_source_id, "http://example.tld/?p=4")
        self.assertIsNone(threads["http://example.tld/?p=4"].created_at)

    def test_isso_emails_padded_with_newlines(self) -> None:
        """E-mail addresses followed by a newline and indentation are stripped."""
        posts = _posts(_parse_fixture("wxr-isso-tests.xml"))

        self.assertEqual(posts["18:2"].author_email, "test@example.org")
        self.assertEqual(posts["18:10"].author_email, "multiline@example.org")

    def test_isso_local_and_gmt_dates_disagree(self) -> None:
        """When comment_date and comment_date_gmt differ, the GMT date wins."""
        posts = _posts(_parse_fixture("wxr-isso-tests.xml"))

        self.assertEqual(
            posts["18:10"].created_at, datetime(2022, 6, 6, 2, 13, 14, tzinfo=UTC)
        )
        self.assertEqual(
            posts["http://example.tld/?p=4:11"].created_at,
            datetime(2014, 4, 29, 15, 21, 57, tzinfo=UTC),
        )

    def test_isso_comment_missing_local_date(self) -> None:
        """A comment without comment_date and comment_type is read from the GMT date."""
        post = _posts(_parse_fixture("wxr-isso-tests.xml"))["18:7"]

        self.assertEqual(post.created_at, datetime(2014, 4, 29, 15, 21, 35, tzinfo=UTC))
        self.assertEqual(post.kind, "comment")
        self.assertEqual(post.parent_source_id, "18:6")
        self.assertTrue(post.author_is_guest)

    def test_isso_item_without_comments(self) -> None:
        """An item without comments still yields a thread."""
        thread = _threads(_parse_fixture("wxr-isso-tests.xml"))[
            "http://example.tld/?p=6"
        ]

        self.assertEqual(thread.title, "No comments")
        self.assertIsNone(thread.identifier)

    def test_isso_thread_after_its_comments(self) -> None:
        """An item's thread is yielded after its comments, and its fields are complete."""
        records = _parse_fixture("wxr-isso-tests.xml")
        kinds = [type(r).__name__ for r in records[:8]]
        thread = records[7]

        self.assertEqual(kinds, ["SourcePost"] * 7 + ["SourceThread"])
        assert isinstance(thread, SourceThread)
        self.assertEqual(thread.source_id, "18")
        self.assertEqual(thread.title, "Hello, World\u2026")
        self.assertEqual(thread.line, 13)
        self.assertEqual(
            thread.created_at, datetime(2014, 1, 14, 17, 31, 3, tzinfo=UTC)
        )

    def test_isso_registered_and_guest_authors(self) -> None:
        """comment_user_id 0 makes a guest, and any other user id does not."""
        posts = _posts(_parse_fixture("wxr-isso-tests.xml"))

        self.assertTrue(posts["18:2"].author_is_guest)
        self.assertFalse(posts["18:6"].author_is_guest)
        self.assertIsNone(posts["18:6"].author_username)

    def test_isso_multiline_content(self) -> None:
        """A message with a line break keeps it."""
        post = _posts(_parse_fixture("wxr-isso-tests.xml"))["18:10"]

        self.assertEqual(
            post.message,
            "When you have a comment with multiple lines:\nWordPress exports it like this.",
        )

    def test_crlf_line_endings(self) -> None:
        """CRLF line endings leave no carriage return in values, and lines still count."""
        records = _parse_fixture("wxr-1.1-crlf.xml")
        threads = _threads(records)
        post = _posts(records)["1:1"]

        self.assertEqual(threads["1"].title, "Hello world!")
        self.assertEqual(threads["1"].line, 54)
        self.assertEqual(post.line, 78)
        self.assertNotIn("\r", post.message)
        self.assertEqual(post.author_url, "http://wordpress.org/")

    def test_crlf_entity_literal_in_cdata(self) -> None:
        """An entity inside CDATA stays literal text, as WordPress exported it."""
        post = _posts(_parse_fixture("wxr-1.1-crlf.xml"))["1:1"]

        self.assertIn("view the post&#039;s comments", post.message)
        self.assertTrue(post.message.startswith("Hi, this is a comment.<br />"))

    def test_crlf_empty_email_and_ip(self) -> None:
        """Empty e-mail and IP elements become None."""
        post = _posts(_parse_fixture("wxr-1.1-crlf.xml"))["1:1"]

        self.assertIsNone(post.author_email)
        self.assertIsNone(post.ip)
        self.assertTrue(post.author_is_guest)

    def test_crlf_page_without_comments(self) -> None:
        """A page item without comments is a thread, and authors and terms are ignored."""
        records = _parse_fixture("wxr-1.1-crlf.xml")

        self.assertEqual(list(_threads(records)), ["1", "2"])
        self.assertEqual(_threads(records)["2"].url, "http://localhost/?page_id=2")
        self.assertEqual(len(records), 3)

    def test_notes_skipped(self) -> None:
        """Editor notes are skipped with the reason, and the real comment is kept."""
        records = _parse_fixture("wxr-1.2-note-comments.xml")
        skipped = _skipped(records)

        self.assertEqual([s.source_id for s in skipped], ["10:2", "10:3"])
        self.assertIn("editor note, not a public comment", skipped[0].reason)
        self.assertEqual(skipped[0].line, 70)
        self.assertEqual(list(_posts(records)), ["10:4"])

    def test_notes_cdata_wrapped_values(self) -> None:
        """Values that are all wrapped in CDATA are read like plain ones."""
        records = _parse_fixture("wxr-1.2-note-comments.xml")
        post = _posts(records)["10:4"]
        thread = _threads(records)["10"]

        self.assertEqual(post.state, "approved")
        self.assertEqual(post.kind, "comment")
        self.assertEqual(post.ip, "127.0.0.1")
        self.assertEqual(post.created_at, datetime(2026, 3, 24, 10, 38, 26, tzinfo=UTC))
        self.assertEqual(thread.title, "Page with notes and comments")
        self.assertEqual(
            thread.created_at, datetime(2026, 3, 24, 10, 38, 9, tzinfo=UTC)
        )

    def test_notes_author_url_with_port(self) -> None:
        """An author URL with a port is kept as exported."""
        post = _posts(_parse_fixture("wxr-1.2-note-comments.xml"))["10:4"]

        self.assertEqual(post.author_url, "http://127.0.0.1:34717")

    def test_disqus_import_dialect(self) -> None:
        """Disqus's import dialect gives the identifier from dsq:thread_identifier."""
        records = _parse_fixture("disqus-import-docs-sample.xml")
        thread = _threads(records)["disqus_identifier"]

        self.assertEqual(thread.identifier, "disqus_identifier")
        self.assertEqual(thread.url, "http://foo.com/example")
        self.assertEqual(thread.title, "Foo bar")
        self.assertEqual(
            thread.created_at, datetime(2010, 9, 20, 9, 13, 44, tzinfo=UTC)
        )

    def test_disqus_import_comment(self) -> None:
        """A comment with only a GMT date and no type or user id is a guest comment."""
        post = _posts(_parse_fixture("disqus-import-docs-sample.xml"))[
            "disqus_identifier:65"
        ]

        self.assertEqual(post.thread_source_id, "disqus_identifier")
        self.assertEqual(post.created_at, datetime(2010, 9, 20, 13, 19, 10, tzinfo=UTC))
        self.assertEqual(post.kind, "comment")
        self.assertTrue(post.author_is_guest)
        self.assertEqual(post.author_url, "http://www.foo.bar/")
        self.assertEqual(post.message, "Hello world")

    def test_detect_format_wxr_fixtures(self) -> None:
        """Every WXR fixture and the Disqus import dialect are detected as WXR."""
        for name in (
            "wxr-isso-tests.xml",
            "wxr-1.1-crlf.xml",
            "wxr-1.2-note-comments.xml",
            "disqus-import-docs-sample.xml",
        ):
            self.assertEqual(detect_format(FIXTURES / name), "wxr", name)


class WxrItemRuleTests(SynchronousTestCase):
    """Rules for single items and comments, on small documents."""

    def test_https_namespace(self) -> None:
        """The wp namespace written with https is accepted."""
        records = _parse_bytes(
            _document(
                _item(body=_comment()), namespace="https://wordpress.org/export/1.2/"
            )
        )

        self.assertIn("10:1", _posts(records))

    def test_comment_states(self) -> None:
        """comment_approved maps to states, and an unknown value skips the comment."""
        cases = [
            ("1", "approved"),
            ("0", "pending"),
            ("spam", "spam"),
            ("trash", "deleted"),
            ("post-trashed", "deleted"),
        ]
        for value, expected in cases:
            records = _parse_bytes(
                _document(_item(body=_comment(comment_approved=value)))
            )
            self.assertEqual(_posts(records)["10:1"].state, expected, value)

        records = _parse_bytes(
            _document(_item(body=_comment(comment_approved="maybe")))
        )
        self.assertIn("'maybe'", _skipped(records)[0].reason)
        self.assertEqual(_skipped(records)[0].source_id, "10:1")

    def test_comment_kinds(self) -> None:
        """Empty and known comment types map to kinds, and others are skipped by name."""
        cases = [
            ("", "comment"),
            ("comment", "comment"),
            ("pingback", "pingback"),
            ("Trackback", "trackback"),
        ]
        for value, expected in cases:
            records = _parse_bytes(_document(_item(body=_comment(comment_type=value))))
            self.assertEqual(_posts(records)["10:1"].kind, expected, value)

        records = _parse_bytes(_document(_item(body=_comment(comment_type="review"))))
        self.assertEqual(
            _skipped(records)[0].reason,
            "The comment type 'review' is not a public comment, pingback or trackback.",
        )

    def test_zero_gmt_date_falls_back(self) -> None:
        """A GMT date of zeros falls back to comment_date, read as UTC."""
        comment = _comment(
            comment_date_gmt="0000-00-00 00:00:00", comment_date="2011-05-06 07:08:09"
        )
        post = _posts(_parse_bytes(_document(_item(body=comment))))["10:1"]

        self.assertEqual(post.created_at, datetime(2011, 5, 6, 7, 8, 9, tzinfo=UTC))

    def test_no_valid_date_skipped(self) -> None:
        """A comment without any valid date is skipped, naming both values."""
        comment = _comment(comment_date_gmt="0000-00-00 00:00:00")
        skipped = _skipped(_parse_bytes(_document(_item(body=comment))))[0]

        self.assertIn("comment_date_gmt is '0000-00-00 00:00:00'", skipped.reason)
        self.assertIn("comment_date is missing", skipped.reason)

    def test_missing_and_invalid_comment_ids(self) -> None:
        """A comment without an id or with a non-decimal id or parent is skipped."""
        records = _parse_bytes(
            _document(
                _item(
                    body=_comment(None)
                    + _comment("x7")
                    + _comment("8", comment_parent="seven")
                )
            )
        )
        skipped = _skipped(records)

        self.assertEqual(skipped[0].reason, "The comment has no wp:comment_id.")
        self.assertIsNone(skipped[0].source_id)
        self.assertIn("'x7' is not a decimal number", skipped[1].reason)
        self.assertEqual(skipped[1].source_id, "10:x7")
        self.assertIn("wp:comment_parent 'seven'", skipped[2].reason)

    def test_ipv4_mapped_address(self) -> None:
        """An IPv4-mapped IPv6 address becomes the IPv4 address.

        The corpus file had such addresses, but anonymising replaced them.
        """
        body = _comment("1", comment_author_IP="::ffff:192.0.2.9") + _comment(
            "2", comment_author_IP=" ::FFFF:c000:20a "
        )
        posts = _posts(_parse_bytes(_document(_item(body=body))))

        self.assertEqual(posts["10:1"].ip, "192.0.2.9")
        self.assertEqual(posts["10:2"].ip, "192.0.2.10")

    def test_ids_beyond_53_bits(self) -> None:
        """Comment ids too large for a double stay exact."""
        big = str(2**64 + 11)
        records = _parse_bytes(
            _document(_item(body=_comment(big, comment_parent=str(2**63))))
        )
        post = _posts(records)[f"10:{big}"]

        self.assertEqual(post.parent_source_id, "10:9223372036854775808")

    def test_item_without_any_key(self) -> None:
        """An item without post id, identifier and link is skipped with its comments."""
        records = _parse_bytes(
            _document(
                "<item><title>T</title>" + _comment("1") + _comment("2") + "</item>"
            )
        )

        self.assertEqual(len(records), 3)
        self.assertEqual([s.source_id for s in _skipped(records)], ["1", "2", None])
        self.assertIn(
            "belongs to an item that has no wp:post_id", _skipped(records)[0].reason
        )

    def test_comments_before_post_id(self) -> None:
        """Comments that come before the post id still get the post id as prefix."""
        records = _parse_bytes(
            _document(
                "<item><title>T</title>"
                + _comment("1")
                + _comment("2", comment_parent="1")
                + "<wp:post_id>44</wp:post_id></item>"
            )
        )
        posts = _posts(records)

        self.assertEqual(list(posts), ["44:1", "44:2"])
        self.assertEqual(posts["44:2"].parent_source_id, "44:1")
        self.assertEqual(list(_threads(records)), ["44"])

    def test_thread_closed_and_trashed(self) -> None:
        """comment_status closed closes the thread, and status trash deletes it."""
        body = (
            "<wp:comment_status>closed</wp:comment_status><wp:status>trash</wp:status>"
        )
        thread = _threads(_parse_bytes(_document(_item(body=body))))["10"]

        self.assertTrue(thread.closed)
        self.assertTrue(thread.deleted)

    def test_leading_blank_lines(self) -> None:
        """Blank lines before the declaration are dropped, and line numbers still match."""
        records = _parse_bytes(b"\n" + _document(_item(body=_comment())))

        self.assertIn("stray byte(s)", _skipped(records)[0].reason)
        self.assertEqual(_posts(records)["10:1"].line, 5)

    def test_rss_feed_rejected(self) -> None:
        """An RSS feed without the WordPress namespace is not a WXR file."""
        data = (
            b'<rss version="2.0"><channel><item><title>T</title></item></channel></rss>'
        )
        with self.assertRaises(ImportFormatError) as caught:
            _parse_bytes(data)

        message = str(caught.exception)
        self.assertIn("is an RSS feed, not a WordPress export (WXR)", message)
        self.assertIn("Tools > Export", message)
        self.assertEqual(caught.exception.line, 1)

    def test_detect_format_rss_feed(self) -> None:
        """detect_format rejects an RSS feed with the same advice."""
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "feed.xml"
            path.write_bytes(
                b'<?xml version="1.0"?>\n<rss version="2.0"><channel/></rss>'
            )
            with self.assertRaises(ImportFormatError) as caught:
                detect_format(path)

        self.assertIn("is an RSS feed", str(caught.exception))
        self.assertEqual(caught.exception.line, 2)

    def test_disqus_export_rejected(self) -> None:
        """A Disqus export given to the WXR parser names the right format."""
        with self.assertRaises(ImportFormatError) as caught:
            list(parse_wxr(FIXTURES / "disqus-isso-tests.xml"))

        self.assertIn(
            "is a Disqus export, not a WordPress export", str(caught.exception)
        )

    def test_syntax_error_position(self) -> None:
        """Ill-formed XML raises with line and column, after the comments before it."""
        data = _document(
            _item(body=_comment("1") + "<wp:comment><wp:comment_id>2</wp:comment>")
        )
        records, error = _parse_until_error(io.BytesIO(data))

        self.assertEqual(list(_posts(records)), ["10:1"])
        self.assertEqual(error.line, 4)
        self.assertIsNotNone(error.column)


class WxrWriterTests(SynchronousTestCase):
    """write_wxr output read back by parse_wxr."""

    def test_round_trip_tricky_values(self) -> None:
        """Each tricky value survives a write and a parse unchanged."""
        big = str(2**64 - 1)
        cases: list[tuple[str, SourceThread, list[SourcePost]]] = [
            (
                "unicode",
                _sample_thread(title="Grüße 🌍"),
                [_sample_post(message="评论 😀")],
            ),
            (
                "cdata end",
                _sample_thread(title="]]>"),
                [_sample_post(message="a]]>b]]>")],
            ),
            (
                "entities",
                _sample_thread(),
                [_sample_post(message="&#039; &amp; <br />")],
            ),
            ("carriage return", _sample_thread(), [_sample_post(message="a\r\nb")]),
            (
                "64-bit ids",
                _sample_thread(big),
                [
                    _sample_post(f"{big}:{big}", thread_source_id=big),
                    _sample_post(
                        f"{big}:5",
                        thread_source_id=big,
                        parent_source_id=f"{big}:{big}",
                    ),
                ],
            ),
            (
                "identifier with no-break space",
                _sample_thread(identifier="a\xa0b c"),
                [],
            ),
            (
                "empty strings",
                _sample_thread(title="", created_at=None),
                [
                    _sample_post(
                        author_email=None, author_url=None, ip=None, author_name=""
                    ),
                ],
            ),
            ("closed and deleted", _sample_thread(closed=True, deleted=True), []),
            (
                "kinds and states",
                _sample_thread(),
                [
                    _sample_post("10:1", kind="pingback", state="pending"),
                    _sample_post("10:2", kind="trackback", state="spam"),
                    _sample_post("10:3", state="deleted"),
                ],
            ),
        ]
        for name, thread, posts in cases:
            records = _round_trip(thread, posts)
            self.assertEqual(records, [*posts, thread], name)

    def test_control_characters_dropped(self) -> None:
        """Characters XML cannot contain are dropped from every text field."""
        post = _sample_post(message="a\x00b\x08c", author_name="N\x1bame")
        records = _round_trip(_sample_thread(title="T\x0ci"), [post])

        self.assertEqual(
            records,
            [
                _sample_post(message="abc", author_name="Name"),
                _sample_thread(title="Ti"),
            ],
        )

    def test_plain_decimal_post_ids(self) -> None:
        """Plain decimal post ids are written as comment ids and read back prefixed."""
        post = _sample_post("7", parent_source_id="6")
        records = _round_trip(_sample_thread(), [post])
        read = _posts(records)["10:7"]

        self.assertEqual(read.parent_source_id, "10:6")

    def test_lossy_author_fields(self) -> None:
        """Every author is written as a WordPress guest, so username and user status are lost."""
        post = _sample_post(author_username="commenter", author_is_guest=False)
        read = _posts(_round_trip(_sample_thread(), [post]))["10:1"]

        self.assertIsNone(read.author_username)
        self.assertTrue(read.author_is_guest)

    def test_non_decimal_thread_id_rejected(self) -> None:
        """A thread id that cannot be a wp:post_id raises ValueError."""
        with self.assertRaises(ValueError) as caught:
            _write([(_sample_thread("disqus_identifier"), [])])

        self.assertIn("'disqus_identifier'", str(caught.exception))

    def test_foreign_post_rejected(self) -> None:
        """A post whose thread_source_id is another thread's raises ValueError."""
        with self.assertRaises(ValueError) as caught:
            _write(
                [(_sample_thread("10"), [_sample_post("11:1", thread_source_id="11")])]
            )

        self.assertIn("thread_source_id is '11'", str(caught.exception))

    def test_invalid_comment_id_rejected(self) -> None:
        """A post id that is neither decimal nor prefixed by its thread raises ValueError."""
        with self.assertRaises(ValueError):
            _write([(_sample_thread("10"), [_sample_post("11:1")])])

    def test_written_file_detected(self) -> None:
        """A written file, even without threads, is detected as WXR and parses."""
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "empty.xml"
            path.write_bytes(_write([]))
            self.assertEqual(detect_format(path), "wxr")
            self.assertEqual(list(parse_wxr(path)), [])


def _generated_comments(count: int) -> Iterator[SourcePost]:
    for number in range(1, count + 1):
        yield _sample_post(
            f"10:{number}",
            message=f"<p>Generated comment number {number}, long enough to matter.</p>",
        )


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class WxrStreamingTests(SynchronousTestCase):
    """Memory use of parsing does not grow with the comments of one post."""

    def _peak_resident_growth(self, directory: str, count: int) -> int:
        path = Path(directory) / f"export-{count}.xml"
        with open(path, "wb") as out:
            # write_wxr takes a list per thread, so the posts are built in memory here.
            posts = list(_generated_comments(count))
            write_wxr(out, "Site", "https://example.org/", [(_sample_thread(), posts)])
            del posts

        baseline = _resident_bytes()
        peak = baseline
        for number, _record in enumerate(parse_wxr(path), start=1):
            if number % 1000 == 0:
                peak = max(peak, _resident_bytes())
        return peak - baseline

    def test_comments_released_while_parsing(self) -> None:
        """Memory growth for one post with 25k comments stays within 16 MiB of 5k.

        Without releasing each comment the 25k-comment parse keeps every comment
        element in the tree until the item ends. The 16 MiB margin absorbs allocator
        noise.
        """
        if not sys.platform.startswith("linux"):
            raise SkipTest("reads resident memory from /proc/self/statm")

        with tempfile.TemporaryDirectory() as directory:
            small = self._peak_resident_growth(directory, 5_000)
            large = self._peak_resident_growth(directory, 25_000)

        self.assertLess(large, small + 16 * 1024 * 1024)
