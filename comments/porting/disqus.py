"""Streaming reader and writer for the Disqus XML export format.

A Disqus export is a ``<disqus>`` root in the ``http://disqus.com`` namespace that
contains ``<category>``, ``<thread>`` and ``<post>`` elements in any order. Ids are
``dsq:id`` attributes in the ``http://disqus.com/disqus-internals`` namespace, and
posts refer to their thread and parent post by those ids.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import BinaryIO

from lxml import etree

from comments.porting.errors import (
    DISQUS_NAMESPACE,
    DISQUS_ROOT_TAG,
    ExportSource,
    open_export,
    source_line,
)
from comments.porting.records import (
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

DISQUS_INTERNALS_NAMESPACE = "http://disqus.com/disqus-internals"

_DSQ_ID = f"{{{DISQUS_INTERNALS_NAMESPACE}}}id"
_THREAD = f"{{{DISQUS_NAMESPACE}}}thread"
_POST = f"{{{DISQUS_NAMESPACE}}}post"
_PARENT = f"{{{DISQUS_NAMESPACE}}}parent"
_ID = f"{{{DISQUS_NAMESPACE}}}id"
_FORUM = f"{{{DISQUS_NAMESPACE}}}forum"
_LINK = f"{{{DISQUS_NAMESPACE}}}link"
_TITLE = f"{{{DISQUS_NAMESPACE}}}title"
_MESSAGE = f"{{{DISQUS_NAMESPACE}}}message"
_CREATED_AT = f"{{{DISQUS_NAMESPACE}}}createdAt"
_AUTHOR = f"{{{DISQUS_NAMESPACE}}}author"
_NAME = f"{{{DISQUS_NAMESPACE}}}name"
_EMAIL = f"{{{DISQUS_NAMESPACE}}}email"
_USERNAME = f"{{{DISQUS_NAMESPACE}}}username"
_IP_ADDRESS = f"{{{DISQUS_NAMESPACE}}}ipAddress"
_IS_ANONYMOUS = f"{{{DISQUS_NAMESPACE}}}isAnonymous"
_IS_APPROVED = f"{{{DISQUS_NAMESPACE}}}isApproved"
_IS_CLOSED = f"{{{DISQUS_NAMESPACE}}}isClosed"
_IS_DELETED = f"{{{DISQUS_NAMESPACE}}}isDeleted"
_IS_SPAM = f"{{{DISQUS_NAMESPACE}}}isSpam"
_CATEGORY = f"{{{DISQUS_NAMESPACE}}}category"

# The elements that parse_disqus gets an event for. Categories are included only so
# that they are released promptly.
_TOP_LEVEL_TAGS = (_THREAD, _POST, _CATEGORY)

# Disqus replaces the address of some guest authors with this placeholder. It is
# not the author's address, so the parser treats it as missing.
_ANONYMISED_EMAIL = re.compile(r"anonymized-[0-9]+@disqus\.com\Z", re.IGNORECASE)


def parse_disqus(source: ExportSource) -> Iterator[SourceRecord]:
    """Parse a Disqus export and yield its threads, posts and skipped items in file order.

    `source` is a path or a binary stream. Categories are ignored. A post can come
    before its thread or refer to a thread that is not in the file, and the caller
    resolves both cases. The parse streams and releases each top-level element once
    read, so memory does not grow with the file.

    Raises ImportFormatError when the file is not a Disqus export or is not
    well-formed XML. Records before a syntax error have been yielded by then.
    """
    with open_export(source) as export:
        if export.leading_junk is not None:
            yield export.leading_junk

        for element in export.elements("disqus", _TOP_LEVEL_TAGS):
            parent = element.getparent()
            # A post's reference to its thread is a <thread> element too.
            if parent is None or parent.getparent() is not None:
                continue

            tag = element.tag
            if tag == _POST:
                yield _read_post(element, source_line(element))
            elif tag == _THREAD:
                yield _read_thread(element, source_line(element))

            # Elements outside _TOP_LEVEL_TAGS get no event, so they are released
            # here with the next post, thread or category after them.
            element.clear()
            while element.getprevious() is not None:
                del parent[0]


def _read_thread(element: etree._Element, line: int) -> SourceThread | Skipped:
    children = children_by_tag(element)
    problems: list[str] = []
    source_id = _read_id(element, "thread", problems)
    closed = _read_flag(children, _IS_CLOSED, "isClosed", False, problems)
    deleted = _read_flag(children, _IS_DELETED, "isDeleted", False, problems)
    if problems or source_id is None:
        return Skipped(reason=" ".join(problems), line=line, source_id=source_id)

    # NOTE: a missing or invalid createdAt leaves created_at None without a Skipped
    # record, because the thread is still needed to place its posts.
    return SourceThread(
        source_id=source_id,
        identifier=optional_text(child_text(children, _ID)),
        url=_read_text(children, _LINK),
        title=_read_text(children, _TITLE),
        created_at=parse_iso_datetime(child_text(children, _CREATED_AT)),
        closed=closed,
        deleted=deleted,
        line=line,
    )


def _read_post(element: etree._Element, line: int) -> SourcePost | Skipped:
    children = children_by_tag(element)
    problems: list[str] = []
    source_id = _read_id(element, "post", problems)
    thread_source_id = _read_reference(children, _THREAD, "thread", problems)
    parent_source_id = None
    if _PARENT in children:
        parent_source_id = _read_reference(children, _PARENT, "parent", problems)

    created_at_text = child_text(children, _CREATED_AT)
    created_at = parse_iso_datetime(created_at_text)
    if created_at is None:
        problems.append(_invalid_date_problem(created_at_text))

    is_deleted = _read_flag(children, _IS_DELETED, "isDeleted", False, problems)
    is_spam = _read_flag(children, _IS_SPAM, "isSpam", False, problems)
    is_approved = _read_flag(children, _IS_APPROVED, "isApproved", True, problems)

    author = children.get(_AUTHOR)
    author_children = {} if author is None else children_by_tag(author)
    is_anonymous = _read_flag(
        author_children, _IS_ANONYMOUS, "isAnonymous", False, problems
    )

    if problems or source_id is None or thread_source_id is None or created_at is None:
        return Skipped(reason=" ".join(problems), line=line, source_id=source_id)

    username = optional_text(child_text(author_children, _USERNAME))
    return SourcePost(
        source_id=source_id,
        thread_source_id=thread_source_id,
        parent_source_id=parent_source_id,
        message=_read_text(children, _MESSAGE),
        author_name=_read_text(author_children, _NAME),
        author_email=_read_email(author_children),
        author_username=username,
        author_is_guest=is_anonymous or username is None,
        author_url=None,
        ip=normalise_ip(child_text(children, _IP_ADDRESS)),
        created_at=created_at,
        state=_post_state(
            is_deleted=is_deleted, is_spam=is_spam, is_approved=is_approved
        ),
        kind="comment",
        line=line,
    )


def _post_state(*, is_deleted: bool, is_spam: bool, is_approved: bool) -> PostState:
    if is_deleted:
        return "deleted"
    if is_spam:
        return "spam"
    if not is_approved:
        return "pending"
    return "approved"


def _read_text(children: dict[str, etree._Element], tag: str) -> str:
    return (child_text(children, tag) or "").strip()


def _read_email(author_children: dict[str, etree._Element]) -> str | None:
    email = optional_text(child_text(author_children, _EMAIL))
    if email is not None and _ANONYMISED_EMAIL.match(email):
        return None
    return email


def _read_id(element: etree._Element, kind: str, problems: list[str]) -> str | None:
    """Return the stripped dsq:id of `element`, adding a problem when it is missing or not decimal."""
    value = element.get(_DSQ_ID)
    if value is None:
        problems.append(f"The {kind} has no dsq:id attribute.")
        return None

    value = value.strip()
    if not is_decimal_id(value):
        problems.append(f"The {kind} dsq:id {value!r} is not a decimal number.")
    return value


def _read_reference(
    children: dict[str, etree._Element], tag: str, kind: str, problems: list[str]
) -> str | None:
    """Return the dsq:id of the `tag` child that refers to another item, or None with a problem."""
    reference = children.get(tag)
    if reference is None:
        problems.append(f"The post has no {kind} reference.")
        return None

    value = (reference.get(_DSQ_ID) or "").strip()
    if not is_decimal_id(value):
        problems.append(f"The post's {kind} dsq:id {value!r} is not a decimal number.")
        return None
    return value


def _read_flag(
    children: dict[str, etree._Element],
    tag: str,
    name: str,
    default: bool,
    problems: list[str],
) -> bool:
    """Return the boolean child `tag`, or `default` when it is missing.

    Disqus writes ``true`` and ``false``. Any other value adds a problem, because a
    guess could publish a post that was deleted or marked as spam.
    """
    text = child_text(children, tag)
    if text is None:
        return default
    # Disqus writes the values exactly so, which skips the strip and lower below.
    if text == "true":
        return True
    if text == "false":
        return False

    value = text.strip().lower()
    if value == "true":
        return True
    if value == "false":
        return False
    problems.append(f"The {name} value {text.strip()!r} is neither true nor false.")
    return default


def _invalid_date_problem(text: str | None) -> str:
    if text is None:
        return "The post has no createdAt date."
    return f"The createdAt value {text.strip()!r} is not an ISO 8601 date."


def write_disqus(
    out: BinaryIO,
    threads: Iterable[SourceThread],
    posts: Iterable[SourcePost],
    forum: str,
) -> None:
    """Write threads and posts to `out` as a Disqus export that `parse_disqus` reads back.

    The writer streams, so `threads` and `posts` may be generators over any number of
    records. Some fields have no place in the format and are not written: author_url,
    kind (every post is read back as a comment) and the microseconds of dates. Author
    names, messages and other text lose the characters that XML 1.0 cannot contain.
    A post is read back as a guest post when it has no username.

    Raises ValueError for an id that is not a decimal number, because Disqus ids are
    numbers, and for a naive datetime.
    """
    nsmap: dict[str | None, str] = {
        None: DISQUS_NAMESPACE,
        "dsq": DISQUS_INTERNALS_NAMESPACE,
    }
    xml: XmlWriter
    with etree.xmlfile(out, encoding="utf-8") as xml:
        xml.write_declaration()
        with xml.element(DISQUS_ROOT_TAG, nsmap=nsmap):
            for thread in threads:
                xml.write("\n  ")
                _write_thread(xml, thread, forum)
            for post in posts:
                xml.write("\n  ")
                _write_post(xml, post)
            xml.write("\n")


def _write_thread(xml: XmlWriter, thread: SourceThread, forum: str) -> None:
    with xml.element(
        _THREAD, {_DSQ_ID: _require_decimal_id(thread.source_id, "thread")}
    ):
        write_text_element(xml, _ID, thread.identifier or "", 2)
        write_text_element(xml, _FORUM, forum, 2)
        write_text_element(xml, _LINK, thread.url, 2)
        write_text_element(xml, _TITLE, thread.title, 2)
        if thread.created_at is not None:
            write_text_element(xml, _CREATED_AT, _format_time(thread.created_at), 2)
        write_text_element(xml, _IS_CLOSED, _format_flag(thread.closed), 2)
        write_text_element(xml, _IS_DELETED, _format_flag(thread.deleted), 2)
        xml.write("\n  ")


def _write_post(xml: XmlWriter, post: SourcePost) -> None:
    source_id = _require_decimal_id(post.source_id, "post")
    thread_source_id = _require_decimal_id(post.thread_source_id, "thread")
    with xml.element(_POST, {_DSQ_ID: source_id}):
        write_text_element(xml, _MESSAGE, post.message, 2)
        write_text_element(xml, _CREATED_AT, _format_time(post.created_at), 2)
        write_text_element(xml, _IS_DELETED, _format_flag(post.state == "deleted"), 2)
        write_text_element(xml, _IS_SPAM, _format_flag(post.state == "spam"), 2)
        write_text_element(xml, _IS_APPROVED, _format_flag(post.state != "pending"), 2)

        xml.write("\n    ")
        with xml.element(_AUTHOR):
            if post.author_email is not None:
                write_text_element(xml, _EMAIL, post.author_email, 3)
            write_text_element(xml, _NAME, post.author_name, 3)
            write_text_element(
                xml, _IS_ANONYMOUS, _format_flag(post.author_is_guest), 3
            )
            if post.author_username is not None:
                write_text_element(xml, _USERNAME, post.author_username, 3)
            xml.write("\n    ")

        if post.ip is not None:
            write_text_element(xml, _IP_ADDRESS, post.ip, 2)
        xml.write("\n    ")
        with xml.element(_THREAD, {_DSQ_ID: thread_source_id}):
            pass
        if post.parent_source_id is not None:
            xml.write("\n    ")
            with xml.element(
                _PARENT, {_DSQ_ID: _require_decimal_id(post.parent_source_id, "parent")}
            ):
                pass
        xml.write("\n  ")


def _format_flag(value: bool) -> str:
    return "true" if value else "false"


def _format_time(value: datetime) -> str:
    return format_utc(value) + "Z"


def _require_decimal_id(value: str, kind: str) -> str:
    if not is_decimal_id(value):
        raise ValueError(
            f"cannot write {kind} id {value!r} to a Disqus export, which needs decimal ids"
        )
    return value
