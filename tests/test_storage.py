"""Partition routing, ids and migrations on the real test cluster."""

from __future__ import annotations

import threading

import psycopg2
from twisted.trial import unittest

from comments.config import DatabaseConfig
from comments.db.admin import ClusterMismatch, ForumExists, InvalidForum, create_forum, migrate_cluster
from comments.db.migrations import SHARD, blocking_connection, shard_schema
from comments.ids import compose_id, shard_of, timestamp_ms_of
from comments.urls import normalise_url
from tests.harness import ClusterTestCase
from tests.support import _DATABASES, LOGICAL_SHARDS, make_forum, test_database


class RoutingTests(ClusterTestCase):
    async def test_forums_spread_over_shards(self) -> None:
        """New forums go to the least-loaded logical shard, so eight forums fill eight shards."""
        shards = {self.forum_record.shard}
        for index in range(LOGICAL_SHARDS - 1):
            shards.add(make_forum(self.database, f"forum-{index}").shard)
        self.assertEqual(shards, set(range(LOGICAL_SHARDS)))

    async def test_rows_live_on_the_forum_shard_only(self) -> None:
        """A forum's thread and post rows exist in its shard's schema on its database, nowhere else."""
        from twisted.internet import reactor

        from comments.api.app import CommentsAPI
        from comments.config import Config
        from comments.storage.posts import NewPost

        forums = [self.forum_record] + [make_forum(self.database, f"f{i}") for i in range(3)]
        api = CommentsAPI(config=Config(), cluster=self.cluster, reactor=reactor)
        placed: dict[int, int] = {}
        for record in forums:
            forum = await api.forums.by_shortname(record.shortname)
            assert forum is not None
            thread, _ = await api.threads.find_or_create(forum, identifier="x", url="https://e.org/x",
                                                         url_key=normalise_url("https://e.org/x"), title="")
            post = await api.posts.create(NewPost(thread.id, None, "hi", "<p>hi</p>", "A", None, None), "token")
            self.assertEqual(shard_of(thread.id), record.shard)
            self.assertEqual(shard_of(post.id), record.shard)
            placed[record.shard] = thread.id

        for index, dsn in enumerate(self.database.shards):
            with blocking_connection(dsn) as connection, connection.cursor() as cursor:
                for shard in range(LOGICAL_SHARDS):
                    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{shard_schema(shard)}.threads",))
                    exists = cursor.fetchone()[0]  # type: ignore[index]
                    self.assertEqual(exists, shard % len(self.database.shards) == index,
                                     f"schema of shard {shard} on database {index}")
                    if not exists:
                        continue
                    cursor.execute(f"SELECT id FROM {shard_schema(shard)}.threads")
                    ids = {row[0] for row in cursor.fetchall()}
                    self.assertEqual(ids, {placed[shard]} if shard in placed else set())

    async def test_sql_ids_carry_their_shard(self) -> None:
        """next_id() on every shard makes ids whose bits name that shard and the current time."""
        import time

        before = int(time.time() * 1000) - 1000
        for number in range(LOGICAL_SHARDS):
            shard = self.cluster.shard(number)
            rows = await shard.pool.run_query("next_id", f"SELECT {shard.schema}.next_id() FROM generate_series(1, 5)")
            ids = [row[0] for row in rows]
            self.assertEqual(len(set(ids)), 5)
            self.assertEqual({shard_of(i) for i in ids}, {number})
            self.assertTrue(all(before <= timestamp_ms_of(i) <= before + 60_000 for i in ids))
            self.assertEqual(ids, sorted(ids), "ids from one shard are time-ordered")


class IdTests(unittest.SynchronousTestCase):
    def test_round_trip(self) -> None:
        """Composed ids give back their shard and time, for the extreme shards too."""
        for shard in (0, 1, 4095, 8191):
            item = compose_id(timestamp_ms=1_800_000_000_000, shard=shard, sequence=1023)
            self.assertEqual(shard_of(item), shard)
            self.assertEqual(timestamp_ms_of(item), 1_800_000_000_000)
            self.assertLess(item, 2**63)

    def test_parse_rejects_non_ids(self) -> None:
        """Only positive decimal strings within 64 bits are ids."""
        from comments.ids import InvalidId, parse_id

        self.assertEqual(parse_id("774693141449015297"), 774693141449015297)
        for text in ("", "0", "-5", "1e5", "١٢", " 12", "9" * 20, str(2**63)):
            self.assertRaises(InvalidId, parse_id, text)


class MigrationTests(unittest.TestCase):
    timeout = 120

    def _fresh_cluster(self, logical_shards: int = 4) -> DatabaseConfig:
        base = test_database()
        assert base.meta
        names = (f"{_DATABASES[0]}_migrate", f"{_DATABASES[1]}_migrate")
        admin = psycopg2.connect(base.meta)
        admin.autocommit = True
        with admin.cursor() as cursor:
            for name in names:
                cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                cursor.execute(f"CREATE DATABASE {name}")
        admin.close()
        first, second = (base.meta.replace(_DATABASES[0], name) for name in names)
        return DatabaseConfig(meta=first, users=second, shards=(first, second), logical_shards=logical_shards)

    def test_second_run_applies_nothing(self) -> None:
        """Migrating twice applies each migration once and reports nothing the second time."""
        database = self._fresh_cluster()
        first = migrate_cluster(database, report=lambda line: None)
        self.assertEqual(len(first), 2 + 4 * len(SHARD))
        self.assertEqual(migrate_cluster(database, report=lambda line: None), [])

    def test_concurrent_runs_apply_once(self) -> None:
        """Three migrate commands at once apply every migration exactly once in total."""
        database = self._fresh_cluster()
        migrate_cluster(database, report=lambda line: None)  # creates the meta schema and shard map
        results: list[list[str]] = []
        errors: list[BaseException] = []
        with blocking_connection(database.shards[0]) as connection, connection, connection.cursor() as cursor:
            cursor.execute("DROP SCHEMA shard_0000 CASCADE")

        def run() -> None:
            try:
                results.append(migrate_cluster(database, report=lambda line: None))
            except BaseException as error:  # collected and asserted below
                errors.append(error)

        workers = [threading.Thread(target=run) for _ in range(3)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        self.assertEqual(errors, [])
        self.assertEqual(sum(len(r) for r in results), len(SHARD))

    def test_changed_logical_shard_count_refused(self) -> None:
        """The number of logical shards is fixed when the cluster is created."""
        database = self._fresh_cluster(logical_shards=4)
        migrate_cluster(database, report=lambda line: None)
        changed = DatabaseConfig(meta=database.meta, users=database.users, shards=database.shards, logical_shards=6)
        error = self.assertRaises(ClusterMismatch, migrate_cluster, changed, lambda line: None)
        self.assertIn("set it back to 4", str(error))

    def test_missing_physical_database_refused(self) -> None:
        """Dropping a shard DSN from the configuration is refused, naming the fix."""
        database = self._fresh_cluster()
        migrate_cluster(database, report=lambda line: None)
        fewer = DatabaseConfig(meta=database.meta, users=database.users, shards=database.shards[:1], logical_shards=4)
        error = self.assertRaises(ClusterMismatch, migrate_cluster, fewer, lambda line: None)
        self.assertIn("database.shards", str(error))


class ForumAdminTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        from tests.support import reset_data

        self.database = test_database()
        reset_data(self.database)

    def test_duplicate_shortname(self) -> None:
        """A second forum with the same shortname is refused."""
        make_forum(self.database, "dup")
        self.assertRaises(ForumExists, make_forum, self.database, "dup")

    def test_invalid_fields_all_reported(self) -> None:
        """Shortname, url and origin problems are reported together."""
        assert self.database.meta
        with blocking_connection(self.database.meta) as meta:
            error = self.assertRaises(InvalidForum, create_forum, meta, shortname="Bad Name!", name="x",
                                      url="ftp://x", origins=["https://ok.org", "https://bad.org/path"])
        message = str(error)
        self.assertIn("'Bad Name!'", message)
        self.assertIn("'ftp://x'", message)
        self.assertIn("'https://bad.org/path'", message)
        self.assertNotIn("'https://ok.org'", message)
