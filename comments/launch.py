"""Build a node service from command-line options; shared by the twistd plugin and the .tac file."""

from __future__ import annotations

import sys
from typing import Any

from twisted.python import usage

from comments.config import ConfigError, load_config
from comments.node import NodeService, StartupError

__all__ = ["Options", "make_node"]


class Options(usage.Options):
    """Options of ``twistd comments``."""

    optParameters = [
        ["config", "c", None, "Path of the TOML configuration file; without it, defaults and COMMENTS_* variables."],
        ["listen", "l", None, "Twisted endpoint to serve HTTP on, overriding node.listen (e.g. tcp:8080)."],
    ]


def make_node(config_path: str | None, listen: str | None = None, reactor: Any = None) -> NodeService:
    """
    Load the configuration and prepare storage, then return the node's service.

    Prints every problem and exits with status 1 when the node cannot start.
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    try:
        config = load_config(config_path)
        if listen:
            import dataclasses

            config = dataclasses.replace(config, listen=listen)
        node = NodeService(config, reactor)
        node.prepare()
    except ConfigError as error:
        print(f"comments: {error}", file=sys.stderr)
        sys.exit(1)
    except StartupError as error:
        print(f"comments: cannot start: {error}", file=sys.stderr)
        sys.exit(1)
    return node
