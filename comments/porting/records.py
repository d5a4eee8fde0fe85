"""Records that the import parsers yield and the export writers consume.

The records are format neutral: a Disqus export and a WordPress export (WXR) both
become `SourceThread` and `SourcePost` records, and items that cannot be imported
become `Skipped` records. The helpers at the end read and write field values the
same way for every format.
"""

from __future__ import annotations

import ipaddress
import re
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol, TypeAlias

from lxml import etree

# Characters that XML 1.0 cannot contain, not even as character references.
_XML_INVALID_CHARACTERS = re.compile(
    "[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)

# A dotted-quad IPv4 address in the form that str(ipaddress.IPv4Address) returns:
# four decimal octets from 0 to 255 without leading zeros. ipaddress accepts every
# such string and returns it unchanged, so normalise_ip can return it without parsing.
_CANONICAL_IPV4 = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
)

PostState: TypeAlias = Literal["approved", "pending", "spam", "deleted"]
PostKind: TypeAlias = Literal["comment", "pingback", "trackback"]


@dataclass(frozen=True, slots=True)
class SourceThread:
    """A thread (a commented page) as an export file describes it.

    `line` is the line of the start tag in the file. For a start tag that spans
    lines, libxml2 reports the line where the tag ends. `line` does not take part in
    equality, so a record read back from a written file equals the original.
    """

    source_id: str
    identifier: str | None
    url: str
    title: str
    created_at: datetime | None
    closed: bool
    deleted: bool
    line: int = field(compare=False)


@dataclass(frozen=True, slots=True)
class SourcePost:
    """A comment, pingback or trackback as an export file describes it.

    Ids are strings because Disqus ids can exceed 2**53 and WXR comment ids are
    prefixed with their post id. `created_at` is timezone-aware UTC. `line` is the
    line of the start tag, as for `SourceThread`, and does not take part in equality.
    """

    source_id: str
    thread_source_id: str
    parent_source_id: str | None
    message: str
    author_name: str
    author_email: str | None
    author_username: str | None
    author_is_guest: bool
    author_url: str | None
    ip: str | None
    created_at: datetime
    state: PostState
    kind: PostKind
    line: int = field(compare=False)


@dataclass(frozen=True, slots=True)
class Skipped:
    """An item of the file that the parser did not turn into a record, with the reason.

    `source_id` is the item's id when the file gives one, even an invalid one.
    """

    reason: str
    line: int
    source_id: str | None


SourceRecord: TypeAlias = SourceThread | SourcePost | Skipped


def children_by_tag(element: etree._Element) -> dict[str, etree._Element]:
    """Return the child elements of `element` by tag, keeping the first child of each tag as find() does.

    One pass over the children replaces one find() or findtext() per field, each of
    which walks the children again through lxml's path matching.
    """
    # Reversed, so that an earlier child of the same tag overwrites a later one.
    return {child.tag: child for child in reversed(element)}


def child_text(children: dict[str, etree._Element], tag: str) -> str | None:
    """Return the text of the `tag` child as findtext() does: None when missing, "" when empty."""
    child = children.get(tag)
    if child is None:
        return None
    return child.text or ""


def optional_text(value: str | None) -> str | None:
    """Strip `value` and return None when nothing is left."""
    if value is None:
        return None
    stripped = value.strip()
    return stripped or None


def normalise_ip(value: str | None) -> str | None:
    """Return the canonical form of an IP address, or None when it is empty or invalid.

    An IPv4-mapped IPv6 address such as ``::ffff:192.0.2.1`` becomes ``192.0.2.1``.
    """
    text = optional_text(value)
    if text is None:
        return None
    if _CANONICAL_IPV4.fullmatch(text):
        return text

    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None

    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def parse_iso_datetime(value: str | None) -> datetime | None:
    """Parse an ISO 8601 date and time and return it in UTC, or None when invalid.

    A value without a UTC offset is taken as UTC. Disqus writes UTC with a ``Z``
    suffix, and WXR writes its GMT fields without an offset.
    """
    text = optional_text(value)
    if text is None:
        return None

    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None

    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def is_decimal_id(value: str) -> bool:
    """Return whether `value` is a non-empty string of ASCII digits."""
    return value.isascii() and value.isdigit()


def xml_safe_text(value: str) -> str:
    """Remove the characters that XML 1.0 cannot contain from `value`.

    Control characters other than tab, newline and carriage return, lone surrogates,
    U+FFFE and U+FFFF cannot be written to an XML file in any form.
    """
    return _XML_INVALID_CHARACTERS.sub("", value)


def format_utc(value: datetime) -> str:
    """Convert an aware datetime to UTC and return it as ``YYYY-MM-DDTHH:MM:SS``.

    Microseconds are dropped because both export formats store whole seconds.
    Raises ValueError for a naive datetime, whose timezone is unknown.
    """
    if value.tzinfo is None:
        raise ValueError(
            f"cannot export the naive datetime {value.isoformat()} because its"
            " timezone is unknown. Pass an aware datetime."
        )
    return value.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat()


class XmlWriter(Protocol):
    """The part of lxml's incremental writer (``etree.xmlfile``) that the writers use.

    lxml-stubs 0.5.1 has no type for it.
    """

    def write_declaration(self) -> None: ...

    def write(self, *content: str | etree._Element) -> None: ...

    def element(
        self,
        tag: str,
        attrib: dict[str, str] | None = None,
        nsmap: dict[str | None, str] | None = None,
    ) -> AbstractContextManager[None]: ...


def write_text_element(xml: XmlWriter, tag: str, text: str, depth: int) -> None:
    """Write ``<tag>text</tag>`` on a new line indented by `depth` levels.

    Characters that XML cannot contain are removed from `text`.
    """
    xml.write("\n" + "  " * depth)
    with xml.element(tag):
        xml.write(xml_safe_text(text))
