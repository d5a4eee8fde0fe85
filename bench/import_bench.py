"""
Import benchmark: synthetic Disqus exports of several sizes imported into fresh forums.

For each size the script writes the export with ``bench/make_disqus_export.py`` (kept in
the work folder for later runs), then imports it in a subprocess of its own, so the peak
RSS that ``resource.getrusage`` reports belongs to that import alone. The importing
process and the parser process it forks for large files are reported apart. The
PostgreSQL server's memory is not included. The load average before each import is
printed, because other work on the machine changes the rate.

PostgreSQL comes from ``COMMENTS_BENCH_PG`` (default 127.0.0.1:5432 as postgres). The
script drops and creates the database ``comments_bench_import`` (the prefix comes from
``COMMENTS_BENCH_DB_PREFIX``) and leaves it behind for inspection.

Run from the repository root: ``.venv/bin/python bench/import_bench.py``. The default
sizes, 100,000 and 1,000,000 posts, need about 850 MB in the work folder (``--work``) and a few
minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))


from bench.common import database_name, log, recreate_databases  # noqa: E402
from comments.config import DatabaseConfig  # noqa: E402
from comments.db.admin import create_forum, migrate_cluster  # noqa: E402
from comments.db.migrations import blocking_connection  # noqa: E402

LOGICAL_SHARDS = 4


def prepare_cluster(server: str) -> DatabaseConfig:
    """Create the benchmark database with meta, users and every shard schema in it."""
    database = database_name("import")
    recreate_databases(server, (database,))
    dsn = f"{server} dbname={database}"
    database = DatabaseConfig(meta=dsn, users=dsn, shards=(dsn,), logical_shards=LOGICAL_SHARDS)
    migrate_cluster(database, report=lambda line: None)
    return database


def export_file(work: Path, posts: int) -> Path:
    """Return the synthetic export of `posts` posts, writing it first when it is missing."""
    path = work / f"disqus-{posts}.xml"
    if not path.exists():
        log(f"writing {path}")
        partial = path.with_suffix(".partial")
        subprocess.run(
            [sys.executable, str(REPOSITORY / "bench" / "make_disqus_export.py"), str(posts), str(partial)],
            check=True,
        )
        partial.rename(path)
    return path


class PhaseClock:
    """An import progress receiver that records when each phase starts."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.phases: list[tuple[str, float]] = []

    def posts_staged(self, count: int, bytes_read: int) -> None:
        pass

    def phase(self, description: str) -> None:
        self.phases.append((description, time.monotonic() - self.started))


def run_one(database: DatabaseConfig, path: Path, forum: str) -> dict[str, Any]:
    """Import `path` into `forum` in this process and return the measurements."""
    from comments.porting.commands import import_file

    clock = PhaseClock()
    started = time.monotonic()
    summary = import_file(database, "disqus", str(path), forum, progress=clock)
    seconds = time.monotonic() - started

    phases = dict(clock.phases)
    return {
        "posts": summary.posts_created,
        "threads": summary.threads_created,
        "seconds": seconds,
        "reading_seconds": phases["matching threads"] - phases["reading the file"],
        "database_seconds": seconds - phases["matching threads"],
        "importer_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "parser_rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    }


def measure(database: DatabaseConfig, path: Path, posts: int) -> dict[str, Any]:
    """Import `path` into a new forum in a subprocess and return its measurements."""
    forum = f"bench-{posts}"
    assert database.meta
    with blocking_connection(database.meta) as meta:
        create_forum(meta, shortname=forum, name=forum, origins=["http://127.0.0.1"])
    load = os.getloadavg()
    log(f"importing {posts} posts into forum {forum}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    completed = subprocess.run(
        [sys.executable, __file__, "--run-one", str(path), "--forum", forum, "--dsn", database.meta],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
    )
    result: dict[str, Any] = json.loads(completed.stdout)
    if result["posts"] != posts:
        raise RuntimeError(f"expected {posts} new posts, the import reported {result['posts']}")
    result["file_mb"] = path.stat().st_size / 1e6
    result["load_before"] = load[0]
    return result


def markdown_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| posts | file MB | total s | posts/s | reading and storing s | SQL after reading s "
        "| peak RSS importer MB | peak RSS parser MB | load before |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        lines.append(
            f"| {result['posts']:,} | {result['file_mb']:,.0f} | {result['seconds']:.1f} "
            f"| {result['posts'] / result['seconds']:,.0f} | {result['reading_seconds']:.1f} "
            f"| {result['database_seconds']:.1f} | {result['importer_rss_kb'] / 1024:.0f} "
            f"| {result['parser_rss_kb'] / 1024:.0f} | {result['load_before']:.2f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description="Import synthetic Disqus exports and report posts/s and peak RSS.")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000],
                        help="numbers of posts to import, one fresh forum each (default: 100000 1000000)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "comments-import-bench",
                        help="folder for the export files (default: comments-import-bench in the temporary folder)")
    parser.add_argument("--run-one", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--forum", help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    arguments = parser.parse_args()

    if arguments.run_one is not None:
        dsn = arguments.dsn
        database = DatabaseConfig(meta=dsn, users=dsn, shards=(dsn,), logical_shards=LOGICAL_SHARDS)
        print(json.dumps(run_one(database, arguments.run_one, arguments.forum)))
        return 0

    server = os.environ.get("COMMENTS_BENCH_PG", "host=127.0.0.1 port=5432 user=postgres")
    arguments.work.mkdir(parents=True, exist_ok=True)
    database = prepare_cluster(server)
    results = [measure(database, export_file(arguments.work, posts), posts) for posts in arguments.sizes]

    print(f"Import of synthetic Disqus exports, {os.cpu_count()} CPUs, PostgreSQL at {server}.\n")
    print(markdown_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
