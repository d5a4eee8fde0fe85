"""Reading of an export file into row batches for the importer.

The parser's records become batches of rows in PostgreSQL's COPY text format, either
in the importing process or in a forked parser process that sends them through a
pipe. Posts travel as field tuples and are encoded where the batch is consumed, so
that the two processes share the work.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TypeAlias

from comments.porting.disqus import parse_disqus
from comments.porting.errors import ExportFormat, ImportFormatError
from comments.porting.records import Skipped, SourcePost, SourceRecord, SourceThread
from comments.porting.wxr import parse_wxr
from comments.render import sanitize_html
from comments.urls import InvalidURL, normalise_url

# Files of this size and larger are parsed in a child process, so that parsing and
# sanitizing run on two cores. Smaller files take well under a second in this process.
_WORKER_MIN_BYTES = 1024 * 1024

# Posts per batch of rows handed from the parser to the importer.
BATCH_POSTS = 500

# The characters that make sanitize_html() change a text without tags: "<" and "&"
# start markup, the HTML serializer escapes ">" and U+00A0, and the HTML parser drops
# NUL and turns CR into LF. tests/porting/test_import.py checks every code point
# against sanitize_html(), so a change there that breaks this list fails the tests.
_HTML_SENSITIVE = re.compile("[<>&\r\x00\xa0]")

# Markup that already lays a comment out, and the blank lines between paragraphs.
_BLOCK_MARKUP = re.compile(r"<(?:p|br|div|ul|ol|li|blockquote|pre|h[1-6]|table)\b", re.IGNORECASE)
_BLANK_LINES = re.compile(r"\n[ \t]*\n\s*")


# One staged post as the file reader hands it over: the import_posts columns in
# COPY order, without html, and with created_at already in ISO 8601. A plain tuple
# pickles faster than a record with named fields.
PostFields: TypeAlias = tuple[
    int, int, str, str, str | None, str, str, str | None, str | None, bool, str | None, str | None, str, str, str
]


@dataclass(frozen=True)
class RowBatch:
    """The records of a run of consecutive items, as the file reader hands them over.

    Posts are field tuples. They are sanitized and encoded as COPY rows where the batch
    is consumed, so that a parser process and the importing process share the work.
    Threads and skipped items are COPY text rows already. `bytes_read` is how far into
    the file the reader has got.
    """

    posts: list[PostFields]
    threads: list[str]
    issues: list[str]
    bytes_read: int


# Reading: the parser's records become row batches, in this process or in a child.


def read_batches(
    path: str, export_format: ExportFormat, *, parse_in_worker: bool | None
) -> AbstractContextManager[Iterator[RowBatch]]:
    """Return a context that yields the row batches of the export at `path`.

    With `parse_in_worker` None, files of 1 MiB and more are parsed in a child process,
    so parsing and sanitizing run on two cores.
    """
    if parse_in_worker is None:
        parse_in_worker = os.path.getsize(path) >= _WORKER_MIN_BYTES
    if parse_in_worker:
        return _batches_from_worker(path, export_format)
    return _batches_in_process(path, export_format)


@contextmanager
def _batches_in_process(path: str, export_format: ExportFormat) -> Iterator[Iterator[RowBatch]]:
    with open(path, "rb") as stream:
        parse = parse_disqus if export_format == "disqus" else parse_wxr
        yield _encode_batches(parse(stream), f"{export_format}:", stream.tell)


def _encode_batches(
    records: Iterable[SourceRecord], prefix: str, bytes_read: Callable[[], int]
) -> Iterator[RowBatch]:
    """Encode `records` as COPY text rows, numbering posts and threads from 1 in file order.

    Those numbers (`seq`) later pick each new row's id.
    """
    post_seq = thread_seq = 0
    posts: list[PostFields] = []
    threads: list[str] = []
    issues: list[str] = []
    for record in records:
        if isinstance(record, SourcePost):
            post_seq += 1
            posts.append(_post_fields(record, post_seq, prefix))
            if len(posts) >= BATCH_POSTS:
                yield RowBatch(posts, threads, issues, bytes_read())
                posts, threads, issues = [], [], []
        elif isinstance(record, SourceThread):
            thread_seq += 1
            threads.append(_thread_row(record, thread_seq, prefix))
        else:
            issues.append(_skipped_row(record, prefix))
    yield RowBatch(posts, threads, issues, bytes_read())


@contextmanager
def _batches_from_worker(path: str, export_format: ExportFormat) -> Iterator[Iterator[RowBatch]]:
    """Parse in a forked child process and yield the batches it sends through a pipe.

    The pipe blocks the child while this process is behind, so at most a few batches
    are in flight. The child is terminated when the block ends early.
    """
    # fork, because spawn and forkserver import __main__ again, and `python -m comments`
    # would run the command a second time in the child.
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    worker = context.Process(
        target=_run_parse_worker, args=(path, export_format, sender), name="comments-import-parser", daemon=True
    )
    worker.start()
    sender.close()
    try:
        yield _receive_batches(receiver)
    finally:
        receiver.close()
        if worker.is_alive():
            worker.terminate()
        worker.join()


def _receive_batches(receiver: Connection) -> Iterator[RowBatch]:
    while True:
        try:
            message = receiver.recv()
        except EOFError:
            raise RuntimeError("the parser process ended without finishing the file") from None
        if isinstance(message, RowBatch):
            yield message
        elif isinstance(message, _ParseFailure):
            raise ImportFormatError(message.message, line=message.line, column=message.column)
        elif message is None:
            return
        else:
            raise RuntimeError(f"the parser process failed:\n{message}")


@dataclass(frozen=True)
class _ParseFailure:
    """An ImportFormatError as the parser process sends it, because pickling the exception would lose its position."""

    message: str
    line: int | None
    column: int | None


def _run_parse_worker(path: str, export_format: ExportFormat, sender: Connection) -> None:
    """Send the row batches of the file at `path`, then None, an ImportFormatError or a traceback text."""
    try:
        with _batches_in_process(path, export_format) as batches:
            for batch in batches:
                sender.send(batch)
        sender.send(None)
    except ImportFormatError as error:
        sender.send(_ParseFailure(error.message, error.line, error.column))
    except KeyboardInterrupt:
        # Ctrl-C reaches the whole process group, and the importing process reports it.
        pass
    except Exception:  # noqa: BLE001
        # The importing process raises it with this text.
        sender.send(traceback.format_exc())
    finally:
        sender.close()


def _post_fields(post: SourcePost, seq: int, prefix: str) -> PostFields:
    parent = None if post.parent_source_id is None else prefix + post.parent_source_id
    return (
        seq,
        post.line,
        prefix + post.source_id,
        prefix + post.thread_source_id,
        parent,
        post.message,
        post.author_name,
        post.author_email,
        post.author_username,
        post.author_is_guest,
        post.author_url,
        post.ip,
        post.created_at.isoformat(),
        post.state,
        post.kind,
    )


def post_row(fields: PostFields) -> str:
    """Encode a post as a COPY text row of import_posts, with its message sanitized into the html column."""
    (
        seq,
        line,
        source_id,
        thread_source_id,
        parent_source_id,
        message,
        author_name,
        author_email,
        author_username,
        author_is_guest,
        author_url,
        ip,
        created_at,
        state,
        kind,
    ) = fields
    return "\t".join((
        str(seq),
        str(line),
        copy_text(source_id),
        copy_text(thread_source_id),
        copy_text(parent_source_id),
        copy_text(message),
        copy_text(sanitize_message(wordpress_paragraphs(message) if source_id.startswith("wxr:") else message)),
        copy_text(author_name),
        copy_text(author_email),
        copy_text(author_username),
        "t" if author_is_guest else "f",
        copy_text(author_url),
        copy_text(ip),
        created_at,
        state,
        kind,
    )) + "\n"


def wordpress_paragraphs(message: str) -> str:
    """
    Return a WordPress comment with the paragraphs and line breaks WordPress adds when it shows it.

    WordPress stores a comment as typed and turns blank lines into paragraphs and other
    line breaks into <br> only on display, so an imported comment would otherwise run
    its lines together. A comment that has block markup of its own is left as it is.
    """
    if "\n" not in message or _BLOCK_MARKUP.search(message):
        return message
    paragraphs = [part.strip("\n") for part in _BLANK_LINES.split(message.strip("\n")) if part.strip()]
    return "".join("<p>" + part.replace("\n", "<br>\n") + "</p>\n" for part in paragraphs)


def sanitize_message(message: str) -> str:
    """Return an imported message as sanitize_html() returns it, skipping the call for plain text.

    Imported messages are HTML, so they are sanitized rather than rendered as Markdown.
    WordPress stores most comments as plain text, which sanitize_html() returns
    unchanged unless it contains one of _HTML_SENSITIVE.
    """
    if _HTML_SENSITIVE.search(message) is None:
        return message
    return sanitize_html(message)


def _thread_row(thread: SourceThread, seq: int, prefix: str) -> str:
    source_id = prefix + thread.source_id
    fields = (
        str(seq),
        str(thread.line),
        copy_text(source_id),
        copy_text(thread.identifier),
        copy_text(thread.url),
        copy_text(thread_url_key(thread.url, source_id)),
        copy_text(thread.title),
        "\\N" if thread.created_at is None else thread.created_at.isoformat(),
        "t" if thread.closed else "f",
        "t" if thread.deleted else "f",
    )
    return "\t".join(fields) + "\n"


def _skipped_row(skipped: Skipped, prefix: str) -> str:
    source_id = None if skipped.source_id is None else prefix + skipped.source_id
    return f"{skipped.line}\t{copy_text(source_id)}\t{copy_text(skipped.reason)}\tt\n"


def thread_url_key(url: str, source_id: str) -> str:
    """Return the url key to store for an imported thread with `url` and stored `source_id`.

    The key is the normalised url. A url that does not normalise (empty, relative, not
    http or https) gets ``import:<source id>`` instead. Threads without an identifier are
    unique per url key, so this rule keeps two such threads from colliding, and no page
    url ever normalises to that key, so the widget never finds them by url.
    """
    try:
        return normalise_url(url)
    except InvalidURL:
        return f"import:{source_id}"


def copy_text(value: str | None) -> str:
    """Encode one value for PostgreSQL's COPY text format, where ``\\N`` is NULL."""
    if value is None:
        return "\\N"
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if "\t" in value:
        value = value.replace("\t", "\\t")
    if "\n" in value:
        value = value.replace("\n", "\\n")
    if "\r" in value:
        value = value.replace("\r", "\\r")
    return value


