"""A demo discussion, so a new node shows a working widget at once."""

from __future__ import annotations

import secrets

from comments.api.app import CommentsAPI
from comments.render import render_markdown
from comments.storage.posts import NewPost
from comments.urls import normalise_url

__all__ = ["DEMO_IDENTIFIER", "seed_demo_thread"]

DEMO_IDENTIFIER = "demo-post-1"

_DEMO_POSTS = [
    ("Ada", "Great write-up. The part about **sharding by forum** finally made it click for me."),
    ("Grace", "Does the widget work when third-party cookies are blocked?"),
]
_DEMO_REPLY = ("Linus", "It does: the widget keeps its state in its own storage, not in a cross-site cookie.")


async def seed_demo_thread(api: CommentsAPI, origins: list[str]) -> None:
    """Create the demo post's thread with two comments and a reply, unless it has posts already."""
    forum = await api.forums.by_shortname("demo")
    if forum is None:
        return
    base = origins[0] if origins else "http://127.0.0.1:8080"
    url = f"{base}/demo/post.html"
    thread, _ = await api.threads.find_or_create(
        forum, identifier=DEMO_IDENTIFIER, url=url, url_key=normalise_url(url), title="Moving a blog off Disqus"
    )
    if thread.posts:
        return
    created = []
    for name, text in _DEMO_POSTS:
        post = await api.posts.create(
            NewPost(thread_id=thread.id, parent_id=None, raw=text, html=render_markdown(text), author_name=name,
                    author_email=None, ip=None),
            edit_token=secrets.token_urlsafe(24),
        )
        created.append(post)
    name, text = _DEMO_REPLY
    await api.posts.create(
        NewPost(thread_id=thread.id, parent_id=created[1].id, raw=text, html=render_markdown(text), author_name=name,
                author_email=None, ip=None),
        edit_token=secrets.token_urlsafe(24),
    )
