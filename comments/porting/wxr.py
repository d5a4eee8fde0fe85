"""Streaming reader and writer for WordPress eXtended RSS (WXR) files.

A WXR file is an RSS 2.0 feed whose ``<item>`` elements are posts and pages, with
their comments as ``<wp:comment>`` children. The ``wp`` namespace is
``http://wordpress.org/export/1.N/``. Disqus accepts the same format for imports,
adding ``<dsq:thread_identifier>`` from the ``http://www.disqus.com/`` namespace and
leaving out post ids and comment types. The parser reads both.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import BinaryIO

from lxml import etree

from comments.porting.errors import (
    WXR_NAMESPACE_PATTERN,
    ExportSource,
    open_export,
    source_line,
)
from comments.porting.records import (
    PostKind,
    PostState,
    Skipped,
    SourcePost,
    SourceRecord,
    SourceThread,
    XmlWriter,
    child_text,
    children_by_tag,
    format_utc,
    is_decimal_id,
    normalise_ip,
    optional_text,
    parse_iso_datetime,
    write_text_element,
)

WXR_1_2_NAMESPACE = "http://wordpress.org/export/1.2/"
DISQUS_IMPORT_NAMESPACE = "http://www.disqus.com/"

_THREAD_IDENTIFIER = f"{{{DISQUS_IMPORT_NAMESPACE}}}thread_identifier"

# The elements that parse_wxr gets an event for: items and comments. The namespace of
# wp:comment is known only from the root element, so any namespace matches here, and
# parse_wxr compares the full tag.
_EVENT_TAGS = ("item", "{*}comment")

_COMMENT_STATES: dict[str, PostState] = {
    "1": "approved",
    "0": "pending",
    "spam": "spam",
    "trash": "deleted",
    # WordPress moves the comments of a trashed post to this state.
    "post-trashed": "deleted",
}
_COMMENT_KINDS: dict[str, PostKind] = {
    "": "comment",
    "comment": "comment",
    "pingback": "pingback",
    "trackback": "trackback",
}
_STATE_VALUES: dict[PostState, str] = {
    "approved": "1",
    "pending": "0",
    "spam": "spam",
    "deleted": "trash",
}


def parse_wxr(source: ExportSource) -> Iterator[SourceRecord]:
    """Parse a WXR file and yield its threads, comments and skipped items in file order.

    `source` is a path or a binary stream. Each ``<item>`` becomes a thread, yielded
    after its comments, because it is complete only at its end tag. A comment's id
    is ``"<thread source id>:<comment_id>"``, because some files repeat a comment id
    in different items. The thread source id is the ``wp:post_id``, or else the
    ``dsq:thread_identifier``, or else the link.

    Each comment is released once read, so memory does not grow with the file or
    with the number of comments on one post.

    Raises ImportFormatError when the file is not a WXR file or is not well-formed
    XML. Records before a syntax error have been yielded by then.
    """
    with open_export(source) as export:
        if export.leading_junk is not None:
            yield export.leading_junk

        item: _ItemReader | None = None
        names: _WpNames | None = None
        for element in export.elements("wxr", _EVENT_TAGS):
            if names is None:
                names = _WpNames.for_root(element.getroottree().getroot())

            parent = element.getparent()
            if parent is None:
                continue

            if element.tag == names.comment and parent.tag == "item":
                if item is None or item.element is not parent:
                    item = _ItemReader(parent, names)
                yield from item.add_comment(element)
            elif parent.tag == "channel":
                # Other children of the channel get no event, so they are released
                # here with the next item after them.
                if element.tag == "item":
                    if item is None or item.element is not element:
                        item = _ItemReader(element, names)
                    yield from item.finish()
                    item = None

                element.clear()
                while element.getprevious() is not None:
                    del parent[0]


class _WpNames:
    """Qualified tag names in the ``wp`` namespace that the file declares."""

    def __init__(self, namespace: str) -> None:
        self.comment = f"{{{namespace}}}comment"
        self._prefix = f"{{{namespace}}}"

    def __call__(self, local_name: str) -> str:
        return self._prefix + local_name

    @classmethod
    def for_root(cls, root: etree._Element) -> _WpNames:
        # The root check has already found a matching namespace on the root.
        for uri in root.nsmap.values():
            if WXR_NAMESPACE_PATTERN.match(uri):
                return cls(uri)
        return cls(WXR_1_2_NAMESPACE)


class _ItemReader:
    """Reader of one ``<item>`` that yields its comments as they end and its thread last.

    A comment can be read only once the thread source id is known. WordPress writes
    the post id before the comments, but when no id precedes a comment, the comment
    waits in `_pending` until the item ends.
    """

    def __init__(self, element: etree._Element, names: _WpNames) -> None:
        self.element = element
        self._names = names
        self._thread_source_id: str | None = None
        self._pending: list[etree._Element] = []

    def add_comment(self, comment: etree._Element) -> Iterator[SourceRecord]:
        if self._thread_source_id is None:
            self._thread_source_id = _thread_source_id(self.element, self._names)

        # Earlier comments were read already or are held in _pending, so the tree no
        # longer needs them.
        previous = comment.getprevious()
        if previous is not None and previous.tag == self._names.comment:
            self.element.remove(previous)

        if self._thread_source_id is None:
            self._pending.append(comment)
            return

        yield _read_comment(comment, self._thread_source_id, self._names)
        comment.clear()

    def finish(self) -> Iterator[SourceRecord]:
        line = source_line(self.element)
        thread_source_id = self._thread_source_id or _thread_source_id(
            self.element, self._names
        )
        if thread_source_id is None:
            reason = "has no wp:post_id, dsq:thread_identifier or link"
            for comment in self._pending:
                comment_id = optional_text(comment.findtext(self._names("comment_id")))
                yield Skipped(
                    reason=f"The comment belongs to an item that {reason}.",
                    line=source_line(comment),
                    source_id=comment_id,
                )
            yield Skipped(reason=f"The item {reason}.", line=line, source_id=None)
            return

        for comment in self._pending:
            yield _read_comment(comment, thread_source_id, self._names)
        yield _read_thread(self.element, thread_source_id, self._names, line)


def _thread_source_id(item: etree._Element, names: _WpNames) -> str | None:
    return (
        optional_text(item.findtext(names("post_id")))
        or optional_text(item.findtext(_THREAD_IDENTIFIER))
        or optional_text(item.findtext("link"))
    )


def _read_thread(
    item: etree._Element, source_id: str, names: _WpNames, line: int
) -> SourceThread:
    children = children_by_tag(item)
    created_at = parse_iso_datetime(child_text(children, names("post_date_gmt")))
    if created_at is None:
        created_at = parse_iso_datetime(child_text(children, names("post_date")))

    return SourceThread(
        source_id=source_id,
        identifier=optional_text(child_text(children, _THREAD_IDENTIFIER)),
        url=_read_text(children, "link"),
        title=_read_text(children, "title"),
        created_at=created_at,
        closed=_read_text(children, names("comment_status")) == "closed",
        deleted=_read_text(children, names("status")) == "trash",
        line=line,
    )


def _read_comment(
    comment: etree._Element, thread_source_id: str, names: _WpNames
) -> SourcePost | Skipped:
    line = source_line(comment)
    children = children_by_tag(comment)
    problems: list[str] = []

    comment_id = _read_text(children, names("comment_id"))
    source_id = f"{thread_source_id}:{comment_id}" if comment_id else None
    if not comment_id:
        problems.append("The comment has no wp:comment_id.")
    elif not is_decimal_id(comment_id):
        problems.append(f"The wp:comment_id {comment_id!r} is not a decimal number.")

    parent_id = _read_text(children, names("comment_parent"))
    parent_source_id = None
    if parent_id not in ("", "0"):
        parent_source_id = f"{thread_source_id}:{parent_id}"
        if not is_decimal_id(parent_id):
            problems.append(
                f"The wp:comment_parent {parent_id!r} is not a decimal number."
            )

    created_at = _read_comment_date(children, names, problems)

    approved = _read_text(children, names("comment_approved")).lower()
    state = _COMMENT_STATES.get(approved)
    if state is None:
        problems.append(
            f"The wp:comment_approved value {approved!r} is not 1, 0, spam or trash."
        )

    comment_type = _read_text(children, names("comment_type")).lower()
    kind = _COMMENT_KINDS.get(comment_type)
    if comment_type == "note":
        problems.append(
            "The comment type 'note' is an editor note, not a public comment."
        )
    elif kind is None:
        problems.append(
            f"The comment type {comment_type!r} is not a public comment,"
            " pingback or trackback."
        )

    if (
        problems
        or source_id is None
        or created_at is None
        or state is None
        or kind is None
    ):
        return Skipped(reason=" ".join(problems), line=line, source_id=source_id)

    user_id = _read_text(children, names("comment_user_id"))
    return SourcePost(
        source_id=source_id,
        thread_source_id=thread_source_id,
        parent_source_id=parent_source_id,
        message=_read_text(children, names("comment_content")),
        author_name=_read_text(children, names("comment_author")),
        author_email=optional_text(
            child_text(children, names("comment_author_email"))
        ),
        author_username=None,
        author_is_guest=user_id in ("", "0"),
        author_url=optional_text(child_text(children, names("comment_author_url"))),
        ip=normalise_ip(child_text(children, names("comment_author_IP"))),
        created_at=created_at,
        state=state,
        kind=kind,
        line=line,
    )


def _read_comment_date(
    children: dict[str, etree._Element], names: _WpNames, problems: list[str]
) -> datetime | None:
    """Return comment_date_gmt, else comment_date taken as UTC, else None with a problem.

    A zero GMT date such as ``0000-00-00 00:00:00`` fails to parse, so it falls back
    to the local date too.
    """
    gmt_text = child_text(children, names("comment_date_gmt"))
    created_at = parse_iso_datetime(gmt_text)
    if created_at is not None:
        return created_at

    local_text = child_text(children, names("comment_date"))
    created_at = parse_iso_datetime(local_text)
    if created_at is not None:
        return created_at

    problems.append(
        "The comment has no valid date: comment_date_gmt is"
        f" {_describe_value(gmt_text)} and comment_date is {_describe_value(local_text)}."
    )
    return None


def _describe_value(text: str | None) -> str:
    return "missing" if text is None else repr(text.strip())


def _read_text(children: dict[str, etree._Element], tag: str) -> str:
    return (child_text(children, tag) or "").strip()


def write_wxr(
    out: BinaryIO,
    site_title: str,
    site_url: str,
    threads_with_posts: Iterable[tuple[SourceThread, list[SourcePost]]],
) -> None:
    """Write threads and their posts to `out` as WXR 1.2 that `parse_wxr` reads back.

    The writer streams one thread at a time. A post's id is written as the
    ``wp:comment_id``: either a decimal id or ``"<thread source id>:<decimal id>"``
    as `parse_wxr` produces. Fields that WXR cannot hold are not written:
    author_username, and author_is_guest, because every author is written with
    ``wp:comment_user_id`` 0 so that WordPress does not attach comments to its own
    users. Dates lose their microseconds, and text loses the characters that XML 1.0
    cannot contain.

    Raises ValueError for a thread id or comment id that is not decimal, for a post
    whose thread_source_id is not its thread's id, and for a naive datetime.
    """
    wp = _WpNames(WXR_1_2_NAMESPACE)
    nsmap: dict[str | None, str] = {
        "wp": WXR_1_2_NAMESPACE,
        "dsq": DISQUS_IMPORT_NAMESPACE,
    }
    xml: XmlWriter
    with etree.xmlfile(out, encoding="utf-8") as xml:
        xml.write_declaration()
        with xml.element("rss", {"version": "2.0"}, nsmap=nsmap):
            xml.write("\n")
            with xml.element("channel"):
                write_text_element(xml, "title", site_title, 1)
                write_text_element(xml, "link", site_url, 1)
                write_text_element(xml, wp("wxr_version"), "1.2", 1)
                write_text_element(xml, wp("base_site_url"), site_url, 1)
                write_text_element(xml, wp("base_blog_url"), site_url, 1)
                for thread, posts in threads_with_posts:
                    xml.write("\n  ")
                    _write_item(xml, wp, thread, posts)
                xml.write("\n")
            xml.write("\n")


def _write_item(
    xml: XmlWriter, wp: _WpNames, thread: SourceThread, posts: list[SourcePost]
) -> None:
    if not is_decimal_id(thread.source_id):
        raise ValueError(
            f"cannot write thread id {thread.source_id!r} as a wp:post_id,"
            " which must be a decimal number"
        )

    with xml.element("item"):
        write_text_element(xml, "title", thread.title, 2)
        write_text_element(xml, "link", thread.url, 2)
        if thread.identifier is not None:
            write_text_element(xml, _THREAD_IDENTIFIER, thread.identifier, 2)
        write_text_element(xml, wp("post_id"), thread.source_id, 2)
        if thread.created_at is not None:
            date = _format_date(thread.created_at)
            write_text_element(xml, wp("post_date"), date, 2)
            write_text_element(xml, wp("post_date_gmt"), date, 2)
        comment_status = "closed" if thread.closed else "open"
        write_text_element(xml, wp("comment_status"), comment_status, 2)
        write_text_element(
            xml, wp("status"), "trash" if thread.deleted else "publish", 2
        )
        write_text_element(xml, wp("post_type"), "post", 2)
        for post in posts:
            xml.write("\n    ")
            _write_comment(xml, wp, thread, post)
        xml.write("\n  ")


def _write_comment(
    xml: XmlWriter, wp: _WpNames, thread: SourceThread, post: SourcePost
) -> None:
    if post.thread_source_id != thread.source_id:
        raise ValueError(
            f"cannot write post {post.source_id!r} under thread {thread.source_id!r},"
            f" because its thread_source_id is {post.thread_source_id!r}"
        )

    comment_id = _comment_id(post.source_id, thread.source_id)
    parent_id = "0"
    if post.parent_source_id is not None:
        parent_id = _comment_id(post.parent_source_id, thread.source_id)
    date = _format_date(post.created_at)

    with xml.element(wp("comment")):
        write_text_element(xml, wp("comment_id"), comment_id, 3)
        write_text_element(xml, wp("comment_author"), post.author_name, 3)
        write_text_element(xml, wp("comment_author_email"), post.author_email or "", 3)
        write_text_element(xml, wp("comment_author_url"), post.author_url or "", 3)
        write_text_element(xml, wp("comment_author_IP"), post.ip or "", 3)
        write_text_element(xml, wp("comment_date"), date, 3)
        write_text_element(xml, wp("comment_date_gmt"), date, 3)
        write_text_element(xml, wp("comment_content"), post.message, 3)
        write_text_element(xml, wp("comment_approved"), _STATE_VALUES[post.state], 3)
        write_text_element(xml, wp("comment_type"), post.kind, 3)
        write_text_element(xml, wp("comment_parent"), parent_id, 3)
        write_text_element(xml, wp("comment_user_id"), "0", 3)
        xml.write("\n    ")


def _comment_id(source_id: str, thread_source_id: str) -> str:
    """Return the wp:comment_id for a post id that is decimal or has the thread prefix."""
    prefix = f"{thread_source_id}:"
    comment_id = source_id.removeprefix(prefix)
    if not is_decimal_id(comment_id):
        raise ValueError(
            f"cannot write post id {source_id!r} as a wp:comment_id, which must be"
            f" a decimal number, optionally prefixed with {prefix!r}"
        )
    return comment_id


def _format_date(value: datetime) -> str:
    return format_utc(value).replace("T", " ")
