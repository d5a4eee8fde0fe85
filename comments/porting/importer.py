"""Import of Disqus and WordPress export files into one forum's logical shard.

Every thread and post of a forum lives in one schema on one database, so the whole file
is imported in one transaction there. The records stream into temporary staging tables
with COPY, in segments of consecutive records. While the importing process sanitizes
and encodes the next segment, a database thread stages the previous one and inserts
every post whose thread and parent are already known. SQL then resolves what the file
order leaves open: threads that come after their posts, replies that come before their
parents, missing threads and parents, and the root and depth of every remaining reply.
A file that fails to parse halfway commits nothing.

Stored source ids carry the format as a prefix (``disqus:123``, ``wxr:18:2``), so a
Disqus export and a WordPress export of one site never match each other's ids. The unique
``(forum_id, source_id)`` indexes make a second import of the same file, or of a newer
export that overlaps it, add only what is new. An export of this service names rows by
their own ids instead, which an import into the same forum matches by id in either
format, so importing it back there adds only what is new as well.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import psycopg2.extensions

from comments.porting import import_sql
from comments.porting.errors import ExportFormat
from comments.porting.import_rows import RowBatch, post_row, read_batches

__all__ = ["ImportBusy", "ImportProgress", "ImportSummary", "IssueGroup", "import_export_file"]

# Enough for the hash joins and sorts over a few million staged rows to stay in memory.
# NOTE: an estimate, not tuned on a server with other load.
_WORK_MEM = "128MB"

# Posts per segment. A segment's posts are staged, and those whose place is settled
# are inserted, while the next segment is read. A segment's COPY text is held in
# memory, about 1.3 kB per post of the benchmark's Disqus export, and up to two
# segments are held at once. Larger segments also leave more work for after the last
# record, and smaller ones repeat the fixed cost of each segment's SQL more often.
# NOTE: chosen with bench/import_bench.py on one 2-core machine, where 5,000 to
# 50,000 gave the same rate at a million posts.
_SEGMENT_POSTS = 10_000

# The largest number of issue groups that the summary lists, most frequent first.
_MAX_ISSUE_GROUPS = 20


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

    Registered authors get an account in the users database on `users`, committed after
    the whole file is read and before the shard transaction commits. Those accounts stay
    when the shard transaction fails later, which is harmless because a later import
    links to them again. Until that commit, a sign-up with a username that the import
    has just created waits for it. `parse_in_worker` forces parsing in a child process
    on or off; by default files of 1 MiB and more use one.

    Raises ImportFormatError when the file cannot be read as an export, and ImportBusy
    when another import into the forum is running. The shard is rolled back for both.
    """
    with (
        read_batches(path, export_format, parse_in_worker=parse_in_worker) as batches,
        shard,
        shard.cursor() as cursor,
    ):
        try:
            summary = _import_txn(
                cursor, batches=batches, users=users, schema=schema, forum_id=forum_id, progress=progress
            )
        except BaseException:
            users.rollback()
            raise
        return summary


def _import_txn(
    cursor: psycopg2.extensions.cursor,
    *,
    batches: Iterable[RowBatch],
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
    import_sql.create_staging_tables(cursor)
    stored_sources = import_sql.has_stored_sources(cursor, schema=schema, forum_id=forum_id)

    progress.phase("reading the file")
    counts = import_sql.ImportCounts()
    _stage_segments(
        cursor, batches, users=users, schema=schema, forum_id=forum_id, stored_sources=stored_sources, counts=counts,
        progress=progress,
    )

    progress.phase("matching threads")
    import_sql.finish_threads(cursor, schema=schema, forum_id=forum_id)

    progress.phase("linking registered authors to accounts")
    users.commit()

    progress.phase("placing replies under their parents")
    import_sql.resolve_pending_posts(cursor, schema=schema, forum_id=forum_id)

    progress.phase("storing posts")
    posts_created, pingbacks = import_sql.insert_pending_posts(cursor, schema=schema, forum_id=forum_id)
    import_sql.update_thread_counts(cursor, schema=schema)
    posts_existing = import_sql.count_existing_posts(cursor)

    skipped_total, skipped = _issue_groups(cursor, skipped=True)
    adjusted_total, adjusted = _issue_groups(cursor, skipped=False)
    progress.phase("committing")
    return ImportSummary(
        threads_created=counts.threads_created,
        threads_matched=counts.threads_matched,
        posts_created=counts.posts_created + posts_created,
        posts_existing=posts_existing,
        pingbacks=counts.pingbacks + pingbacks,
        accounts_linked=counts.accounts_linked,
        accounts_created=counts.accounts_created,
        skipped_total=skipped_total,
        skipped=skipped,
        adjusted_total=adjusted_total,
        adjusted=adjusted,
    )


# Segments: this thread encodes one segment while a database thread stages the one before.


def _stage_segments(
    cursor: psycopg2.extensions.cursor,
    batches: Iterable[RowBatch],
    *,
    users: psycopg2.extensions.connection,
    schema: str,
    forum_id: int,
    stored_sources: bool,
    counts: import_sql.ImportCounts,
    progress: ImportProgress,
) -> None:
    """Stage every segment of `batches`, inserting the settled posts of all but the last.

    Only the database thread uses `cursor` and `users` until this function returns.
    psycopg2 releases the GIL while it waits for the server, so sanitizing the next
    segment here, staging the previous one in PostgreSQL and parsing in the parser
    process run at the same time.
    """

    def stage(segment: import_sql.SegmentData, place: bool) -> None:
        import_sql.stage_segment(
            cursor, segment, users=users, schema=schema, forum_id=forum_id, place=place,
            stored_sources=stored_sources, counts=counts,
        )

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="comments-import-db") as database:
        running: Future[None] | None = None
        try:
            for segment, last in _encode_segments(batches, progress):
                if running is not None:
                    running.result()
                # The last segment is not placed, because resolve_pending_posts, which
                # runs next, handles its posts with the rest in one pass.
                running = database.submit(stage, segment, not last)
            if running is not None:
                running.result()
        except BaseException:
            # A parse error or Ctrl-C here, or an error in the database thread: stop the
            # statement that runs, so the shard transaction can roll back sooner. The
            # executor waits for the thread before the exception leaves this block.
            if running is not None and not running.done():
                cursor.connection.cancel()
            raise


def _encode_segments(
    batches: Iterable[RowBatch], progress: ImportProgress
) -> Iterator[tuple[import_sql.SegmentData, bool]]:
    """Yield the batches as segments of COPY rows, each with whether it is the last.

    Every segment but the last contains at least _SEGMENT_POSTS posts. The last one
    contains the rest and may be empty. Each post's message is sanitized into its html column here.
    """
    posts = threads = 0
    segment = _SegmentBuilder(first_post_seq=1, first_thread_seq=1)
    for batch in batches:
        segment.add(batch)
        posts += len(batch.posts)
        threads += len(batch.threads)
        progress.posts_staged(posts, batch.bytes_read)
        if segment.post_count >= _SEGMENT_POSTS:
            yield segment.finish(), False
            segment = _SegmentBuilder(first_post_seq=posts + 1, first_thread_seq=threads + 1)
    yield segment.finish(), True


class _SegmentBuilder:
    """The COPY rows of one segment while its batches arrive."""

    def __init__(self, *, first_post_seq: int, first_thread_seq: int) -> None:
        self._posts = io.BytesIO()
        self._threads = io.BytesIO()
        self._issues = io.BytesIO()
        self._first_post_seq = first_post_seq
        self._first_thread_seq = first_thread_seq
        self.post_count = 0
        self._thread_count = 0

    def add(self, batch: RowBatch) -> None:
        if batch.posts:
            self._posts.write("".join([post_row(fields) for fields in batch.posts]).encode())
        if batch.threads:
            self._threads.write("".join(batch.threads).encode())
        if batch.issues:
            self._issues.write("".join(batch.issues).encode())
        self.post_count += len(batch.posts)
        self._thread_count += len(batch.threads)

    def finish(self) -> import_sql.SegmentData:
        for buffer in (self._posts, self._threads, self._issues):
            buffer.seek(0)
        return import_sql.SegmentData(
            posts=self._posts,
            threads=self._threads,
            issues=self._issues,
            first_post_seq=self._first_post_seq,
            post_count=self.post_count,
            first_thread_seq=self._first_thread_seq,
            thread_count=self._thread_count,
        )


def _issue_groups(cursor: psycopg2.extensions.cursor, *, skipped: bool) -> tuple[int, tuple[IssueGroup, ...]]:
    total, groups = import_sql.issue_groups(cursor, skipped=skipped, limit=_MAX_ISSUE_GROUPS)
    return total, tuple(IssueGroup(reason, count, first_line) for reason, count, first_line in groups)
