"""Threads: find-or-create by identifier or url, lookups by id, and comment counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from comments.db.cluster import Cluster, Shard
from comments.db.pool import Cursor
from comments.storage.forums import Forum

__all__ = ["Thread", "ThreadStore"]

_COLUMNS = "id, forum_id, identifier, url, title, created_at, closed, posts, version"


@dataclass(frozen=True)
class Thread:
    """One page's discussion."""

    id: int
    forum_id: int
    identifier: str | None
    url: str
    title: str
    created_at: datetime
    closed: bool
    posts: int
    version: int


def thread_from_row(row: tuple[Any, ...]) -> Thread:
    """Build a Thread from a row of ``_COLUMNS``."""
    return Thread(*row)


class ThreadStore:
    """Thread queries, each routed to the forum's logical shard."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    async def find_or_create(
        self, forum: Forum, *, identifier: str | None, url: str, url_key: str, title: str
    ) -> tuple[Thread, bool]:
        """
        Return the forum's thread for ``identifier`` (or for ``url_key`` without one), creating it.

        The second value is whether this call created the thread. Two concurrent calls
        for a new page create one thread: the loser's insert hits the unique index and it
        reads the winner's row.
        """
        shard = self._cluster.shard(forum.shard)
        found = await self._find(shard, forum, identifier=identifier, url_key=url_key)
        if found is not None:
            return found, False

        async def create_thread_txn(cursor: Cursor) -> tuple[Thread, bool]:
            conflict = "(forum_id, identifier) WHERE identifier IS NOT NULL" if identifier is not None else \
                "(forum_id, url_key) WHERE identifier IS NULL"
            await cursor.execute(
                f"""INSERT INTO {shard.schema}.threads (forum_id, identifier, url, url_key, title)
                    VALUES (%s, %s, %s, %s, %s)
                    ON CONFLICT {conflict} DO NOTHING
                    RETURNING {_COLUMNS}""",
                (forum.id, identifier, url, url_key, title),
            )
            row = cursor.fetchone()
            if row is not None:
                return thread_from_row(row), True
            return await self._select_one(cursor, shard, forum, identifier=identifier, url_key=url_key), False

        return await shard.pool.run_interaction("create_thread", create_thread_txn, shard=shard.number)

    async def _find(self, shard: Shard, forum: Forum, *, identifier: str | None, url_key: str) -> Thread | None:
        if identifier is not None:
            where, value = "identifier = %s", identifier
        else:
            where, value = "identifier IS NULL AND url_key = %s", url_key
        rows = await shard.pool.run_query(
            "find_thread",
            f"SELECT {_COLUMNS} FROM {shard.schema}.threads WHERE forum_id = %s AND {where}",
            (forum.id, value),
            shard=shard.number,
        )
        return thread_from_row(rows[0]) if rows else None

    async def _select_one(
        self, cursor: Cursor, shard: Shard, forum: Forum, *, identifier: str | None, url_key: str
    ) -> Thread:
        if identifier is not None:
            where, value = "identifier = %s", identifier
        else:
            where, value = "identifier IS NULL AND url_key = %s", url_key
        await cursor.execute(
            f"SELECT {_COLUMNS} FROM {shard.schema}.threads WHERE forum_id = %s AND {where}", (forum.id, value)
        )
        return thread_from_row(cursor.fetchone())

    async def get(self, thread_id: int) -> Thread | None:
        """Return the thread ``thread_id`` from the shard its id names, or None."""
        shard = self._cluster.shard_for_id(thread_id)
        rows = await shard.pool.run_prepared(
            "get_thread",
            f"SELECT {_COLUMNS} FROM {shard.schema}.threads WHERE id = %s AND NOT deleted",
            (thread_id,),
            shard=shard.number,
        )
        return thread_from_row(rows[0]) if rows else None

    async def counts(
        self, forum: Forum, *, identifiers: list[str], url_keys: list[str]
    ) -> tuple[dict[str, int], dict[str, int]]:
        """
        Return approved post counts by identifier and by url key, for one forum.

        A url counts every thread of that page, with or without an identifier.
        """
        shard = self._cluster.shard(forum.shard)

        async def count_posts_txn(cursor: Cursor) -> tuple[dict[str, int], dict[str, int]]:
            by_identifier: dict[str, int] = {}
            by_url: dict[str, int] = {}
            if identifiers:
                await cursor.execute(
                    f"""SELECT identifier, posts FROM {shard.schema}.threads
                        WHERE forum_id = %s AND identifier = ANY(%s) AND NOT deleted""",
                    (forum.id, identifiers),
                )
                by_identifier = dict(cursor.fetchall())
            if url_keys:
                await cursor.execute(
                    f"""SELECT url_key, sum(posts)::integer FROM {shard.schema}.threads
                        WHERE forum_id = %s AND url_key = ANY(%s) AND NOT deleted GROUP BY url_key""",
                    (forum.id, url_keys),
                )
                by_url = dict(cursor.fetchall())
            return by_identifier, by_url

        return await shard.pool.run_interaction("count_posts", count_posts_txn, shard=shard.number)

