"""
Versioned schema migrations for the ``meta`` and ``users`` partitions and every logical shard.

Each partition lives in its own PostgreSQL schema (``meta``, ``users``, ``shard_0000`` ...)
with its own ``schema_migrations`` table, so several partitions may share one database
without colliding. Migrations run in one transaction each, under an advisory lock, so two
``comments migrate`` runs at once apply every migration exactly once.

Migrations run from the command line and at start-up, before the reactor serves anything,
so they use blocking psycopg2 connections.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg2
import psycopg2.extensions

from comments.ids import EPOCH_MS, SEQUENCE_BITS, SHARD_BITS

__all__ = ["META", "SHARD", "USERS", "Migration", "apply_migrations", "blocking_connection", "shard_schema"]


@dataclass(frozen=True)
class Migration:
    """One schema change; ``sql`` receives the schema name and, for shards, the shard number."""

    version: int
    name: str
    sql: Callable[[str, int], str]


def shard_schema(shard: int) -> str:
    """Return the PostgreSQL schema name of a logical shard."""
    return f"shard_{shard:04d}"


META = [
    Migration(1, "forums, shard map and cluster settings", lambda schema, _: f"""
        CREATE TABLE {schema}.cluster (
            key text PRIMARY KEY,
            value text NOT NULL
        );
        CREATE TABLE {schema}.shards (
            shard integer PRIMARY KEY,
            database integer NOT NULL,
            schema text NOT NULL,
            forums integer NOT NULL DEFAULT 0
        );
        CREATE TABLE {schema}.forums (
            id bigserial PRIMARY KEY,
            shortname text NOT NULL UNIQUE,
            name text NOT NULL,
            url text NOT NULL DEFAULT '',
            origins text[] NOT NULL DEFAULT '{{}}',
            settings jsonb NOT NULL DEFAULT '{{}}',
            secret_key text NOT NULL,
            shard integer NOT NULL REFERENCES {schema}.shards (shard),
            created_at timestamptz NOT NULL DEFAULT now()
        );
    """),
]

USERS = [
    Migration(1, "accounts", lambda schema, _: f"""
        CREATE TABLE {schema}.accounts (
            id bigserial PRIMARY KEY,
            username text NOT NULL UNIQUE,
            display_name text NOT NULL,
            email text,
            created_at timestamptz NOT NULL DEFAULT now()
        );
    """),
]

_TIMESTAMP_SHIFT = SHARD_BITS + SEQUENCE_BITS

SHARD = [
    Migration(1, "id generator, threads, posts and votes", lambda schema, shard: f"""
        CREATE SEQUENCE {schema}.id_sequence;
        -- 41 bits of milliseconds since {EPOCH_MS}, {SHARD_BITS} bits of shard, {SEQUENCE_BITS} bits of sequence.
        -- NOTE: more than {1 << SEQUENCE_BITS} ids in one millisecond on one shard repeat an id; the
        -- primary keys reject the repeat, and bulk imports pace themselves below that rate.
        CREATE FUNCTION {schema}.next_id() RETURNS bigint LANGUAGE sql VOLATILE AS $$
            SELECT ((floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint - {EPOCH_MS}) << {_TIMESTAMP_SHIFT})
                   | ({shard}::bigint << {SEQUENCE_BITS})
                   | (nextval('{schema}.id_sequence') % {1 << SEQUENCE_BITS})
        $$;
        CREATE TABLE {schema}.threads (
            id bigint PRIMARY KEY DEFAULT {schema}.next_id(),
            forum_id bigint NOT NULL,
            identifier text,
            url text NOT NULL,
            url_key text NOT NULL,
            title text NOT NULL DEFAULT '',
            created_at timestamptz NOT NULL DEFAULT now(),
            closed boolean NOT NULL DEFAULT false,
            deleted boolean NOT NULL DEFAULT false,
            posts integer NOT NULL DEFAULT 0,
            version bigint NOT NULL DEFAULT 1,
            source_id text
        );
        CREATE UNIQUE INDEX threads_by_identifier ON {schema}.threads (forum_id, identifier)
            WHERE identifier IS NOT NULL;
        CREATE UNIQUE INDEX threads_by_url_without_identifier ON {schema}.threads (forum_id, url_key)
            WHERE identifier IS NULL;
        CREATE INDEX threads_by_url ON {schema}.threads (forum_id, url_key);
        CREATE UNIQUE INDEX threads_by_source ON {schema}.threads (forum_id, source_id)
            WHERE source_id IS NOT NULL;

        CREATE TABLE {schema}.posts (
            id bigint PRIMARY KEY DEFAULT {schema}.next_id(),
            thread_id bigint NOT NULL REFERENCES {schema}.threads (id),
            forum_id bigint NOT NULL,
            parent_id bigint REFERENCES {schema}.posts (id),
            root_id bigint NOT NULL,
            depth integer NOT NULL DEFAULT 0,
            state text NOT NULL CHECK (state IN ('approved', 'pending', 'spam', 'deleted')),
            kind text NOT NULL DEFAULT 'comment' CHECK (kind IN ('comment', 'pingback', 'trackback')),
            raw text NOT NULL,
            html text NOT NULL,
            author_name text NOT NULL,
            author_email text,
            author_url text,
            author_user_id bigint,
            ip inet,
            created_at timestamptz NOT NULL DEFAULT now(),
            edited_at timestamptz,
            likes integer NOT NULL DEFAULT 0,
            dislikes integer NOT NULL DEFAULT 0,
            score integer GENERATED ALWAYS AS (likes - dislikes) STORED,
            edit_token_hash bytea,
            source_id text
        );
        CREATE INDEX posts_top_level_by_time ON {schema}.posts (thread_id, created_at, id)
            WHERE parent_id IS NULL;
        CREATE INDEX posts_top_level_by_score ON {schema}.posts (thread_id, score, created_at, id)
            WHERE parent_id IS NULL;
        CREATE INDEX posts_by_root ON {schema}.posts (root_id);
        CREATE UNIQUE INDEX posts_by_source ON {schema}.posts (forum_id, source_id)
            WHERE source_id IS NOT NULL;

        CREATE TABLE {schema}.votes (
            post_id bigint NOT NULL REFERENCES {schema}.posts (id),
            voter text NOT NULL,
            value smallint NOT NULL CHECK (value IN (-1, 1)),
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (post_id, voter)
        );
    """),
]


@contextmanager
def blocking_connection(dsn: str) -> Iterator[psycopg2.extensions.connection]:
    """Open a blocking psycopg2 connection for administrative work and close it afterwards."""
    connection = psycopg2.connect(dsn, connect_timeout=10, application_name="comments-admin")
    try:
        yield connection
    finally:
        connection.close()


def apply_migrations(
    connection: psycopg2.extensions.connection,
    *,
    schema: str,
    migrations: list[Migration],
    shard: int = 0,
) -> list[str]:
    """
    Apply every migration of ``migrations`` that ``schema`` lacks; return the names applied.

    Safe to run concurrently from several processes and to run again.
    """
    applied: list[str] = []
    lock_key = f"comments-migrate:{schema}"
    with connection:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (lock_key,))
            cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            cursor.execute(
                f"""CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
                        version integer PRIMARY KEY,
                        name text NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            cursor.execute(f"SELECT version FROM {schema}.schema_migrations")
            done = {row[0] for row in cursor.fetchall()}
            for migration in migrations:
                if migration.version in done:
                    continue
                cursor.execute(migration.sql(schema, shard))
                cursor.execute(
                    f"INSERT INTO {schema}.schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
                applied.append(f"{schema} {migration.version}: {migration.name}")
    return applied
