"""
The twisted.web site of a node: its channel, its request class and its request log.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

import orjson
from twisted.web import http, server
from twisted.web.iweb import IRequest

from comments.api.app import CommentsAPI

__all__ = ["build_site"]


def build_site(api: CommentsAPI) -> server.Site:
    """Return the site serving ``api``, as a node listens with it."""
    site = server.Site(api.resource())
    site.protocol = _Channel  # type: ignore[method-assign, assignment]  # a channel class is a factory too
    site.requestFactory = _TrackedRequest
    site.api = api  # type: ignore[attr-defined]  # read by _TrackedRequest
    # Requests are logged by HAProxy in a cluster; a per-request log line here costs
    # about a tenth of a small request's time.
    site.log = lambda request: None  # type: ignore[method-assign]
    return site


class _Channel(http.HTTPChannel):
    """
    An HTTP/1.1 connection that reads its local address once, not once per request.

    Every twisted.web request reads it, and each read is a getsockname() call and a new
    address object: about a twentieth of a listing's CPU time on the node. The node
    speaks plain HTTP/1.1 behind HAProxy, so the HTTP/2 negotiating wrapper is not used.
    """

    _host: Any = None

    def getHost(self) -> Any:
        if self._host is None:
            self._host = super().getHost()  # type: ignore[no-untyped-call]  # twisted.web.http is untyped
        return self._host

    def checkPersistence(self, request: Any, version: bytes) -> bool:
        # A draining node closes each kept-alive connection after its next response, so
        # clients reconnect through the load balancer to another node.
        if self.site.api.draining:  # type: ignore[attr-defined]  # set by build_site
            request.responseHeaders.setRawHeaders(b"connection", [b"close"])
            return False
        return super().checkPersistence(request, version)  # type: ignore[no-any-return, no-untyped-call]


class _DiscardedBody:
    """The body buffer of a request over the size limit: it stores nothing."""

    over_limit = True  # read by read_json_body, which returns 413

    def write(self, data: bytes) -> None:
        pass

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def tell(self) -> int:
        return 0

    def read(self, size: int = -1) -> bytes:
        return b""

    def close(self) -> None:
        pass


class _TrackedRequest(server.Request):
    """
    A request that counts itself in its node's in-flight total until it finishes.

    A body over ``posts.max_body_bytes`` is not kept: one whose Content-Length is over the
    limit is discarded from the start, and a chunked one from the chunk that crosses it.
    The API then returns 413.
    """

    _body_bytes = 0

    @property
    def _api(self) -> CommentsAPI:
        return self.channel.site.api  # type: ignore[attr-defined, no-any-return]  # set by build_site

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self._api.config.max_body_bytes:
            self.content = _DiscardedBody()
            return
        super().gotLength(length)  # type: ignore[no-untyped-call]  # twisted.web.http is untyped

    def handleContentChunk(self, data: bytes) -> None:
        if isinstance(self.content, _DiscardedBody):
            return
        self._body_bytes += len(data)
        if self._body_bytes > self._api.config.max_body_bytes:
            if self.content is not None:
                self.content.close()
            self.content = _DiscardedBody()
            return
        super().handleContentChunk(data)  # type: ignore[no-untyped-call]  # twisted.web.http is untyped

    def process(self) -> None:
        api = self._api
        api.in_flight += 1

        def finished(result: object) -> None:
            api.in_flight -= 1

        self.notifyFinish().addBoth(finished)
        if b"%" in self.path:
            try:
                unquote_to_bytes(self.path).decode("utf-8")
            except UnicodeDecodeError:
                # Klein would respond in plain text and log a traceback for every such request.
                _reject_path(self)
                return
        super().process()  # type: ignore[no-untyped-call]  # twisted.web.server is untyped


def _reject_path(request: IRequest) -> None:
    request.setResponseCode(400)
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    request.write(orjson.dumps({"error": {"code": "invalid_request", "field": None,
                                          "message": "the request path is not valid UTF-8 once decoded"}}))
    request.finish()
