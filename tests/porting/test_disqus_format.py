"""Tests for the Disqus export parser and writer, and for the shared file checks.

The fixtures are real exports, anonymised: e-mail addresses, IP addresses and
author names were replaced. Each corpus test names the quirk that the file shows.
"""

from __future__ import annotations

import io
import ipaddress
import itertools
import os
import sys
import tempfile
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from comments.porting import (
    ImportFormatError,
    Skipped,
    SourcePost,
    SourceRecord,
    SourceThread,
    detect_format,
    parse_disqus,
    write_disqus,
)
from comments.porting.records import normalise_ip

FIXTURES = Path(__file__).parent / "fixtures"
MALFORMED = FIXTURES / "disqus-malformed-deleted-thread.xml"


def _parse_fixture(name: str) -> list[SourceRecord]:
    return list(parse_disqus(FIXTURES / name))


def _parse_bytes(data: bytes) -> list[SourceRecord]:
    return list(parse_disqus(io.BytesIO(data)))


def _parse_until_error(
    source: Path | io.BytesIO,
) -> tuple[list[SourceRecord], ImportFormatError]:
    """Parse `source`, which must fail, and return the records yielded before the error."""
    records: list[SourceRecord] = []
    iterator = parse_disqus(source)
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


def _document(body: str) -> bytes:
    """Wrap `body` in a Disqus export root element."""
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<disqus xmlns="http://disqus.com"'
        ' xmlns:dsq="http://disqus.com/disqus-internals">\n'
        f"{body}\n"
        "</disqus>\n"
    ).encode()


def _post_element(
    post_id: str = "100",
    *,
    thread_id: str = "10",
    created_at: str = "2020-01-02T03:04:05Z",
    fields: str = "",
    author: str = "<name>Commenter</name><username>commenter</username>",
) -> str:
    return (
        f'<post dsq:id="{post_id}"><message>Hello</message>'
        f"<createdAt>{created_at}</createdAt>{fields}"
        f'<author>{author}</author><thread dsq:id="{thread_id}"/></post>'
    )


def _sample_thread(source_id: str = "10", **changes: object) -> SourceThread:
    values: dict[str, object] = {
        "source_id": source_id,
        "identifier": "page-1",
        "url": "https://example.org/page-1/",
        "title": "Page 1",
        "created_at": datetime(2020, 1, 1, 12, 0, tzinfo=UTC),
        "closed": False,
        "deleted": False,
        "line": 0,
    }
    values.update(changes)
    return SourceThread(**values)  # type: ignore[arg-type]


def _sample_post(source_id: str = "100", **changes: object) -> SourcePost:
    values: dict[str, object] = {
        "source_id": source_id,
        "thread_source_id": "10",
        "parent_source_id": None,
        "message": "<p>Hello</p>",
        "author_name": "Commenter",
        "author_email": "user@example.org",
        "author_username": "commenter",
        "author_is_guest": False,
        "author_url": None,
        "ip": "192.0.2.1",
        "created_at": datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC),
        "state": "approved",
        "kind": "comment",
        "line": 0,
    }
    values.update(changes)
    return SourcePost(**values)  # type: ignore[arg-type]


def _round_trip(
    threads: list[SourceThread], posts: list[SourcePost]
) -> list[SourceRecord]:
    out = io.BytesIO()
    write_disqus(out, threads, posts, forum="example")
    out.seek(0)
    return list(parse_disqus(out))


class DisqusCorpusTests(SynchronousTestCase):
    """Quirks of real Disqus exports."""

    def test_isso_orphan_post(self) -> None:
        """A post whose thread is not in the file is still yielded with its thread id."""
        records = _parse_fixture("disqus-isso-tests.xml")
        threads = _threads(records)
        orphan = _posts(records)["6"]

        self.assertEqual(orphan.thread_source_id, "1337")
        self.assertNotIn("1337", threads)
        self.assertEqual(_skipped(records), [])

    def test_isso_reply_to_deleted_post(self) -> None:
        """A deleted post keeps its empty message, and a reply still names it as parent."""
        posts = _posts(_parse_fixture("disqus-isso-tests.xml"))

        self.assertEqual(posts["9"].state, "deleted")
        self.assertEqual(posts["9"].message, "")
        self.assertEqual(posts["11"].parent_source_id, "9")
        self.assertEqual(posts["11"].state, "approved")

    def test_isso_empty_thread(self) -> None:
        """A thread with nothing but ``<id/>`` gets defaults instead of being skipped."""
        thread = _threads(_parse_fixture("disqus-isso-tests.xml"))["3"]

        self.assertIsNone(thread.identifier)
        self.assertEqual(thread.url, "")
        self.assertEqual(thread.title, "")
        self.assertIsNone(thread.created_at)
        self.assertFalse(thread.closed)
        self.assertFalse(thread.deleted)
        self.assertEqual(thread.line, 28)

    def test_isso_thread_between_posts(self) -> None:
        """Records come in file order, so a thread after posts comes after them."""
        records = _parse_fixture("disqus-isso-tests.xml")
        order = [
            (type(r).__name__, r.source_id)
            for r in records
            if isinstance(r, (SourceThread, SourcePost))
        ]

        self.assertEqual(
            order,
            [
                ("SourceThread", "2"),
                ("SourceThread", "3"),
                ("SourcePost", "4"),
                ("SourcePost", "5"),
                ("SourcePost", "6"),
                ("SourceThread", "7"),
                ("SourcePost", "8"),
                ("SourcePost", "9"),
                ("SourcePost", "11"),
            ],
        )
        lines = [r.line for r in records]
        self.assertEqual(lines, sorted(lines))

    def test_isso_posts_out_of_time_order(self) -> None:
        """Posts keep file order even where their dates run backwards."""
        posts = list(_posts(_parse_fixture("disqus-isso-tests.xml")).values())

        self.assertEqual([p.source_id for p in posts[:3]], ["4", "5", "6"])
        self.assertGreater(posts[1].created_at, posts[2].created_at)
        self.assertEqual(
            posts[0].created_at, datetime(2013, 10, 10, 19, 20, 29, tzinfo=UTC)
        )

    def test_isso_plain_and_cdata_messages(self) -> None:
        """A plain message and a CDATA message are both read as the exported text."""
        posts = _posts(_parse_fixture("disqus-isso-tests.xml"))

        self.assertEqual(posts["4"].message, "...")
        self.assertEqual(posts["5"].message, "<p>Hello, World.</p>")

    def test_isso_xml_comments_between_elements(self) -> None:
        """XML comments between elements produce no records and no skips."""
        records = _parse_fixture("disqus-isso-tests.xml")

        self.assertEqual(len(_threads(records)), 3)
        self.assertEqual(len(_posts(records)), 6)
        self.assertEqual(len(records), 9)

    def test_isso_guest_authors(self) -> None:
        """isAnonymous true or a missing username makes the author a guest."""
        posts = _posts(_parse_fixture("disqus-isso-tests.xml"))

        self.assertTrue(posts["4"].author_is_guest)
        self.assertIsNone(posts["4"].author_username)
        self.assertFalse(posts["5"].author_is_guest)
        self.assertEqual(posts["5"].author_username, "Commenter 3")

    def test_schnack_four_level_reply_chain(self) -> None:
        """Each reply in a four-level chain names the post above it as parent."""
        posts = _posts(_parse_fixture("disqus-schnack-test.xml"))

        self.assertIsNone(posts["1664694813"].parent_source_id)
        self.assertEqual(posts["1664831530"].parent_source_id, "1664694813")
        self.assertEqual(posts["1690922142"].parent_source_id, "1664831530")
        self.assertEqual(posts["1690992879"].parent_source_id, "1690922142")

    def test_schnack_same_timestamp(self) -> None:
        """Two posts with the same timestamp are both kept."""
        posts = _posts(_parse_fixture("disqus-schnack-test.xml"))
        expected = datetime(2014, 11, 1, 15, 6, 24, tzinfo=UTC)

        self.assertEqual(posts["1664694813"].created_at, expected)
        self.assertEqual(posts["1664694824"].created_at, expected)
        self.assertNotEqual(
            posts["1664694813"].thread_source_id, posts["1664694824"].thread_source_id
        )

    def test_schnack_cdata_wrapped_in_whitespace(self) -> None:
        """Whitespace around a CDATA message is stripped, and the HTML inside is kept."""
        posts = _posts(_parse_fixture("disqus-schnack-test.xml"))
        message = posts["1664694813"].message

        self.assertTrue(message.startswith("<p>Hey, wow!</p>"))
        self.assertTrue(message.endswith('title="example">example</a>.</p>'))
        self.assertEqual(
            posts["1664831530"].message, "<p>Hi Moritz,</p><p>thanks for reading! </p>"
        )

    def test_real_export_counts(self) -> None:
        """A real site export yields all 71 threads and 23 posts, 17 of them deleted."""
        records = _parse_fixture("disqus-real-export-2013.xml")
        posts = _posts(records)

        self.assertEqual(len(_threads(records)), 71)
        self.assertEqual(len(posts), 23)
        self.assertEqual(sum(p.state == "deleted" for p in posts.values()), 17)
        self.assertEqual(_skipped(records), [])

    def test_real_export_orphan_posts(self) -> None:
        """Six posts point at threads that are missing from the file."""
        records = _parse_fixture("disqus-real-export-2013.xml")
        threads = _threads(records)
        orphans = [
            p.source_id
            for p in _posts(records).values()
            if p.thread_source_id not in threads
        ]

        self.assertEqual(len(orphans), 6)
        self.assertIn("532736904", orphans)

    def test_real_export_empty_identifiers(self) -> None:
        """Empty ``<id />`` and ``<title />`` become None and an empty title."""
        threads = _threads(_parse_fixture("disqus-real-export-2013.xml"))

        self.assertEqual(sum(t.identifier is None for t in threads.values()), 39)
        self.assertEqual(sum(t.title == "" for t in threads.values()), 22)
        self.assertEqual(threads["1114910418"].title, "{ Do Something... }")

    def test_real_export_development_links(self) -> None:
        """Links to a development server are kept as exported."""
        threads = _threads(_parse_fixture("disqus-real-export-2013.xml"))
        local = [t for t in threads.values() if t.url.startswith("http://localhost")]

        self.assertEqual(len(local), 43)
        self.assertEqual(
            threads["1124667486"].url, "http://localhost:4000/post/2013-03-05-git-flow/"
        )

    def test_real_export_nbsp_identifier(self) -> None:
        """A no-break space inside an identifier is kept."""
        thread = _threads(_parse_fixture("disqus-real-export-2013.xml"))["1052040420"]

        self.assertEqual(thread.identifier, "http://guoyukun.cn/mysql\xa0access_denied")

    def test_real_export_anonymised_email(self) -> None:
        """An address that Disqus replaced with anonymized-N@disqus.com becomes None."""
        post = _posts(_parse_fixture("disqus-real-export-2013.xml"))["959466055"]

        self.assertIsNone(post.author_email)
        self.assertTrue(post.author_is_guest)
        self.assertEqual(post.author_name, "Commenter 5")

    def test_real_export_chinese_text(self) -> None:
        """Chinese text in a CDATA message is decoded as UTF-8."""
        post = _posts(_parse_fixture("disqus-real-export-2013.xml"))["777155036"]

        self.assertEqual(post.message, "<p>评论怎么不好使？</p>")  # noqa: RUF001  # the fixture's own text

    def test_malformed_stray_leading_byte(self) -> None:
        """A stray byte before the XML declaration is dropped and reported first."""
        records, _error = _parse_until_error(MALFORMED)

        first = records[0]
        assert isinstance(first, Skipped)
        self.assertIn("'`'", first.reason)
        self.assertEqual(first.line, 1)
        self.assertIsNone(first.source_id)
        self.assertEqual(_threads(records)["247918464"].line, 10)

    def test_malformed_unquoted_attribute(self) -> None:
        """An unquoted attribute raises with its position, after the records before it."""
        records, error = _parse_until_error(MALFORMED)

        self.assertEqual(error.line, 147)
        self.assertEqual(error.column, 24)
        self.assertIn("not well-formed XML at line 147, column 24", str(error))
        self.assertIn("Fix the file or export it again", str(error))
        self.assertIn("299986073", _posts(records))

    def test_malformed_post_without_id(self) -> None:
        """A post without dsq:id is skipped with the reason, and parsing goes on."""
        records, _error = _parse_until_error(MALFORMED)

        skipped = _skipped(records)[1:]
        self.assertEqual(len(skipped), 1)
        self.assertEqual(skipped[0].reason, "The post has no dsq:id attribute.")
        self.assertEqual(skipped[0].line, 102)
        self.assertIsNone(skipped[0].source_id)
        self.assertEqual(_posts(records)["299986073"].state, "spam")

    def test_malformed_deleted_thread_live_posts(self) -> None:
        """A deleted thread is flagged, and its posts keep their own state."""
        records, _error = _parse_until_error(MALFORMED)
        thread = _threads(records)["247937687"]
        posts = _posts(records)

        self.assertTrue(thread.deleted)
        self.assertTrue(thread.closed)
        self.assertEqual(posts["299619020"].thread_source_id, "247937687")
        self.assertEqual(posts["299619020"].state, "approved")
        self.assertEqual(posts["299744309"].state, "approved")
        self.assertIsNone(posts["299619020"].author_email)

    def test_malformed_bad_id_date_and_flag(self) -> None:
        """With the attribute quoted, the last post is skipped and every problem is named."""
        data = (FIXTURES / "disqus-malformed-deleted-thread.xml").read_bytes()
        repaired = data.replace(b"dsq:id=247937687/>", b'dsq:id="247937687"/>')
        records = _parse_bytes(repaired)
        skipped = _skipped(records)[-1]

        self.assertEqual(skipped.source_id, "x299986073")
        self.assertEqual(skipped.line, 135)
        self.assertIn("dsq:id 'x299986073' is not a decimal number", skipped.reason)
        self.assertIn("'2011-x09-30T22:48:43Z' is not an ISO 8601 date", skipped.reason)
        self.assertIn("isSpam value '123' is neither true nor false", skipped.reason)
        self.assertEqual(len(_posts(records)), 4)


class DisqusItemRuleTests(SynchronousTestCase):
    """Rules for single threads and posts, on small documents."""

    def test_flags_case_insensitive(self) -> None:
        """Boolean flags accept any case and surrounding whitespace."""
        records = _parse_bytes(
            _document(
                _post_element(
                    fields="<isDeleted> TRUE </isDeleted><isSpam>False</isSpam>"
                )
            )
        )

        self.assertEqual(_posts(records)["100"].state, "deleted")

    def test_post_states(self) -> None:
        """isDeleted wins over isSpam, which wins over isApproved false."""
        cases = [
            ("<isDeleted>true</isDeleted><isSpam>true</isSpam>", "deleted"),
            ("<isSpam>true</isSpam><isApproved>false</isApproved>", "spam"),
            ("<isApproved>false</isApproved>", "pending"),
            ("<isApproved>true</isApproved>", "approved"),
            ("", "approved"),
        ]
        for fields, expected in cases:
            post = _posts(_parse_bytes(_document(_post_element(fields=fields))))["100"]
            self.assertEqual(post.state, expected, fields)

    def test_thread_invalid_flag_skipped(self) -> None:
        """A thread with a flag that is neither true nor false is skipped with its id."""
        records = _parse_bytes(
            _document('<thread dsq:id="10"><id>a</id><isClosed>yes</isClosed></thread>')
        )

        self.assertEqual(len(records), 1)
        skipped = records[0]
        assert isinstance(skipped, Skipped)
        self.assertEqual(skipped.source_id, "10")
        self.assertIn("isClosed value 'yes'", skipped.reason)

    def test_thread_identifier_whitespace(self) -> None:
        """Outer spaces and no-break spaces are stripped, inner ones kept."""
        records = _parse_bytes(
            _document(
                '<thread dsq:id="10"><id>\xa0 my page\xa0one \n</id></thread>'
                '<thread dsq:id="11"><id> \xa0 </id></thread>'
            )
        )
        threads = _threads(records)

        self.assertEqual(threads["10"].identifier, "my page\xa0one")
        self.assertIsNone(threads["11"].identifier)

    def test_thread_invalid_date_is_none(self) -> None:
        """A thread with an invalid createdAt is kept with created_at None."""
        records = _parse_bytes(
            _document('<thread dsq:id="10"><createdAt>yesterday</createdAt></thread>')
        )

        self.assertIsNone(_threads(records)["10"].created_at)

    def test_post_without_thread_skipped(self) -> None:
        """A post without a thread reference is skipped."""
        records = _parse_bytes(
            _document(
                '<post dsq:id="100"><message>x</message>'
                "<createdAt>2020-01-01T00:00:00Z</createdAt></post>"
            )
        )

        self.assertEqual(
            records[0], Skipped("The post has no thread reference.", 3, "100")
        )

    def test_post_without_date_skipped(self) -> None:
        """A post without createdAt is skipped, because its date cannot be guessed."""
        records = _parse_bytes(
            _document(
                '<post dsq:id="100"><message>x</message><thread dsq:id="10"/></post>'
            )
        )
        skipped = records[0]

        assert isinstance(skipped, Skipped)
        self.assertEqual(skipped.reason, "The post has no createdAt date.")

    def test_post_date_with_offset(self) -> None:
        """A createdAt with an offset is converted to UTC, and one without is UTC."""
        records = _parse_bytes(
            _document(
                _post_element("100", created_at="2020-01-02T05:04:05+02:00")
                + _post_element("101", created_at="2020-01-02T03:04:05")
            )
        )
        posts = _posts(records)
        expected = datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)

        self.assertEqual(posts["100"].created_at, expected)
        self.assertEqual(posts["100"].created_at.tzinfo, UTC)
        self.assertEqual(posts["101"].created_at, expected)

    def test_ids_beyond_53_bits(self) -> None:
        """Ids too large for a double stay exact strings."""
        big = str(2**63 + 1)
        records = _parse_bytes(
            _document(
                _post_element(big, thread_id=str(2**60 + 3), fields="").replace(
                    "</post>", f'<parent dsq:id="{2**62 + 7}"/></post>'
                )
            )
        )
        post = _posts(records)[big]

        self.assertEqual(post.source_id, "9223372036854775809")
        self.assertEqual(post.thread_source_id, "1152921504606846979")
        self.assertEqual(post.parent_source_id, "4611686018427387911")

    def test_non_ascii_digits_rejected(self) -> None:
        """An id of non-ASCII digits is not a decimal number."""
        records = _parse_bytes(_document(_post_element("١٢٣")))

        self.assertIsInstance(records[0], Skipped)

    def test_missing_email_and_ip_elements(self) -> None:
        """Exports without ``<email>`` and ``<ipAddress>`` give None for both."""
        post = _posts(_parse_bytes(_document(_post_element())))["100"]

        self.assertIsNone(post.author_email)
        self.assertIsNone(post.ip)

    def test_ipv4_mapped_address(self) -> None:
        """An IPv4-mapped IPv6 address becomes the IPv4 address."""
        records = _parse_bytes(
            _document(
                _post_element("100", fields="<ipAddress>::ffff:192.0.2.7</ipAddress>")
                + _post_element("101", fields="<ipAddress>2001:DB8::1</ipAddress>")
                + _post_element("102", fields="<ipAddress>unknown</ipAddress>")
            )
        )
        posts = _posts(records)

        self.assertEqual(posts["100"].ip, "192.0.2.7")
        self.assertEqual(posts["101"].ip, "2001:db8::1")
        self.assertIsNone(posts["102"].ip)

    def test_ip_addresses_as_ipaddress_formats_them(self) -> None:
        """Every address comes out as str(ipaddress.ip_address()) gives it, or None when invalid."""
        octets = ["0", "00", "01", "7", "09", "10", "99", "100", "199", "200", "249", "250", "255", "256", "300",
                  "1000", "", " 1", "+1", "\N{ARABIC-INDIC DIGIT ONE}"]
        values = [".".join((octet, "2", "0", "1")) for octet in octets]
        values += [".".join(("192", "0", "2", octet)) for octet in octets]
        values += [".".join(("10", octet, octet, "1")) for octet in octets]
        values += ["1.2.3", "1.2.3.4.5", "1..2.3", " 10.0.0.1 ", "10.0.0.1\n", "::1", "::ffff:10.0.0.1",
                   "2001:DB8::1", "fe80::1%eth0", "0x1.2.3.4", "1.2.3.4/32"]

        for value in values:
            expected: str | None
            try:
                address = ipaddress.ip_address(value.strip())
            except ValueError:
                expected = None
            else:
                mapped = getattr(address, "ipv4_mapped", None)
                expected = str(mapped if mapped is not None else address)
            self.assertEqual(normalise_ip(value), expected, repr(value))

    def test_every_dotted_quad_octet(self) -> None:
        """Each octet from 0 to 999, with and without leading zeros, is accepted exactly when ipaddress accepts it."""
        for number, width in itertools.product(range(1000), (1, 2, 3)):
            octet = str(number).zfill(width)
            value = f"10.{octet}.0.1"
            try:
                expected: str | None = str(ipaddress.IPv4Address(value))
            except ValueError:
                expected = None
            self.assertEqual(normalise_ip(value), expected, value)

    def test_repeated_child_first_wins(self) -> None:
        """When a post repeats a field, the first one counts, as findtext() would read it."""
        post_xml = _post_element(fields="<isSpam>false</isSpam><isSpam>true</isSpam>").replace(
            "<message>Hello</message>", "<message>First</message><message>Second</message>"
        ).replace("<name>Commenter</name>", "<name>Kim</name><name>Lee</name>")
        post = _posts(_parse_bytes(_document(post_xml)))["100"]

        self.assertEqual(post.message, "First")
        self.assertEqual(post.author_name, "Kim")
        self.assertEqual(post.state, "approved")

    def test_empty_flag_element_invalid(self) -> None:
        """An empty flag element is present but neither true nor false, so the post is skipped."""
        skipped = _parse_bytes(_document(_post_element(fields="<isDeleted/>")))[0]

        assert isinstance(skipped, Skipped)
        self.assertEqual(skipped.reason, "The isDeleted value '' is neither true nor false.")

    def test_percent_encoded_links_kept(self) -> None:
        """Percent-encoded and double-encoded links and identifiers are not decoded."""
        records = _parse_bytes(
            _document(
                '<thread dsq:id="10"><id>page%20one</id>'
                "<link>https://example.org/caf%25C3%25A9/?a=1&amp;b=2</link></thread>"
            )
        )
        thread = _threads(records)["10"]

        self.assertEqual(thread.identifier, "page%20one")
        self.assertEqual(thread.url, "https://example.org/caf%25C3%25A9/?a=1&b=2")

    def test_reply_chain_ten_levels(self) -> None:
        """Each post of a ten-level reply chain keeps its parent id."""
        body = _post_element("1")
        for level in range(2, 11):
            body += _post_element(str(level)).replace(
                "</post>", f'<parent dsq:id="{level - 1}"/></post>'
            )
        posts = _posts(_parse_bytes(_document(body)))

        self.assertEqual(len(posts), 10)
        for level in range(2, 11):
            self.assertEqual(posts[str(level)].parent_source_id, str(level - 1))

    def test_xml_comment_inside_message(self) -> None:
        """An XML comment inside a message is dropped and the text around it joined."""
        post_xml = _post_element().replace(
            "<message>Hello</message>", "<message>Hel<!-- note -->lo</message>"
        )
        post = _posts(_parse_bytes(_document(post_xml)))["100"]

        self.assertEqual(post.message, "Hello")

    def test_category_ignored(self) -> None:
        """Categories produce no records."""
        records = _parse_bytes(
            _document(
                '<category dsq:id="1"><forum>f</forum><title>T</title></category>'
            )
        )

        self.assertEqual(records, [])


class FileCheckTests(SynchronousTestCase):
    """Checks on the file as a whole: format, syntax, encoding and entities."""

    def test_detect_format_disqus_fixtures(self) -> None:
        """Every Disqus fixture, even the ill-formed one, is detected from its start."""
        for name in (
            "disqus-isso-tests.xml",
            "disqus-schnack-test.xml",
            "disqus-real-export-2013.xml",
            "disqus-malformed-deleted-thread.xml",
        ):
            self.assertEqual(detect_format(FIXTURES / name), "disqus", name)

    def test_detect_format_not_an_export(self) -> None:
        """A file with another root element is rejected with the root named."""
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "page.xml"
            path.write_bytes(b"<html><body/></html>")
            with self.assertRaises(ImportFormatError) as caught:
                detect_format(path)

        self.assertIn(
            "neither a Disqus export nor a WordPress export", str(caught.exception)
        )
        self.assertIn("root element is html", str(caught.exception))
        self.assertEqual(caught.exception.line, 1)

    def test_wxr_passed_to_disqus_parser(self) -> None:
        """A WXR file given to the Disqus parser names the right format."""
        with self.assertRaises(ImportFormatError) as caught:
            list(parse_disqus(FIXTURES / "wxr-isso-tests.xml"))

        self.assertIn(
            "is a WordPress export (WXR), not a Disqus export", str(caught.exception)
        )
        # libxml2 gives the line where the start tag ends, and <rss> spans lines 2 to 5.
        self.assertEqual(caught.exception.line, 5)

    def test_root_after_long_prolog(self) -> None:
        """A root element after more than 1 MiB of comments is still checked and parsed."""
        prolog = b"<!--" + b" " * (1024 * 1024 + 10) + b"-->\n"
        data = _document('<thread dsq:id="10"><id>a</id></thread>')
        declaration, rest = data.split(b"\n", 1)
        records = _parse_bytes(declaration + b"\n" + prolog + rest)

        # The comment adds one line before the root.
        self.assertEqual(_threads(records)["10"].line, 4)

    def test_wxr_after_long_prolog_rejected(self) -> None:
        """A WXR file whose root comes after more than 1 MiB is still named as WXR."""
        data = (FIXTURES / "wxr-isso-tests.xml").read_bytes()
        declaration, rest = data.split(b"\n", 1)
        padded = declaration + b"\n<!--" + b" " * (1024 * 1024 + 10) + b"-->" + rest

        with self.assertRaises(ImportFormatError) as caught:
            _parse_bytes(padded)

        self.assertIn("is a WordPress export (WXR), not a Disqus export", str(caught.exception))

    def test_syntax_error_before_root(self) -> None:
        """A syntax error before the root element raises with its position."""
        with self.assertRaises(ImportFormatError) as caught:
            _parse_bytes(b'<?xml version="1.0"?>\n<!DOCTYPE disqus [<!ENTITY x>]>\n<disqus/>')

        self.assertEqual(caught.exception.line, 2)
        self.assertIn("not well-formed XML at line 2", str(caught.exception))

    def test_other_root_rejected(self) -> None:
        """A root element outside the Disqus namespace is rejected before any record."""
        with self.assertRaises(ImportFormatError) as caught:
            _parse_bytes(b"<disqus><thread/></disqus>")

        self.assertIn(
            "root element is disqus and not {http://disqus.com}disqus",
            str(caught.exception),
        )

    def test_empty_file(self) -> None:
        """An empty file raises ImportFormatError stating that it is empty."""
        with self.assertRaises(ImportFormatError) as caught:
            _parse_bytes(b"")

        self.assertIn("is empty or contains no XML element", str(caught.exception))
        self.assertIsNone(caught.exception.line)

    def test_truncated_file(self) -> None:
        """A file cut off mid-post yields the complete records, then raises at the end."""
        data = _document(_post_element("100") + _post_element("101"))
        cut = data[: data.index(b'<post dsq:id="101"') + 30]
        records, error = _parse_until_error(io.BytesIO(cut))

        self.assertEqual(list(_posts(records)), ["100"])
        self.assertEqual(error.line, 3)
        self.assertIn("Premature end of data", str(error))

    def test_invalid_utf8(self) -> None:
        """Bytes that are not UTF-8 raise with the line of the bad byte."""
        data = _document("\n" + _post_element()).replace(b"Hello", b"caf\xe9")

        with self.assertRaises(ImportFormatError) as caught:
            _parse_bytes(data)

        self.assertEqual(caught.exception.line, 4)
        self.assertIn("Invalid bytes in character encoding", str(caught.exception))

    def test_leading_blank_lines(self) -> None:
        """Blank lines before the declaration are dropped, and line numbers still match."""
        data = b"\n\n" + _document('<thread dsq:id="10"><id>a</id></thread>')
        records = _parse_bytes(data)

        self.assertEqual(
            records[0],
            Skipped(
                "Ignored 2 stray byte(s) '\\n\\n' before the start of the XML.", 1, None
            ),
        )
        self.assertEqual(_threads(records)["10"].line, 5)

    def test_byte_order_mark_accepted(self) -> None:
        """A UTF-8 byte order mark is not reported as stray bytes."""
        records = _parse_bytes(b"\xef\xbb\xbf" + _document('<thread dsq:id="10"/>'))

        self.assertEqual(list(_threads(records)), ["10"])
        self.assertEqual(_skipped(records), [])

    def test_internal_entity_not_expanded(self) -> None:
        """Entities declared in the file are not expanded, so nesting them cannot blow up."""
        data = (
            b'<?xml version="1.0"?>\n'
            b'<!DOCTYPE disqus [<!ENTITY big "expanded">]>\n'
            b'<disqus xmlns="http://disqus.com" xmlns:dsq="http://disqus.com/disqus-internals">'
            b'<thread dsq:id="10"><title>a&big;b</title></thread></disqus>'
        )
        thread = _threads(_parse_bytes(data))["10"]

        self.assertNotIn("expanded", thread.title)

    def test_external_entity_not_loaded(self) -> None:
        """An external entity is not fetched, so a file cannot read local files."""
        with tempfile.TemporaryDirectory() as directory:
            secret = Path(directory) / "secret.txt"
            secret.write_text("top secret")
            data = (
                '<?xml version="1.0"?>\n'
                f'<!DOCTYPE disqus [<!ENTITY leak SYSTEM "{secret.as_uri()}">]>\n'
                '<disqus xmlns="http://disqus.com" xmlns:dsq="http://disqus.com/disqus-internals">'
                '<thread dsq:id="10"><title>&leak;</title></thread></disqus>'
            ).encode()
            thread = _threads(_parse_bytes(data))["10"]

        self.assertNotIn("top secret", thread.title)

    def test_path_and_stream_sources(self) -> None:
        """A path, a str path and an open binary file give the same records."""
        path = FIXTURES / "disqus-schnack-test.xml"
        with open(path, "rb") as stream:
            from_stream = list(parse_disqus(stream))

        self.assertEqual(list(parse_disqus(path)), from_stream)
        self.assertEqual(list(parse_disqus(os.fspath(path))), from_stream)


class DisqusWriterTests(SynchronousTestCase):
    """write_disqus output read back by parse_disqus."""

    def test_round_trip_tricky_values(self) -> None:
        """Each tricky value survives a write and a parse unchanged."""
        cases: list[tuple[str, SourceThread, SourcePost]] = [
            (
                "unicode",
                _sample_thread(title="Grüße 🌍 中文"),
                _sample_post(message="¡Hola! 😀 评论"),
            ),
            (
                "cdata end",
                _sample_thread(title="a ]]> b"),
                _sample_post(message="<p>x]]>y</p>]]>"),
            ),
            (
                "markup and entities",
                _sample_thread(),
                _sample_post(message="<b>&amp;</b> &lt; &#039;"),
            ),
            (
                "carriage returns",
                _sample_thread(),
                _sample_post(message="line 1\r\nline 2\rline 3"),
            ),
            (
                "64-bit ids",
                _sample_thread(str(2**64 - 1)),
                _sample_post(
                    str(2**63 + 5),
                    thread_source_id=str(2**64 - 1),
                    parent_source_id=str(2**53 + 1),
                ),
            ),
            (
                "empty identifier",
                _sample_thread(identifier=None, url="", title=""),
                _sample_post(),
            ),
            (
                "no-break space",
                _sample_thread(identifier="page\xa0one two"),
                _sample_post(author_name="Ann\xa0Lee"),
            ),
            (
                "no date",
                _sample_thread(created_at=None, closed=True, deleted=True),
                _sample_post(state="deleted"),
            ),
            (
                "guest",
                _sample_thread(),
                _sample_post(
                    author_username=None,
                    author_is_guest=True,
                    author_email=None,
                    ip=None,
                ),
            ),
            (
                "guest with username",
                _sample_thread(),
                _sample_post(author_is_guest=True),
            ),
            ("spam", _sample_thread(), _sample_post(state="spam")),
            ("pending", _sample_thread(), _sample_post(state="pending")),
            ("empty message", _sample_thread(), _sample_post(message="")),
        ]
        for name, thread, post in cases:
            records = _round_trip([thread], [post])
            self.assertEqual(records, [thread, post], name)

    def test_control_characters_dropped(self) -> None:
        """Characters XML cannot contain are dropped, and tab and newline are kept."""
        post = _sample_post(message="a\x00b\x01c\x0bd\x1fe\tf\ng\ufffeh\udc80i")
        records = _round_trip([], [post])

        self.assertEqual(records, [_sample_post(message="abcde\tf\nghi")])

    def test_offset_datetime_written_as_utc(self) -> None:
        """An aware datetime in another zone is written in UTC, without microseconds."""
        created = datetime(
            2020, 1, 2, 5, 4, 5, 123456, tzinfo=timezone(timedelta(hours=2))
        )
        records = _round_trip([], [_sample_post(created_at=created)])
        post = records[0]

        assert isinstance(post, SourcePost)
        self.assertEqual(post.created_at, datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC))

    def test_lossy_fields(self) -> None:
        """author_url and kind have no place in the format, so they are not kept."""
        records = _round_trip(
            [], [_sample_post(author_url="https://example.org", kind="pingback")]
        )
        post = records[0]

        assert isinstance(post, SourcePost)
        self.assertIsNone(post.author_url)
        self.assertEqual(post.kind, "comment")

    def test_naive_datetime_rejected(self) -> None:
        """A naive datetime raises ValueError instead of guessing its zone."""
        with self.assertRaises(ValueError):
            write_disqus(
                io.BytesIO(), [], [_sample_post(created_at=datetime(2020, 1, 1))], "f"
            )

    def test_non_decimal_id_rejected(self) -> None:
        """A post id that is not decimal raises ValueError naming it."""
        with self.assertRaises(ValueError) as caught:
            write_disqus(io.BytesIO(), [], [_sample_post("18:2")], "f")

        self.assertIn("'18:2'", str(caught.exception))

    def test_written_lines_match_records(self) -> None:
        """Records read from a written file carry the line of their start tag."""
        records = _round_trip([_sample_thread()], [_sample_post()])

        self.assertEqual([r.line for r in records], [3, 12])

    def test_empty_export(self) -> None:
        """An export with no records is a valid Disqus file."""
        out = io.BytesIO()
        write_disqus(out, [], [], "f")

        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "empty.xml"
            path.write_bytes(out.getvalue())
            self.assertEqual(detect_format(path), "disqus")
            self.assertEqual(list(parse_disqus(path)), [])


def _generated_posts(count: int) -> Iterator[SourcePost]:
    for number in range(1, count + 1):
        yield _sample_post(
            str(number),
            message=f"<p>Generated comment number {number}, long enough to matter.</p>",
        )


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class DisqusStreamingTests(SynchronousTestCase):
    """Memory use of parsing does not grow with the file."""

    def _write_export(self, directory: str, count: int) -> Path:
        path = Path(directory) / f"export-{count}.xml"
        with open(path, "wb") as out:
            write_disqus(out, [_sample_thread()], _generated_posts(count), "f")
        return path

    def _peak_resident_growth(self, path: Path) -> int:
        baseline = _resident_bytes()
        peak = baseline
        for count, _record in enumerate(parse_disqus(path), start=1):
            if count % 1000 == 0:
                peak = max(peak, _resident_bytes())
        return peak - baseline

    def test_tree_released_while_parsing(self) -> None:
        """Memory growth while parsing 50k posts stays within 16 MiB of that for 10k.

        tracemalloc cannot see this, because lxml builds the tree with libxml2's own
        allocations. Without releasing elements, the 50k-post parse grew by about
        200 MB with lxml 6.2 on Linux. The 16 MiB margin absorbs allocator noise.
        """
        if not sys.platform.startswith("linux"):
            raise SkipTest("reads resident memory from /proc/self/statm")

        with tempfile.TemporaryDirectory() as directory:
            small = self._peak_resident_growth(self._write_export(directory, 10_000))
            large = self._peak_resident_growth(self._write_export(directory, 50_000))

        self.assertLess(large, small + 16 * 1024 * 1024)

    def test_records_not_retained(self) -> None:
        """The Python heap peak for 5k posts stays within 512 KiB of that for 1k."""
        with tempfile.TemporaryDirectory() as directory:
            peaks = []
            for count in (1_000, 5_000):
                path = self._write_export(directory, count)
                tracemalloc.start()
                try:
                    for _record in parse_disqus(path):
                        pass
                    peaks.append(tracemalloc.get_traced_memory()[1])
                finally:
                    tracemalloc.stop()

        self.assertLess(peaks[1], peaks[0] + 512 * 1024)
