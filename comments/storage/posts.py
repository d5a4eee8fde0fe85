"""Posts: create, list as a tree with cursor pagination, edit, delete and vote."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from comments.db.cluster import Cluster
from comments.db.pool import Cursor
from comments.ids import shard_of

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
    "hash_token",
]

Sort = Literal["oldest", "newest", "best"]
SORTS: tuple[Sort, ...] = ("best", "newest", "oldest")

_COLUMNS = (
    "id, thread_id, parent_id, root_id, depth, state, raw, html, author_name, author_user_id, "
    "created_at, edited_at, likes, dislikes, score"
)
_VISIBLE = "state IN ('approved', 'deleted')"


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
    """One page of top-level posts, each with all its replies."""

    posts: list[Post]
    next_cursor: str | None


def hash_token(token: str) -> bytes:
    """Return the digest stored in place of an edit token."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def _post_from_row(row: tuple[Any, ...]) -> Post:
    return Post(*row)


def _encode_cursor(sort: Sort, post: Post) -> str:
    key: list[Any] = [sort, post.created_at.isoformat(), str(post.id)]
    if sort == "best":
        key.append(post.score)
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def _decode_cursor(sort: Sort, cursor: str) -> tuple[datetime, int, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if key[0] != sort:
            raise InvalidCursor(f"cursor {cursor!r} was made for sort {key[0]!r}, not {sort!r}; start again without it")
        created_at = datetime.fromisoformat(key[1])
        post_id = int(key[2])
        score = int(key[3]) if sort == "best" else 0
    except InvalidCursor:
        raise
    except (ValueError, TypeError, IndexError, KeyError, UnicodeError):
        raise InvalidCursor(f"cursor {cursor!r} is invalid; use the cursor.next value of a previous page") from None
    if created_at.tzinfo is None:
        raise InvalidCursor(f"cursor {cursor!r} is invalid; use the cursor.next value of a previous page")
    return created_at, post_id, score


def _build_tree(rows: list[Post]) -> list[Post]:
    """Nest replies under their parents; drop deleted posts that have no visible replies."""
    by_id = {post.id: post for post in rows}
    roots: list[Post] = []
    for post in rows:
        parent = by_id.get(post.parent_id) if post.parent_id is not None else None
        if parent is not None:
            parent.replies.append(post)
        elif post.parent_id is None:
            roots.append(post)
        # A reply whose parent is hidden (spam, pending) is hidden with it.
    return [post for post in roots if _prune(post)]


def _prune(post: Post) -> bool:
    """Prune ``post``'s subtree in place; return whether ``post`` stays visible."""
    post.replies = [reply for reply in post.replies if _prune(reply)]
    return post.state == "approved" or bool(post.replies)


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

    async def page(self, thread_id: int, *, sort: Sort, limit: int, cursor: str | None) -> Page:
        """
        Return up to ``limit`` top-level posts after ``cursor``, each with every reply under it.

        Replies travel with their top-level post, so no reply is split across pages.
        """
        shard = self._cluster.shard_for_id(thread_id)
        order, after, params = self._top_level_order(sort, cursor)
        sql = f"""
            WITH top AS (
                SELECT {_COLUMNS} FROM {shard.schema}.posts
                WHERE thread_id = %s AND parent_id IS NULL AND {_VISIBLE} {after}
                ORDER BY {order} LIMIT %s
            )
            SELECT {_COLUMNS}, 0 AS part FROM top
            UNION ALL
            SELECT {_COLUMNS}, 1 AS part FROM {shard.schema}.posts
            WHERE root_id IN (SELECT id FROM top) AND parent_id IS NOT NULL AND {_VISIBLE}
        """
        rows = await shard.pool.run_query(
            "list_posts", sql, (thread_id, *params, limit + 1), shard=shard.number
        )
        top = [_post_from_row(row[:-1]) for row in rows if row[-1] == 0]
        replies = [_post_from_row(row[:-1]) for row in rows if row[-1] == 1]

        has_more = len(top) > limit
        top = top[:limit]
        kept_roots = {post.id for post in top}
        replies = sorted((r for r in replies if r.root_id in kept_roots), key=lambda p: (p.created_at, p.id))
        next_cursor = _encode_cursor(sort, top[-1]) if has_more and top else None
        return Page(posts=_build_tree(top + replies), next_cursor=next_cursor)

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
            return order, "AND (score, created_at, id) < (%s, %s, %s)", (score, created_at, post_id)
        return order, f"AND (created_at, id) {comparison} (%s, %s)", (created_at, post_id)

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
            if stored_hash is None or not hmac.compare_digest(bytes(stored_hash), hash_token(edit_token)):
                raise EditRejected("the edit token does not match this post")
            if state == "deleted":
                raise EditRejected(f"post {post_id} is deleted")
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


def blank_deleted(post: Post) -> Post:
    """Return ``post`` with its text and author removed when it is deleted."""
    if post.state != "deleted":
        return post
    return replace(post, raw="", html="", author_name="", author_user_id=None)

