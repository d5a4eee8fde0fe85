"""Whole nodes as operators run them: separate processes started by twistd."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from twisted.trial import unittest

from tests.support import REPOSITORY, NodeProcess, free_port, make_forum, reset_data, test_database


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


class NodeProcessTests(unittest.TestCase):
    timeout = 180

    def setUp(self) -> None:
        self.database = test_database()
        reset_data(self.database)
        make_forum(self.database, "site")

    def test_serves_then_stops_cleanly(self) -> None:
        """A node started by `comments serve` returns 200 on /health, then exits 0 on SIGTERM and logs each phase."""
        node = NodeProcess(self.database)
        node.start()
        self.addCleanup(node.stop)
        status, body = _get(f"{node.url}/health")
        self.assertEqual(status, 200)
        self.assertEqual(body["status"], "ready")
        # Twisted 24.7 and later re-raise the stopping signal after a clean shutdown.
        self.assertIn(node.stop(), (0, -15))
        log = node.log_path.read_text()
        for phase in ("starting with configuration from", "shard map loaded: 8 logical shards", "ready: serving HTTP",
                      "stopping: draining", "stopped"):
            self.assertIn(phase, log)
        self.assertNotIn("Traceback", log)

    def test_drain_turns_health_unready(self) -> None:
        """During the drain period /health returns 503 while the port still accepts requests."""
        node = NodeProcess(self.database, extra="")
        node.config_path.write_text(node.config_path.read_text().replace("[posts]", "drain_seconds = 3\n[posts]"))
        node.start()
        self.addCleanup(node.stop)
        assert node.process is not None
        node.process.terminate()
        deadline = time.monotonic() + 2.5
        statuses = set()
        while time.monotonic() < deadline:
            try:
                statuses.add(_get(f"{node.url}/health")[0])
            except OSError:
                break
            time.sleep(0.1)
        self.assertIn(503, statuses)
        self.assertIn(node.process.wait(timeout=30), (0, -15))

    def test_invalid_configuration_exits_1(self) -> None:
        """Every configuration problem is printed together and the node exits 1 without starting."""
        path = Path(tempfile.mkdtemp()) / "bad.toml"
        path.write_text('[node]\nlisten = "nowhere"\n[database]\nmeta = "host=x"\nlogical_shards = 0\n')
        result = subprocess.run([sys.executable, "-m", "comments", "--config", str(path), "serve"], cwd=REPOSITORY,
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 1)
        for key in ("node.listen", "database.users", "database.shards", "database.logical_shards"):
            self.assertIn(key, result.stderr)
        self.assertNotIn("Traceback", result.stderr)

    def test_unreachable_database_exits_1(self) -> None:
        """A node whose meta database does not answer says so and exits 1."""
        path = Path(tempfile.mkdtemp()) / "down.toml"
        dsn = "host=127.0.0.1 port=1 user=x dbname=x connect_timeout=2"
        path.write_text(f'[node]\nlisten = "tcp:{free_port()}:interface=127.0.0.1"\n[database]\nmeta = "{dsn}"\n'
                        f'users = "{dsn}"\nshards = ["{dsn}"]\n')
        result = subprocess.run([sys.executable, "-m", "comments", "--config", str(path), "serve"], cwd=REPOSITORY,
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 1)
        self.assertIn("cannot connect to the meta database", result.stderr)

    def test_oversized_body_not_buffered(self) -> None:
        """A 50 MB body declared by Content-Length gets 413 and does not grow the node's memory."""
        import http.client

        node = NodeProcess(self.database)
        node.start()
        self.addCleanup(node.stop)
        assert node.process is not None

        def resident_kib() -> int:
            status = Path(f"/proc/{node.process.pid}/status").read_text()  # type: ignore[union-attr]
            return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])

        before = resident_kib()
        connection = http.client.HTTPConnection("127.0.0.1", node.port, timeout=60)
        size = 50 * 1024 * 1024
        connection.putrequest("POST", "/api/v1/threads")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(size))
        connection.endheaders()
        chunk = b" " * (1024 * 1024)
        for _ in range(size // len(chunk)):
            connection.send(chunk)
        response = connection.getresponse()
        body = json.loads(response.read())
        connection.close()
        self.assertEqual(response.status, 413)
        self.assertEqual(body["error"]["code"], "body_too_large")
        self.assertLess(resident_kib() - before, 10 * 1024, "the body was buffered in memory")

    def test_path_not_utf8_is_json_400(self) -> None:
        """A path that is not UTF-8 once decoded gets a JSON 400, and the log contains no traceback."""
        node = NodeProcess(self.database)
        node.start()
        self.addCleanup(node.stop)
        status, body = _get(f"{node.url}/api/v1/forums/%ff")
        self.assertEqual(status, 400)
        self.assertEqual(body["error"]["code"], "invalid_request")
        status, _ = _get(f"{node.url}/health")
        self.assertEqual(status, 200)
        self.assertNotIn("Traceback", node.log_path.read_text())

    def test_changed_logical_shards_exits_1(self) -> None:
        """A node configured with another number of logical shards than the cluster's refuses to start."""
        node = NodeProcess(self.database)
        text = node.config_path.read_text().replace("logical_shards = 8", "logical_shards = 16")
        node.config_path.write_text(text)
        result = subprocess.run([sys.executable, "-m", "comments", "--config", str(node.config_path), "serve"],
                                cwd=REPOSITORY, capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 1)
        self.assertIn("set it back to 8", result.stderr)

    def test_tac_file_starts_a_node(self) -> None:
        """`twistd -ny tac/node.tac` with COMMENTS_CONFIG starts the same node."""
        node = NodeProcess(self.database)
        environment = dict(os.environ, COMMENTS_CONFIG=str(node.config_path), PYTHONPATH=str(REPOSITORY))
        twistd = Path(sys.executable).with_name("twistd")
        process = subprocess.Popen([str(twistd), "--nodaemon", "--pidfile=", "-y", "tac/node.tac"], cwd=REPOSITORY,
                                   env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: process.poll() is None and process.kill())
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and status != 200:
            try:
                status = _get(f"{node.url}/health")[0]
            except OSError:
                time.sleep(0.2)
        self.assertEqual(status, 200)
        process.terminate()
        self.assertIn(process.wait(timeout=30), (0, -15))
