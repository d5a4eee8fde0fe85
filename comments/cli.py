"""
The ``comments`` command: run a node, migrate the cluster, manage forums, import and export.

Administrative commands use the same configuration as the node, including the embedded
default: with no DSN configured they start the embedded server for the time they run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from comments.config import Config, ConfigError, DatabaseConfig, load_config

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="comments", description="A self-hosted comments service.")
    parser.add_argument("--config", "-c", help="TOML configuration file (default: built-in defaults and "
                        "COMMENTS_* environment variables)")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run one node in the foreground (all roles)")
    serve.add_argument("--listen", help="Twisted endpoint to serve HTTP on, e.g. tcp:8080:interface=127.0.0.1")

    commands.add_parser("migrate", help="apply schema migrations to meta, users and every logical shard")

    forum = commands.add_parser("forum", help="create and list forums").add_subparsers(dest="forum_command",
                                                                                      required=True)
    create = forum.add_parser("create", help="create a forum")
    create.add_argument("shortname", help="lowercase letters, digits and hyphens")
    create.add_argument("--name", default="", help="display name (default: the shortname)")
    create.add_argument("--url", default="", help="the site's home page url")
    create.add_argument("--origin", action="append", default=[],
                        help="an origin allowed to embed the widget, e.g. https://blog.example.org (repeatable)")
    forum.add_parser("list", help="list every forum")

    importer = commands.add_parser("import", help="import a Disqus or WordPress (WXR) export")
    importer.add_argument("format", choices=["disqus", "wxr"])
    importer.add_argument("file", help="path of the export file")
    importer.add_argument("--forum", required=True, help="shortname of the forum to import into")

    exporter = commands.add_parser("export", help="export a forum as Disqus XML or WordPress WXR")
    exporter.add_argument("format", choices=["disqus", "wxr"])
    exporter.add_argument("--forum", required=True, help="shortname of the forum to export")
    exporter.add_argument("--output", "-o", default="-", help="file to write (default: standard output)")
    return parser


@contextmanager
def cluster_database(config: Config) -> Iterator[DatabaseConfig]:
    """Yield the cluster's DSNs, running the embedded server meanwhile when none is configured."""
    if not config.database.embedded:
        yield config.database
        return
    from comments.db.admin import migrate_cluster
    from comments.embedded import EmbeddedPostgres

    embedded = EmbeddedPostgres(config.data_dir)
    print(f"using the embedded PostgreSQL server in {config.data_dir / 'pgdata'}", file=sys.stderr)
    dsn = embedded.start()
    try:
        database = embedded.database_config(config.database, dsn)
        migrate_cluster(database, report=lambda line: None)
        yield database
    finally:
        embedded.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the command given in ``argv``; return the exit status."""
    arguments = _parser().parse_args(argv)
    if arguments.command == "serve":
        return _serve(arguments)
    try:
        config = load_config(arguments.config)
    except ConfigError as error:
        print(f"comments: {error}", file=sys.stderr)
        return 1
    try:
        return _run_admin(arguments, config)
    except KeyboardInterrupt:
        print("comments: interrupted", file=sys.stderr)
        return 130


def _serve(arguments: argparse.Namespace) -> int:
    from twisted.scripts import twistd

    argv = ["twistd", "--nodaemon", "--pidfile=", "comments"]
    if arguments.config:
        argv += ["--config", arguments.config]
    if arguments.listen:
        argv += ["--listen", arguments.listen]
    sys.argv = argv
    twistd.run()
    return 0


def _run_admin(arguments: argparse.Namespace, config: Config) -> int:
    import psycopg2
    import psycopg2.errors

    from comments.db.admin import ClusterMismatch, ForumExists, InvalidForum

    try:
        with cluster_database(config) as database:
            if arguments.command == "migrate":
                return _migrate(database)
            if arguments.command == "forum":
                return _forum(arguments, database)
            if arguments.command == "import":
                from comments.porting.commands import run_import

                return int(run_import(database, arguments.format, arguments.file, arguments.forum))
            if arguments.command == "export":
                from comments.porting.commands import run_export

                return int(run_export(database, arguments.format, arguments.forum, arguments.output))
    except (ClusterMismatch, ForumExists, InvalidForum) as error:
        print(f"comments: {error}", file=sys.stderr)
        return 1
    except psycopg2.OperationalError as error:
        print(f"comments: cannot reach the database: {str(error).strip()}; check the DSNs in the "
              "configuration and that PostgreSQL is running", file=sys.stderr)
        return 1
    except psycopg2.errors.UndefinedTable as error:
        print(f"comments: the database has no schema yet ({str(error).strip()}); run "
              "`comments --config FILE migrate` first", file=sys.stderr)
        return 1
    raise AssertionError(f"unhandled command {arguments.command}")


def _migrate(database: DatabaseConfig) -> int:
    from comments.db.admin import migrate_cluster

    applied = migrate_cluster(database, report=print)
    print(f"migrations applied: {len(applied)}" if applied else "everything is up to date")
    return 0


def _forum(arguments: argparse.Namespace, database: DatabaseConfig) -> int:
    from comments.db.admin import create_forum, list_forums
    from comments.db.migrations import blocking_connection

    assert database.meta
    with blocking_connection(database.meta) as meta:
        if arguments.forum_command == "create":
            forum = create_forum(meta, shortname=arguments.shortname, name=arguments.name, url=arguments.url,
                                 origins=arguments.origin)
            print(f"created forum {forum.shortname} (id {forum.id}) on logical shard {forum.shard}")
            return 0
        for forum in list_forums(meta):
            origins = ", ".join(forum.origins) or "(no origins)"
            print(f"{forum.shortname}\t{forum.name}\tshard {forum.shard}\t{origins}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
