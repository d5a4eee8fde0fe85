"""The `comments` command: migrate, forums, and the zero-setup default."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from twisted.trial import unittest

from comments.cli import main
from tests.support import NodeProcess, reset_data, test_database


def _config_file() -> str:
    database = test_database()
    shards = ", ".join(f'"{dsn}"' for dsn in database.shards)
    path = Path(tempfile.mkdtemp()) / "node.toml"
    path.write_text(f'[database]\nmeta = "{database.meta}"\nusers = "{database.users}"\nshards = [{shards}]\n'
                    f"logical_shards = {database.logical_shards}\n")
    return str(path)


def _run(*arguments: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(arguments))
    return status, out.getvalue(), err.getvalue()


class CommandTests(unittest.TestCase):
    def setUp(self) -> None:
        reset_data(test_database())
        self.config = _config_file()

    def test_migrate_reports_up_to_date(self) -> None:
        """On a migrated cluster, migrate applies nothing and reports that."""
        status, out, _ = _run("--config", self.config, "migrate")
        self.assertEqual(status, 0)
        self.assertIn("everything is up to date", out)

    def test_forum_create_and_list(self) -> None:
        """A created forum is listed with its shard and origins."""
        status, out, _ = _run("--config", self.config, "forum", "create", "myblog", "--name", "My blog",
                              "--url", "https://blog.example.org", "--origin", "https://blog.example.org")
        self.assertEqual(status, 0)
        self.assertIn("created forum myblog", out)
        status, out, _ = _run("--config", self.config, "forum", "list")
        self.assertEqual(status, 0)
        self.assertIn("myblog\tMy blog\tshard ", out)
        self.assertIn("https://blog.example.org", out)

    def test_forum_create_errors(self) -> None:
        """A duplicate or invalid forum is an error with status 1, not a traceback."""
        _run("--config", self.config, "forum", "create", "dup")
        status, _, err = _run("--config", self.config, "forum", "create", "dup")
        self.assertEqual(status, 1)
        self.assertIn("already exists", err)
        status, _, err = _run("--config", self.config, "forum", "create", "Not Valid", "--origin", "ftp://x")
        self.assertEqual(status, 1)
        self.assertIn("'Not Valid'", err)
        self.assertIn("'ftp://x'", err)

    def test_bad_config_status_1(self) -> None:
        """An invalid configuration file stops an administrative command with status 1."""
        path = Path(tempfile.mkdtemp()) / "bad.toml"
        path.write_text("[database]\nlogical_shards = 0\n")
        status, _, err = _run("--config", str(path), "forum", "list")
        self.assertEqual(status, 1)
        self.assertIn("database.logical_shards", err)


class EmbeddedDefaultTests(unittest.TestCase):
    """A node with no database configured runs its own PostgreSQL with the demo forum."""

    timeout = 240

    def test_serve_without_configuration(self) -> None:
        """The node starts the embedded server, seeds the demo thread, and stops the server with it."""
        from comments.config import DatabaseConfig

        data_dir = Path(tempfile.mkdtemp(prefix="comments-embedded-"))
        node = NodeProcess(DatabaseConfig(), data_dir=data_dir)
        node.start(timeout=180)
        self.addCleanup(node.stop)

        with urllib.request.urlopen(f"{node.url}/api/v1/forums/demo", timeout=10) as response:
            forum = json.loads(response.read())["forum"]
        self.assertEqual(forum["shortname"], "demo")
        request = urllib.request.Request(
            f"{node.url}/api/v1/threads", method="POST",
            data=json.dumps({"forum": "demo", "identifier": "demo-post-1",
                             "url": f"{node.url}/demo/post.html"}).encode())
        with urllib.request.urlopen(request, timeout=10) as response:
            thread = json.loads(response.read())["thread"]
        self.assertEqual(thread["posts"], 3, "the demo thread is seeded with two comments and a reply")
        with urllib.request.urlopen(f"{node.url}/demo/post.html", timeout=10) as response:
            self.assertIn(b"embed.js", response.read())

        pid_file = data_dir / "pgdata" / "postmaster.pid"
        self.assertTrue(pid_file.exists())
        first_pid = int(pid_file.read_text().split()[0])
        os.kill(first_pid, signal.SIGKILL)
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{node.url}/api/v1/threads/{thread['id']}/posts", timeout=10) as response:
                    self.assertEqual(len(json.loads(response.read())["posts"]), 2)
                    break
            except urllib.error.HTTPError as error:
                self.assertEqual(error.code, 503, "while the server is down the node answers 503")
            self.assertLess(time.monotonic() - deadline, 0, f"the node never recovered: {node.log_path.read_text()}")
            time.sleep(0.5)
        self.assertNotEqual(int(pid_file.read_text().split()[0]), first_pid)
        self.assertIn("started it again", node.log_path.read_text())
        node.stop()
        self.assertFalse(pid_file.exists(), "stopping the node stops the embedded server")
