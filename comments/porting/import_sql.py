"""The SQL steps of an import, all inside the import's transaction on the shard.

The file arrives in segments of consecutive records. `stage_segment` copies a segment
into `import_segment`, maps its threads, links its registered authors and inserts every
post whose place is already certain. A post waits in `import_posts` when its thread or
parent has not been seen yet, when it was stored by an earlier import, or when its
segment is the last one. After the last segment, `resolve_pending_posts` and
`insert_pending_posts` apply every rule that needs the whole file to the waiting posts.

Each post's id is drawn when its segment is staged, whether the post is inserted then
or waits, so the ids are drawn in file order as one pass over the whole file draws them.

An export of this service writes its own ids, so a staged source id such as
``disqus:<id>`` or ``wxr:<thread id>:<id>`` may name a row of this forum by its id. Such
a row is matched like a row with that source id, whether it was written here or
imported, so importing an export back into its forum adds nothing. Stored rows are
never changed by this matching.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import IO

import psycopg2.extensions

from comments.ids import SEQUENCE_BITS, SHARD_BITS
from comments.porting.import_rows import copy_text

# Ids drawn from next_id() per millisecond. next_id() keeps only 10 bits of its
# sequence, so more than 1024 ids in one millisecond on one shard repeat earlier ids.
# Half of that room is left to posts that the nodes write during the import.
_IDS_PER_MILLISECOND = 512

# Bytes of COPY text that psycopg2 reads from a segment's buffer at a time.
_COPY_CHUNK_BYTES = 256 * 1024

# Account upserts in the users database go in batches of this many usernames.
_ACCOUNT_BATCH = 1000

# The range of this service's ids that a staged source id may name. comments/ids.py
# puts the milliseconds since 2024-01-01 above 23 bits of shard and sequence, so every
# id drawn after 2024-01-13 is at least 2**53. The Disqus ids of the real exports in
# tests/porting/fixtures have at most 10 digits and the WordPress ids far fewer.
# NOTE: a foreign id in this range whose shard bits name the forum's shard and that
# equals the id of a row of the same forum would match that row.
_MIN_OWN_ID = 2**53
_MAX_OWN_ID = 2**63 - 1

_POST_COLUMNS = (
    "seq, line, source_id, thread_source_id, parent_source_id, raw, html, author_name, author_email,"
    " author_username, author_is_guest, author_url, ip, created_at, state, kind"
)
_THREAD_COLUMNS = "seq, line, source_id, identifier, url, url_key, title, created_at, closed, deleted"
_ISSUE_COLUMNS = "line, source_id, reason, skipped"

_MISSING_THREAD = "The post's thread is not in the file, or the parser skipped it."
_DUPLICATE_THREAD = "The thread's id appears earlier in the file, so this copy was ignored."
_DUPLICATE_POST = "The post's id appears earlier in the file, so this copy was ignored."
_MISSING_PARENT = (
    "The reply's parent is not in the file, was skipped or belongs to another thread,"
    " so the reply became a top-level post."
)
_PARENT_CYCLE = "The reply's chain of parents loops back on itself, so the reply became a top-level post."

_STAGING_TABLES = """
    CREATE TEMP TABLE import_segment (
        seq bigint NOT NULL,
        line integer NOT NULL,
        source_id text NOT NULL,
        thread_source_id text NOT NULL,
        parent_source_id text,
        raw text NOT NULL,
        html text NOT NULL,
        author_name text NOT NULL,
        author_email text,
        author_username text,
        author_is_guest boolean NOT NULL,
        author_url text,
        ip inet,
        created_at timestamptz NOT NULL,
        state text NOT NULL,
        kind text NOT NULL
    ) ON COMMIT DROP;
    -- The posts that wait for the end of the file, each the first of its source id.
    CREATE TEMP TABLE import_posts (LIKE import_segment) ON COMMIT DROP;
    CREATE TEMP TABLE import_post_ids (ordinal bigint NOT NULL, id bigint NOT NULL) ON COMMIT DROP;
    CREATE TEMP TABLE import_threads (
        seq bigint NOT NULL,
        line integer NOT NULL,
        source_id text NOT NULL,
        identifier text,
        url text NOT NULL,
        url_key text NOT NULL,
        title text NOT NULL,
        created_at timestamptz,
        closed boolean NOT NULL,
        deleted boolean NOT NULL
    ) ON COMMIT DROP;
    CREATE TEMP TABLE import_issues (
        line integer NOT NULL,
        source_id text,
        reason text NOT NULL,
        skipped boolean NOT NULL
    ) ON COMMIT DROP;

    -- Every source id of the file with the seq of its first post.
    CREATE TEMP TABLE import_first_seen (source_id text PRIMARY KEY, seq bigint NOT NULL) ON COMMIT DROP;
    -- The earliest post date of every thread source id in the file.
    CREATE TEMP TABLE import_thread_dates (
        thread_source_id text PRIMARY KEY,
        created_at timestamptz NOT NULL
    ) ON COMMIT DROP;

    CREATE TEMP TABLE import_thread_map (
        seq bigint NOT NULL,
        line integer NOT NULL,
        source_id text PRIMARY KEY,
        identifier text,
        url_key text,
        thread_id bigint
    ) ON COMMIT DROP;
    CREATE TEMP TABLE import_thread_ids (ordinal bigint NOT NULL, id bigint NOT NULL) ON COMMIT DROP;
    CREATE TEMP TABLE import_new_threads (seq bigint NOT NULL) ON COMMIT DROP;
    -- The threads this import created, with the source id of the staged thread that created each.
    CREATE TEMP TABLE import_created_threads (thread_id bigint PRIMARY KEY, source_id text NOT NULL) ON COMMIT DROP;

    CREATE TEMP TABLE import_accounts (username text PRIMARY KEY, account_id bigint NOT NULL) ON COMMIT DROP;

    -- The forum's posts that staged source ids, of posts and parents, name by their id.
    CREATE TEMP TABLE import_own_posts (
        source_id text PRIMARY KEY,
        id bigint NOT NULL,
        thread_id bigint NOT NULL,
        root_id bigint NOT NULL,
        depth integer NOT NULL
    ) ON COMMIT DROP;

    -- The approved comments that the import inserted into each thread that got posts.
    CREATE TEMP TABLE import_thread_counts (thread_id bigint PRIMARY KEY, approved bigint NOT NULL) ON COMMIT DROP;
    CREATE TEMP TABLE import_segment_firsts (seq bigint NOT NULL) ON COMMIT DROP;
    CREATE TEMP TABLE import_segment_ids (ordinal bigint NOT NULL, id bigint NOT NULL) ON COMMIT DROP;
    -- The segment's posts that may be inserted now. parent_id is set when the parent is
    -- known, and root_id and depth when the parent is stored already.
    CREATE TEMP TABLE import_candidates (
        seq bigint NOT NULL,
        id bigint NOT NULL,
        source_id text NOT NULL,
        parent_source_id text,
        thread_id bigint NOT NULL,
        parent_id bigint,
        root_id bigint,
        depth integer
    ) ON COMMIT DROP;
    CREATE INDEX ON import_candidates (parent_id);
    CREATE TEMP TABLE import_segment_placed (
        seq bigint NOT NULL,
        id bigint NOT NULL,
        source_id text NOT NULL,
        thread_id bigint NOT NULL,
        parent_id bigint,
        root_id bigint NOT NULL,
        depth integer NOT NULL
    ) ON COMMIT DROP;
"""

# The tables that hold one segment at a time.
_SEGMENT_TABLES = "import_segment, import_segment_firsts, import_segment_ids, import_candidates, import_segment_placed"


@dataclass(frozen=True)
class SegmentData:
    """COPY text rows of consecutive records, with the seq numbers they cover.

    Posts are numbered from `first_post_seq` and threads from `first_thread_seq`, both
    in file order and without gaps between segments.
    """

    posts: IO[bytes]
    threads: IO[bytes]
    issues: IO[bytes]
    first_post_seq: int
    post_count: int
    first_thread_seq: int
    thread_count: int


@dataclass
class ImportCounts:
    """Counts of the threads, accounts and posts that one import's segments created, matched, linked or inserted."""

    threads_created: int = 0
    threads_matched: int = 0
    accounts_linked: int = 0
    accounts_created: int = 0
    posts_created: int = 0
    pingbacks: int = 0


def has_stored_sources(cursor: psycopg2.extensions.cursor, *, schema: str, forum_id: int) -> bool:
    """Return whether the forum has posts with a source id, which earlier imports stored."""
    cursor.execute(
        f"SELECT EXISTS (SELECT 1 FROM {schema}.posts WHERE forum_id = %s AND source_id IS NOT NULL)", (forum_id,)
    )
    row = cursor.fetchone()
    assert row is not None
    return bool(row[0])


def create_staging_tables(cursor: psycopg2.extensions.cursor) -> None:
    """Create the temporary tables of one import, which PostgreSQL drops at the commit."""
    cursor.execute(_STAGING_TABLES)


def stage_segment(
    cursor: psycopg2.extensions.cursor,
    segment: SegmentData,
    *,
    users: psycopg2.extensions.connection,
    schema: str,
    forum_id: int,
    place: bool,
    stored_sources: bool,
    counts: ImportCounts,
) -> None:
    """Copy `segment` into the staging tables, map its threads and link its authors.

    With `place`, the posts whose thread and parent are already settled are inserted
    into the forum. Every other post that is the first of its source id waits in
    `import_posts`. `stored_sources` is what `has_stored_sources` returned at the start
    of the import. Adds what was done to `counts`. Accounts are upserted in the
    transaction on `users`, which the caller commits.
    """
    cursor.execute(f"TRUNCATE {_SEGMENT_TABLES}")
    cursor.copy_expert(f"COPY import_segment ({_POST_COLUMNS}) FROM STDIN", segment.posts, size=_COPY_CHUNK_BYTES)
    # Free the largest buffer of the import now, while the next segment fills its own.
    segment.posts.close()
    cursor.copy_expert(f"COPY import_threads ({_THREAD_COLUMNS}) FROM STDIN", segment.threads)
    cursor.copy_expert(f"COPY import_issues ({_ISSUE_COLUMNS}) FROM STDIN", segment.issues)

    cursor.execute(
        """INSERT INTO import_thread_dates (thread_source_id, created_at)
           SELECT thread_source_id, min(created_at) FROM import_segment GROUP BY thread_source_id
           ON CONFLICT (thread_source_id) DO UPDATE
           SET created_at = least(import_thread_dates.created_at, excluded.created_at)"""
    )
    last_thread_seq = segment.first_thread_seq + segment.thread_count - 1
    created, matched = _map_threads(
        cursor, schema=schema, forum_id=forum_id, first_seq=segment.first_thread_seq, last_seq=last_thread_seq
    )
    counts.threads_created += created
    counts.threads_matched += matched

    first_posts = _record_first_posts(cursor)
    _record_own_posts(cursor, schema=schema, forum_id=forum_id)
    _allocate_ids(
        cursor, schema=schema, table="import_segment_ids", first_ordinal=segment.first_post_seq,
        count=segment.post_count,
    )
    accounts_linked, accounts_created = _link_accounts(cursor, users)
    counts.accounts_linked += accounts_linked
    counts.accounts_created += accounts_created

    inserted = 0
    if place:
        inserted, pingbacks = _place_posts(cursor, schema=schema, forum_id=forum_id, stored_sources=stored_sources)
        counts.posts_created += inserted
        counts.pingbacks += pingbacks
    if inserted < first_posts:
        _keep_pending_posts(cursor)


def _keep_pending_posts(cursor: psycopg2.extensions.cursor) -> None:
    """Move the segment's posts that are the first of their source id but were not inserted to `import_posts`."""
    cursor.execute(
        f"""INSERT INTO import_posts ({_POST_COLUMNS})
            SELECT {_POST_COLUMNS} FROM import_segment s
            WHERE s.seq IN (SELECT seq FROM import_segment_firsts)
              AND s.seq NOT IN (SELECT seq FROM import_segment_placed)"""
    )
    cursor.execute(
        """INSERT INTO import_post_ids (ordinal, id)
           SELECT ordinal, id FROM import_segment_ids
           WHERE ordinal IN (SELECT seq FROM import_segment_firsts)
             AND ordinal NOT IN (SELECT seq FROM import_segment_placed)"""
    )


# Threads: each staged thread maps to an existing thread of the forum or to a new one.


def _map_threads(
    cursor: psycopg2.extensions.cursor, *, schema: str, forum_id: int, first_seq: int, last_seq: int
) -> tuple[int, int]:
    """Map the staged threads numbered `first_seq` to `last_seq` to thread ids, creating missing threads.

    A staged thread matches a thread of the forum by source id first, then by the id
    that an export of this service wrote, then by identifier, then, when it has no
    identifier, by url key among threads without identifier. This is how the widget
    finds threads, so an import merges into threads that readers already started.
    Staged threads that share an identifier, or a url key without identifier, become one
    new thread, which takes the first one's fields and source id. A staged thread whose
    source id an earlier one had is ignored.

    Returns the number of threads created and the number of staged threads that matched
    threads the forum had before the import.
    """
    if last_seq < first_seq:
        return 0, 0

    cursor.execute(
        """INSERT INTO import_thread_map (seq, line, source_id, identifier, url_key, thread_id)
           SELECT DISTINCT ON (source_id) seq, line, source_id, identifier, url_key, NULL::bigint
           FROM import_threads t
           WHERE t.seq BETWEEN %s AND %s
             AND NOT EXISTS (SELECT 1 FROM import_thread_map m WHERE m.source_id = t.source_id)
           ORDER BY source_id, seq""",
        (first_seq, last_seq),
    )
    cursor.execute(
        """INSERT INTO import_issues (line, source_id, reason, skipped)
           SELECT t.line, t.source_id, %s, true FROM import_threads t
           WHERE t.seq BETWEEN %s AND %s
             AND NOT EXISTS (SELECT 1 FROM import_thread_map m WHERE m.seq = t.seq)""",
        (_DUPLICATE_THREAD, first_seq, last_seq),
    )
    cursor.execute(
        f"""UPDATE import_thread_map m SET thread_id = t.id FROM {schema}.threads t
            WHERE m.thread_id IS NULL AND t.forum_id = %s AND t.source_id = m.source_id""",
        (forum_id,),
    )
    cursor.execute(
        f"""UPDATE import_thread_map m SET thread_id = t.id FROM {schema}.threads t
            WHERE m.thread_id IS NULL AND t.forum_id = %s AND t.id = {_own_id_sql("m.source_id", schema)}""",
        (forum_id,),
    )
    _match_threads_by_key(cursor, schema=schema, forum_id=forum_id)
    # Threads that this import created in an earlier segment are not matches: the
    # staged thread belongs to the group that created them.
    threads_matched = _count(
        cursor,
        """SELECT count(*) FROM import_thread_map m
           WHERE m.seq BETWEEN %s AND %s AND m.thread_id IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM import_created_threads c WHERE c.thread_id = m.thread_id)""",
        (first_seq, last_seq),
    )

    cursor.execute(
        """TRUNCATE import_new_threads;
           INSERT INTO import_new_threads (seq)
           SELECT min(seq) FROM import_thread_map WHERE thread_id IS NULL
           GROUP BY COALESCE('identifier:' || identifier, 'url:' || url_key)"""
    )
    # Every staged thread gets an id, numbered by its seq. Threads that match an
    # existing one or repeat a source id leave their id unused.
    _allocate_ids(
        cursor, schema=schema, table="import_thread_ids", first_ordinal=first_seq, count=last_seq - first_seq + 1
    )

    # A thread without a date takes the date of its first post, so an export written
    # later gives it the same date again. `finish_threads` corrects it when a later
    # segment contains an earlier post.
    cursor.execute(
        f"""WITH created AS (
                INSERT INTO {schema}.threads
                    (id, forum_id, identifier, url, url_key, title, created_at, closed, deleted, source_id)
                SELECT ids.id, %s, t.identifier, t.url, t.url_key, t.title,
                       COALESCE(t.created_at, first_post.created_at, now()), t.closed, t.deleted, t.source_id
                FROM import_new_threads n
                JOIN import_threads t ON t.seq = n.seq
                JOIN import_thread_ids ids ON ids.ordinal = n.seq
                LEFT JOIN import_thread_dates first_post
                  ON t.created_at IS NULL AND first_post.thread_source_id = t.source_id
                ON CONFLICT DO NOTHING
                RETURNING id, source_id
            )
            INSERT INTO import_created_threads (thread_id, source_id) SELECT id, source_id FROM created""",
        (forum_id,),
    )
    threads_created = cursor.rowcount

    # The new threads, and any that a node created meanwhile for the same page, are
    # found by the same keys.
    _match_threads_by_key(cursor, schema=schema, forum_id=forum_id)
    return threads_created, threads_matched


def _match_threads_by_key(cursor: psycopg2.extensions.cursor, *, schema: str, forum_id: int) -> None:
    cursor.execute(
        f"""UPDATE import_thread_map m SET thread_id = t.id FROM {schema}.threads t
            WHERE m.thread_id IS NULL AND m.identifier IS NOT NULL
              AND t.forum_id = %s AND t.identifier = m.identifier""",
        (forum_id,),
    )
    cursor.execute(
        f"""UPDATE import_thread_map m SET thread_id = t.id FROM {schema}.threads t
            WHERE m.thread_id IS NULL AND m.identifier IS NULL
              AND t.forum_id = %s AND t.identifier IS NULL AND t.url_key = m.url_key""",
        (forum_id,),
    )


def finish_threads(cursor: psycopg2.extensions.cursor, *, schema: str, forum_id: int) -> None:
    """Map the threads that only earlier imports stored, and date new threads by their first post.

    Runs once after the last segment, when every post of the file is staged.
    """
    # Posts may belong to threads that an earlier import stored, or that an export of
    # this service names by id, and this file lacks.
    # Posts that segments inserted had their thread mapped already, so only the
    # waiting posts are looked at.
    cursor.execute(
        f"""INSERT INTO import_thread_map (seq, line, source_id, identifier, url_key, thread_id)
            SELECT 0, 0, t.source_id, t.identifier, t.url_key, t.id FROM {schema}.threads t
            WHERE t.forum_id = %s
              AND t.source_id IN (SELECT thread_source_id FROM import_posts)
              AND NOT EXISTS (SELECT 1 FROM import_thread_map m WHERE m.source_id = t.source_id)""",
        (forum_id,),
    )
    cursor.execute(
        f"""INSERT INTO import_thread_map (seq, line, source_id, identifier, url_key, thread_id)
            SELECT 0, 0, staged.thread_source_id, t.identifier, t.url_key, t.id
            FROM (SELECT DISTINCT thread_source_id FROM import_posts) staged
            JOIN {schema}.threads t
              ON t.forum_id = %s AND t.id = {_own_id_sql("staged.thread_source_id", schema)}
            WHERE NOT EXISTS (SELECT 1 FROM import_thread_map m WHERE m.source_id = staged.thread_source_id)""",
        (forum_id,),
    )
    cursor.execute("ANALYZE import_thread_map")

    # A thread created without a date took the earliest post date that was staged at
    # the time. A later segment may have held an earlier post of the thread.
    cursor.execute(
        f"""UPDATE {schema}.threads t SET created_at = d.created_at
            FROM import_created_threads c
            JOIN import_thread_map m ON m.source_id = c.source_id
            JOIN import_threads s ON s.seq = m.seq
            JOIN import_thread_dates d ON d.thread_source_id = c.source_id
            WHERE t.id = c.thread_id AND s.created_at IS NULL AND t.created_at <> d.created_at"""
    )


def _allocate_ids(
    cursor: psycopg2.extensions.cursor, *, schema: str, table: str, first_ordinal: int, count: int
) -> None:
    """Add `count` new ids from the shard's next_id() to `table`, numbered from `first_ordinal`.

    The ids are drawn in batches of at most 512, and each batch waits until the clock
    has moved past the millisecond in which the previous one ended. So no millisecond
    gets more than 512 of these ids, and the 10-bit sequence inside the ids cannot
    repeat a value within one millisecond. The wait costs about 2 seconds per million
    ids, and it sleeps rather than spins, so that the parser can use the core meanwhile.
    """
    if count <= 0:
        return
    # A DO block takes no parameters, so the integers and the schema name, which comes
    # from the shard map, are written into it.
    cursor.execute(
        f"""DO $$
            DECLARE
                allocated bigint := 0;
                batch bigint;
                batch_end_ms double precision;
            BEGIN
                WHILE allocated < {int(count)} LOOP
                    batch := least({_IDS_PER_MILLISECOND}, {int(count)} - allocated);
                    INSERT INTO {table} (ordinal, id)
                        SELECT {int(first_ordinal) - 1} + allocated + n, {schema}.next_id()
                        FROM generate_series(1, batch) AS n;
                    allocated := allocated + batch;
                    batch_end_ms := floor(extract(epoch FROM clock_timestamp()) * 1000);
                    WHILE floor(extract(epoch FROM clock_timestamp()) * 1000) <= batch_end_ms LOOP
                        PERFORM pg_sleep(0.0002);
                    END LOOP;
                END LOOP;
            END $$"""
    )


# Authors: registered authors are linked to accounts in the users database.


def _link_accounts(cursor: psycopg2.extensions.cursor, users: psycopg2.extensions.connection) -> tuple[int, int]:
    """Upsert an account for every registered author of the segment that has none yet, and stage the account ids.

    An existing account with the same username is linked as it is: the import never
    changes its display name or e-mail. A new account takes the name and e-mail of the
    username's first post in the file, which is in the first segment that names the
    username. Guests, and registered authors that the file names without a username
    (WordPress exports), are not linked.

    Returns the number of usernames linked and the number of accounts created.
    """
    linked = created = 0
    authors = cursor.connection.cursor(name="import_authors")
    authors.itersize = _ACCOUNT_BATCH
    with tempfile.SpooledTemporaryFile(max_size=1024 * 1024) as accounts_file:
        try:
            authors.execute(
                """SELECT DISTINCT ON (author_username) author_username, author_name, author_email
                   FROM import_segment s WHERE NOT author_is_guest AND author_username IS NOT NULL
                     AND NOT EXISTS (SELECT 1 FROM import_accounts a WHERE a.username = s.author_username)
                   ORDER BY author_username, seq"""
            )
            while batch := authors.fetchmany(_ACCOUNT_BATCH):
                accounts, inserted = _upsert_accounts(users, batch)
                created += inserted
                linked += len(accounts)
                for username, account_id in accounts:
                    accounts_file.write(f"{copy_text(username)}\t{account_id}\n".encode())
        finally:
            authors.close()
        accounts_file.seek(0)
        cursor.copy_expert("COPY import_accounts (username, account_id) FROM STDIN", accounts_file)
    return linked, created


def _upsert_accounts(
    users: psycopg2.extensions.connection, authors: list[tuple[str, str, str | None]]
) -> tuple[list[tuple[str, int]], int]:
    usernames = [username for username, _name, _email in authors]
    names = [name or username for username, name, _email in authors]
    emails = [email for _username, _name, email in authors]
    with users.cursor() as cursor:
        cursor.execute(
            """INSERT INTO users.accounts (username, display_name, email)
               SELECT * FROM unnest(%s::text[], %s::text[], %s::text[])
               ON CONFLICT (username) DO NOTHING""",
            (usernames, names, emails),
        )
        inserted = cursor.rowcount
        cursor.execute("SELECT username, id FROM users.accounts WHERE username = ANY(%s)", (usernames,))
        return [(row[0], row[1]) for row in cursor.fetchall()], inserted


# Posts: duplicates, then the posts of a segment whose place is settled, then the rest.


def _record_first_posts(cursor: psycopg2.extensions.cursor) -> int:
    """Fill `import_segment_firsts` with the segment's posts whose source id is new, and return their number.

    The other posts of the segment repeat a source id, and are recorded as duplicates.
    """
    cursor.execute(
        """WITH firsts AS (
               INSERT INTO import_first_seen (source_id, seq)
               SELECT DISTINCT ON (source_id) source_id, seq FROM import_segment ORDER BY source_id, seq
               ON CONFLICT (source_id) DO NOTHING
               RETURNING seq
           )
           INSERT INTO import_segment_firsts (seq) SELECT seq FROM firsts"""
    )
    first_posts = cursor.rowcount
    cursor.execute(
        """INSERT INTO import_issues (line, source_id, reason, skipped)
           SELECT line, source_id, %s, true FROM import_segment
           WHERE seq NOT IN (SELECT seq FROM import_segment_firsts)""",
        (_DUPLICATE_POST,),
    )
    return first_posts


def _record_own_posts(cursor: psycopg2.extensions.cursor, *, schema: str, forum_id: int) -> None:
    """Add the forum's posts that the segment's post and parent source ids name by id to `import_own_posts`."""
    # The LATERAL subquery with LIMIT keeps each lookup an index scan on the primary key.
    cursor.execute(
        f"""INSERT INTO import_own_posts (source_id, id, thread_id, root_id, depth)
            SELECT staged.source_id, own.id, own.thread_id, own.root_id, own.depth
            FROM (
                SELECT source_id, {_own_id_sql("source_id", schema)} AS own_id
                FROM (SELECT source_id FROM import_segment
                      UNION SELECT parent_source_id FROM import_segment WHERE parent_source_id IS NOT NULL) keys
            ) staged
            JOIN LATERAL (
                SELECT p.id, p.thread_id, p.root_id, p.depth FROM {schema}.posts p
                WHERE p.id = staged.own_id AND p.forum_id = %s LIMIT 1
            ) own ON true
            WHERE staged.own_id IS NOT NULL
            ON CONFLICT (source_id) DO NOTHING""",
        (forum_id,),
    )


def _own_id_sql(source_id: str, schema: str) -> str:
    """
    Return an SQL expression for the id of this service that the text column `source_id` names, or NULL.

    An export of this service writes ``disqus:<id>``, ``wxr:<id>`` or ``wxr:<thread id>:<id>``.
    The id must lie in this service's range and carry the shard of `schema` in its bits.
    It checks with string functions, not a regular expression: with one, a 100,000-post
    import of ids in that range ran at half the rate.
    """
    shard = int(schema.rsplit("_", 1)[1])
    last = f"split_part({source_id}, ':', -1)"
    return (
        f"CASE WHEN split_part({source_id}, ':', 1) NOT IN ('disqus', 'wxr') OR length({last}) NOT BETWEEN 16 AND 19"
        f" OR translate({last}, '0123456789', '') <> '' THEN NULL"
        f" WHEN {last}::numeric NOT BETWEEN {_MIN_OWN_ID} AND {_MAX_OWN_ID} THEN NULL"
        f" WHEN ({last}::bigint >> {SEQUENCE_BITS}) & {(1 << SHARD_BITS) - 1} <> {shard} THEN NULL"
        f" ELSE {last}::bigint END"
    )


def _place_posts(
    cursor: psycopg2.extensions.cursor, *, schema: str, forum_id: int, stored_sources: bool
) -> tuple[int, int]:
    """Insert the segment's posts whose place no later record can change.

    Such a post is the first of its source id, was not stored by an earlier import, does
    not name a post of the forum by id, and belongs to a mapped thread. It is either
    top-level or a reply to a post of the same thread that is stored already or placed
    in this segment. Every other post waits for `resolve_pending_posts`, which runs
    when the whole file is staged: a reply whose parent comes later, a post whose
    thread comes later, and every reply below them.

    `stored_sources` is whether the forum had posts with a source id when the import
    started. Without them, no post can have been stored by an earlier import, because
    the forum's import lock keeps other imports out, so that lookup is skipped.

    Returns how many posts were inserted and how many of them are pingbacks or trackbacks.
    """
    # The two lookups in the forum's posts, which grow to millions of rows, are LATERAL
    # subqueries with LIMIT. PostgreSQL cannot turn those into hash joins, which would
    # read all of the forum's posts once per segment. Their conditions on the outer
    # row skip the index scan where its result is known already.
    cursor.execute(
        f"""INSERT INTO import_candidates (seq, id, source_id, parent_source_id, thread_id, parent_id, root_id, depth)
            WITH segment AS MATERIALIZED (
                SELECT s.seq, ids.id, s.source_id, s.parent_source_id, m.thread_id
                FROM import_segment s
                JOIN import_segment_firsts f ON f.seq = s.seq
                JOIN import_segment_ids ids ON ids.ordinal = s.seq
                JOIN import_thread_map m ON m.source_id = s.thread_source_id
                WHERE m.thread_id IS NOT NULL
            )
            SELECT post.seq, post.id, post.source_id, post.parent_source_id, post.thread_id,
                   COALESCE(stored_parent.id, own_parent.id, segment_parent.id),
                   COALESCE(stored_parent.root_id, own_parent.root_id),
                   COALESCE(stored_parent.depth, own_parent.depth) + 1
            FROM segment post
            LEFT JOIN segment segment_parent
              ON segment_parent.source_id = post.parent_source_id AND segment_parent.thread_id = post.thread_id
            LEFT JOIN import_own_posts own ON own.source_id = post.source_id
            LEFT JOIN import_own_posts own_parent
              ON segment_parent.id IS NULL AND own_parent.source_id = post.parent_source_id
              AND own_parent.thread_id = post.thread_id
            LEFT JOIN LATERAL (
                SELECT 1 AS found FROM {schema}.posts existing
                WHERE %s AND existing.forum_id = %s AND existing.source_id = post.source_id LIMIT 1
            ) stored ON true
            LEFT JOIN LATERAL (
                SELECT parent.id, parent.root_id, parent.depth FROM {schema}.posts parent
                WHERE post.parent_source_id IS NOT NULL AND segment_parent.id IS NULL AND own_parent.id IS NULL
                  AND parent.forum_id = %s AND parent.source_id = post.parent_source_id
                  AND parent.thread_id = post.thread_id
                LIMIT 1
            ) stored_parent ON true
            WHERE stored.found IS NULL AND own.id IS NULL""",
        (stored_sources, forum_id, forum_id),
    )
    cursor.execute("ANALYZE import_candidates")
    # The walk starts at top-level posts and replies to stored posts. A parent in the
    # segment that is no candidate, such as a post of an earlier import, is never
    # reached, so its replies wait. Only the first post of a source id is a candidate,
    # through import_first_seen's primary key, so a candidate matches at most one parent
    # in the segment and is reached at most once. A loop of parents has no start, so it
    # is never reached.
    cursor.execute(
        """INSERT INTO import_segment_placed (seq, id, source_id, thread_id, parent_id, root_id, depth)
           WITH RECURSIVE tree (seq, id, source_id, thread_id, parent_id, root_id, depth) AS (
               SELECT seq, id, source_id, thread_id, parent_id, COALESCE(root_id, id), COALESCE(depth, 0)
               FROM import_candidates WHERE parent_source_id IS NULL OR root_id IS NOT NULL
               UNION ALL
               SELECT reply.seq, reply.id, reply.source_id, reply.thread_id, reply.parent_id, tree.root_id,
                      tree.depth + 1
               FROM import_candidates reply JOIN tree ON reply.parent_id = tree.id
           )
           SELECT seq, id, source_id, thread_id, parent_id, root_id, depth FROM tree"""
    )
    return _insert_posts(cursor, schema=schema, forum_id=forum_id, tree="import_segment_placed",
                         staged="import_segment")


def resolve_pending_posts(cursor: psycopg2.extensions.cursor, *, schema: str, forum_id: int) -> None:
    """Build `import_tree`: every waiting post that is new, with its id, thread, parent, root and depth.

    A post whose thread is missing is skipped. A reply whose parent is missing becomes a
    top-level post, and so does every reply whose chain of parents loops. A reply to a
    deleted post stays under it, and the deleted post is stored as a placeholder. Each
    case is recorded in `import_issues`. Posts that segments inserted are stored posts
    by now, so replies to them are placed below them.
    """
    cursor.execute(
        "ANALYZE import_posts (seq, source_id, thread_source_id, parent_source_id, author_username);"
        " ANALYZE import_post_ids; ANALYZE import_accounts; ANALYZE import_own_posts"
    )
    cursor.execute(
        f"""CREATE TEMP TABLE import_links ON COMMIT DROP AS
            SELECT p.seq, p.line, p.source_id, p.parent_source_id, m.thread_id,
                   COALESCE(existing.id, own.id) AS existing_id, COALESCE(existing.id, own.id, ids.id) AS id
            FROM import_posts p
            JOIN import_post_ids ids ON ids.ordinal = p.seq
            LEFT JOIN import_thread_map m ON m.source_id = p.thread_source_id
            LEFT JOIN {schema}.posts existing ON existing.forum_id = %s AND existing.source_id = p.source_id
            LEFT JOIN import_own_posts own ON own.source_id = p.source_id""",
        (forum_id,),
    )
    cursor.execute(
        "INSERT INTO import_issues (line, source_id, reason, skipped) SELECT line, source_id, %s, true"
        " FROM import_links WHERE thread_id IS NULL",
        (_MISSING_THREAD,),
    )
    cursor.execute("ANALYZE import_links")

    # A parent counts only in the reply's own thread. Parents come from the file or,
    # for a newer export that overlaps an earlier one, from the posts already stored,
    # found by source id or, for an export of this service, by id.
    cursor.execute(
        f"""CREATE TEMP TABLE import_parents ON COMMIT DROP AS
            SELECT child.id, child.seq, child.line, child.source_id, child.thread_id,
                   COALESCE(staged.id, stored.id, own.id) AS parent_id,
                   staged.existing_id IS NOT NULL OR stored.id IS NOT NULL OR own.id IS NOT NULL AS parent_stored,
                   child.parent_source_id IS NOT NULL AND staged.id IS NULL AND stored.id IS NULL AND own.id IS NULL
                       AS parent_missing
            FROM import_links child
            LEFT JOIN import_links staged
              ON staged.source_id = child.parent_source_id AND staged.thread_id = child.thread_id
            LEFT JOIN {schema}.posts stored
              ON staged.id IS NULL AND stored.forum_id = %s AND stored.source_id = child.parent_source_id
              AND stored.thread_id = child.thread_id
            LEFT JOIN import_own_posts own
              ON staged.id IS NULL AND stored.id IS NULL AND own.source_id = child.parent_source_id
              AND own.thread_id = child.thread_id
            WHERE child.thread_id IS NOT NULL AND child.existing_id IS NULL""",
        (forum_id,),
    )
    cursor.execute(
        "INSERT INTO import_issues (line, source_id, reason, skipped) SELECT line, source_id, %s, false"
        " FROM import_parents WHERE parent_missing",
        (_MISSING_PARENT,),
    )
    cursor.execute("CREATE INDEX ON import_parents (parent_id); ANALYZE import_parents")

    # Top-level posts and replies to stored posts start the walk down every reply chain.
    cursor.execute(
        f"""CREATE TEMP TABLE import_tree ON COMMIT DROP AS
            WITH RECURSIVE tree (id, seq, thread_id, parent_id, root_id, depth) AS (
                SELECT id, seq, thread_id, NULL::bigint, id, 0 FROM import_parents WHERE parent_id IS NULL
                UNION ALL
                SELECT reply.id, reply.seq, reply.thread_id, reply.parent_id, stored.root_id, stored.depth + 1
                FROM import_parents reply JOIN {schema}.posts stored ON stored.id = reply.parent_id
                WHERE reply.parent_stored
                UNION ALL
                SELECT reply.id, reply.seq, reply.thread_id, reply.parent_id, tree.root_id, tree.depth + 1
                FROM import_parents reply JOIN tree ON reply.parent_id = tree.id
            )
            SELECT id, seq, thread_id, parent_id, root_id, depth FROM tree"""
    )

    # Posts that the walk never reached sit on a loop of parents or below one.
    cursor.execute(
        """CREATE TEMP TABLE import_unreached ON COMMIT DROP AS
           SELECT p.id, p.seq, p.thread_id, p.line, p.source_id FROM import_parents p
           WHERE NOT EXISTS (SELECT 1 FROM import_tree t WHERE t.id = p.id)"""
    )
    cursor.execute(
        """INSERT INTO import_tree (id, seq, thread_id, parent_id, root_id, depth)
           SELECT id, seq, thread_id, NULL, id, 0 FROM import_unreached"""
    )
    cursor.execute(
        "INSERT INTO import_issues (line, source_id, reason, skipped) SELECT line, source_id, %s, false"
        " FROM import_unreached",
        (_PARENT_CYCLE,),
    )
    cursor.execute("ANALYZE import_tree")


def insert_pending_posts(cursor: psycopg2.extensions.cursor, *, schema: str, forum_id: int) -> tuple[int, int]:
    """Insert the posts of `import_tree`, and return how many there are and how many are pingbacks or trackbacks."""
    return _insert_posts(cursor, schema=schema, forum_id=forum_id, tree="import_tree", staged="import_posts")


def _insert_posts(
    cursor: psycopg2.extensions.cursor, *, schema: str, forum_id: int, tree: str, staged: str
) -> tuple[int, int]:
    """Insert the posts that table `tree` places, with their fields from table `staged`, joined by seq.

    Adds the approved comments of each thread to `import_thread_counts`. Returns how
    many posts were inserted and how many of them are pingbacks or trackbacks.

    The insert has no ON CONFLICT clause, which would cost an extra index probe and
    WAL record per post. No row can conflict: each source id is placed once, none of
    them was stored in the forum before, and the forum's import lock keeps other
    imports, the only writers of source ids, out until the commit. A conflict would
    raise a unique violation and roll the whole import back.
    """
    cursor.execute(
        f"""WITH inserted AS (
                INSERT INTO {schema}.posts
                    (id, thread_id, forum_id, parent_id, root_id, depth, state, kind, raw, html,
                     author_name, author_email, author_url, author_user_id, ip, created_at, source_id)
                SELECT t.id, t.thread_id, %s, t.parent_id, t.root_id, t.depth, p.state, p.kind, p.raw, p.html,
                       p.author_name, p.author_email, p.author_url, a.account_id, p.ip, p.created_at, p.source_id
                FROM {tree} t
                JOIN {staged} p ON p.seq = t.seq
                LEFT JOIN import_accounts a ON NOT p.author_is_guest AND a.username = p.author_username
                RETURNING thread_id, state, kind
            ),
            counted AS (
                INSERT INTO import_thread_counts (thread_id, approved)
                SELECT thread_id, count(*) FILTER (WHERE state = 'approved' AND kind = 'comment')
                FROM inserted GROUP BY thread_id
                ON CONFLICT (thread_id) DO UPDATE SET approved = import_thread_counts.approved + excluded.approved
            )
            SELECT count(*), count(*) FILTER (WHERE kind <> 'comment') FROM inserted""",
        (forum_id,),
    )
    row = cursor.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def update_thread_counts(cursor: psycopg2.extensions.cursor, *, schema: str) -> None:
    """Add the approved comments that the import inserted to each thread's count, and bump its version.

    Pingbacks and trackbacks are not counted, as they are not shown with the comments.
    Nodes keep the count the same way, by adding and subtracting. Adding instead of
    counting the thread's posts again spares a scan of every post on the shard, and a
    comment that a node adds meanwhile is not lost from the count.
    """
    cursor.execute(
        f"""UPDATE {schema}.threads t SET posts = t.posts + c.approved, version = t.version + 1
            FROM import_thread_counts c WHERE t.id = c.thread_id"""
    )


def count_existing_posts(cursor: psycopg2.extensions.cursor) -> int:
    """Return how many posts of the file an earlier import stored."""
    return _count(cursor, "SELECT count(*) FROM import_links WHERE existing_id IS NOT NULL")


def issue_groups(
    cursor: psycopg2.extensions.cursor, *, skipped: bool, limit: int
) -> tuple[int, list[tuple[str, int, int]]]:
    """Return the number of issues of one kind and up to `limit` groups of them as (reason, count, first line)."""
    total = _count(cursor, "SELECT count(*) FROM import_issues WHERE skipped = %s", (skipped,))
    cursor.execute(
        """SELECT reason, count(*), min(line) FROM import_issues WHERE skipped = %s
           GROUP BY reason ORDER BY count(*) DESC, min(line) LIMIT %s""",
        (skipped, limit),
    )
    return total, [(reason, int(count), int(line)) for reason, count, line in cursor.fetchall()]


def _count(cursor: psycopg2.extensions.cursor, query: str, parameters: tuple[object, ...] = ()) -> int:
    cursor.execute(query, parameters)
    row = cursor.fetchone()
    assert row is not None
    return int(row[0])
