"""The ``comments import`` and ``comments export`` commands.

Both run as blocking batch jobs with psycopg2, outside any reactor. Progress goes to
standard error, so an export can write its file to standard output.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import BinaryIO, TextIO

import psycopg2

from comments.config import DatabaseConfig
from comments.db.admin import ForumRecord, find_forum, load_shard_map
from comments.db.migrations import blocking_connection
from comments.porting.errors import ExportFormat, ImportFormatError, detect_format
from comments.porting.exporter import ExportForum, ExportSummary, export_forum
from comments.porting.importer import ImportBusy, ImportProgress, ImportSummary, IssueGroup, import_export_file

__all__ = ["CommandError", "ProgressReporter", "export_file", "import_file", "run_export", "run_import"]

_FORMAT_NAMES: dict[str, str] = {"disqus": "a Disqus export", "wxr": "a WordPress export (WXR)"}

# Memory for the pages of one import's temporary tables. Pages beyond it go to disk.
# NOTE: an estimate for staging a few million posts, not tuned.
_TEMP_BUFFERS = "256MB"


class CommandError(Exception):
    """A problem that ends an import or export with a message to the operator and exit status 1."""


def run_import(database: DatabaseConfig, fmt: str, path: str, forum: str) -> int:
    """Import the export file at `path`, in format `fmt`, into the forum named `forum`.

    Prints a summary to standard output and returns the exit status: 0 after a commit,
    1 when nothing was imported.
    """
    started = time.monotonic()
    try:
        summary = import_file(database, fmt, path, forum)
    except CommandError as error:
        print(f"comments: {error}", file=sys.stderr)
        return 1
    seconds = time.monotonic() - started
    print(format_import_summary(summary, forum=forum, path=path, seconds=seconds))
    return 0


def run_export(database: DatabaseConfig, fmt: str, forum: str, output: str) -> int:
    """Export the forum named `forum` in format `fmt` to the file `output`, or to standard output for ``-``.

    A file is written under a temporary name and renamed when complete, so a failed
    export leaves no partial file. Returns the exit status.
    """
    try:
        summary = export_file(database, fmt, forum, output)
    except CommandError as error:
        print(f"comments: {error}", file=sys.stderr)
        return 1

    target = "standard output" if output == "-" else output
    message = f"exported {summary.threads} threads and {summary.posts} posts of forum {forum} to {target}"
    if summary.pingbacks_left_out:
        message += (
            f"; left out {summary.pingbacks_left_out} pingbacks and trackbacks, which the Disqus format cannot mark"
        )
    print(message, file=sys.stderr)
    return 0


def _check_format(fmt: str) -> ExportFormat:
    if fmt == "disqus":
        return "disqus"
    if fmt == "wxr":
        return "wxr"
    raise CommandError(f"unknown format {fmt!r}; use disqus or wxr")


def _check_file_format(path: str, export_format: ExportFormat) -> None:
    """Raise CommandError unless `path` is a readable export in `export_format`.

    Only the start of the file up to its root element is read.
    """
    try:
        detected = detect_format(path)
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror}") from None
    except ImportFormatError as error:
        raise CommandError(f"{_describe_format_error(error)} Nothing was imported.") from None

    if detected != export_format:
        raise CommandError(
            f"{path} is {_FORMAT_NAMES[detected]}, not {_FORMAT_NAMES[export_format]}."
            f" Run `comments import {detected} {path} --forum ...` instead."
        )


def _describe_format_error(error: ImportFormatError) -> str:
    """Return the error's message, with its position in front unless the message already gives it."""
    if error.line is None or f"line {error.line}" in error.message:
        return error.message
    if error.column is None:
        return f"line {error.line}: {error.message}"
    return f"line {error.line}, column {error.column}: {error.message}"


def import_file(
    database: DatabaseConfig,
    fmt: str,
    path: str,
    shortname: str,
    *,
    progress_stream: TextIO | None = None,
    progress: ImportProgress | None = None,
    parse_in_worker: bool | None = None,
) -> ImportSummary:
    """Import the export at `path` in format `fmt` into the forum named `shortname` and return the summary.

    Progress goes to `progress` when given, and otherwise to a ProgressReporter on
    `progress_stream`, standard error by default. `parse_in_worker` forces parsing in a
    child process on or off; by default the file size decides. Raises CommandError,
    with a message for the operator, when nothing was imported.
    """
    export_format = _check_format(fmt)
    _check_file_format(path, export_format)
    forum, dsn, schema = _locate_forum(database, shortname)
    assert database.users

    try:
        size = os.path.getsize(path)
        with blocking_connection(dsn) as shard, blocking_connection(database.users) as users:
            shard.set_client_encoding("UTF8")
            with shard.cursor() as cursor:
                # Temporary tables keep their pages in this memory, which must be set
                # before the session first touches a temporary table.
                cursor.execute(f"SET temp_buffers = '{_TEMP_BUFFERS}'")
            with ProgressReporter.for_stream(progress_stream or sys.stderr, verb="importing", total_bytes=size) as (
                reporter
            ):
                return import_export_file(
                    path,
                    export_format,
                    shard=shard,
                    users=users,
                    schema=schema,
                    forum_id=forum.id,
                    progress=progress or reporter,
                    parse_in_worker=parse_in_worker,
                )
    except ImportFormatError as error:
        raise CommandError(
            f"{_describe_format_error(error)} Nothing was imported, and forum {shortname} is unchanged."
        ) from None
    except ImportBusy:
        raise CommandError(
            f"another import into forum {shortname} is running; wait for it to finish and try again"
        ) from None
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror}") from None
    except psycopg2.Error as error:
        detail = str(error).strip() or type(error).__name__
        raise CommandError(
            f"the import into forum {shortname} failed, so nothing was imported: {detail}"
        ) from None


def export_file(
    database: DatabaseConfig, fmt: str, shortname: str, output: str, *, progress_stream: TextIO | None = None
) -> ExportSummary:
    """Export the forum named `shortname` in format `fmt` to `output` (``-`` for standard output).

    Progress goes to `progress_stream`, standard error by default. Raises CommandError,
    with a message for the operator, when the export failed.
    """
    export_format = _check_format(fmt)
    forum, dsn, schema = _locate_forum(database, shortname)
    assert database.users
    export = ExportForum(id=forum.id, shortname=forum.shortname, name=forum.name, url=forum.url)
    try:
        with _output_file(output) as out, blocking_connection(dsn) as shard, blocking_connection(
            database.users
        ) as users:
            shard.set_client_encoding("UTF8")
            with ProgressReporter.for_stream(progress_stream or sys.stderr, verb="exporting") as progress:
                return export_forum(
                    out,
                    shard=shard,
                    users=users,
                    schema=schema,
                    forum=export,
                    export_format=export_format,
                    on_post=progress.posts_staged,
                )
    except OSError as error:
        raise CommandError(f"cannot write {output}: {error.strerror}") from None
    except psycopg2.Error as error:
        detail = str(error).strip() or type(error).__name__
        raise CommandError(f"the export of forum {shortname} failed: {detail}") from None


def _locate_forum(database: DatabaseConfig, shortname: str) -> tuple[ForumRecord, str, str]:
    """Return the forum named `shortname`, the DSN of its shard's database and the shard's schema."""
    assert database.meta
    try:
        with blocking_connection(database.meta) as meta:
            forum = find_forum(meta, shortname)
            if forum is None:
                raise CommandError(
                    f"forum {shortname!r} not found; create it with `comments forum create {shortname}`"
                    " or list the forums with `comments forum list`"
                )
            shard_map = load_shard_map(meta, database)
    except psycopg2.Error as error:
        raise CommandError(f"cannot read the forum list from the meta database: {str(error).strip()}") from None

    database_index, schema = shard_map[forum.shard]
    return forum, database.shards[database_index], schema


@contextmanager
def _output_file(output: str) -> Iterator[BinaryIO]:
    """Yield a binary stream for `output`, renaming a temporary file into place once the block succeeds."""
    if output == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return

    directory = os.path.dirname(os.path.abspath(output))
    # mkstemp makes the file readable by its owner only, which suits a file of e-mail and IP addresses.
    descriptor, temporary = tempfile.mkstemp(prefix=".comments-export-", dir=directory)
    try:
        with os.fdopen(descriptor, "wb") as out:
            yield out
        os.replace(temporary, output)
    except BaseException:
        os.unlink(temporary)
        raise


# Progress and summary output.


class ProgressReporter:
    """Progress of an import or export, written to `stream`.

    On a terminal, one line is redrawn at most 10 times a second with the posts done,
    the rate and, when the total size is known, a bar of the file read so far. Elsewhere
    a plain line is written every 10 seconds and at the start of every phase.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        verb: str,
        interactive: bool,
        total_bytes: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._verb = verb
        self._interactive = interactive
        self._total_bytes = total_bytes
        self._bytes_read: int | None = None
        self._clock = clock
        self._started = clock()
        self._interval = 0.1 if interactive else 10.0
        self._last_written = self._started
        self._posts = 0
        self._phase = verb
        self._line_open = False

    @classmethod
    @contextmanager
    def for_stream(
        cls,
        stream: TextIO,
        *,
        verb: str,
        total_bytes: int | None = None,
    ) -> Iterator[ProgressReporter]:
        """Yield a reporter that redraws one line when `stream` is a terminal, and end that line afterwards."""
        reporter = cls(stream, verb=verb, interactive=stream.isatty(), total_bytes=total_bytes)
        try:
            yield reporter
        finally:
            reporter.finish()

    def posts_staged(self, count: int, bytes_read: int | None = None) -> None:
        """Record that `count` posts, in the first `bytes_read` bytes of the file, are done, and report when due."""
        self._posts = count
        self._bytes_read = bytes_read
        now = self._clock()
        if now - self._last_written >= self._interval:
            self._last_written = now
            self._write(now)

    def phase(self, description: str) -> None:
        """Record that the work has moved on to `description`, and report it."""
        self._phase = description
        now = self._clock()
        self._last_written = now
        if self._interactive:
            self._write(now)
        else:
            self._stream.write(f"comments: {description} ({self._posts} posts read so far)\n")
            self._stream.flush()

    def finish(self) -> None:
        """End the redrawn line on a terminal."""
        if self._line_open:
            self._stream.write("\n")
            self._stream.flush()
            self._line_open = False

    def _write(self, now: float) -> None:
        elapsed = max(now - self._started, 1e-9)
        rate = self._posts / elapsed
        text = f"{self._phase}: {self._posts:,} posts, {rate:,.0f} posts/s"
        if not self._interactive:
            self._stream.write(f"comments: {text}\n")
            self._stream.flush()
            return

        bar = ""
        if self._total_bytes and self._bytes_read is not None:
            fraction = min(1.0, self._bytes_read / self._total_bytes)
            filled = int(fraction * 20)
            bar = f"[{'#' * filled}{'.' * (20 - filled)}] {fraction:4.0%} "
        # \r returns to the start of the line and \x1b[K clears what was there.
        self._stream.write(f"\r\x1b[K{bar}{text}")
        self._stream.flush()
        self._line_open = True


def format_import_summary(summary: ImportSummary, *, forum: str, path: str, seconds: float) -> str:
    """Return the lines that describe a finished import to the operator."""
    rate = summary.posts_created / seconds if seconds > 0 else 0.0
    lines = [
        f"Imported {path} into forum {forum} in {seconds:.1f} s ({rate:,.0f} new posts/s).",
        f"  threads: {summary.threads_created} new, {summary.threads_matched} already in the forum",
        f"  posts: {summary.posts_created} new, {summary.posts_existing} imported before",
    ]
    if summary.pingbacks:
        lines.append(
            f"  pingbacks and trackbacks: {summary.pingbacks} of the new posts, stored apart from the comments"
        )
    lines.append(f"  accounts: {summary.accounts_linked} registered authors linked, {summary.accounts_created} new")
    lines += _issue_lines("skipped", summary.skipped_total, summary.skipped)
    lines += _issue_lines("stored with changes", summary.adjusted_total, summary.adjusted)
    return "\n".join(lines)


def _issue_lines(title: str, total: int, groups: tuple[IssueGroup, ...]) -> list[str]:
    if total == 0:
        return [f"  {title}: none"]
    lines = [f"  {title}: {total}"]
    lines += [f"    {group.count} x {group.reason} (first at line {group.first_line})" for group in groups]
    listed = sum(group.count for group in groups)
    if listed < total:
        lines.append(f"    {total - listed} more, for other reasons")
    return lines
