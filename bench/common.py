"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import os
import re
import sys

import psycopg2


def database_name(suffix: str) -> str:
    """
    Return the benchmark database name ending in ``suffix``.

    ``COMMENTS_BENCH_DB_PREFIX`` (default ``comments_bench``) keeps runs that share one
    PostgreSQL server apart; every run drops and creates its own databases.
    """
    prefix = os.environ.get("COMMENTS_BENCH_DB_PREFIX", "comments_bench")
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", prefix):
        raise SystemExit(f"COMMENTS_BENCH_DB_PREFIX {prefix!r} is invalid; use lower-case letters, digits and _")
    return f"{prefix}_{suffix}"


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
