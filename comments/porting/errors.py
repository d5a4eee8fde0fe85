"""File-level reading shared by the import parsers.

This module owns every check that concerns the file as a whole: opening it,
dropping stray bytes before the XML, telling the formats apart by their root
element, and turning XML syntax errors into `ImportFormatError`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import BinaryIO, Literal, TypeAlias

from lxml import etree

from comments.porting.records import Skipped

ExportFormat: TypeAlias = Literal["disqus", "wxr"]
ExportSource: TypeAlias = BinaryIO | str | os.PathLike[str]

DISQUS_NAMESPACE = "http://disqus.com"
DISQUS_ROOT_TAG = f"{{{DISQUS_NAMESPACE}}}disqus"

# WordPress has written 1.0, 1.1 and 1.2 so far. Later minor versions are accepted
# too, and so is https, which appears in real exports.
WXR_NAMESPACE_PATTERN = re.compile(r"https?://wordpress\.org/export/1\.[0-9]+/\Z")

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_XML_DECLARATION_PATTERN = re.compile(rb"<\?xml[^>]*\?>")
_LEADING_JUNK_SCAN_BYTES = 64 * 1024
_READ_CHUNK_BYTES = 64 * 1024
_DETECT_FORMAT_MAX_BYTES = 1024 * 1024
_LXML_POSITION_SUFFIX = re.compile(r",? line \d+, column \d+\Z")

_WXR_HELP = "Export the comments from WordPress under Tools > Export."
_DISQUS_HELP = "Export the comments from Disqus again."


class ImportFormatError(Exception):
    """An export file that cannot be read at all, with the position of the problem.

    `line` and `column` are 1-based. `column` is None when only the line is known,
    and both are None when the problem has no position.
    """

    def __init__(
        self, message: str, *, line: int | None = None, column: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


class ExportFile:
    """An export file opened for one streaming pass.

    `leading_junk` is a `Skipped` record when the file started with stray bytes
    before the XML, which the reader dropped.
    """

    def __init__(self, stream: BinaryIO, name: str) -> None:
        self.name = name
        self._stream, self.leading_junk = _drop_leading_junk(stream)

    def elements(
        self, expected: ExportFormat, tags: Collection[str] | None = None
    ) -> Iterator[etree._Element]:
        """Yield every element at its end tag in file order, or only the elements named in `tags`.

        `tags` takes qualified names and lxml's ``{*}name`` wildcard. With `tags`, lxml
        creates no Python object for the other elements, which makes parsing faster.

        The root element is checked before the first element is yielded, so a file in
        the wrong format fails before anything is yielded. Raises ImportFormatError for
        a wrong format and for XML that is not well-formed. Every element that ended
        before a syntax error is yielded before the error is raised.
        """
        stream = self._stream
        root_checked = False
        if tags is not None:
            stream, root_checked = self._check_root_ahead(expected)
            if not root_checked:
                # The root start tag was not found in the first bytes, so every element
                # gets an event and the first one checks the root, as without `tags`.
                tags = None

        # Entities stay unresolved and the network stays off, so an export file cannot
        # expand entities without bound or make the parser fetch anything.
        parser = etree.XMLPullParser(
            events=("end",),
            tag=tags,
            remove_comments=True,
            remove_pis=True,
            resolve_entities=False,
            no_network=True,
        )
        while True:
            # A pull parser rather than etree.iterparse, because iterparse drops the
            # events of the chunk that contains a syntax error.
            chunk = stream.read(_READ_CHUNK_BYTES)
            error: etree.XMLSyntaxError | None = None
            try:
                if chunk:
                    parser.feed(chunk)
                else:
                    parser.close()
            except etree.XMLSyntaxError as syntax_problem:
                error = syntax_problem

            for _event, element in parser.read_events():
                if not isinstance(element, etree._Element):
                    continue
                if not root_checked:
                    root = element.getroottree().getroot()
                    check_root(
                        root.tag, root.nsmap, source_line(root), expected, self.name
                    )
                    root_checked = True
                yield element

            if error is not None:
                raise syntax_error(error, self.name) from error
            if not chunk:
                return

    def _check_root_ahead(self, expected: ExportFormat) -> tuple[BinaryIO, bool]:
        """Check the root element from the first bytes of the file, before the main parse.

        Returns a stream that starts again at the first byte, and whether the root was
        found and checked. It is not found when the file is not well-formed before the
        root start tag, or when that tag lies beyond the first 1 MiB, and then the main
        parse reports the problem or checks the root itself.
        """
        head: list[bytes] = []
        root: tuple[str, dict[str | None, str], int | None] | None = None
        try:
            recording = _as_binary_io(_RecordingStream(self._stream, head))
            root = _read_root_element(recording, self.name)
        except ImportFormatError:
            pass

        stream = _as_binary_io(_PrefixedStream(b"".join(head), self._stream))
        if root is None:
            return stream, False

        tag, nsmap, line = root
        check_root(tag, nsmap, line, expected, self.name)
        return stream, True


@contextmanager
def open_export(source: ExportSource) -> Iterator[ExportFile]:
    """Open `source` for streaming, closing it afterwards only if this function opened it."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as stream:
            yield ExportFile(stream, os.fspath(source))
        return

    name = getattr(source, "name", None)
    yield ExportFile(source, name if isinstance(name, str) else "The file")


def detect_format(path: str | os.PathLike[str]) -> ExportFormat:
    """Return the format of the export at `path`, reading only up to its root element.

    Raises ImportFormatError when the file is neither a Disqus export nor a WordPress
    export, or when its start is not well-formed XML.
    """
    name = os.fspath(path)
    with open(path, "rb") as raw:
        stream, _junk = _drop_leading_junk(raw)
        root_tag, nsmap, line = _read_root_element(stream, name)

    detected = identify_root(root_tag, nsmap)
    if detected == "disqus" or detected == "wxr":
        return detected
    if detected == "rss":
        raise ImportFormatError(
            f"{name} is an RSS feed, not a WordPress export (WXR). {_WXR_HELP}",
            line=line,
        )
    raise ImportFormatError(
        f"{name} is neither a Disqus export nor a WordPress export (WXR), because its"
        f" root element is {root_tag}. {_DISQUS_HELP} For WordPress, use Tools > Export.",
        line=line,
    )


def identify_root(
    tag: str, nsmap: dict[str | None, str]
) -> ExportFormat | Literal["rss"] | None:
    """Classify a root element as a Disqus export, a WXR file, another RSS feed or None."""
    if tag == DISQUS_ROOT_TAG:
        return "disqus"
    if tag != "rss":
        return None
    if any(WXR_NAMESPACE_PATTERN.match(uri) for uri in nsmap.values()):
        return "wxr"
    return "rss"


def check_root(
    tag: str,
    nsmap: dict[str | None, str],
    line: int | None,
    expected: ExportFormat,
    name: str,
) -> None:
    """Raise ImportFormatError unless the root element belongs to the `expected` format."""
    detected = identify_root(tag, nsmap)
    if detected == expected:
        return

    if expected == "disqus":
        if detected == "wxr":
            message = (
                f"{name} is a WordPress export (WXR), not a Disqus export."
                " Import it as a WordPress export instead."
            )
        else:
            message = (
                f"{name} is not a Disqus export, because its root element is {tag}"
                f" and not {DISQUS_ROOT_TAG}. {_DISQUS_HELP}"
            )
    elif detected == "disqus":
        message = (
            f"{name} is a Disqus export, not a WordPress export (WXR)."
            " Import it as a Disqus export instead."
        )
    elif detected == "rss":
        message = f"{name} is an RSS feed, not a WordPress export (WXR). {_WXR_HELP}"
    else:
        message = (
            f"{name} is not a WordPress export (WXR), because its root element is {tag}"
            f" and not rss. {_WXR_HELP}"
        )
    raise ImportFormatError(message, line=line)


def syntax_error(error: etree.XMLSyntaxError, name: str) -> ImportFormatError:
    """Convert an lxml syntax error into an ImportFormatError with its position."""
    line, column = error.position
    if line == 0:
        return ImportFormatError(
            f"{name} is empty or contains no XML element. Export the comments again."
        )

    detail = _LXML_POSITION_SUFFIX.sub("", error.msg)
    return ImportFormatError(
        f"{name} is not well-formed XML at line {line}, column {column}: {detail}."
        " Fix the file or export it again.",
        line=line,
        column=column,
    )


def source_line(element: etree._Element) -> int:
    """Return the 1-based line where `element` starts, or 0 when lxml does not know it."""
    # lxml-stubs 0.5.1 declares sourceline without a type, so narrow it here.
    line: object = element.sourceline
    return line if isinstance(line, int) else 0


class _PrefixedStream:
    """A binary stream that returns `head` first and then the rest of `tail`."""

    def __init__(self, head: bytes, tail: BinaryIO) -> None:
        self._head = head
        self._tail = tail

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return self._tail.read(size)

        if size < 0:
            data = self._head + self._tail.read()
            self._head = b""
            return data

        data, self._head = self._head[:size], self._head[size:]
        return data


class _RecordingStream:
    """A binary stream that reads from `source` and appends every chunk it returns to `chunks`."""

    def __init__(self, source: BinaryIO, chunks: list[bytes]) -> None:
        self._source = source
        self._chunks = chunks

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self._chunks.append(data)
        return data


def _drop_leading_junk(stream: BinaryIO) -> tuple[BinaryIO, Skipped | None]:
    """Drop stray bytes before the first ``<`` and report them as a Skipped record.

    Files edited by hand, or saved from a server that printed text before the export,
    have bytes in front of the XML declaration, which makes the whole file ill-formed.
    Newlines among the dropped bytes are kept after the declaration, so every element
    keeps its line number. UTF-16 files are passed through unchanged.
    """
    head = b""
    while len(head) < _LEADING_JUNK_SCAN_BYTES:
        chunk = stream.read(_LEADING_JUNK_SCAN_BYTES - len(head))
        if not chunk:
            break
        head += chunk
        if b"<" in head:
            break

    bom = _UTF8_BOM if head.startswith(_UTF8_BOM) else b""
    body = head[len(bom) :]
    start = body.find(b"<")
    if start <= 0 or head.startswith(_UTF16_BOMS) or b"\x00" in body[:start]:
        return _as_binary_io(_PrefixedStream(head, stream)), None

    junk, rest = body[:start], body[start:]
    newlines = b"\n" * junk.count(b"\n")
    declaration = _XML_DECLARATION_PATTERN.match(rest)
    if declaration is None:
        cleaned = bom + newlines + rest
    else:
        end = declaration.end()
        cleaned = bom + rest[:end] + newlines + rest[end:]

    preview = junk[:40].decode("utf-8", errors="replace")
    notice = Skipped(
        reason=(
            f"Ignored {len(junk)} stray byte(s) {preview!r} before the start of the XML."
        ),
        line=1,
        source_id=None,
    )
    return _as_binary_io(_PrefixedStream(cleaned, stream)), notice


def _as_binary_io(stream: _PrefixedStream | _RecordingStream) -> BinaryIO:
    # The readers of these streams call only read(), which both classes provide.
    return stream  # type: ignore[return-value]


def _read_root_element(
    stream: BinaryIO, name: str
) -> tuple[str, dict[str | None, str], int | None]:
    """Feed the start of `stream` to a pull parser until the root element opens.

    A syntax error after the root start tag does not matter here, so the events
    are read before the error is raised.
    """
    parser = etree.XMLPullParser(
        events=("start",), resolve_entities=False, no_network=True
    )
    consumed = 0
    while consumed < _DETECT_FORMAT_MAX_BYTES:
        chunk = stream.read(16 * 1024)
        consumed += len(chunk)
        error: etree.XMLSyntaxError | None = None
        try:
            if chunk:
                parser.feed(chunk)
            else:
                parser.close()
        except etree.XMLSyntaxError as syntax_problem:
            error = syntax_problem

        for _event, element in parser.read_events():
            if isinstance(element, etree._Element):
                return element.tag, element.nsmap, source_line(element)
        if error is not None:
            raise syntax_error(error, name) from error
        if not chunk:
            break

    raise ImportFormatError(
        f"{name} has no XML root element in its first {consumed} bytes."
        " Export the comments again."
    )
