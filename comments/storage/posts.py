"""Posts: create, list as a tree with cursor pagination, edit, delete and vote."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any, Literal

from comments.db.cluster import Cluster
from comments.db.pool import Cursor
from comments.ids import shard_of
from comments.storage.threads import Thread

__all__ = [
    "EditRejected",
    "InvalidCursor",
    "InvalidParent",
    "NewPost",
    "Page",
    "Post",
    "PostNotFound",
    "PostStore",
    "Sort",
    "ThreadClosed",
    "check_cursor",
    "hash_token",
]

Sort = Literal["oldest", "newest", "best"]
SORTS: tuple[Sort, ...] = ("best", "newest", "oldest")

_COLUMNS = (
    "id, thread_id, parent_id, root_id, depth, state, raw, html, author_name, author_user_id, "
    "created_at, edited_at, likes, dislikes, score"
)
# Pingbacks and trackbacks come only from imports; they are kept but never listed.
_VISIBLE = "state IN ('approved', 'deleted') AND kind = 'comment'"


class PostNotFound(LookupError):
    """No post has that id."""


class InvalidParent(ValueError):
    """The parent post does not exist or belongs to another thread."""


class ThreadClosed(Exception):
    """The thread takes no new posts."""


class EditRejected(Exception):
    """An edit or delete was refused: wrong token, window over, or post already deleted."""


class InvalidCursor(ValueError):
    """A pagination cursor was not made by this service for this sort."""


@dataclass
class Post:
    """One comment with the replies shown under it."""

    id: int
    thread_id: int
    parent_id: int | None
    root_id: int
    depth: int
    state: str
    raw: str
    html: str
    author_name: str
    author_user_id: int | None
    created_at: datetime
    edited_at: datetime | None
    likes: int
    dislikes: int
    score: int
    replies: list[Post] = field(default_factory=list)


@dataclass(frozen=True)
class NewPost:
    """A validated, rendered post ready to be stored."""

    thread_id: int
    parent_id: int | None
    raw: str
    html: str
    author_name: str
    author_email: str | None
    ip: str | None
    state: str = "approved"


@dataclass(frozen=True)
class Page:
    """One page of top-level posts, each with all its replies, as JSON-ready dictionaries."""

    posts: list[dict[str, Any]]
    next_cursor: str | None


def hash_token(token: str) -> bytes:
    """Return the digest stored in place of an edit token."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def _post_from_row(row: tuple[Any, ...]) -> Post:
    return Post(*row)


def _encode_cursor(sort: Sort, created_at: str, post_id: int, score: int) -> str:
    key: list[Any] = [sort, created_at, str(post_id)]
    if sort == "best":
        key.append(score)
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


_CURSOR_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,400}$")  # unpadded base64url, as _encode_cursor writes
_CURSOR_ID_PATTERN = re.compile(r"^[0-9]{1,19}$")  # ASCII digits only: int() also reads "١٢" and "1_0"


def check_cursor(sort: Sort, cursor: str) -> None:
    """Raise InvalidCursor unless ``cursor`` is one this service made for ``sort``."""
    _decode_cursor(sort, cursor)


def _decode_cursor(sort: Sort, cursor: str) -> tuple[datetime, int, int]:
    """Return the creation time (in UTC), id and score a cursor made by ``_encode_cursor`` holds."""
    invalid = InvalidCursor(f"cursor {cursor!r} is invalid; use the cursor.next value of a previous page")
    if not _CURSOR_PATTERN.match(cursor):
        raise invalid
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, UnicodeError, RecursionError):
        raise invalid from None
    if not isinstance(key, list) or not key or not isinstance(key[0], str):
        raise invalid
    if key[0] != sort:
        raise InvalidCursor(f"cursor {cursor!r} was made for sort {key[0]!r}, not {sort!r}; start again without it")
    if len(key) != (4 if sort == "best" else 3):
        raise invalid
    created_text, id_text = key[1], key[2]
    score = key[3] if sort == "best" else 0
    # Exactly the types _encode_cursor writes: no floats, booleans or other digits.
    if not isinstance(created_text, str) or not isinstance(id_text, str) or type(score) is not int:
        raise invalid
    if not _CURSOR_ID_PATTERN.match(id_text) or not 0 < int(id_text) < 2**63 or not -(2**31) <= score < 2**31:
        raise invalid
    try:
        created_at = datetime.fromisoformat(created_text)
    except ValueError:
        raise invalid from None
    if created_at.tzinfo is None:
        raise invalid
    # PostgreSQL rejects some offsets that Python accepts, such as +16:00 or one with a
    # fraction of a second, so the time is sent in UTC.
    try:
        created_at = created_at.astimezone(UTC)
    except OverflowError:
        raise invalid from None
    return created_at, int(id_text), score


# Listed columns. Timestamps come as UTC text without an offset, whatever the session's
# time zone, and are turned into ISO 8601 by slicing, which is cheaper than decoding
# datetimes. The text form needs DateStyle ISO, PostgreSQL's default.
_UTC_TEXT = "({column} AT TIME ZONE 'UTC')::text"
# The part column comes last, so rows are used as they arrive, without slicing.
_LISTING_COLUMNS = (
    f"id, parent_id, state, score, {_UTC_TEXT.format(column='created_at')}, "
    f"{_UTC_TEXT.format(column='edited_at')}, author_name, raw, html, likes, dislikes, depth"
)
_PART = 12  # the index of the part column: -1 the thread, 0 a top-level post, 1 a reply


def _iso(text: str | None) -> str | None:
    """Turn PostgreSQL's UTC text form ``2026-12-04 21:12:05.7`` into ``2026-12-04T21:12:05.7Z``."""
    if text is None:
        return None
    return text.replace(" ", "T") + "Z"


MAX_NESTING = 100  # orjson refuses documents nested deeper than 255 containers


def _document(row: tuple[Any, ...], thread: str) -> dict[str, Any]:
    """Return the JSON-ready form of one listed row (``_LISTING_COLUMNS``, then the part) of ``thread``."""
    (post_id, parent_id, state, score, created_at, edited_at, author_name, raw, html, likes, dislikes, depth,
     _) = row
    if state == "deleted":
        author_name = raw = html = ""
    return {
        "id": str(post_id),
        "thread": thread,
        "parent": None if parent_id is None else str(parent_id),
        "author": {"name": author_name},
        "message": html,
        "raw": raw,
        "created_at": created_at.replace(" ", "T") + "Z",
        "edited_at": None if edited_at is None else edited_at.replace(" ", "T") + "Z",
        "state": state,
        "likes": likes,
        "dislikes": dislikes,
        "score": score,
        "depth": depth,
        "replies": [],
    }


def _visible(document: dict[str, Any]) -> bool:
    """Prune deleted posts without visible replies from this subtree; return whether it stays."""
    replies = document["replies"]
    if replies:
        document["replies"] = [reply for reply in replies if _visible(reply)]
    return document["state"] == "approved" or bool(document["replies"])


def _nest(top_rows: list[tuple[Any, ...]], reply_rows: list[tuple[Any, ...]], thread: str) -> list[dict[str, Any]]:
    """
    Nest the replies under their top-level posts and return the visible posts.

    Replies come ordered by depth, then creation time, so every parent is placed before its
    replies even when imported timestamps put a reply before its parent. Below
    MAX_NESTING levels, replies are listed flat under their ancestor at that level (their
    ``parent`` and ``depth`` still name the real ones), so no document nests deeper than a
    JSON encoder or a reader can follow.
    """
    top = [_document(row, thread) for row in top_rows]
    # Post id -> (the document whose replies take this post's replies, their nesting level).
    holders = {row[0]: (document, 1) for row, document in zip(top_rows, top, strict=True)}
    any_deleted = any(row[2] == "deleted" for row in top_rows)
    for row in reply_rows:
        holder = holders.get(row[1])
        # A reply whose parent is hidden (spam, pending) is hidden with it.
        if holder is not None:
            parent, level = holder
            document = _document(row, thread)
            parent["replies"].append(document)
            holders[row[0]] = (document, level + 1) if level < MAX_NESTING else holder
            any_deleted = any_deleted or row[2] == "deleted"
    if not any_deleted:
        return top
    return [document for document in top if _visible(document)]


# Row layout: id, parent_id, state, score, created_at text, ... (see _LISTING_COLUMNS).
_TOP_LEVEL_KEYS: dict[str, Callable[[tuple[Any, ...]], tuple[Any, ...]]] = {
    "oldest": itemgetter(4, 0),
    "newest": itemgetter(4, 0),
    "best": itemgetter(3, 4, 0),
}
# Replies by depth, then creation time, so every parent comes before its replies.
_REPLY_KEY = itemgetter(11, 4, 0)


class PostStore:
    """Post queries, routed by the thread or post id to its logical shard."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    async def create(self, new: NewPost, edit_token: str) -> Post:
        """
        Store ``new`` and bump its thread's count and version, in one transaction.

        Raises InvalidParent when the parent is missing or in another thread, and
        ThreadClosed when the thread is closed or missing.
        """
        shard = self._cluster.shard_for_id(new.thread_id)
        if new.parent_id is not None and shard_of(new.parent_id) != shard.number:
            raise InvalidParent(f"parent {new.parent_id} is not in thread {new.thread_id}")

        async def create_post_txn(cursor: Cursor) -> Post:
            await cursor.execute(
                f"SELECT closed, deleted, forum_id FROM {shard.schema}.threads WHERE id = %s FOR UPDATE",
                (new.thread_id,),
            )
            thread_row = cursor.fetchone()
            if thread_row is None or thread_row[1]:
                raise ThreadClosed(f"thread {new.thread_id} does not exist")
            if thread_row[0]:
                raise ThreadClosed(f"thread {new.thread_id} is closed to new comments")

            root_id, depth = None, 0
            if new.parent_id is not None:
                await cursor.execute(
                    f"SELECT thread_id, root_id, depth, state FROM {shard.schema}.posts WHERE id = %s",
                    (new.parent_id,),
                )
                parent = cursor.fetchone()
                if parent is None or parent[0] != new.thread_id:
                    raise InvalidParent(f"parent {new.parent_id} is not in thread {new.thread_id}")
                if parent[3] not in ("approved", "deleted"):
                    raise InvalidParent(f"parent {new.parent_id} is not visible and takes no replies")
                root_id, depth = parent[1], parent[2] + 1

            await cursor.execute(
                f"""INSERT INTO {shard.schema}.posts
                        (id, thread_id, forum_id, parent_id, root_id, depth, state, raw, html,
                         author_name, author_email, ip, edit_token_hash)
                    SELECT next.id, %s, %s, %s, COALESCE(%s, next.id), %s, %s, %s, %s, %s, %s, %s, %s
                    FROM (SELECT {shard.schema}.next_id() AS id) AS next
                    RETURNING {_COLUMNS}""",
                (new.thread_id, thread_row[2], new.parent_id, root_id, depth, new.state, new.raw, new.html,
                 new.author_name, new.author_email, new.ip, hash_token(edit_token)),
            )
            post = _post_from_row(cursor.fetchone())
            counted = 1 if new.state == "approved" else 0
            await cursor.execute(
                f"UPDATE {shard.schema}.threads SET posts = posts + %s, version = version + 1 WHERE id = %s",
                (counted, new.thread_id),
            )
            return post

        return await shard.pool.run_interaction("create_post", create_post_txn, shard=shard.number)

    async def page(self, thread_id: int, *, sort: Sort, limit: int, cursor: str | None) -> tuple[Thread, Page]:
        """
        Return the thread and up to ``limit`` top-level posts after ``cursor``, each with every reply under it.

        Replies travel with their top-level post, so no reply is split across pages. One
        statement reads the thread and its posts, since a round trip costs the node more CPU
        than the rows do. Raises PostNotFound when the thread does not exist.
        """
        shard = self._cluster.shard_for_id(thread_id)
        order, after, params = self._top_level_order(sort, cursor)
        # The thread travels as a row of part -1 in the listing's columns: parent_id is
        # forum_id, score the post count, author_name the identifier, raw the url, html the
        # title, likes the closed flag and dislikes the version.
        sql = f"""
            WITH thread AS (
                SELECT * FROM {shard.schema}.threads WHERE id = %s AND NOT deleted
            ), top AS (
                SELECT * FROM {shard.schema}.posts
                WHERE thread_id = %s AND parent_id IS NULL AND {_VISIBLE} {after}
                ORDER BY {order} LIMIT %s
            )
            SELECT id, forum_id, 'thread', posts, {_UTC_TEXT.format(column='created_at')}, NULL::text,
                   identifier, url, title, closed::integer, version, 0, -1
            FROM thread
            UNION ALL
            SELECT {_LISTING_COLUMNS}, 0 FROM top
            UNION ALL
            SELECT {_LISTING_COLUMNS}, 1 FROM {shard.schema}.posts
            WHERE root_id IN (SELECT id FROM top) AND parent_id IS NOT NULL AND {_VISIBLE}
        """
        rows = await shard.pool.run_prepared(
            "list_posts", sql, (thread_id, thread_id, *params, limit + 1), shard=shard.number
        )
        thread_rows = [row for row in rows if row[_PART] == -1]
        if not thread_rows:
            raise PostNotFound(f"thread {thread_id} does not exist")
        (_, forum_id, _, posts, created_at, _, identifier, url, title, closed, version, _, _) = thread_rows[0]
        thread = Thread(id=thread_id, forum_id=forum_id, identifier=identifier, url=url, title=title,
                        created_at=datetime.fromisoformat(created_at).replace(tzinfo=UTC), closed=bool(closed),
                        posts=posts,
                        version=version)

        # Sorting here instead of in SQL halves the statement's cost in PostgreSQL. The UTC
        # text timestamps sort as the times they name: one fixed layout, and PostgreSQL
        # trims a fraction's trailing zeros, so a shorter fraction is a prefix of a longer.
        top_rows = sorted([row for row in rows if row[_PART] == 0], key=_TOP_LEVEL_KEYS[sort],
                          reverse=sort != "oldest")
        has_more = len(top_rows) > limit
        top_rows = top_rows[:limit]
        next_cursor = None
        if has_more and top_rows:
            last = top_rows[-1]
            next_cursor = _encode_cursor(sort, _iso(last[4]) or "", last[0], last[3])
        reply_rows = sorted([row for row in rows if row[_PART] == 1], key=_REPLY_KEY)
        return thread, Page(posts=_nest(top_rows, reply_rows, str(thread_id)), next_cursor=next_cursor)

    @staticmethod
    def _top_level_order(sort: Sort, cursor: str | None) -> tuple[str, str, tuple[Any, ...]]:
        if sort == "oldest":
            order, comparison = "created_at, id", ">"
        else:
            order, comparison = "created_at DESC, id DESC", "<"
        if sort == "best":
            order = "score DESC, created_at DESC, id DESC"
        if cursor is None:
            return order, "", ()
        created_at, post_id, score = _decode_cursor(sort, cursor)
        if sort == "best":
            return order, "AND (score, created_at, id) < (%s, %s::timestamptz, %s)", (score, created_at, post_id)
        return order, f"AND (created_at, id) {comparison} (%s::timestamptz, %s)", (created_at, post_id)

    async def get(self, post_id: int) -> Post:
        """Return post ``post_id`` in any state; raise PostNotFound."""
        shard = self._cluster.shard_for_id(post_id)
        rows = await shard.pool.run_query(
            "get_post", f"SELECT {_COLUMNS} FROM {shard.schema}.posts WHERE id = %s", (post_id,), shard=shard.number
        )
        if not rows:
            raise PostNotFound(f"post {post_id} does not exist")
        return _post_from_row(rows[0])

    async def edit(
        self, post_id: int, *, edit_token: str, window: timedelta, raw: str | None, html: str | None, delete: bool
    ) -> Post:
        """
        Replace the text of ``post_id``, or delete it, when ``edit_token`` matches within ``window``.

        Raises PostNotFound or EditRejected.
        """
        shard = self._cluster.shard_for_id(post_id)

        async def edit_post_txn(cursor: Cursor) -> Post:
            await cursor.execute(
                f"SELECT edit_token_hash, created_at, state, thread_id FROM {shard.schema}.posts "
                "WHERE id = %s FOR UPDATE",
                (post_id,),
            )
            row = cursor.fetchone()
            if row is None:
                raise PostNotFound(f"post {post_id} does not exist")
            stored_hash, created_at, state, thread_id = row
            if state == "deleted":
                raise EditRejected(f"post {post_id} is already deleted")
            if stored_hash is None or not hmac.compare_digest(bytes(stored_hash), hash_token(edit_token)):
                raise EditRejected("the edit token does not match this post")
            if datetime.now(UTC) > created_at + window:
                raise EditRejected(
                    f"the edit window of {int(window.total_seconds())} seconds for post {post_id} is over"
                )

            if delete:
                await cursor.execute(
                    f"""UPDATE {shard.schema}.posts SET state = 'deleted', raw = '', html = '',
                            edited_at = now(), edit_token_hash = NULL
                        WHERE id = %s RETURNING {_COLUMNS}""",
                    (post_id,),
                )
            else:
                await cursor.execute(
                    f"""UPDATE {shard.schema}.posts SET raw = %s, html = %s, edited_at = now()
                        WHERE id = %s RETURNING {_COLUMNS}""",
                    (raw, html, post_id),
                )
            post = _post_from_row(cursor.fetchone())
            uncounted = 1 if delete and state == "approved" else 0
            await cursor.execute(
                f"UPDATE {shard.schema}.threads SET posts = posts - %s, version = version + 1 WHERE id = %s",
                (uncounted, thread_id),
            )
            return post

        name = "delete_post" if delete else "edit_post"
        return await shard.pool.run_interaction(name, edit_post_txn, shard=shard.number)

    async def vote(self, post_id: int, *, voter: str, value: int) -> tuple[Post, int]:
        """
        Set ``voter``'s vote on ``post_id`` to +1, -1 or 0 (withdrawn); return the post and the vote.

        The post row is locked first, so concurrent votes on one post apply one at a time
        and no count is lost.
        """
        shard = self._cluster.shard_for_id(post_id)
        voter_key = hashlib.sha256(voter.encode("utf-8")).hexdigest()[:32]

        async def vote_txn(cursor: Cursor) -> tuple[Post, int]:
            await cursor.execute(
                f"SELECT state, thread_id FROM {shard.schema}.posts WHERE id = %s FOR UPDATE", (post_id,)
            )
            row = cursor.fetchone()
            if row is None or row[0] != "approved":
                raise PostNotFound(f"post {post_id} does not exist or takes no votes")
            thread_id = row[1]
            await cursor.execute(
                f"SELECT value FROM {shard.schema}.votes WHERE post_id = %s AND voter = %s", (post_id, voter_key)
            )
            previous_row = cursor.fetchone()
            previous = previous_row[0] if previous_row else 0
            if value == 0:
                await cursor.execute(
                    f"DELETE FROM {shard.schema}.votes WHERE post_id = %s AND voter = %s", (post_id, voter_key)
                )
            else:
                await cursor.execute(
                    f"""INSERT INTO {shard.schema}.votes (post_id, voter, value) VALUES (%s, %s, %s)
                        ON CONFLICT (post_id, voter) DO UPDATE SET value = EXCLUDED.value""",
                    (post_id, voter_key, value),
                )
            likes = (value == 1) - (previous == 1)
            dislikes = (value == -1) - (previous == -1)
            await cursor.execute(
                f"""UPDATE {shard.schema}.posts SET likes = likes + %s, dislikes = dislikes + %s
                    WHERE id = %s RETURNING {_COLUMNS}""",
                (likes, dislikes, post_id),
            )
            post = _post_from_row(cursor.fetchone())
            if likes or dislikes:
                await cursor.execute(
                    f"UPDATE {shard.schema}.threads SET version = version + 1 WHERE id = %s", (thread_id,)
                )
            return post, value

        return await shard.pool.run_interaction("vote", vote_txn, shard=shard.number)

