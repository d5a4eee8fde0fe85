"""
The node's view of the partitioned storage: one pool per physical database and the shard map.

Every thread and post query goes through ``shard(number)``, which names the pool and the
schema of one logical shard, so a query that forgot its shard has no table to run on.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from comments.config import DatabaseConfig
from comments.db.pool import Pool
from comments.ids import shard_of

__all__ = ["Cluster", "Shard", "UnknownShard"]


class UnknownShard(LookupError):
    """An id or forum names a logical shard that the shard map does not hold."""


@dataclass(frozen=True)
class Shard:
    """One logical shard: its number, the pool of its physical database and its schema."""

    number: int
    pool: Pool
    schema: str


class Cluster:
    """Pools for ``meta``, ``users`` and each physical shard database, with the shard map."""

    log = Logger()

    def __init__(self, database: DatabaseConfig, reactor: IReactorTime) -> None:
        assert database.meta and database.users, "the embedded server must fill in DSNs first"
        self.config = database
        common = dict(size=database.pool_size, reactor=reactor, slow_query_ms=database.slow_query_ms,
                      connect_timeout_seconds=database.connect_timeout_seconds)
        self.meta = Pool(label="meta", dsn=database.meta, **common)  # type: ignore[arg-type]  # kwargs dict
        self.users = Pool(label="users", dsn=database.users, **common)  # type: ignore[arg-type]  # kwargs dict
        self.shard_pools = [
            Pool(label=f"shards[{index}]", dsn=dsn, **common)  # type: ignore[arg-type]  # kwargs dict
            for index, dsn in enumerate(database.shards)
        ]
        self._shards: dict[int, Shard] = {}

    @property
    def pools(self) -> list[Pool]:
        """Every pool of this node."""
        return [self.meta, self.users, *self.shard_pools]

    async def start(self) -> None:
        """Connect every pool and load the shard map from ``meta``."""
        for pool in self.pools:
            await pool.start()
        rows = await self.meta.run_query("load_shard_map", "SELECT shard, database, schema FROM meta.shards")
        self._shards = {
            shard: Shard(number=shard, pool=self.shard_pools[database], schema=schema)
            for shard, database, schema in rows
        }
        placement = {pool.label: sum(1 for s in self._shards.values() if s.pool is pool) for pool in self.shard_pools}
        self.log.info("shard map loaded: {count} logical shards placed as {placement}",
                      count=len(self._shards), placement=placement)

    def close(self) -> None:
        """Close every pool."""
        for pool in self.pools:
            pool.close()

    def shard(self, number: int) -> Shard:
        """Return logical shard ``number``; raise UnknownShard when the map lacks it."""
        try:
            return self._shards[number]
        except KeyError:
            raise UnknownShard(f"logical shard {number} is not in the shard map") from None

    def shard_for_id(self, item_id: int) -> Shard:
        """Return the logical shard that contains the thread or post ``item_id``."""
        return self.shard(shard_of(item_id))
