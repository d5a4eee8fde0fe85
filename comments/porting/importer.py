"""Import of Disqus and WordPress export files into one forum's logical shard.

Every thread and post of a forum lives in one schema on one database, so the whole file
is imported in one transaction there. The records stream into temporary staging tables
with COPY. SQL then resolves what the file order leaves open: threads that come after
their posts, replies that come before their parents, missing threads and parents, and
the root and depth of every reply. A file that fails to parse halfway commits nothing.

Stored source ids carry the format as a prefix (``disqus:123``, ``wxr:18:2``), so a
Disqus export and a WordPress export of one site never match each other's ids. The unique
``(forum_id, source_id)`` indexes make a second import of the same file, or of a newer
export that overlaps it, add only what is new.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import IO, Protocol

import psycopg2.extensions

from comments.porting.disqus import parse_disqus
from comments.porting.errors import ExportFormat, ImportFormatError
from comments.porting.records import Skipped, SourcePost, SourceRecord, SourceThread
from comments.porting.wxr import parse_wxr
from comments.render import sanitize_html
from comments.urls import InvalidURL, normalise_url

__all__ = ["ImportBusy", "ImportProgress", "ImportSummary", "IssueGroup", "import_export_file"]

# Ids drawn from next_id() per millisecond. next_id() keeps only 10 bits of its
# sequence, so more than 1024 ids in one millisecond on one shard repeat earlier ids.
# Half of that room is left to posts that the nodes write during the import.
_IDS_PER_MILLISECOND = 512

# Enough for the hash joins and sorts over a few million staged rows to stay in memory.
# NOTE: an estimate, not tuned on a server with other load.
_WORK_MEM = "128MB"

# Rows of staged text that one read() of the COPY stream collects before it returns.
_COPY_CHUNK_BYTES = 256 * 1024

# Files of this size and larger are parsed in a child process, so that parsing and
# sanitizing run on two cores. Smaller files take well under a second in this process.
_WORKER_MIN_BYTES = 1024 * 1024

# Posts per batch of rows handed from the parser to the COPY stream.
_BATCH_POSTS = 500

# The largest number of issue groups that the summary lists, most frequent first.
_MAX_ISSUE_GROUPS = 20

# Account upserts in the users database go in batches of this many usernames.
_ACCOUNT_BATCH = 1000

_MISSING_THREAD = "The post's thread is not in the file, or the parser skipped it."
_DUPLICATE_THREAD = "The thread's id appears earlier in the file, so this copy was ignored."
_DUPLICATE_POST = "The post's id appears earlier in the file, so this copy was ignored."
_MISSING_PARENT = (
    "The reply's parent is not in the file, was skipped or belongs to another thread,"
    " so the reply became a top-level post."
)
_PARENT_CYCLE = "The reply's chain of parents loops back on itself, so the reply became a top-level post."


class ImportBusy(Exception):
    """Another import into the same forum holds the forum's import lock."""


class ImportProgress(Protocol):
    """Receiver of progress reports while an import runs."""

    def posts_staged(self, count: int, bytes_read: int) -> None:
        """Report that `count` posts, in the first `bytes_read` bytes of the file, have been read so far."""

    def phase(self, description: str) -> None:
        """Report that the import has moved on to the step `description`."""


@dataclass(frozen=True)
class IssueGroup:
    """Items of the file that share one reason, with the line of the first of them."""

    reason: str
    count: int
    first_line: int


@dataclass(frozen=True)
class ImportSummary:
    """Counts of what an import stored, matched and left out.

    `threads_matched` counts the file's threads that were already in the forum, found by
    source id, identifier or url. `posts_existing` counts posts imported by an earlier
    run. `pingbacks` counts the pingbacks and trackbacks among `posts_created`.
    `adjusted` lists posts that were stored with a change, such as a reply whose parent
    was missing. Each issue list contains at most 20 groups, and the totals count them all.
    """

    threads_created: int
    threads_matched: int
    posts_created: int
    posts_existing: int
    pingbacks: int
    accounts_linked: int
    accounts_created: int
    skipped_total: int
    skipped: tuple[IssueGroup, ...]
    adjusted_total: int
    adjusted: tuple[IssueGroup, ...]


def import_export_file(
    path: str,
    export_format: ExportFormat,
    *,
    shard: psycopg2.extensions.connection,
    users: psycopg2.extensions.connection,
    schema: str,
    forum_id: int,
    progress: ImportProgress,
    parse_in_worker: bool | None = None,
) -> ImportSummary:
    """Import the export at `path` into forum `forum_id`, whose shard is `schema` on `shard`, in one transaction.

    Registered authors get an account in the users database on `users`, committed before
    the shard transaction commits. Those accounts stay when the shard transaction fails,
    which is harmless because a later import links to them again. `parse_in_worker`
    forces parsing in a child process on or off; by default files of 1 MiB and more use one.

    Raises ImportFormatError when the file cannot be read as an export, and ImportBusy
    when another import into the forum is running. The shard is rolled back for both.
    """
    with (
        _read_batches(path, export_format, parse_in_worker=parse_in_worker) as batches,
        shard,
        shard.cursor() as cursor,
    ):
        return _import_txn(cursor, batches=batches, users=users, schema=schema, forum_id=forum_id, progress=progress)


def _import_txn(
    cursor: psycopg2.extensions.cursor,
    *,
    batches: Iterable[_RowBatch],
    users: psycopg2.extensions.connection,
    schema: str,
    forum_id: int,
    progress: ImportProgress,
) -> ImportSummary:
    cursor.execute("SELECT pg_try_advisory_xact_lock(hashtext(%s))", (f"comments-import:{forum_id}",))
    locked = cursor.fetchone()
    if locked is None or not locked[0]:
        raise ImportBusy(f"another import into forum {forum_id} is running; wait for it to finish and try again")
    # JIT compilation costs a few hundred milliseconds per statement and gains little
    # on these scans and hash joins.
    cursor.execute(f"SET LOCAL work_mem = '{_WORK_MEM}'; SET LOCAL jit = off")

    progress.phase("reading the file")
    counts = _stage_records(cursor, batches, progress=progress)

    progress.phase("matching threads")
    threads_created, threads_matched = _resolve_threads(cursor, schema=schema, forum_id=forum_id)

    progress.phase("linking registered authors to accounts")
    accounts_linked, accounts_created = _link_accounts(cursor, users)

    progress.phase("placing replies under their parents")
    _resolve_posts(cursor, schema=schema, forum_id=forum_id, staged_posts=counts.posts)

    progress.phase("storing posts")
    posts_created, pingbacks = _insert_posts(cursor, schema=schema, forum_id=forum_id)
    _recount_threads(cursor, schema=schema)
    posts_existing = _count(cursor, "SELECT count(*) FROM import_links WHERE existing_id IS NOT NULL")

    skipped_total, skipped = _issue_groups(cursor, skipped=True)
    adjusted_total, adjusted = _issue_groups(cursor, skipped=False)
    progress.phase("committing")
    return ImportSummary(
        threads_created=threads_created,
        threads_matched=threads_matched,
        posts_created=posts_created,
        posts_existing=posts_existing,
        pingbacks=pingbacks,
        accounts_linked=accounts_linked,
        accounts_created=accounts_created,
        skipped_total=skipped_total,
        skipped=skipped,
        adjusted_total=adjusted_total,
        adjusted=adjusted,
    )


# Staging: the file's records go into temporary tables by COPY.

_STAGING_TABLES = """
    CREATE TEMP TABLE import_posts (
        seq bigint NOT NULL,
        line integer NOT NULL,
        source_id text NOT NULL,
        thread_source_id text NOT NULL,
        parent_source_id text,
        raw text NOT NULL,
        html text NOT NULL,
        author_name text NOT NULL,
        author_email text,
        author_username text,
        author_is_guest boolean NOT NULL,
        author_url text,
        ip inet,
        created_at timestamptz NOT NULL,
        state text NOT NULL,
        kind text NOT NULL
    ) ON COMMIT DROP;
    CREATE TEMP TABLE import_threads (
        seq bigint NOT NULL,
        line integer NOT NULL,
        source_id text NOT NULL,
        identifier text,
        url text NOT NULL,
        url_key text NOT NULL,
        title text NOT NULL,
        created_at timestamptz,
        closed boolean NOT NULL,
        deleted boolean NOT NULL
    ) ON COMMIT DROP;
    CREATE TEMP TABLE import_issues (
        line integer NOT NULL,
        source_id text,
        reason text NOT NULL,
        skipped boolean NOT NULL
    ) ON COMMIT DROP;
"""


@dataclass(frozen=True)
class _StagedCounts:
    threads: int
    posts: int


@dataclass(frozen=True)
class _RowBatch:
    """COPY text rows for a run of consecutive records, as the file reader hands them over.

    Each post is three parts: the row up to the html column, the message to sanitize
    into that column, and the rest of the row. Sanitizing happens where the batch is
    consumed, so a parser process and the importing process share the work.
    `bytes_read` is how far into the file the reader has got.
    """

    posts: list[tuple[str, str, str]]
    threads: list[str]
    issues: list[str]
    bytes_read: int


def _stage_records(
    cursor: psycopg2.extensions.cursor,
    batches: Iterable[_RowBatch],
    *,
    progress: ImportProgress,
) -> _StagedCounts:
    """Copy the row batches into the staging tables and return how many threads and posts they hold.

    Posts stream straight into COPY. Threads and skipped items go to temporary files
    first, because one connection runs one COPY at a time, and are copied after the posts.
    """
    cursor.execute(_STAGING_TABLES)
    with (
        tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as threads_file,
        tempfile.SpooledTemporaryFile(max_size=1024 * 1024) as issues_file,
    ):
        stream = _StagingStream(batches, threads_file, issues_file, progress)
        cursor.copy_expert(
            "COPY import_posts (seq, line, source_id, thread_source_id, parent_source_id, raw, html,"
            " author_name, author_email, author_username, author_is_guest, author_url, ip, created_at,"
            " state, kind) FROM STDIN",
            stream,
            size=_COPY_CHUNK_BYTES,
        )
        stream.raise_deferred_error()

        threads_file.seek(0)
        cursor.copy_expert(
            "COPY import_threads (seq, line, source_id, identifier, url, url_key, title, created_at,"
            " closed, deleted) FROM STDIN",
            threads_file,
        )
        issues_file.seek(0)
        cursor.copy_expert("COPY import_issues (line, source_id, reason, skipped) FROM STDIN", issues_file)

    # Temporary tables get no statistics from autovacuum, and the joins below need them.
    # The wide text columns are left out, because sampling them is slow and no join uses them.
    cursor.execute(
        "ANALYZE import_posts (seq, source_id, thread_source_id, parent_source_id, author_username);"
        " ANALYZE import_threads"
    )
    return _StagedCounts(threads=stream.threads, posts=stream.posts)


class _StagingStream:
    """A binary stream of COPY text rows for `import_posts`, read by psycopg2's copy_expert.

    Each read() takes row batches until about `size` bytes of post rows are ready, and
    sanitizes each post's message into its html column on the way. Thread and issue rows
    are written to their own files.

    psycopg2 turns an exception raised inside read() into a generic QueryCanceled, so
    read() keeps the exception, ends the COPY, and `raise_deferred_error` raises it.
    """

    def __init__(
        self, batches: Iterable[_RowBatch], threads_file: IO[bytes], issues_file: IO[bytes], progress: ImportProgress
    ) -> None:
        self._batches: Iterator[_RowBatch] = iter(batches)
        self._threads_file = threads_file
        self._issues_file = issues_file
        self._progress = progress
        self._error: BaseException | None = None
        self.posts = 0
        self.threads = 0

    def read(self, size: int = _COPY_CHUNK_BYTES) -> bytes:
        if self._error is not None:
            return b""
        rows: list[str] = []
        length = 0
        try:
            for batch in self._batches:
                for before, message, after in batch.posts:
                    # Imported messages are HTML, so they are sanitized rather than rendered as Markdown.
                    row = before + _copy_text(sanitize_html(message)) + after
                    rows.append(row)
                    length += len(row)
                if batch.threads:
                    self._threads_file.write("".join(batch.threads).encode())
                if batch.issues:
                    self._issues_file.write("".join(batch.issues).encode())
                self.posts += len(batch.posts)
                self.threads += len(batch.threads)
                self._progress.posts_staged(self.posts, batch.bytes_read)
                if length >= size:
                    break
        # Any error, a KeyboardInterrupt included, is raised again after the COPY ends.
        except BaseException as error:  # noqa: BLE001
            self._error = error
            return b""
        return "".join(rows).encode()

    def readline(self, size: int = _COPY_CHUNK_BYTES) -> bytes:
        """Return the next rows as read() does. psycopg2 calls only read(), but types-psycopg2 requires this method."""
        return self.read(size)

    def raise_deferred_error(self) -> None:
        """Raise the exception that ended the row batches, if any."""
        if self._error is not None:
            raise self._error


# Reading: the parser's records become row batches, in this process or in a child.


def _read_batches(
    path: str, export_format: ExportFormat, *, parse_in_worker: bool | None
) -> AbstractContextManager[Iterator[_RowBatch]]:
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
def _batches_in_process(path: str, export_format: ExportFormat) -> Iterator[Iterator[_RowBatch]]:
    with open(path, "rb") as stream:
        parse = parse_disqus if export_format == "disqus" else parse_wxr
        yield _encode_batches(parse(stream), f"{export_format}:", stream.tell)


def _encode_batches(
    records: Iterable[SourceRecord], prefix: str, bytes_read: Callable[[], int]
) -> Iterator[_RowBatch]:
    """Encode `records` as COPY text rows, numbering posts and threads from 1 in file order.

    Those numbers (`seq`) later pick each new row's id.
    """
    post_seq = thread_seq = 0
    posts: list[tuple[str, str, str]] = []
    threads: list[str] = []
    issues: list[str] = []
    for record in records:
        if isinstance(record, SourcePost):
            post_seq += 1
            posts.append(_post_row_parts(record, post_seq, prefix))
            if len(posts) >= _BATCH_POSTS:
                yield _RowBatch(posts, threads, issues, bytes_read())
                posts, threads, issues = [], [], []
        elif isinstance(record, SourceThread):
            thread_seq += 1
            threads.append(_thread_row(record, thread_seq, prefix))
        else:
            issues.append(_skipped_row(record, prefix))
    yield _RowBatch(posts, threads, issues, bytes_read())


@contextmanager
def _batches_from_worker(path: str, export_format: ExportFormat) -> Iterator[Iterator[_RowBatch]]:
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


def _receive_batches(receiver: Connection) -> Iterator[_RowBatch]:
    while True:
        try:
            message = receiver.recv()
        except EOFError:
            raise RuntimeError("the parser process ended without finishing the file") from None
        if isinstance(message, _RowBatch):
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


def _post_row_parts(post: SourcePost, seq: int, prefix: str) -> tuple[str, str, str]:
    parent = None if post.parent_source_id is None else prefix + post.parent_source_id
    before = (
        f"{seq}\t{post.line}\t{_copy_text(prefix + post.source_id)}\t{_copy_text(prefix + post.thread_source_id)}"
        f"\t{_copy_text(parent)}\t{_copy_text(post.message)}\t"
    )
    after = "\t".join((
        "",
        _copy_text(post.author_name),
        _copy_text(post.author_email),
        _copy_text(post.author_username),
        "t" if post.author_is_guest else "f",
        _copy_text(post.author_url),
        _copy_text(post.ip),
        post.created_at.isoformat(),
        post.state,
        post.kind,
    ))
    return before, post.message, after + "\n"


def _thread_row(thread: SourceThread, seq: int, prefix: str) -> str:
    source_id = prefix + thread.source_id
    fields = (
        str(seq),
        str(thread.line),
        _copy_text(source_id),
        _copy_text(thread.identifier),
        _copy_text(thread.url),
        _copy_text(thread_url_key(thread.url, source_id)),
        _copy_text(thread.title),
        "\\N" if thread.created_at is None else thread.created_at.isoformat(),
        "t" if thread.closed else "f",
        "t" if thread.deleted else "f",
    )
    return "\t".join(fields) + "\n"


def _skipped_row(skipped: Skipped, prefix: str) -> str:
    source_id = None if skipped.source_id is None else prefix + skipped.source_id
    return f"{skipped.line}\t{_copy_text(source_id)}\t{_copy_text(skipped.reason)}\tt\n"


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


def _copy_text(value: str | None) -> str:
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


# Threads: each staged thread maps to an existing thread of the forum or to a new one.


def _resolve_threads(cursor: psycopg2.extensions.cursor, *, schema: str, forum_id: int) -> tuple[int, int]:
    """Fill `import_thread_map` from stored source id to thread id, creating missing threads.

    A staged thread matches a thread of the forum by source id first, then by identifier,
    then, when it has no identifier, by url key among threads without identifier. This
    is how the widget finds threads, so an import merges into threads that readers
    already started. Staged threads that share an identifier, or a url key without
    identifier, become one new thread, which takes the first one's fields and source id.

    Returns the number of threads created and the number of staged threads that matched
    threads the forum already had.
    """
    cursor.execute(
        """CREATE TEMP TABLE import_thread_map ON COMMIT DROP AS
           SELECT DISTINCT ON (source_id) seq, line, source_id, identifier, url_key, NULL::bigint AS thread_id
           FROM import_threads ORDER BY source_id, seq"""
    )
    cursor.execute(
        """INSERT INTO import_issues (line, source_id, reason, skipped)
           SELECT t.line, t.source_id, %s, true FROM import_threads t
           WHERE NOT EXISTS (SELECT 1 FROM import_thread_map m WHERE m.seq = t.seq)""",
        (_DUPLICATE_THREAD,),
    )
    cursor.execute(
        f"""UPDATE import_thread_map m SET thread_id = t.id FROM {schema}.threads t
            WHERE t.forum_id = %s AND t.source_id = m.source_id""",
        (forum_id,),
    )
    _match_threads_by_key(cursor, schema=schema, forum_id=forum_id)
    threads_matched = _count(cursor, "SELECT count(*) FROM import_thread_map WHERE thread_id IS NOT NULL")

    cursor.execute(
        """CREATE TEMP TABLE import_new_threads ON COMMIT DROP AS
           SELECT min(seq) AS seq FROM import_thread_map WHERE thread_id IS NULL
           GROUP BY COALESCE('identifier:' || identifier, 'url:' || url_key)"""
    )
    # seq numbers run from 1 to the number of staged threads, so that many ids cover them.
    staged_threads = _count(cursor, "SELECT count(*) FROM import_threads")
    _allocate_ids(cursor, schema=schema, table="import_thread_ids", count=staged_threads)

    # A thread without a date takes the date of its first post, so an export written
    # later gives it the same date again.
    cursor.execute(
        f"""INSERT INTO {schema}.threads
                (id, forum_id, identifier, url, url_key, title, created_at, closed, deleted, source_id)
            SELECT ids.id, %s, t.identifier, t.url, t.url_key, t.title,
                   COALESCE(t.created_at, first_post.created_at, now()), t.closed, t.deleted, t.source_id
            FROM import_new_threads n
            JOIN import_threads t ON t.seq = n.seq
            JOIN import_thread_ids ids ON ids.ordinal = n.seq
            LEFT JOIN (
                SELECT thread_source_id, min(created_at) AS created_at FROM import_posts GROUP BY thread_source_id
            ) first_post ON t.created_at IS NULL AND first_post.thread_source_id = t.source_id
            ON CONFLICT DO NOTHING""",
        (forum_id,),
    )
    threads_created = cursor.rowcount

    # The new threads, and any that a node created meanwhile for the same page, are
    # found by the same keys.
    _match_threads_by_key(cursor, schema=schema, forum_id=forum_id)

    # Posts may belong to threads that an earlier import stored and this file lacks.
    cursor.execute(
        f"""INSERT INTO import_thread_map (seq, line, source_id, identifier, url_key, thread_id)
            SELECT 0, 0, t.source_id, t.identifier, t.url_key, t.id FROM {schema}.threads t
            WHERE t.forum_id = %s
              AND t.source_id IN (SELECT thread_source_id FROM import_posts)
              AND NOT EXISTS (SELECT 1 FROM import_thread_map m WHERE m.source_id = t.source_id)""",
        (forum_id,),
    )
    cursor.execute("ANALYZE import_thread_map")
    return threads_created, threads_matched


def _match_threads_by_key(cursor: psycopg2.extensions.cursor, *, schema: str, forum_id: int) -> None:
    cursor.execute(
        f"""UPDATE import_thread_map m SET thread_id = t.id FROM {schema}.threads t
            WHERE m.thread_id IS NULL AND m.identifier IS NOT NULL
              AND t.forum_id = %s AND t.identifier = m.identifier""",
        (forum_id,),
    )
    cursor.execute(
        f"""UPDATE import_thread_map m SET thread_id = t.id FROM {schema}.threads t
            WHERE m.thread_id IS NULL AND m.identifier IS NULL
              AND t.forum_id = %s AND t.identifier IS NULL AND t.url_key = m.url_key""",
        (forum_id,),
    )


def _allocate_ids(cursor: psycopg2.extensions.cursor, *, schema: str, table: str, count: int) -> None:
    """Create temporary `table` with `count` new ids from the shard's next_id(), numbered from 1.

    The ids are drawn in batches of at most 512, and each batch waits until the clock
    has moved past the millisecond in which the previous one ended. So no millisecond
    gets more than 512 of these ids, and the 10-bit sequence inside the ids cannot
    repeat a value within one millisecond. The wait costs about 2 seconds per million ids.
    """
    cursor.execute(f"CREATE TEMP TABLE {table} (ordinal bigint NOT NULL, id bigint NOT NULL) ON COMMIT DROP")
    if count <= 0:
        return
    # A DO block takes no parameters, so the two integers and the schema name, which
    # comes from the shard map, are written into it.
    cursor.execute(
        f"""DO $$
            DECLARE
                allocated bigint := 0;
                batch bigint;
                batch_end_ms double precision;
            BEGIN
                WHILE allocated < {int(count)} LOOP
                    batch := least({_IDS_PER_MILLISECOND}, {int(count)} - allocated);
                    INSERT INTO {table} (ordinal, id)
                        SELECT allocated + n, {schema}.next_id() FROM generate_series(1, batch) AS n;
                    allocated := allocated + batch;
                    batch_end_ms := floor(extract(epoch FROM clock_timestamp()) * 1000);
                    WHILE floor(extract(epoch FROM clock_timestamp()) * 1000) <= batch_end_ms LOOP
                    END LOOP;
                END LOOP;
            END $$"""
    )
    cursor.execute(f"ANALYZE {table}")


# Authors: registered authors are linked to accounts in the users database.


def _link_accounts(cursor: psycopg2.extensions.cursor, users: psycopg2.extensions.connection) -> tuple[int, int]:
    """Upsert an account for every registered author's username and stage the account ids.

    An existing account with the same username is linked as it is: the import never
    changes its display name or e-mail. A new account takes the name and e-mail of the
    username's first post in the file. Guests, and registered authors that the file
    names without a username (WordPress exports), are not linked.

    Returns the number of usernames linked and the number of accounts created.
    """
    cursor.execute(
        "CREATE TEMP TABLE import_accounts (username text NOT NULL, account_id bigint NOT NULL) ON COMMIT DROP"
    )
    linked = created = 0
    authors = cursor.connection.cursor(name="import_authors")
    authors.itersize = _ACCOUNT_BATCH
    with tempfile.SpooledTemporaryFile(max_size=1024 * 1024) as accounts_file:
        try:
            authors.execute(
                """SELECT DISTINCT ON (author_username) author_username, author_name, author_email
                   FROM import_posts WHERE NOT author_is_guest AND author_username IS NOT NULL
                   ORDER BY author_username, seq"""
            )
            while batch := authors.fetchmany(_ACCOUNT_BATCH):
                accounts, inserted = _upsert_accounts(users, batch)
                created += inserted
                linked += len(accounts)
                for username, account_id in accounts:
                    accounts_file.write(f"{_copy_text(username)}\t{account_id}\n".encode())
            users.commit()
        except BaseException:
            users.rollback()
            raise
        finally:
            authors.close()
        accounts_file.seek(0)
        cursor.copy_expert("COPY import_accounts (username, account_id) FROM STDIN", accounts_file)
    cursor.execute("ANALYZE import_accounts")
    return linked, created


def _upsert_accounts(
    users: psycopg2.extensions.connection, authors: list[tuple[str, str, str | None]]
) -> tuple[list[tuple[str, int]], int]:
    usernames = [username for username, _name, _email in authors]
    names = [name or username for username, name, _email in authors]
    emails = [email for _username, _name, email in authors]
    with users.cursor() as cursor:
        cursor.execute(
            """INSERT INTO users.accounts (username, display_name, email)
               SELECT * FROM unnest(%s::text[], %s::text[], %s::text[])
               ON CONFLICT (username) DO NOTHING""",
            (usernames, names, emails),
        )
        inserted = cursor.rowcount
        cursor.execute("SELECT username, id FROM users.accounts WHERE username = ANY(%s)", (usernames,))
        return [(row[0], row[1]) for row in cursor.fetchall()], inserted


# Posts: ids, threads and parents, then the root and depth of every new post.


def _resolve_posts(cursor: psycopg2.extensions.cursor, *, schema: str, forum_id: int, staged_posts: int) -> None:
    """Build `import_tree`: every new post with its id, thread, parent, root and depth.

    A post whose id repeats an earlier post of the file, or whose thread is missing, is
    skipped. A reply whose parent is missing becomes a top-level post, and so does every
    reply whose chain of parents loops. A reply to a deleted post stays under it, and the
    deleted post is stored as a placeholder. Each case is recorded in `import_issues`.
    """
    cursor.execute(
        """CREATE TEMP TABLE import_duplicates ON COMMIT DROP AS
           SELECT p.seq, p.line, p.source_id FROM import_posts p
           JOIN (SELECT source_id, min(seq) AS first_seq FROM import_posts GROUP BY source_id HAVING count(*) > 1) d
             ON d.source_id = p.source_id AND p.seq > d.first_seq"""
    )
    cursor.execute(
        "INSERT INTO import_issues (line, source_id, reason, skipped) SELECT line, source_id, %s, true"
        " FROM import_duplicates",
        (_DUPLICATE_POST,),
    )

    # seq numbers run from 1 to the number of staged posts, so that many ids cover them.
    # Posts that turn out to exist already leave their id unused.
    _allocate_ids(cursor, schema=schema, table="import_post_ids", count=staged_posts)
    cursor.execute(
        f"""CREATE TEMP TABLE import_links ON COMMIT DROP AS
            SELECT p.seq, p.line, p.source_id, p.parent_source_id, m.thread_id, existing.id AS existing_id,
                   COALESCE(existing.id, ids.id) AS id
            FROM import_posts p
            JOIN import_post_ids ids ON ids.ordinal = p.seq
            LEFT JOIN import_thread_map m ON m.source_id = p.thread_source_id
            LEFT JOIN {schema}.posts existing ON existing.forum_id = %s AND existing.source_id = p.source_id
            WHERE NOT EXISTS (SELECT 1 FROM import_duplicates d WHERE d.seq = p.seq)""",
        (forum_id,),
    )
    cursor.execute(
        "INSERT INTO import_issues (line, source_id, reason, skipped) SELECT line, source_id, %s, true"
        " FROM import_links WHERE thread_id IS NULL",
        (_MISSING_THREAD,),
    )
    cursor.execute("ANALYZE import_links")

    # A parent counts only in the reply's own thread. Parents come from the file or,
    # for a newer export that overlaps an earlier one, from the posts already stored.
    cursor.execute(
        f"""CREATE TEMP TABLE import_parents ON COMMIT DROP AS
            SELECT child.id, child.seq, child.line, child.source_id, child.thread_id,
                   COALESCE(staged.id, stored.id) AS parent_id,
                   staged.existing_id IS NOT NULL OR stored.id IS NOT NULL AS parent_stored,
                   child.parent_source_id IS NOT NULL AND staged.id IS NULL AND stored.id IS NULL AS parent_missing
            FROM import_links child
            LEFT JOIN import_links staged
              ON staged.source_id = child.parent_source_id AND staged.thread_id = child.thread_id
            LEFT JOIN {schema}.posts stored
              ON staged.id IS NULL AND stored.forum_id = %s AND stored.source_id = child.parent_source_id
              AND stored.thread_id = child.thread_id
            WHERE child.thread_id IS NOT NULL AND child.existing_id IS NULL""",
        (forum_id,),
    )
    cursor.execute(
        "INSERT INTO import_issues (line, source_id, reason, skipped) SELECT line, source_id, %s, false"
        " FROM import_parents WHERE parent_missing",
        (_MISSING_PARENT,),
    )
    cursor.execute("CREATE INDEX ON import_parents (parent_id); ANALYZE import_parents")

    # Top-level posts and replies to stored posts start the walk down every reply chain.
    cursor.execute(
        f"""CREATE TEMP TABLE import_tree ON COMMIT DROP AS
            WITH RECURSIVE tree (id, seq, thread_id, parent_id, root_id, depth) AS (
                SELECT id, seq, thread_id, NULL::bigint, id, 0 FROM import_parents WHERE parent_id IS NULL
                UNION ALL
                SELECT reply.id, reply.seq, reply.thread_id, reply.parent_id, stored.root_id, stored.depth + 1
                FROM import_parents reply JOIN {schema}.posts stored ON stored.id = reply.parent_id
                WHERE reply.parent_stored
                UNION ALL
                SELECT reply.id, reply.seq, reply.thread_id, reply.parent_id, tree.root_id, tree.depth + 1
                FROM import_parents reply JOIN tree ON reply.parent_id = tree.id
            )
            SELECT id, seq, thread_id, parent_id, root_id, depth FROM tree"""
    )

    # Posts that the walk never reached sit on a loop of parents or below one.
    cursor.execute(
        """CREATE TEMP TABLE import_unreached ON COMMIT DROP AS
           SELECT p.id, p.seq, p.thread_id, p.line, p.source_id FROM import_parents p
           WHERE NOT EXISTS (SELECT 1 FROM import_tree t WHERE t.id = p.id)"""
    )
    cursor.execute(
        """INSERT INTO import_tree (id, seq, thread_id, parent_id, root_id, depth)
           SELECT id, seq, thread_id, NULL, id, 0 FROM import_unreached"""
    )
    cursor.execute(
        "INSERT INTO import_issues (line, source_id, reason, skipped) SELECT line, source_id, %s, false"
        " FROM import_unreached",
        (_PARENT_CYCLE,),
    )
    cursor.execute("ANALYZE import_tree")


def _insert_posts(cursor: psycopg2.extensions.cursor, *, schema: str, forum_id: int) -> tuple[int, int]:
    """Insert the new posts and return how many were inserted and how many of them are pingbacks or trackbacks."""
    cursor.execute(
        f"""WITH inserted AS (
                INSERT INTO {schema}.posts
                    (id, thread_id, forum_id, parent_id, root_id, depth, state, kind, raw, html,
                     author_name, author_email, author_url, author_user_id, ip, created_at, source_id)
                SELECT t.id, t.thread_id, %s, t.parent_id, t.root_id, t.depth, p.state, p.kind, p.raw, p.html,
                       p.author_name, p.author_email, p.author_url, a.account_id, p.ip, p.created_at, p.source_id
                FROM import_tree t
                JOIN import_posts p ON p.seq = t.seq
                LEFT JOIN import_accounts a ON NOT p.author_is_guest AND a.username = p.author_username
                ON CONFLICT (forum_id, source_id) WHERE source_id IS NOT NULL DO NOTHING
                RETURNING kind
            )
            SELECT count(*), count(*) FILTER (WHERE kind <> 'comment') FROM inserted""",
        (forum_id,),
    )
    row = cursor.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _recount_threads(cursor: psycopg2.extensions.cursor, *, schema: str) -> None:
    """Recount the approved comments of every thread that got new posts, and bump its version.

    Pingbacks and trackbacks are not counted, as they are not shown with the comments.
    """
    cursor.execute(
        f"""UPDATE {schema}.threads t SET posts = counts.approved, version = t.version + 1
            FROM (
                SELECT thread_id, count(*) FILTER (WHERE state = 'approved' AND kind = 'comment') AS approved
                FROM {schema}.posts WHERE thread_id IN (SELECT DISTINCT thread_id FROM import_tree)
                GROUP BY thread_id
            ) counts
            WHERE t.id = counts.thread_id"""
    )


def _issue_groups(cursor: psycopg2.extensions.cursor, *, skipped: bool) -> tuple[int, tuple[IssueGroup, ...]]:
    total = _count(cursor, f"SELECT count(*) FROM import_issues WHERE skipped = {'true' if skipped else 'false'}")
    cursor.execute(
        """SELECT reason, count(*), min(line) FROM import_issues WHERE skipped = %s
           GROUP BY reason ORDER BY count(*) DESC, min(line) LIMIT %s""",
        (skipped, _MAX_ISSUE_GROUPS),
    )
    return total, tuple(IssueGroup(reason, int(count), int(line)) for reason, count, line in cursor.fetchall())


def _count(cursor: psycopg2.extensions.cursor, query: str) -> int:
    cursor.execute(query)
    row = cursor.fetchone()
    assert row is not None
    return int(row[0])
