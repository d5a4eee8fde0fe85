"""A bare twisted.web resource serving one file's bytes as JSON: the benchmark's baseline.

Usage: bare_server.py PORT FILE
"""

from __future__ import annotations

import sys
from pathlib import Path

from twisted.internet import endpoints, reactor
from twisted.web import resource, server


class StaticBytes(resource.Resource):
    """Serves the same bytes, with the node's content type, at every path."""

    isLeaf = True

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.body = body

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        return self.body


def main() -> None:
    port, path = int(sys.argv[1]), Path(sys.argv[2])
    site = server.Site(StaticBytes(path.read_bytes()))
    site.log = lambda request: None  # type: ignore[method-assign]  # the node logs no requests either
    endpoints.TCP4ServerEndpoint(reactor, port, interface="127.0.0.1").listen(site)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
