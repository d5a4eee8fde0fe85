"""
One node: a twistd service that prepares storage, serves HTTP and drains on stop.

Start-up has a blocking part (embedded PostgreSQL, migrations, the demo forum), done
before the reactor serves anything, and an asynchronous part (connection pools, the shard
map, the listening port). A node that cannot start logs why and exits non-zero.
"""

from __future__ import annotations

import gc
import os
import re
import sys
from typing import Any

import psycopg2
from twisted.application import service
from twisted.internet import defer, endpoints, task, threads
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

import comments
from comments.api.app import CommentsAPI
from comments.api.site import build_site
from comments.config import Config
from comments.db.admin import (
    ClusterMismatch,
    add_forum_origins,
    create_forum,
    find_forum,
    load_shard_map,
    migrate_cluster,
)
from comments.db.cluster import Cluster
from comments.db.migrations import blocking_connection
from comments.db.pool import one_line, redact_dsn
from comments.embedded import EmbeddedPostgres

__all__ = ["NodeService", "StartupError"]

DEMO_FORUM = "demo"
EMBEDDED_WATCH_SECONDS = 5.0  # how often a node checks that its embedded PostgreSQL still runs


class StartupError(Exception):
    """The node cannot start; the message gives the reason and what to do."""


class NodeService(service.Service):
    """The whole node: storage, web routes, draining."""

    log = Logger()

    def __init__(self, config: Config, reactor: Any) -> None:
        self.config = config
        self.reactor = reactor
        self.embedded: EmbeddedPostgres | None = None
        self.database = config.database
        self.cluster: Cluster | None = None
        self.api: CommentsAPI | None = None
        self.port: IListeningPort | None = None
        self.ready: defer.Deferred[None] = defer.Deferred()
        self.failed = False
        self._embedded_watch: task.LoopingCall | None = None

    # -- blocking preparation --------------------------------------------------------------

    def prepare(self) -> None:
        """Start the embedded server if configured so, and check every database; raise StartupError."""
        self.log.info("comments {version} starting with configuration from {source}",
                      version=comments.__version__, source=self.config.source)
        if self.database.embedded:
            self.embedded = EmbeddedPostgres(self.config.data_dir)
            self.log.info("no database configured: using the embedded PostgreSQL in {path}, "
                          "started unless another node on this machine runs it already",
                          path=str(self.config.data_dir / "pgdata"))
            try:
                dsn = self.embedded.start()
            except Exception as error:
                raise StartupError(f"the embedded PostgreSQL server failed to start: {error}") from error
            self.database = self.embedded.database_config(self.database, dsn)
            self._migrate()
            if self.config.demo:
                self._ensure_demo_forum()
        self._check_schema()

    def _migrate(self) -> None:
        try:
            applied = migrate_cluster(self.database, report=lambda line: self.log.info("{line}", line=line))
        except ClusterMismatch as error:
            raise StartupError(str(error)) from None
        self.log.info("migrations: {count} applied", count=len(applied))

    def _check_schema(self) -> None:
        assert self.database.meta
        try:
            with blocking_connection(self.database.meta) as meta, meta.cursor() as cursor:
                cursor.execute("SELECT to_regclass('meta.shards') IS NOT NULL")
                row = cursor.fetchone()
        except psycopg2.Error as error:
            raise StartupError(
                f"cannot connect to the meta database ({redact_dsn(self.database.meta)}): {str(error).strip()}"
            ) from None
        if not row or not row[0]:
            raise StartupError("the meta database has no schema yet; run `comments --config FILE migrate` first")
        try:
            with blocking_connection(self.database.meta) as meta:
                load_shard_map(meta, self.database)
                with meta, meta.cursor() as cursor:
                    cursor.execute("SELECT value FROM meta.cluster WHERE key = 'logical_shards'")
                    recorded = cursor.fetchone()
        except ClusterMismatch as error:
            raise StartupError(str(error)) from None
        if recorded and int(recorded[0]) != self.database.logical_shards:
            raise StartupError(
                f"database.logical_shards is {self.database.logical_shards} but the cluster was created with "
                f"{recorded[0]}; the number of logical shards is fixed at creation, so set it back to {recorded[0]}"
            )

    def demo_origins(self) -> list[str]:
        """Return the origins from which this node's own demo pages load the widget."""
        origins = []
        if self.config.public_url:
            origins.append(self.config.public_url.rstrip("/"))
        match = re.search(r"tcp6?:(?:port=)?(\d+)", self.config.listen)
        if match:
            port = match.group(1)
            origins += [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]
        return origins

    def _ensure_demo_forum(self) -> None:
        assert self.database.meta
        with blocking_connection(self.database.meta) as meta:
            origins = self.demo_origins()
            if find_forum(meta, DEMO_FORUM) is None:
                create_forum(meta, shortname=DEMO_FORUM, name="Demo forum", url=origins[0] if origins else "",
                             origins=origins)
                self.log.info("created the demo forum {shortname} for {origins}", shortname=DEMO_FORUM,
                              origins=origins)
            else:
                add_forum_origins(meta, DEMO_FORUM, origins)

    # -- service ---------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]  # twisted.application is untyped
        defer.Deferred.fromCoroutine(self._start()).addErrback(self._start_failed)

    async def _start(self) -> None:
        self.cluster = Cluster(self.database, self.reactor)
        await self.cluster.start()
        self.api = CommentsAPI(config=self.config, cluster=self.cluster, reactor=self.reactor)
        if self.embedded is not None and self.config.demo:
            from comments.demo import seed_demo_thread

            await seed_demo_thread(self.api, self.demo_origins())
        if self.embedded is not None:
            self._embedded_watch = task.LoopingCall(lambda: defer.Deferred.fromCoroutine(self._watch_embedded()))
            self._embedded_watch.clock = self.reactor
            self._embedded_watch.start(EMBEDDED_WATCH_SECONDS, now=False)
        site = build_site(self.api)
        endpoint = endpoints.serverFromString(self.reactor, self.config.listen)
        self.port = await endpoint.listen(site)
        address = self.port.getHost()
        # A 100-post listing allocates several hundred short-lived, acyclic containers that
        # reference counting frees, so the default young-generation threshold (700) runs
        # the cycle collector for nothing about once per listing. Start-up objects are
        # frozen out of its way.
        gc.freeze()
        gc.set_threshold(20_000, 10, 10)
        self.log.info("ready: serving HTTP on {host}:{port} with roles {roles}", host=getattr(address, "host", "?"),
                      port=getattr(address, "port", "?"), roles=sorted(self.config.roles))
        self.ready.callback(None)

    async def _watch_embedded(self) -> None:
        """Start the embedded server again if it has stopped under the running node."""
        assert self.embedded is not None
        embedded = self.embedded
        try:
            restarted = await threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                                        embedded.restart_if_stopped)
        except Exception as error:  # noqa: BLE001  # pg_ctl and the package raise many types
            self.log.error("the embedded PostgreSQL server is down and did not start again: {error}; "
                           "retrying in {seconds}s (its log: {log})", error=one_line(error),
                           seconds=EMBEDDED_WATCH_SECONDS, log=str(self.config.data_dir / "pgdata" / "log"))
            return
        if restarted:
            self.log.warn("the embedded PostgreSQL server had stopped; started it again, and the pools reconnect")
            if self.cluster is not None:
                for pool in self.cluster.pools:
                    pool.reconnect_now()

    def _start_failed(self, failure: Any) -> None:
        self.failed = True
        self.log.failure("node failed to start", failure)
        self.ready.errback(failure)
        self.ready.addErrback(lambda _: None)
        if getattr(self.reactor, "running", False):
            # twistd exits 0 after a plain reactor.stop(); exit 1 once shutdown is done.
            self.reactor.addSystemEventTrigger("after", "shutdown", _exit_failed)
            self.reactor.stop()

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]  # twisted.application is untyped
        return defer.Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        self.log.info("stopping: draining for {seconds}s", seconds=self.config.drain_seconds)
        if self.api is not None:
            self.api.draining = True
            if self.config.drain_seconds:
                await task.deferLater(self.reactor, self.config.drain_seconds, lambda: None)
        if self.port is not None:
            await defer.maybeDeferred(self.port.stopListening)
        waited = 0.0
        while self.api is not None and self.api.in_flight and waited < 30.0:
            await task.deferLater(self.reactor, 0.1, lambda: None)
            waited += 0.1
        if self.api is not None and self.api.in_flight:
            self.log.warn("stopping with {count} requests still in flight", count=self.api.in_flight)
        if self._embedded_watch is not None and self._embedded_watch.running:
            self._embedded_watch.stop()
        if self.api is not None:
            self.api.close()
        if self.cluster is not None:
            self.cluster.close()
        if self.embedded is not None:
            self.log.info("releasing the embedded PostgreSQL server; it stops unless another process still uses it")
            self.embedded.stop()
        self.log.info("stopped")




def _exit_failed() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)
