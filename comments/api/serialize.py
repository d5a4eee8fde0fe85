"""JSON shapes of forums, threads and posts, as the OpenAPI document describes them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from comments.storage.forums import Forum
from comments.storage.posts import Post
from comments.storage.threads import Thread

__all__ = ["forum_json", "post_json", "thread_json", "timestamp"]


def timestamp(moment: datetime | None) -> str | None:
    """
    Format ``moment`` as ISO 8601 in UTC with a ``Z`` suffix.

    Trailing zeros of the fraction are dropped, as in PostgreSQL's text form that listings
    send, so one post's times read the same in every response.
    """
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".") + "Z"


def forum_json(forum: Forum, *, edit_window_seconds: int, max_message_length: int) -> dict[str, Any]:
    """Return a forum's public settings."""
    return {
        "shortname": forum.shortname,
        "name": forum.name,
        "url": forum.url,
        "edit_window_seconds": edit_window_seconds,
        "max_message_length": max_message_length,
    }


def thread_json(thread: Thread, forum: str) -> dict[str, Any]:
    """Return a thread as the API sends it."""
    return {
        "id": str(thread.id),
        "forum": forum,
        "identifier": thread.identifier,
        "url": thread.url,
        "title": thread.title,
        "created_at": timestamp(thread.created_at),
        "posts": thread.posts,
        "closed": thread.closed,
    }


def post_json(post: Post) -> dict[str, Any]:
    """Return a post and its replies; a deleted post keeps only its place in the tree."""
    deleted = post.state == "deleted"
    return {
        "id": str(post.id),
        "thread": str(post.thread_id),
        "parent": None if post.parent_id is None else str(post.parent_id),
        "author": {"name": "" if deleted else post.author_name},
        "message": "" if deleted else post.html,
        "raw": "" if deleted else post.raw,
        "created_at": timestamp(post.created_at),
        "edited_at": timestamp(post.edited_at),
        "state": post.state,
        "likes": post.likes,
        "dislikes": post.dislikes,
        "score": post.score,
        "depth": post.depth,
        "replies": [post_json(reply) for reply in post.replies],
    }
