"""
A reconnecting pool of txpostgres connections to one PostgreSQL database.

txpostgres's own ``ConnectionPool`` keeps a dead connection forever after a server
restart. This pool drops a connection as soon as psycopg2 reports it lost, fails the
waiting callers at once while no connection is alive, and reconnects each slot in the
background with capped exponential backoff on the injected reactor's clock.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg2
import psycopg2.errors
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from txpostgres import txpostgres

__all__ = ["Cursor", "DatabaseUnavailable", "Pool", "one_line", "redact_dsn"]

T = TypeVar("T")
Cursor = Any  # txpostgres.Cursor: execute() returns a Deferred, fetch*() are synchronous

# SQLSTATEs that mean "try the whole transaction again": serialization failure, deadlock.
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
_MAX_TRANSACTION_ATTEMPTS = 3
_DRAWN_ID_KEYS = frozenset({"threads_pkey", "posts_pkey"})  # primary keys whose ids next_id() draws


class DatabaseUnavailable(Exception):
    """No connection to the database is alive, or the wait for a free one timed out."""


def redact_dsn(dsn: str) -> str:
    """Return ``dsn`` with any password replaced, for logs."""
    try:
        params = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError:
        return "<unparsable DSN>"
    if "password" in params:
        params["password"] = "***"  # noqa: S105  # the mask, not a password
    return " ".join(f"{key}={value}" for key, value in sorted(params.items()))


def _retryable(error: psycopg2.Error) -> bool:
    """Return whether a new attempt of the whole transaction may succeed where this one failed."""
    if error.pgcode in _RETRYABLE_SQLSTATES:
        return True
    # next_id() repeats an id when one shard draws more than 1,024 in a millisecond; a
    # new attempt draws another.
    return error.pgcode == "23505" and getattr(error.diag, "constraint_name", None) in _DRAWN_ID_KEYS


def one_line(error: BaseException) -> str:
    """Return an error's message on one line: libpq's messages span several."""
    return " ".join(str(error).split())


def _is_connection_error(error: BaseException) -> bool:
    return isinstance(error, (psycopg2.OperationalError, psycopg2.InterfaceError)) and not isinstance(
        error, psycopg2.errors.QueryCanceled
    )


class _PooledConnection(txpostgres.Connection):  # type: ignore[misc]  # txpostgres is untyped
    """
    A txpostgres connection that reports its own loss while idle.

    txpostgres keeps every connection registered as a reader (to receive NOTIFY), so a
    server that closes an idle connection makes ``doRead`` raise into the reactor. Here
    that error goes to ``on_lost`` instead, which lets the pool replace the connection
    before any request tries it.
    """

    slot = -1
    prepared: dict[str, str]
    on_lost: Callable[[_PooledConnection, BaseException], None] | None = None
    _direct: defer.Deferred[list[Any]] | None = None
    _direct_cursor: Any = None
    _watched: int | None = None

    def watch_duplicate(self) -> None:
        """
        Let the reactor watch a duplicate of libpq's socket from now on.

        libpq closes its own descriptor inside execute() or poll() when the server has
        gone, and a reactor cannot unregister a descriptor that is already closed. So
        txpostgres unregisters before every poll and registers again after it: four
        epoll_ctl calls per statement, about a fifth of a listing's CPU time on the node.
        The duplicate stays open until ``close()``, so the socket can stay registered
        while statements run.
        """
        self.reactor.removeReader(self)
        self._watched = os.dup(self._connection.fileno())
        self.reactor.addReader(self)

    def fileno(self) -> int:
        if self._watched is not None:
            return self._watched
        return super().fileno()  # type: ignore[no-any-return]

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._watched is not None:
                os.close(self._watched)
                self._watched = None

    def doRead(self) -> None:
        if self._direct is not None:
            self._advance_direct()
            return
        try:
            super().doRead()
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as error:
            self.reactor.removeReader(self)
            if self.on_lost is not None:
                self.on_lost(self, error)

    def doWrite(self) -> None:
        if self._direct is not None:
            self.reactor.removeWriter(self)
            self._advance_direct()
            return
        super().doWrite()

    def query_directly(self, sql: str, params: tuple[Any, ...]) -> defer.Deferred[list[Any]]:
        """
        Run one row-returning statement without txpostgres's cursor wrapper; fire with its rows.

        The result is delivered from this connection's own ``doRead``, which spares
        txpostgres's cursor wrapper, lock and deferred calls: about a sixth of a listing's
        CPU time on the node. The caller must hold the connection alone, as a checked-out
        pool connection is, and must have called ``watch_duplicate()``.
        """
        assert self._watched is not None, "query_directly needs watch_duplicate() first"
        if self._direct_cursor is None:
            self._direct_cursor = self._connection.cursor()
        self._direct = defer.Deferred()
        result = self._direct
        try:
            self._direct_cursor.execute(sql, params)
        except Exception:  # noqa: BLE001  # handed to the caller through the Deferred
            self._direct = None
            return defer.fail()
        self._advance_direct()
        return result

    def _advance_direct(self) -> None:
        """Poll the running statement; the reactor keeps watching the duplicate socket."""
        waiting = self._direct
        assert waiting is not None
        try:
            state = self._connection.poll()
            if state == psycopg2.extensions.POLL_OK:
                rows = self._direct_cursor.fetchall()
            elif state == psycopg2.extensions.POLL_WRITE:
                self.reactor.addWriter(self)
                return
            else:
                return  # POLL_READ: the reactor already watches for the result
        except Exception:  # noqa: BLE001  # handed to the caller through the Deferred
            self._direct = None
            self.reactor.callLater(0, waiting.errback, Failure())
            return
        self._direct = None
        # Fired here, not in a later reactor turn, which saved about a tenth of a listing's
        # CPU time. The caller may start its next statement on this connection from this
        # call: psycopg2 has finished with the last one, and doRead does nothing after it.
        # Failures still go through the reactor (above), since the caller may close the
        # connection, and closing it inside its own doRead is best avoided.
        waiting.callback(rows)


class Pool:
    """
    A fixed number of connection slots to one database, each reconnecting on its own.

    ``label`` names the database in logs (``meta``, ``users``, ``shards[0]``).
    """

    log = Logger()

    def __init__(
        self,
        *,
        label: str,
        dsn: str,
        size: int,
        reactor: IReactorTime,
        slow_query_ms: float = 250.0,
        connect_timeout_seconds: int = 5,
        checkout_timeout_seconds: float = 10.0,
        statement_timeout_ms: int = 30_000,
        max_backoff_seconds: float = 10.0,
        application_name: str = "comments",
    ) -> None:
        self.label = label
        self.dsn = dsn
        self.size = size
        self._reactor = reactor
        self._slow_query_ms = slow_query_ms
        self._connect_kwargs = {
            "connect_timeout": connect_timeout_seconds,
            # Timestamps leave the server in UTC, so their text form never needs parsing.
            "options": f"-c statement_timeout={statement_timeout_ms} -c timezone=UTC -c datestyle=ISO",
            "application_name": application_name,
        }
        self._checkout_timeout = checkout_timeout_seconds
        self._max_backoff = max_backoff_seconds
        self._idle: deque[txpostgres.Connection] = deque()
        self._waiters: deque[defer.Deferred[txpostgres.Connection]] = deque()
        self._alive = 0
        self._connecting = 0
        self._pending_reconnects: dict[int, Any] = {}
        self._probe: int | None = None  # the slot retrying for the others while none is alive
        self._waiting_slots: set[int] = set()
        self._next_slot = 0
        self._closed = False

    @property
    def alive(self) -> int:
        """The number of open connections."""
        return self._alive

    async def start(self) -> None:
        """
        Open every slot, returning once at least one connection works.

        Raises DatabaseUnavailable when the first attempt of every slot fails; the
        slots keep reconnecting in the background, so the pool recovers on its own.
        """
        self.log.info("connecting to {label} ({dsn}) with {size} connections", label=self.label,
                      dsn=redact_dsn(self.dsn), size=self.size)
        attempts = [defer.Deferred.fromCoroutine(self._open_slot(slot, attempt=1)) for slot in range(self.size)]
        self._next_slot = self.size
        results = await defer.DeferredList(attempts, consumeErrors=True)
        if not any(ok and opened for ok, opened in results):
            raise DatabaseUnavailable(f"cannot connect to {self.label} ({redact_dsn(self.dsn)})")
        self.log.info("connected to {label}: {alive} of {size} connections open", label=self.label,
                      alive=self._alive, size=self.size)

    def close(self) -> None:
        """Close every connection and stop reconnecting."""
        self._closed = True
        for call in self._pending_reconnects.values():
            if call.active():
                call.cancel()
        self._pending_reconnects.clear()
        self._waiting_slots.clear()
        while self._idle:
            connection = self._idle.popleft()
            self._close_quietly(connection)
            self._alive -= 1
        while self._waiters:
            self._waiters.popleft().errback(DatabaseUnavailable(f"the {self.label} pool is closed"))

    async def _open_slot(self, slot: int, attempt: int) -> bool:
        self._pending_reconnects.pop(slot, None)
        if self._closed:
            return False
        connection = _PooledConnection(reactor=self._reactor)
        connection.on_lost = self._lost_while_idle
        self._connecting += 1
        try:
            await connection.connect(self.dsn, **self._connect_kwargs)
        except Exception as error:  # noqa: BLE001  # psycopg2 raises many types while connecting
            self._connecting -= 1
            if self._alive == 0 and self._probe not in (None, slot):
                # The database is down: one slot probes it, and the rest wait for that
                # slot to get through instead of each retrying and logging on its own.
                self._waiting_slots.add(slot)
                return False
            self._probe = slot if self._alive == 0 else None
            delay = min(self._max_backoff, 0.5 * 2 ** (attempt - 1))
            self.log.warn(
                "connection {slot} to {label} failed (attempt {attempt}): {error}; retrying in {delay:.1f}s",
                slot=slot, label=self.label, attempt=attempt, error=one_line(error), delay=delay,
            )
            self._schedule_reconnect(slot, attempt + 1, delay)
            return False
        self._connecting -= 1
        if self._closed:
            self._close_quietly(connection)
            return False
        connection.slot = slot
        connection.prepared = {}
        connection.watch_duplicate()
        self._alive += 1
        if attempt > 1:
            self.log.info("reconnected slot {slot} to {label} after {attempts} attempts; reopening {waiting} more",
                          slot=slot, label=self.label, attempts=attempt, waiting=len(self._waiting_slots))
        if self._probe == slot:
            self._probe = None
        for waiting in sorted(self._waiting_slots):
            self._schedule_reconnect(waiting, 1, 0.0)
        self._waiting_slots.clear()
        self._release(connection)
        return True

    def reconnect_now(self) -> None:
        """Make every slot waiting out its backoff try again at once, as after the server is known to be back."""
        for call in self._pending_reconnects.values():
            if call.active():
                call.reset(0)

    def _schedule_reconnect(self, slot: int, attempt: int, delay: float) -> None:
        if self._closed:
            return
        self._pending_reconnects[slot] = self._reactor.callLater(
            delay, lambda: defer.Deferred.fromCoroutine(self._open_slot(slot, attempt))
        )

    def _release(self, connection: txpostgres.Connection) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.called:
                waiter.callback(connection)
                return
        self._idle.append(connection)

    def _lost_while_idle(self, connection: _PooledConnection, error: BaseException) -> None:
        if connection in self._idle:
            self._idle.remove(connection)
            self._discard(connection, error)

    def _discard(self, connection: txpostgres.Connection, error: BaseException) -> None:
        self._alive -= 1
        self._close_quietly(connection)
        self.log.warn("lost connection {slot} to {label}: {error}; reconnecting",
                      slot=connection.slot, label=self.label, error=one_line(error))
        # Every idle connection most likely died with the same server, so test them
        # lazily: they fail on their next use and are discarded then.
        self._schedule_reconnect(connection.slot, 1, 0.0)
        if self._alive == 0:
            while self._waiters:
                self._waiters.popleft().errback(DatabaseUnavailable(f"{self.label} is unavailable"))

    @staticmethod
    def _close_quietly(connection: txpostgres.Connection) -> None:
        try:
            connection.close()
        except Exception:  # noqa: BLE001, S110  # closing a broken connection may raise anything
            pass

    async def _checkout(self) -> txpostgres.Connection:
        if self._idle:
            return self._idle.popleft()
        if self._closed:
            raise DatabaseUnavailable(f"the {self.label} pool is closed")
        if self._alive == 0:
            raise DatabaseUnavailable(f"{self.label} is unavailable: no open connection, reconnecting")
        waiter: defer.Deferred[txpostgres.Connection] = defer.Deferred()
        self._waiters.append(waiter)
        def give_up() -> None:
            if not waiter.called:
                waiter.errback(DatabaseUnavailable(
                    f"timed out after {self._checkout_timeout}s waiting for a {self.label} connection"))

        timer = self._reactor.callLater(self._checkout_timeout, give_up)
        try:
            return await waiter
        finally:
            if timer.active():
                timer.cancel()

    async def run_interaction(
        self, name: str, body: Callable[[Cursor], Awaitable[T]], *, shard: int | None = None
    ) -> T:
        """
        Run ``body`` in one transaction named ``name``, retrying serialization failures, deadlocks and repeated ids.

        ``body`` receives a txpostgres cursor. A lost connection is not retried, since the
        commit may or may not have happened; it raises DatabaseUnavailable.
        """
        for attempt in range(1, _MAX_TRANSACTION_ATTEMPTS + 1):
            try:
                return await self._run_once(name, body, shard)
            except psycopg2.Error as error:
                if not _retryable(error) or attempt == _MAX_TRANSACTION_ATTEMPTS:
                    raise
                delay = 0.01 * 2 ** attempt
                self.log.info(
                    "transaction {name} on {label} hit {code} (attempt {attempt} of {limit}); retrying in {delay}s",
                    name=name, label=self.label, code=error.pgcode, attempt=attempt,
                    limit=_MAX_TRANSACTION_ATTEMPTS, delay=delay,
                )
                await task.deferLater(self._reactor, delay, lambda: None)
        raise AssertionError("unreachable")

    async def _run_once(self, name: str, body: Callable[[Cursor], Awaitable[T]], shard: int | None) -> T:
        def transaction(connection: txpostgres.Connection) -> defer.Deferred[T]:
            return defer.Deferred.fromCoroutine(_transaction(connection, body))

        return await self._with_connection(name, shard, transaction)

    async def _with_connection(
        self, name: str, shard: int | None, operation: Callable[[Any], defer.Deferred[T]]
    ) -> T:
        connection = await self._checkout()
        started = time.monotonic()
        # The statement runs to its end even when the caller is cancelled (a client that
        # disconnects cancels its request): the connection goes back to the pool only once
        # PostgreSQL has responded, never with a statement still running on it.
        # NOTE: so a disconnecting client does not stop its query; statement_timeout bounds it.
        outcome: defer.Deferred[T] = defer.Deferred()

        def finished(result: T | Failure) -> None:
            if isinstance(result, Failure):
                error = result.value
                assert error is not None
                if isinstance(error, _RollbackFailed):
                    self._discard(connection, error)
                    result = Failure(DatabaseUnavailable(f"{self.label} failed during {name}"))
                elif _is_connection_error(error):
                    self._discard(connection, error)
                    lost = f"{self.label} connection lost during {name}: {one_line(error)}"
                    result = Failure(DatabaseUnavailable(lost))
                else:
                    self._release(connection)
            else:
                self._release(connection)
                self._record_duration(name, started, shard)
            if outcome.called:
                return  # the caller was cancelled, so no one waits for the outcome
            if isinstance(result, Failure):
                outcome.errback(result)
            else:
                outcome.callback(result)

        defer.maybeDeferred(operation, connection).addBoth(finished)
        return await outcome

    def _record_duration(self, name: str, started: float, shard: int | None) -> None:
        elapsed_ms = (time.monotonic() - started) * 1000
        if elapsed_ms >= self._slow_query_ms:
            self.log.warn(
                "slow transaction {name} on {label} shard {shard}: {duration_ms:.1f} ms",
                name=name, label=self.label, shard=shard, duration_ms=elapsed_ms,
            )

    async def run_query(self, name: str, sql: str, params: Any = None, *, shard: int | None = None) -> list[Any]:
        """Run one row-returning statement outside any transaction (autocommit) and return its rows."""
        rows: list[Any] = await self._with_connection(name, shard, lambda c: c.runQuery(sql, params))
        return rows

    async def run_prepared(
        self, name: str, sql: str, params: tuple[Any, ...], *, shard: int | None = None
    ) -> list[Any]:
        """
        Run a hot row-returning statement as a server-side prepared statement; return its rows.

        ``sql`` uses ``%s`` placeholders like any other query. Each connection prepares it
        on first use, so later runs skip PostgreSQL's planning, which costs more than the
        execution of a small indexed query.
        """

        def execute(connection: _PooledConnection) -> defer.Deferred[list[Any]]:
            statement = connection.prepared.get(sql)
            if statement is not None:
                return connection.query_directly(f"EXECUTE {statement}({placeholders})", params)
            statement = f"comments_{len(connection.prepared)}"
            numbered = _number_placeholders(sql)
            prepared = connection.runOperation(f"PREPARE {statement} AS {numbered}")

            def remember(_: object) -> defer.Deferred[list[Any]]:
                connection.prepared[sql] = statement
                return connection.query_directly(f"EXECUTE {statement}({placeholders})", params)

            return prepared.addCallback(remember)  # type: ignore[no-any-return]

        placeholders = ", ".join(["%s"] * len(params))
        if not params:
            return await self.run_query(name, sql, None, shard=shard)
        rows: list[Any] = await self._with_connection(name, shard, execute)
        return rows

    async def run_operation(self, name: str, sql: str, params: Any = None, *, shard: int | None = None) -> None:
        """Run one statement that returns no rows, outside any transaction (autocommit)."""
        await self._with_connection(name, shard, lambda c: c.runOperation(sql, params))


def _number_placeholders(sql: str) -> str:
    """Turn psycopg2's ``%s`` placeholders into PostgreSQL's ``$1``, ``$2`` ... for PREPARE."""
    parts = sql.split("%s")
    numbered = [parts[0]]
    for index, part in enumerate(parts[1:], start=1):
        numbered.append(f"${index}{part}")
    return "".join(numbered).replace("%%", "%")


class _RollbackFailed(Exception):
    """A transaction failed and so did its rollback: the connection cannot be trusted."""


async def _transaction(connection: txpostgres.Connection, body: Callable[[Cursor], Awaitable[T]]) -> T:
    """
    Run ``body`` between BEGIN and COMMIT on ``connection``, rolling back when it raises.

    txpostgres's runInteraction does the same, but logs a traceback of its own whenever
    the rollback fails, which happens on every transaction a server restart interrupts.
    """
    cursor = connection.cursor()
    await cursor.execute("BEGIN")
    try:
        result = await body(cursor)
    except BaseException as error:
        try:
            await cursor.execute("ROLLBACK")
        except Exception as rollback_error:  # noqa: BLE001  # any failure here leaves the session unknown
            raise _RollbackFailed(f"{one_line(error)}; the rollback failed too: {one_line(rollback_error)}") from error
        raise
    await cursor.execute("COMMIT")
    return result
