"""
Thread listing benchmark: one node serving a 100-post thread, side by side with a bare
twisted.web resource serving the same bytes, measured in one run on 127.0.0.1.

Needs Debian's ``wrk`` (closed-loop maximum throughput) and ``hey`` (fixed request rate):
``apt-get install wrk hey``. PostgreSQL comes from ``COMMENTS_BENCH_PG`` (default
127.0.0.1:5432 as postgres). The script drops and creates the databases
``comments_bench_a`` and ``comments_bench_b``; set ``COMMENTS_BENCH_DB_PREFIX`` to use
another prefix than ``comments_bench`` when runs share a server.

Run from the repository root: ``.venv/bin/python bench/listing_bench.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))


from bench.common import database_name, log, recreate_databases  # noqa: E402
from comments.config import DatabaseConfig  # noqa: E402
from comments.db.admin import create_forum, migrate_cluster  # noqa: E402
from comments.db.migrations import blocking_connection  # noqa: E402
from tests.support import free_port  # noqa: E402


def prepare_cluster(server: str) -> DatabaseConfig:
    names = (database_name("a"), database_name("b"))
    recreate_databases(server, names)
    first, second = (f"{server} dbname={name}" for name in names)
    database = DatabaseConfig(meta=first, users=second, shards=(first, second), logical_shards=16)
    migrate_cluster(database, report=lambda line: None)
    with blocking_connection(first) as meta:
        create_forum(meta, shortname="bench", name="Benchmark", origins=["http://127.0.0.1"])
    return database


def start_node(database: DatabaseConfig, directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = directory / "node.toml"
    shards = ", ".join(f'"{dsn}"' for dsn in database.shards)
    config.write_text(
        f'[node]\nlisten = "tcp:{port}:interface=127.0.0.1"\n'
        f'[database]\nmeta = "{database.meta}"\nusers = "{database.users}"\nshards = [{shards}]\n'
        f"logical_shards = {database.logical_shards}\n[posts]\nposts_per_minute = 0\n"
    )
    process = subprocess.Popen([sys.executable, "-m", "comments", "--config", str(config), "serve"],
                               cwd=REPOSITORY, stdout=open(directory / "node.log", "wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/health", process)
    return process, url


def start_bare(body: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, str(REPOSITORY / "bench" / "bare_server.py"), str(port), str(body)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/", process)
    return process, url


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode} before responding at {url}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not respond within 60 s")


def call(method: str, url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method=method,
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def seed_thread(url: str, posts: int) -> str:
    """Create a thread with ``posts`` posts: two of every three top-level, the rest replies."""
    thread = call("POST", f"{url}/api/v1/threads",
                  {"forum": "bench", "identifier": "bench-thread", "url": "http://127.0.0.1/bench", "title": "Bench"})
    thread_id = thread["thread"]["id"]
    parent = None
    for index in range(posts):
        reply_to = parent if index % 3 == 2 else None
        created = call("POST", f"{url}/api/v1/threads/{thread_id}/posts", {
            "author_name": f"Reader {index}", "message": f"Comment number {index} with *some* Markdown and a "
                                                         f"[link](https://example.org/{index}).", "parent": reply_to})
        parent = created["post"]["id"]
    return str(thread_id)


def cpu_seconds(pid: int) -> float:
    """Return the user and system CPU time ``pid`` has used, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def with_cpu(pid: int, seconds: int, load: Callable[[], dict[str, float]]) -> dict[str, float]:
    """Run ``load`` and add the CPU milliseconds ``pid`` spent per request to its result as ``cpu_ms``."""
    before = cpu_seconds(pid)
    result = load()
    result["cpu_ms"] = (cpu_seconds(pid) - before) * 1000 / (result["rate"] * seconds)
    return result


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS line")


def _milliseconds(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s)", text)
    if not match:
        raise ValueError(f"cannot read wrk latency {text!r}")
    value, unit = float(match.group(1)), match.group(2)
    if unit == "us":
        return value / 1000
    if unit == "s":
        return value * 1000
    return value


def run_wrk(url: str, seconds: int, connections: int) -> dict[str, float]:
    output = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
                            capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    # Anchored: "91.99%" in the latency line's spread would match a bare "99%".
    p50 = _milliseconds(re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE).group(1))  # type: ignore[union-attr]
    p99 = _milliseconds(re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {"rate": rate, "p50": p50, "p99": p99, "errors": float(errors.group(1)) if errors else 0.0}


def run_hey(url: str, seconds: int, rate: int) -> dict[str, float]:
    workers = 10
    output = subprocess.run(["hey", "-z", f"{seconds}s", "-c", str(workers), "-q", str(rate // workers), url],
                            capture_output=True, text=True, check=True).stdout
    achieved = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = float(re.search(r"50%+ in ([\d.]+) secs", output).group(1)) * 1000  # type: ignore[union-attr]
    p99 = float(re.search(r"99%+ in ([\d.]+) secs", output).group(1)) * 1000  # type: ignore[union-attr]
    statuses = re.findall(r"\[(\d{3})\]\s+(\d+) responses", output)
    failed = sum(int(count) for code, count in statuses if code != "200")
    return {"rate": achieved, "p50": p50, "p99": p99, "errors": float(failed)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="duration of each load run, in seconds")
    parser.add_argument("--connections", type=int, default=32, help="wrk's open connections")
    parser.add_argument("--rate", type=int, default=1000, help="fixed request rate for hey, in requests/s")
    parser.add_argument("--posts", type=int, default=100, help="posts in the listed thread")
    arguments = parser.parse_args()
    for tool in ("wrk", "hey"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing; install it with: apt-get install wrk hey")

    server = os.environ.get("COMMENTS_BENCH_PG", "host=127.0.0.1 port=5432 user=postgres")
    directory = Path(tempfile.mkdtemp(prefix="comments-bench-"))
    log(f"preparing a two-database, 16-shard cluster on {server}")
    database = prepare_cluster(server)
    node, node_url = start_node(database, directory)
    processes = [node]
    try:
        log(f"seeding a thread with {arguments.posts} posts")
        thread_id = seed_thread(node_url, arguments.posts)
        path = f"/api/v1/threads/{thread_id}/posts?sort=oldest&limit=100"
        with urllib.request.urlopen(node_url + path) as response:
            body = response.read()
        listed = json.loads(body)
        assert sum(1 + _count_replies(post) for post in listed["posts"]) == arguments.posts, "listing is incomplete"
        body_path = directory / "listing.json"
        body_path.write_bytes(body)
        bare, bare_url = start_bare(body_path)
        processes.append(bare)
        log(f"listing is {len(body)} bytes; warming up")
        run_wrk(node_url + path, 2, arguments.connections)
        run_wrk(bare_url + "/", 2, arguments.connections)

        rows = []
        rss_before = rss_kib(node.pid)
        rss_after_runs = []
        for run in range(3):
            log(f"wrk run {run + 1} of 3 against the node and the bare resource")
            node_result = with_cpu(node.pid, arguments.seconds,
                                   lambda: run_wrk(node_url + path, arguments.seconds, arguments.connections))
            bare_result = run_wrk(bare_url + "/", arguments.seconds, arguments.connections)
            rss_after_runs.append(rss_kib(node.pid))
            rows.append(("wrk", run + 1, node_result, bare_result))
        for run in range(3):
            log(f"hey run {run + 1} of 3 at a fixed {arguments.rate} requests/s")
            node_result = with_cpu(node.pid, arguments.seconds,
                                   lambda: run_hey(node_url + path, arguments.seconds, arguments.rate))
            rows.append(("hey", run + 1, node_result, run_hey(bare_url + "/", arguments.seconds, arguments.rate)))
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)

    print(f"Listing of {arguments.posts} posts ({len(body)} bytes), {arguments.seconds} s per run, "
          f"wrk with 1 thread and {arguments.connections} connections; "
          f"hey with 10 workers at {arguments.rate} req/s.\n")
    print("| load | run | node req/s | node p50 ms | node p99 ms | node errors | node CPU ms/req | bare req/s "
          "| bare p50 ms | bare p99 ms | node/bare |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for tool, run, node_result, bare_result in rows:
        print(f"| {tool} | {run} | {node_result['rate']:.0f} | {node_result['p50']:.2f} | {node_result['p99']:.2f} "
              f"| {node_result['errors']:.0f} | {node_result['cpu_ms']:.2f} | {bare_result['rate']:.0f} "
              f"| {bare_result['p50']:.2f} "
              f"| {bare_result['p99']:.2f} | {node_result['rate'] / bare_result['rate']:.2f} |")
    print(f"\nNode resident memory: {rss_before / 1024:.1f} MiB before the wrk runs, then "
          + ", ".join(f"{value / 1024:.1f}" for value in rss_after_runs) + " MiB after each of the three.")
    return 0


def _count_replies(post: dict[str, Any]) -> int:
    return sum(1 + _count_replies(reply) for reply in post["replies"])


if __name__ == "__main__":
    sys.exit(main())
