"""
Shared test fixtures: a real two-database test cluster with eight logical shards.

``COMMENTS_TEST_PG`` names a PostgreSQL server (default: 127.0.0.1:5432 as postgres, as on
CI). When it does not respond, the tests start the embedded server once per process. Meta
and users live in different databases and the shards alternate between them, so a query
that omits its shard, or joins across partitions, fails.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql

from comments.config import DatabaseConfig
from comments.db.admin import ForumRecord, create_forum, migrate_cluster
from comments.db.migrations import blocking_connection

__all__ = ["REPOSITORY", "NodeProcess", "free_port", "make_forum", "reset_data", "test_database"]

REPOSITORY = Path(__file__).resolve().parent.parent
LOGICAL_SHARDS = 8
# COMMENTS_TEST_DB_PREFIX lets two checkouts run their suites at once on one server.
_PREFIX = os.environ.get("COMMENTS_TEST_DB_PREFIX", "comments_test")
_DATABASES = (f"{_PREFIX}_a", f"{_PREFIX}_b")
_state: dict[str, Any] = {}


def _server_dsn() -> str:
    configured = os.environ.get("COMMENTS_TEST_PG")
    if configured:
        return configured
    default = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    try:
        psycopg2.connect(default, connect_timeout=3).close()
        return default
    except psycopg2.OperationalError:
        pass
    from comments.embedded import EmbeddedPostgres

    embedded = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="comments-test-pg-")))
    dsn = embedded.start()
    _state["embedded"] = embedded
    return dsn.replace("/comments?", "/postgres?")


def _database_dsn(server_dsn: str, name: str) -> str:
    if server_dsn.startswith("postgres"):
        before, _, after = server_dsn.partition("?")
        return before.rsplit("/", 1)[0] + f"/{name}" + (f"?{after}" if after else "")
    return f"{server_dsn} dbname={name}"


def test_database() -> DatabaseConfig:
    """Create (once per process) and migrate the test cluster; return its configuration."""
    if "database" in _state:
        return _state["database"]  # type: ignore[no-any-return]
    server = _server_dsn()
    admin = psycopg2.connect(server)
    admin.autocommit = True
    with admin.cursor() as cursor:
        for name in _DATABASES:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    admin.close()
    first, second = (_database_dsn(server, name) for name in _DATABASES)
    database = DatabaseConfig(meta=first, users=second, shards=(first, second), logical_shards=LOGICAL_SHARDS,
                              pool_size=4, slow_query_ms=1000)
    migrate_cluster(database, report=lambda line: None)
    _state["database"] = database
    _state["server"] = server
    return database


def reset_data(database: DatabaseConfig) -> None:
    """Delete every forum, account, thread, post and vote, keeping schemas and the shard map."""
    for dsn in dict.fromkeys((database.meta, database.users, *database.shards)):
        assert dsn
        with blocking_connection(dsn) as connection, connection, connection.cursor() as cursor:
            cursor.execute(
                """SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
                   WHERE (schemaname LIKE 'shard\\_%' AND tablename <> 'schema_migrations')
                      OR (schemaname = 'meta' AND tablename = 'forums')
                      OR (schemaname = 'users' AND tablename = 'accounts')"""
            )
            tables = [row[0] for row in cursor.fetchall()]
            if tables:
                cursor.execute(f"TRUNCATE {', '.join(tables)} CASCADE")
            cursor.execute("SELECT to_regclass('meta.shards') IS NOT NULL")
            row = cursor.fetchone()
            if row and row[0]:
                cursor.execute("UPDATE meta.shards SET forums = 0")


def make_forum(database: DatabaseConfig, shortname: str, origins: list[str] | None = None,
               settings: dict[str, Any] | None = None) -> ForumRecord:
    """Create a forum in the test cluster."""
    assert database.meta
    with blocking_connection(database.meta) as meta:
        return create_forum(meta, shortname=shortname, name=shortname.title(), url="https://example.org",
                            origins=origins or ["https://example.org"], settings=settings)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class NodeProcess:
    """A real node started as ``python -m comments serve`` on a free port of 127.0.0.1."""

    def __init__(self, database: DatabaseConfig, extra: str = "", data_dir: Path | None = None,
                 posts_per_minute: int = 0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.directory = Path(tempfile.mkdtemp(prefix="comments-node-"))
        self.config_path = self.directory / "node.toml"
        self.log_path = self.directory / "node.log"
        lines = ["[node]", f'listen = "tcp:{self.port}:interface=127.0.0.1"']
        if data_dir is not None:
            lines.append(f'data_dir = "{data_dir}"')
        lines += ["[posts]", f"posts_per_minute = {posts_per_minute}"]
        if not database.embedded:
            shards = ", ".join(f'"{dsn}"' for dsn in database.shards)
            lines += ["[database]", f'meta = "{database.meta}"', f'users = "{database.users}"',
                      f"shards = [{shards}]", f"logical_shards = {database.logical_shards}"]
        self.config_path.write_text("\n".join(lines) + "\n" + extra)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        """Start the node and wait until ``/health`` returns 200."""
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "comments", "--config", str(self.config_path), "serve"],
            cwd=REPOSITORY, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"node exited with {self.process.returncode}: {self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"node did not become ready in {timeout}s: {self.log_path.read_text()}")

    def stop(self) -> int | None:
        """Stop the node with SIGTERM and return its exit status."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.terminate()
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
