"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import sys

import psycopg2


def log(message: str) -> None:
    """Print a progress line to standard error."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def recreate_databases(server: str, names: tuple[str, ...]) -> None:
    """Drop and create the databases ``names`` on ``server`` (a libpq DSN without dbname)."""
    admin = psycopg2.connect(f"{server} dbname=postgres")
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            for name in names:
                cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                cursor.execute(f"CREATE DATABASE {name}")
    finally:
        admin.close()
