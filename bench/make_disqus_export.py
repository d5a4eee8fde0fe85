"""
Write a synthetic Disqus export for the import benchmark.

The file contains N posts spread over N/100 threads (at least one). About half of the posts
are replies to an earlier post of the same thread, so reply chains grow several levels
deep. About 3% of the posts are deleted, 2% are spam and 1% are pending. Names and
messages mix ASCII with accented Latin, CJK and emoji, and messages are HTML with links.
Post ids start above 2**53, as real Disqus ids can. The same size and seed always give
the same file.

The writer streams, so memory stays flat for any N.

Run from the repository root:
``.venv/bin/python bench/make_disqus_export.py 100000 /tmp/export-100k.xml``.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from comments.porting import PostState, SourcePost, SourceThread, write_disqus  # noqa: E402

POSTS_PER_THREAD = 100
FIRST_THREAD_ID = 7_000_000_000
FIRST_POST_ID = 2**53 + 1
START = datetime(2012, 1, 1, tzinfo=UTC)

_NAMES = ("Zoë Ångström", "李小龙", "José Núñez", "Ørjan", "Marie-Claire", "Dmitrij Šostakovič", "Sam 🙂", "Ada")
_WORDS = (
    "comment", "thread", "reply", "naïve", "café", "日本語", "테스트", "emoji 🎉", "Zürich", "façade", "über",
    "question", "answer", "thanks", "great", "post", "read", "later", "ελληνικά", "кириллица",
)


def thread_count(posts: int) -> int:
    """Return the number of threads for `posts` posts: one per 100 posts, at least one."""
    return max(1, posts // POSTS_PER_THREAD)


def generate_threads(posts: int) -> Iterator[SourceThread]:
    """Yield the threads of the export in id order."""
    for index in range(thread_count(posts)):
        yield SourceThread(
            source_id=str(FIRST_THREAD_ID + index),
            identifier=f"post-{index}" if index % 10 else None,
            url=f"https://blog.example.org/{2012 + index % 10}/article-{index}/",
            title=f"Article {index}: {_NAMES[index % len(_NAMES)]}",
            created_at=START + timedelta(hours=index),
            closed=index % 50 == 0,
            deleted=False,
            line=0,
        )


def generate_posts(posts: int, seed: int) -> Iterator[SourcePost]:
    """Yield `posts` posts thread by thread, each reply after its parent."""
    rng = random.Random(seed)
    threads = thread_count(posts)
    for index in range(posts):
        thread_index = index * threads // posts
        first_in_thread = thread_index * posts // threads
        # Replies pick a recent post of the same thread, so chains grow deep.
        parent = None
        if index > first_in_thread and rng.random() < 0.5:
            parent = str(FIRST_POST_ID + rng.randint(max(first_in_thread, index - 5), index - 1))
        yield _make_post(rng, index, thread_index, parent)


def _make_post(rng: random.Random, index: int, thread_index: int, parent: str | None) -> SourcePost:
    roll = rng.random()
    state: PostState = "approved"
    if roll < 0.03:
        state = "deleted"
    elif roll < 0.05:
        state = "spam"
    elif roll < 0.06:
        state = "pending"

    registered = rng.random() < 0.4
    name = _NAMES[rng.randrange(len(_NAMES))]
    words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 40)))
    message = "" if state == "deleted" else (
        f'<p>{words}</p><p>See <a href="https://example.org/{index}">this link</a> &amp; more.</p>'
    )
    return SourcePost(
        source_id=str(FIRST_POST_ID + index),
        thread_source_id=str(FIRST_THREAD_ID + thread_index),
        parent_source_id=parent,
        message=message,
        author_name=name,
        author_email=f"reader{index % 5000}@example.org" if rng.random() < 0.8 else None,
        author_username=f"reader{rng.randrange(2000)}" if registered else None,
        author_is_guest=not registered,
        author_url=None,
        ip=f"192.0.2.{index % 250 + 1}" if index % 7 else f"2001:db8::{index % 65535:x}",
        created_at=START + timedelta(hours=thread_index, minutes=index % POSTS_PER_THREAD),
        state=state,
        kind="comment",
        line=0,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1] if __doc__ else None)
    parser.add_argument("posts", type=int, help="number of posts to write")
    parser.add_argument("output", type=Path, help="path of the export file to write")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    arguments = parser.parse_args(argv)
    if arguments.posts < 1:
        parser.error(f"posts must be at least 1, got {arguments.posts}")

    with open(arguments.output, "wb") as out:
        write_disqus(
            out,
            generate_threads(arguments.posts),
            generate_posts(arguments.posts, arguments.seed),
            forum="bench",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
