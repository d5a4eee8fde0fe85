"""Forum lookups from ``meta``, cached on the node for a few seconds."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IReactorTime

from comments.db.cluster import Cluster

__all__ = ["Forum", "ForumDirectory"]


@dataclass(frozen=True)
class Forum:
    """One site: its shortname, allowed origins, settings and logical shard."""

    id: int
    shortname: str
    name: str
    url: str
    origins: tuple[str, ...]
    settings: dict[str, Any]
    shard: int

    def allows_origin(self, origin: str) -> bool:
        """Return whether a page on ``origin`` (scheme://host[:port]) may embed this forum."""
        return "*" in self.origins or origin.rstrip("/").lower() in (o.lower() for o in self.origins)


_COLUMNS = "id, shortname, name, url, origins, settings, shard"


def _forum_from_row(row: tuple[Any, ...]) -> Forum:
    settings = row[5] if isinstance(row[5], dict) else json.loads(row[5])
    return Forum(row[0], row[1], row[2], row[3], tuple(row[4]), settings, row[6])


class ForumDirectory:
    """
    Finds forums by shortname or id, keeping each result for ``ttl`` seconds.

    Unknown shortnames are remembered too, so a page naming a missing forum cannot turn
    every request into a ``meta`` query.
    """

    def __init__(self, cluster: Cluster, reactor: IReactorTime, ttl: float = 10.0) -> None:
        self._cluster = cluster
        self._reactor = reactor
        self._ttl = ttl
        self._by_shortname: dict[str, tuple[float, Forum | None]] = {}
        self._by_id: dict[int, tuple[float, Forum]] = {}

    async def by_shortname(self, shortname: str) -> Forum | None:
        """Return the forum named ``shortname``, or None when there is none."""
        now = self._reactor.seconds()
        cached = self._by_shortname.get(shortname)
        if cached is not None and cached[0] > now:
            return cached[1]
        rows = await self._cluster.meta.run_query(
            "find_forum_by_shortname", f"SELECT {_COLUMNS} FROM meta.forums WHERE shortname = %s", (shortname,)
        )
        forum = _forum_from_row(rows[0]) if rows else None
        self._remember(shortname, forum, now)
        return forum

    async def by_id(self, forum_id: int) -> Forum | None:
        """Return the forum with id ``forum_id``, or None."""
        now = self._reactor.seconds()
        cached = self._by_id.get(forum_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        rows = await self._cluster.meta.run_query(
            "find_forum_by_id", f"SELECT {_COLUMNS} FROM meta.forums WHERE id = %s", (forum_id,)
        )
        if not rows:
            return None
        forum = _forum_from_row(rows[0])
        self._remember(forum.shortname, forum, now)
        return forum

    def _remember(self, shortname: str, forum: Forum | None, now: float) -> None:
        if len(self._by_shortname) > 10_000:
            self._by_shortname.clear()
            self._by_id.clear()
        self._by_shortname[shortname] = (now + self._ttl, forum)
        if forum is not None:
            self._by_id[forum.id] = (now + self._ttl, forum)
