"""Export of one forum's threads and posts as a Disqus or WordPress (WXR) file.

The rows stream from the forum's shard through server-side cursors in one read-only
snapshot, so memory does not grow with the forum. Ids in the file are this service's
ids, also for imported rows, and an import into the same forum matches them to the rows
they came from. A post's message is its source text when an import stored it, which is
HTML, and its sanitized HTML otherwise, because posts written here keep Markdown as
their source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO

import psycopg2.extensions

from comments.porting.disqus import write_disqus
from comments.porting.errors import ExportFormat
from comments.porting.records import PostKind, PostState, SourcePost, SourceThread
from comments.porting.wxr import write_wxr

__all__ = ["ExportSummary", "export_forum"]

# Rows fetched per round trip from the server-side cursors.
_FETCH_ROWS = 2000

# Usernames kept between batches. The cache starts over when it grows past this.
_MAX_CACHED_USERNAMES = 100_000

_THREAD_COLUMNS = "t.id, t.identifier, t.url, t.title, t.created_at, t.closed, t.deleted"
_POST_COLUMNS = (
    "p.id, p.thread_id, p.parent_id, CASE WHEN p.source_id IS NULL THEN p.html ELSE p.raw END,"
    " p.author_name, p.author_email, p.author_url, p.author_user_id, host(p.ip), p.created_at, p.state, p.kind"
)


@dataclass(frozen=True)
class ExportSummary:
    """Counts of an export: threads and posts written, and pingbacks and trackbacks left out."""

    threads: int
    posts: int
    pingbacks_left_out: int


@dataclass(frozen=True)
class ExportForum:
    """The forum fields that an export file names."""

    id: int
    shortname: str
    name: str
    url: str


def export_forum(
    out: BinaryIO,
    *,
    shard: psycopg2.extensions.connection,
    users: psycopg2.extensions.connection,
    schema: str,
    forum: ExportForum,
    export_format: ExportFormat,
    on_post: Callable[[int], None],
) -> ExportSummary:
    """Write every thread and post of `forum` to `out` in `export_format` and return the counts.

    Posts of every state are written, deleted and spam included, each with its state.
    The Disqus format cannot mark pingbacks and trackbacks, so a Disqus export leaves
    them out and counts them. `on_post` receives the number of posts written so far.
    """
    shard.set_session(isolation_level="REPEATABLE READ", readonly=True)
    authors = _AuthorNames(users)
    with shard:
        if export_format == "disqus":
            return _write_disqus_export(out, shard, authors, schema=schema, forum=forum, on_post=on_post)
        return _write_wxr_export(out, shard, authors, schema=schema, forum=forum, on_post=on_post)


def _write_disqus_export(
    out: BinaryIO,
    shard: psycopg2.extensions.connection,
    authors: _AuthorNames,
    *,
    schema: str,
    forum: ExportForum,
    on_post: Callable[[int], None],
) -> ExportSummary:
    counter = _Counter(on_post)
    threads = (
        _thread_record(row)
        for row in _stream_rows(
            shard,
            "export_threads",
            f"SELECT {_THREAD_COLUMNS} FROM {schema}.threads t WHERE t.forum_id = %s ORDER BY t.id",
            (forum.id,),
        )
    )
    with shard.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM {schema}.posts WHERE forum_id = %s AND kind <> 'comment'", (forum.id,)
        )
        row = cursor.fetchone()
    left_out = int(row[0]) if row else 0

    def posts() -> Iterator[SourcePost]:
        rows = _stream_rows(
            shard,
            "export_posts",
            f"""SELECT {_POST_COLUMNS} FROM {schema}.posts p
                WHERE p.forum_id = %s AND p.kind = 'comment' ORDER BY p.thread_id, p.created_at, p.id""",
            (forum.id,),
        )
        for batch in _batches(rows):
            names = authors.usernames(row[7] for row in batch)
            for post_row in batch:
                counter.add_post()
                yield _post_record(post_row, names)

    write_disqus(out, _counting(threads, counter), posts(), forum=forum.shortname)
    return ExportSummary(threads=counter.threads, posts=counter.posts, pingbacks_left_out=left_out)


def _write_wxr_export(
    out: BinaryIO,
    shard: psycopg2.extensions.connection,
    authors: _AuthorNames,
    *,
    schema: str,
    forum: ExportForum,
    on_post: Callable[[int], None],
) -> ExportSummary:
    counter = _Counter(on_post)

    def threads_with_posts() -> Iterator[tuple[SourceThread, list[SourcePost]]]:
        # One row per post, or one row with NULL post columns for a thread without
        # posts, ordered so that each thread's rows are adjacent.
        rows = _stream_rows(
            shard,
            "export_threads_with_posts",
            f"""SELECT {_THREAD_COLUMNS}, {_POST_COLUMNS} FROM {schema}.threads t
                LEFT JOIN {schema}.posts p ON p.thread_id = t.id
                WHERE t.forum_id = %s ORDER BY t.id, p.created_at, p.id""",
            (forum.id,),
        )
        thread: SourceThread | None = None
        posts: list[SourcePost] = []
        for batch in _batches(rows):
            names = authors.usernames(row[14] for row in batch if row[7] is not None)
            for row in batch:
                if thread is None or str(row[0]) != thread.source_id:
                    if thread is not None:
                        yield thread, posts
                    thread = _thread_record(row[:7])
                    counter.threads += 1
                    posts = []
                if row[7] is not None:
                    counter.add_post()
                    posts.append(_post_record(row[7:], names))
        if thread is not None:
            yield thread, posts

    write_wxr(out, forum.name, forum.url, threads_with_posts())
    return ExportSummary(threads=counter.threads, posts=counter.posts, pingbacks_left_out=0)


class _Counter:
    def __init__(self, on_post: Callable[[int], None]) -> None:
        self.threads = 0
        self.posts = 0
        self._on_post = on_post

    def add_post(self) -> None:
        self.posts += 1
        if self.posts % 1000 == 0:
            self._on_post(self.posts)


def _counting(threads: Iterator[SourceThread], counter: _Counter) -> Iterator[SourceThread]:
    for thread in threads:
        counter.threads += 1
        yield thread


class _AuthorNames:
    """Usernames of accounts, looked up in the users database one batch of posts at a time."""

    def __init__(self, users: psycopg2.extensions.connection) -> None:
        self._users = users
        self._cache: dict[int, str] = {}

    def usernames(self, account_ids: Iterator[int | None]) -> dict[int, str]:
        batch_ids = {account_id for account_id in account_ids if account_id is not None}
        missing = [account_id for account_id in batch_ids if account_id not in self._cache]
        if missing:
            if len(self._cache) > _MAX_CACHED_USERNAMES:
                self._cache.clear()
            with self._users, self._users.cursor() as cursor:
                cursor.execute("SELECT id, username FROM users.accounts WHERE id = ANY(%s)", (missing,))
                self._cache.update((int(row[0]), str(row[1])) for row in cursor.fetchall())
        return self._cache


def _stream_rows(
    connection: psycopg2.extensions.connection, name: str, query: str, parameters: tuple[Any, ...]
) -> Iterator[tuple[Any, ...]]:
    """Yield the rows of `query` through a server-side cursor named `name`."""
    with connection.cursor(name=name) as cursor:
        cursor.itersize = _FETCH_ROWS
        cursor.execute(query, parameters)
        yield from cursor


def _batches(rows: Iterator[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= _FETCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


def _thread_record(row: tuple[Any, ...]) -> SourceThread:
    thread_id, identifier, url, title, created_at, closed, deleted = row
    return SourceThread(
        source_id=str(thread_id),
        identifier=identifier,
        url=url,
        title=title,
        created_at=created_at,
        closed=closed,
        deleted=deleted,
        line=0,
    )


def _post_record(row: tuple[Any, ...], usernames: dict[int, str]) -> SourcePost:
    (post_id, thread_id, parent_id, message, author_name, author_email, author_url, author_user_id, ip,
     created_at, state, kind) = row
    username = None if author_user_id is None else usernames.get(author_user_id)
    created: datetime = created_at
    post_state: PostState = state
    post_kind: PostKind = kind
    return SourcePost(
        source_id=str(post_id),
        thread_source_id=str(thread_id),
        parent_source_id=None if parent_id is None else str(parent_id),
        message=message,
        author_name=author_name,
        author_email=author_email,
        author_username=username,
        author_is_guest=username is None,
        author_url=author_url,
        ip=ip,
        created_at=created,
        state=post_state,
        kind=post_kind,
        line=0,
    )
