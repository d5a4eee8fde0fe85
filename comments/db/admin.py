"""
Blocking administrative operations on the cluster: migrations, the shard map and forums.

These run from the ``comments`` command and at node start-up, never inside a request.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from comments.config import DatabaseConfig
from comments.db.migrations import META, SHARD, USERS, apply_migrations, blocking_connection, shard_schema

__all__ = [
    "SHORTNAME_PATTERN",
    "ClusterMismatch",
    "ForumExists",
    "ForumRecord",
    "InvalidForum",
    "create_forum",
    "find_forum",
    "list_forums",
    "load_shard_map",
    "migrate_cluster",
]

SHORTNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_ORIGIN_PATTERN = re.compile(r"^https?://[^/\s?#]+$")


class ClusterMismatch(Exception):
    """The configuration disagrees with what the cluster recorded when it was created."""


class ForumExists(Exception):
    """A forum with that shortname already exists."""


class InvalidForum(ValueError):
    """A forum's shortname, url or origins are invalid."""


@dataclass(frozen=True)
class ForumRecord:
    """One forum as stored in ``meta.forums``."""

    id: int
    shortname: str
    name: str
    url: str
    origins: tuple[str, ...]
    settings: dict[str, Any]
    shard: int


def migrate_cluster(database: DatabaseConfig, report: Callable[[str], None] = print) -> list[str]:
    """
    Migrate meta, users and every logical shard; create the shard map on first run.

    Returns the migrations applied, which is empty when everything was up to date.
    """
    assert database.meta and database.users
    applied: list[str] = []
    with blocking_connection(database.meta) as meta:
        applied += apply_migrations(meta, schema="meta", migrations=META)
        shard_map = _ensure_shard_map(meta, database)
    with blocking_connection(database.users) as users:
        applied += apply_migrations(users, schema="users", migrations=USERS)

    for index, dsn in enumerate(database.shards):
        shards = sorted(shard for shard, (db, _) in shard_map.items() if db == index)
        migrated = 0
        with blocking_connection(dsn) as connection:
            for shard in shards:
                done = apply_migrations(connection, schema=shard_schema(shard), migrations=SHARD, shard=shard)
                applied += done
                migrated += bool(done)
        if migrated:
            report(f"shards[{index}]: migrated {migrated} of its {len(shards)} logical shards")
    for line in applied:
        if not line.startswith("shard_"):
            report(f"applied {line}")
    return applied


def _ensure_shard_map(meta: psycopg2.extensions.connection, database: DatabaseConfig) -> dict[int, tuple[int, str]]:
    with meta, meta.cursor() as cursor:
        cursor.execute("LOCK TABLE meta.cluster IN EXCLUSIVE MODE")
        cursor.execute("SELECT value FROM meta.cluster WHERE key = 'logical_shards'")
        row = cursor.fetchone()
        if row is None:
            cursor.execute(
                "INSERT INTO meta.cluster (key, value) VALUES ('logical_shards', %s)",
                (str(database.logical_shards),),
            )
            cursor.executemany(
                "INSERT INTO meta.shards (shard, database, schema) VALUES (%s, %s, %s)",
                [
                    (shard, shard % len(database.shards), shard_schema(shard))
                    for shard in range(database.logical_shards)
                ],
            )
        elif int(row[0]) != database.logical_shards:
            raise ClusterMismatch(
                f"database.logical_shards is {database.logical_shards} but the cluster was created with "
                f"{row[0]}; the number of logical shards is fixed at creation, so set it back to {row[0]}"
            )
    return load_shard_map(meta, database)


def load_shard_map(
    meta: psycopg2.extensions.connection, database: DatabaseConfig
) -> dict[int, tuple[int, str]]:
    """Return ``{logical shard: (physical database index, schema)}``, checked against the configuration."""
    with meta, meta.cursor() as cursor:
        cursor.execute("SELECT shard, database, schema FROM meta.shards ORDER BY shard")
        rows = cursor.fetchall()
    shard_map = {shard: (db, schema) for shard, db, schema in rows}
    missing = sorted({db for db, _ in shard_map.values() if db >= len(database.shards)})
    if missing:
        raise ClusterMismatch(
            f"the shard map places shards on physical databases {missing}, but database.shards lists only "
            f"{len(database.shards)}; add the missing DSNs to database.shards, in their original order"
        )
    return shard_map


def validate_forum_fields(shortname: str, url: str, origins: list[str]) -> list[str]:
    """Return every problem with a new forum's fields, naming each value."""
    problems = []
    if not SHORTNAME_PATTERN.match(shortname):
        problems.append(
            f"shortname {shortname!r} is invalid; use 1 to 63 lowercase letters, digits and hyphens, "
            "starting with a letter or digit"
        )
    if url and not url.startswith(("http://", "https://")):
        problems.append(f"url {url!r} must start with http:// or https://")
    for origin in origins:
        if origin != "*" and not _ORIGIN_PATTERN.match(origin):
            problems.append(
                f"origin {origin!r} is invalid; write scheme and host with an optional port and no path, "
                "e.g. https://blog.example.org"
            )
    return problems


def create_forum(
    meta: psycopg2.extensions.connection,
    *,
    shortname: str,
    name: str,
    url: str = "",
    origins: list[str] | None = None,
    settings: dict[str, Any] | None = None,
) -> ForumRecord:
    """Create a forum on the logical shard that has the fewest forums."""
    origins = [origin.rstrip("/") for origin in origins or []]
    problems = validate_forum_fields(shortname, url, origins)
    if problems:
        raise InvalidForum("; ".join(problems))
    try:
        with meta, meta.cursor() as cursor:
            cursor.execute(
                "SELECT shard FROM meta.shards ORDER BY forums, shard LIMIT 1 FOR UPDATE SKIP LOCKED"
            )
            row = cursor.fetchone()
            if row is None:
                raise ClusterMismatch("the cluster has no shard map; run `comments migrate` first")
            shard = row[0]
            cursor.execute(
                """INSERT INTO meta.forums (shortname, name, url, origins, settings, secret_key, shard)
                   VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id""",
                (shortname, name or shortname, url, origins, psycopg2.extras.Json(settings or {}),
                 secrets.token_urlsafe(32), shard),
            )
            (forum_id,) = cursor.fetchone() or (None,)
            cursor.execute("UPDATE meta.shards SET forums = forums + 1 WHERE shard = %s", (shard,))
    except psycopg2.errors.UniqueViolation:
        raise ForumExists(f"a forum named {shortname!r} already exists; pick another shortname") from None
    assert forum_id is not None
    return ForumRecord(forum_id, shortname, name or shortname, url, tuple(origins), settings or {}, shard)


def list_forums(meta: psycopg2.extensions.connection) -> list[ForumRecord]:
    """Return every forum, ordered by shortname."""
    with meta, meta.cursor() as cursor:
        cursor.execute(
            "SELECT id, shortname, name, url, origins, settings, shard FROM meta.forums ORDER BY shortname"
        )
        return [ForumRecord(r[0], r[1], r[2], r[3], tuple(r[4]), r[5], r[6]) for r in cursor.fetchall()]


def find_forum(meta: psycopg2.extensions.connection, shortname: str) -> ForumRecord | None:
    """Return the forum named ``shortname``, or None."""
    with meta, meta.cursor() as cursor:
        cursor.execute(
            "SELECT id, shortname, name, url, origins, settings, shard FROM meta.forums WHERE shortname = %s",
            (shortname,),
        )
        row = cursor.fetchone()
    return None if row is None else ForumRecord(row[0], row[1], row[2], row[3], tuple(row[4]), row[5], row[6])


def add_forum_origins(meta: psycopg2.extensions.connection, shortname: str, origins: list[str]) -> None:
    """Add ``origins`` to a forum's allowed origins, keeping the ones it has."""
    with meta, meta.cursor() as cursor:
        cursor.execute(
            """UPDATE meta.forums
               SET origins = ARRAY(SELECT DISTINCT unnest(origins || %s::text[]))
               WHERE shortname = %s""",
            (origins, shortname),
        )
