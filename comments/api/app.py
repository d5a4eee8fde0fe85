"""
The HTTP API: Klein routes under ``/api/v1``, ``/health``, and the widget's files.

Handlers are steps: parse and check input (APIError on anything bad), call the storage
layer, serialize. Storage errors that mean bad input become 4xx here; anything else is a
bug, logged with its traceback and sent as a plain 500 document.
"""

from __future__ import annotations

import gzip
import ipaddress
import re
import secrets
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from importlib import resources
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
from klein import Klein
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import RequestRedirect

from comments.api import serialize
from comments.api.ratelimit import RateLimiter
from comments.api.validation import (
    APIError,
    email_field,
    id_field,
    invalid,
    json_text,
    optional_text_field,
    path_id,
    query_value,
    query_values,
    read_json_body,
    text_field,
)
from comments.config import Config
from comments.db.admin import SHORTNAME_PATTERN
from comments.db.cluster import Cluster, UnknownShard
from comments.db.pool import DatabaseUnavailable, one_line
from comments.render import render_markdown
from comments.storage.forums import Forum, ForumDirectory
from comments.storage.posts import (
    SORTS,
    EditRejected,
    InvalidCursor,
    InvalidParent,
    NewPost,
    PostNotFound,
    PostStore,
    Sort,
    ThreadClosed,
    check_cursor,
)
from comments.storage.threads import ThreadStore
from comments.urls import InvalidURL, normalise_url

__all__ = ["CommentsAPI"]

MAX_PAGE_SIZE = 100
OUTAGE_LOG_SECONDS = 10.0  # at most one line per this many seconds about requests failed by an outage
MAX_COUNT_KEYS = 200
_LISTING_CACHE_CONTROL = b"public, max-age=2, must-revalidate"
_LIMIT_PATTERN = re.compile(r"^[0-9]{1,3}$")  # ASCII digits only: str.isdigit() accepts "²" and "٣"
# Only plain ids take the direct path; anything else is left to Klein's route and its errors.
_LISTING_PATH = re.compile(rb"^/api/v1/threads/([0-9]{1,20})/posts$")
_STATIC = resources.files("comments.widget").joinpath("static")


def _json(request: IRequest, document: Any, status: int = 200) -> bytes:
    if status in http.RESPONSES:
        request.setResponseCode(status)
    else:  # Twisted's table lacks some, 429 among them
        request.setResponseCode(status, HTTPStatus(status).phrase.encode("ascii"))
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    # orjson encodes a 100-post listing about 25 times faster than the json module
    # (docs/benchmarks.md), which is most of a listing's CPU time on the node.
    return orjson.dumps(document)


class CommentsAPI:
    """The routes of one web node."""

    app = Klein()
    log = Logger()

    def __init__(self, *, config: Config, cluster: Cluster, reactor: IReactorTime) -> None:
        self.config = config
        self.cluster = cluster
        self.reactor = reactor
        self.forums = ForumDirectory(cluster, reactor)
        self.threads = ThreadStore(cluster)
        self.posts = PostStore(cluster)
        self.post_limiter: RateLimiter | None = None
        if config.posts_per_minute:
            self.post_limiter = RateLimiter(reactor, capacity=config.posts_per_minute, per_seconds=60.0)
        # The voter id is a random id the widget makes, so one client can make many. This
        # limit per address bounds how far one client can move a score.
        self.vote_limiter: RateLimiter | None = None
        if config.votes_per_minute:
            self.vote_limiter = RateLimiter(reactor, capacity=config.votes_per_minute, per_seconds=60.0)
        self.draining = False
        self.in_flight = 0
        self._next_outage_log = 0.0
        self._unlogged_outages = 0
        self._outage_count_call: IDelayedCall | None = None
        self._trusted_proxies = tuple(ipaddress.ip_network(proxy, strict=False) for proxy in config.trusted_proxies)
        self._static_files: dict[str, tuple[bytes, bytes]] = {}
        self._openapi = resources.files("comments.api").joinpath("openapi.json").read_bytes()

    def resource(self) -> Any:
        """Return the twisted.web resource serving every route."""
        return _APIResource(self)

    def respond(self, request: IRequest, work: Coroutine[Any, Any, bytes]) -> object:
        """
        Write the body that ``work`` returns, or its error document, and finish ``request``.

        The same error handlers as Klein's apply. A client that disconnects cancels ``work``.
        """
        result = defer.Deferred.fromCoroutine(work)
        client_left: list[bool] = []

        def disconnected(failure: Failure) -> None:
            client_left.append(True)
            result.cancel()

        request.notifyFinish().addErrback(disconnected)  # type: ignore[attr-defined]  # server.Request has it

        def write(body: bytes) -> None:
            if not client_left:
                request.write(body)
                request.finish()

        def failed(failure: Failure) -> None:
            if client_left:
                if not failure.check(defer.CancelledError):
                    self.log.failure("error after {path} disconnected", failure, path=request.path)
                return
            if failure.check(APIError):
                write(self._client_error(request, failure))
            elif failure.check(DatabaseUnavailable):
                write(self._unavailable(request, failure))
            else:
                write(self._server_error(request, failure))

        result.addCallbacks(write, failed)
        return server.NOT_DONE_YET

    # -- errors -------------------------------------------------------------------------

    @app.handle_errors(APIError)
    def _client_error(self, request: IRequest, failure: Failure) -> bytes:
        error = failure.value
        assert isinstance(error, APIError)
        for name, value in error.headers.items():
            request.setHeader(name.encode("ascii"), value.encode("ascii"))
        return _json(request, error.body(), error.status)

    @app.handle_errors(HTTPException)
    def _routing_error(self, request: IRequest, failure: Failure) -> bytes:
        error = failure.value
        assert isinstance(error, HTTPException)
        status = error.code or 500
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            request.setHeader(b"allow", ", ".join(error.valid_methods).encode("ascii"))
        if isinstance(error, RequestRedirect):
            # A path with a doubled slash: point at the one the route serves, with the same
            # query. The location is relative, since behind a proxy the node does not know
            # the scheme, host and port its readers use.
            location = quote(urlsplit(error.new_url).path, safe="/%")
            query = request.uri.partition(b"?")[2].decode("latin-1")
            if query:
                location = f"{location}?{quote(query, safe='&=%+/?:@,;')}"
            request.setHeader(b"location", location.encode("ascii"))
            return _json(request, {"location": location}, status)
        code = {404: "not_found", 405: "method_not_allowed"}.get(status, "invalid_request")
        message = {404: f"nothing is served at {request.path.decode('latin-1')!r}",
                   405: f"{request.method.decode('latin-1')} is not allowed on this path"}.get(status, str(error))
        return _json(request, {"error": {"code": code, "field": None, "message": message}}, status)

    @app.handle_errors(DatabaseUnavailable)
    def _unavailable(self, request: IRequest, failure: Failure) -> bytes:
        # During an outage every request fails the same way: log the first, then a count
        # every OUTAGE_LOG_SECONDS while they go on.
        now = self.reactor.seconds()
        if now >= self._next_outage_log:
            error = failure.value
            assert error is not None
            self.log.warn("request {method} {path} failed: {error}", method=request.method, path=request.path,
                          error=one_line(error))
            self._next_outage_log = now + OUTAGE_LOG_SECONDS
        else:
            self._unlogged_outages += 1
            if self._outage_count_call is None:
                self._outage_count_call = self.reactor.callLater(self._next_outage_log - now, self._log_outage_count)
        request.setHeader(b"retry-after", b"5")
        return _json(request, {"error": {"code": "unavailable", "field": None,
                                         "message": "the comments database is unavailable; try again shortly"}}, 503)

    @app.handle_errors(Exception)
    def _server_error(self, request: IRequest, failure: Failure) -> bytes:
        self.log.failure("unhandled error in {method} {path}", failure, method=request.method, path=request.path)
        return _json(request, {"error": {"code": "internal_error", "field": None,
                                         "message": "the server failed to handle this request; it has been logged"}},
                     500)

    def _log_outage_count(self) -> None:
        self._outage_count_call = None
        self.log.warn("{count} more requests failed because a database was unavailable, over the last {seconds:.0f}s",
                      count=self._unlogged_outages, seconds=OUTAGE_LOG_SECONDS)
        self._unlogged_outages = 0

    def close(self) -> None:
        """Cancel the API's timers; the node calls this once it no longer serves."""
        if self._outage_count_call is not None and self._outage_count_call.active():
            self._outage_count_call.cancel()
        self._outage_count_call = None

    # -- helpers --------------------------------------------------------------------------

    def client_address(self, request: IRequest) -> str | None:
        """
        Return the reader's IP address: the peer's, or behind a trusted proxy, the forwarded one.

        X-Forwarded-For is read from the right, skipping the addresses of trusted proxies
        (``node.trusted_proxies``); the first other address is the client's. A peer that is
        not a trusted proxy may write anything in that header, so it is ignored then.
        """
        host: str | None = getattr(request.getClientAddress(), "host", None)
        # A link-local peer's zone only names the interface of this host it came in on.
        peer = None if host is None else _plain_address(host.partition("%")[0])
        if peer is None or not self._trusted(peer):
            return None if peer is None else str(peer)
        forwarded = request.requestHeaders.getRawHeaders(b"x-forwarded-for") or []
        hops = [hop.strip() for line in forwarded for hop in line.decode("latin-1").split(",")]
        for hop in reversed(hops):
            address = _plain_address(hop)
            if address is None:
                break  # not an address: the proxy's own is the best there is
            if not self._trusted(address):
                return str(address)
        return str(peer)

    def _trusted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in network for network in self._trusted_proxies)

    async def _forum(self, shortname: str | None, field: str = "forum") -> Forum:
        if not shortname:
            raise invalid(field, f"{field} is missing; name the forum's shortname")
        forum = await self.forums.by_shortname(shortname) if SHORTNAME_PATTERN.match(shortname) else None
        if forum is None:
            raise APIError(404, "unknown_forum", f"forum {shortname!r} does not exist; check the shortname", field)
        return forum

    def _edit_window(self, forum: Forum) -> int:
        value = forum.settings.get("edit_window_seconds", self.config.edit_window_seconds)
        return int(value)

    def _check_same_origin(self, request: IRequest) -> None:
        """
        Reject a write that a browser sent from a page on another origin than this service's.

        The widget writes from its frame, which this service serves, so its requests carry
        this service's origin. A browser adds Origin to every cross-origin POST, even one a
        page sends without CORS, so this stops other sites from making their readers post
        or vote. Clients that are not browsers send no Origin, and the rate limits apply.
        """
        origin = request.getHeader(b"origin")
        if origin is None:
            return
        host = request.getHeader(b"host") or b""
        if urlsplit(origin.decode("latin-1")).netloc.lower() == host.decode("latin-1").lower():
            return
        raise APIError(403, "cross_origin", f"writes from pages on {origin.decode('latin-1')!r} are not accepted; "
                       "post, edit and vote through the comments widget, which sends them from this service")

    def _allow_cors(self, request: IRequest, forum: Forum) -> None:
        origin = request.getHeader(b"origin")
        if origin and forum.allows_origin(origin.decode("latin-1")):
            request.setHeader(b"access-control-allow-origin", origin)
            request.setHeader(b"vary", b"Origin")

    # -- health and documents -----------------------------------------------------------

    @app.route("/health", methods=["GET", "HEAD"])
    async def health(self, request: IRequest) -> bytes:
        """Return 200 when every database responds and the node is not draining, else 503."""
        checks: dict[str, str] = {}
        for pool in self.cluster.pools:
            try:
                await pool.run_query("health", "SELECT 1")
                checks[pool.label] = "ok"
            except Exception as error:  # noqa: BLE001  # any failure means not ready
                checks[pool.label] = f"failed: {error}"
        ready = not self.draining and all(value == "ok" for value in checks.values())
        request.setHeader(b"cache-control", b"no-store")
        status = "ready"
        if self.draining:
            status = "draining"
        elif not ready:
            status = "unavailable"
        return _json(request, {"status": status, "checks": checks}, 200 if ready else 503)

    @app.route("/api/v1/openapi.json", methods=["GET"])
    def openapi(self, request: IRequest) -> bytes:
        """Serve the API's OpenAPI document."""
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        return self._openapi

    # -- widget and demo files ------------------------------------------------------------

    def _static(self, request: IRequest, relative: str, content_type: bytes) -> bytes:
        cached = self._static_files.get(relative)
        if cached is None:
            path = _STATIC.joinpath(relative)
            if ".." in relative.split("/") or not path.is_file():
                raise APIError(404, "not_found", f"no file {relative!r} here")
            plain = path.read_bytes()
            cached = self._static_files[relative] = (plain, gzip.compress(plain, 9, mtime=0))
        request.setHeader(b"content-type", content_type)
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"cache-control", b"public, max-age=300")
        request.setHeader(b"vary", b"Accept-Encoding")
        if b"gzip" in (request.getHeader(b"accept-encoding") or b""):
            request.setHeader(b"content-encoding", b"gzip")
            return cached[1]
        return cached[0]

    @app.route("/embed.js", methods=["GET"])
    def embed_script(self, request: IRequest) -> bytes:
        return self._static(request, "embed.js", b"text/javascript; charset=utf-8")

    @app.route("/count.js", methods=["GET"])
    def count_script(self, request: IRequest) -> bytes:
        return self._static(request, "count.js", b"text/javascript; charset=utf-8")

    @app.route("/widget/<name>", methods=["GET"])
    async def widget_file(self, request: IRequest, name: str) -> bytes:
        if name != "thread.html":
            return self._static(request, name, _content_type(name))
        forum_name = query_value(request, "forum")
        forum = await self.forums.by_shortname(forum_name) if forum_name else None
        ancestors = " ".join(forum.origins) if forum is not None and forum.origins else "'none'"
        if forum is not None and "*" in forum.origins:
            ancestors = "*"
        request.setHeader(
            b"content-security-policy",
            f"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https: http:; "
            f"frame-ancestors {ancestors}".encode(),
        )
        request.setHeader(b"referrer-policy", b"strict-origin-when-cross-origin")
        if forum is None:
            self.log.warn("widget page for unknown forum {forum!r} requested from {referer}; framing is not allowed",
                          forum=forum_name, referer=request.getHeader(b"referer"))
        body = self._static(request, "thread.html", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache")
        return body

    @app.route("/demo/", methods=["GET"])
    def demo_index(self, request: IRequest) -> bytes:
        return self._static(request, "demo/index.html", b"text/html; charset=utf-8")

    @app.route("/demo/<name>", methods=["GET"])
    def demo_file(self, request: IRequest, name: str) -> bytes:
        return self._static(request, f"demo/{name}", _content_type(name))

    @app.route("/", methods=["GET"])
    def home(self, request: IRequest) -> bytes:
        request.redirect(b"/demo/")
        return b""

    # -- forums and threads --------------------------------------------------------------

    @app.route("/api/v1/forums/<shortname>", methods=["GET"])
    async def get_forum(self, request: IRequest, shortname: str) -> bytes:
        forum = await self._forum(shortname, "shortname")
        return _json(request, {"forum": serialize.forum_json(
            forum, edit_window_seconds=self._edit_window(forum), max_message_length=self.config.max_message_length)})

    @app.route("/api/v1/threads", methods=["POST"])
    async def find_or_create_thread(self, request: IRequest) -> bytes:
        self._check_same_origin(request)
        body = read_json_body(request, self.config.max_body_bytes)
        forum = await self._forum(optional_text_field(body, "forum", max_length=64))
        identifier = optional_text_field(body, "identifier", max_length=500, strip=False)
        if identifier is not None:
            identifier = identifier.strip(" \t\r\n")
            identifier = identifier or None
        url = text_field(body, "url", max_length=2048)
        try:
            url_key = normalise_url(url)
        except InvalidURL as error:
            raise invalid("url", str(error)) from None
        title = optional_text_field(body, "title", max_length=500) or ""

        thread, created = await self.threads.find_or_create(
            forum, identifier=identifier, url=url, url_key=url_key, title=title
        )
        return _json(request, {"thread": serialize.thread_json(thread, forum.shortname)}, 201 if created else 200)

    @app.route("/api/v1/threads/<thread_id>", methods=["GET"])
    async def get_thread(self, request: IRequest, thread_id: str) -> bytes:
        thread = await self._thread(thread_id)
        forum = await self._thread_forum(thread.forum_id)
        return _json(request, {"thread": serialize.thread_json(thread, forum.shortname)})

    async def _thread(self, thread_id: str) -> Any:
        parsed = path_id(thread_id, "thread")
        try:
            thread = await self.threads.get(parsed)
        except UnknownShard:
            thread = None
        if thread is None:
            raise APIError(404, "not_found", f"thread {thread_id!r} does not exist")
        return thread

    async def _thread_forum(self, forum_id: int) -> Forum:
        forum = await self.forums.by_id(forum_id)
        if forum is None:
            raise APIError(404, "not_found", f"the forum of this thread (id {forum_id}) no longer exists")
        return forum

    # -- posts --------------------------------------------------------------------------

    @app.route("/api/v1/threads/<thread_id>/posts", methods=["GET"])
    async def list_posts(self, request: IRequest, thread_id: str) -> bytes:
        sort = query_value(request, "sort", "best")
        if sort not in SORTS:
            raise invalid("sort", f"sort {sort!r} is unknown; use one of {', '.join(SORTS)}")
        limit_text = query_value(request, "limit", "50") or "50"
        if not _LIMIT_PATTERN.match(limit_text) or not 1 <= int(limit_text) <= MAX_PAGE_SIZE:
            raise invalid("limit", f"limit {limit_text!r} is invalid; use a whole number from 1 to {MAX_PAGE_SIZE}")
        cursor = query_value(request, "cursor")

        if_none_match = request.getHeader(b"if-none-match")
        if if_none_match is not None:
            # A revalidation reads only the thread row: a 304 needs nothing else. The cursor
            # is checked here because page() below, which checks it otherwise, may not run.
            if cursor is not None:
                try:
                    check_cursor(_as_sort(sort), cursor)
                except InvalidCursor as error:
                    raise invalid("cursor", str(error)) from None
            thread = await self._thread(thread_id)
            etag = _listing_etag(thread.id, thread.version, sort, limit_text, cursor)
            if _etag_matches(if_none_match, etag):
                request.setHeader(b"cache-control", _LISTING_CACHE_CONTROL)
                request.setHeader(b"etag", etag)
                request.setResponseCode(304)
                return b""

        parsed = path_id(thread_id, "thread")
        try:
            thread, page = await self.posts.page(parsed, sort=_as_sort(sort), limit=int(limit_text), cursor=cursor)
        except InvalidCursor as error:
            raise invalid("cursor", str(error)) from None
        except (PostNotFound, UnknownShard):
            raise APIError(404, "not_found", f"thread {thread_id!r} does not exist") from None
        forum = await self._thread_forum(thread.forum_id)
        request.setHeader(b"cache-control", _LISTING_CACHE_CONTROL)
        request.setHeader(b"etag", _listing_etag(thread.id, thread.version, sort, limit_text, cursor))
        return _json(request, {
            "thread": serialize.thread_json(thread, forum.shortname),
            "posts": page.posts,
            "cursor": {"next": page.next_cursor, "has_more": page.next_cursor is not None},
        })

    @app.route("/api/v1/threads/<thread_id>/posts", methods=["POST"])
    async def create_post(self, request: IRequest, thread_id: str) -> bytes:
        self._check_same_origin(request)
        body = read_json_body(request, self.config.max_body_bytes)
        thread = await self._thread(thread_id)
        forum = await self._thread_forum(thread.forum_id)
        author_name = text_field(body, "author_name", max_length=self.config.max_name_length)
        author_email = email_field(body, "author_email")
        message = text_field(body, "message", max_length=self.config.max_message_length)
        parent_id = id_field(body, "parent")

        client = self.client_address(request)
        _limit(self.post_limiter, client, "comments")

        html = render_markdown(message)
        state = "pending" if forum.settings.get("premoderation") else "approved"
        token = secrets.token_urlsafe(24)
        new = NewPost(thread_id=thread.id, parent_id=parent_id, raw=message, html=html, author_name=author_name,
                      author_email=author_email, ip=client, state=state)
        try:
            post = await self.posts.create(new, token)
        except (InvalidParent, ThreadClosed) as error:
            # Rejected input costs the reader nothing, like the field checks above.
            if self.post_limiter is not None:
                self.post_limiter.refund(client)
            if isinstance(error, InvalidParent):
                raise invalid("parent", str(error)) from None
            raise APIError(409, "thread_closed", str(error)) from None

        window = self._edit_window(forum)
        edit_until = datetime.now(UTC) + timedelta(seconds=window)
        return _json(request, {"post": serialize.post_json(post), "edit_token": token,
                               "edit_until": serialize.timestamp(edit_until)}, 201)

    async def _edit(self, request: IRequest, post_id: str, *, delete: bool) -> bytes:
        self._check_same_origin(request)
        parsed = path_id(post_id, "post")
        token_header = request.getHeader(b"x-edit-token")
        if not token_header:
            raise APIError(401, "missing_token", "the X-Edit-Token header is missing; send the token you got "
                           "when you created the post")
        token = token_header.decode("latin-1")
        raw = html = None
        if not delete:
            body = read_json_body(request, self.config.max_body_bytes)
            raw = text_field(body, "message", max_length=self.config.max_message_length)
            html = render_markdown(raw)
        try:
            existing = await self.posts.get(parsed)
            thread = await self._thread(str(existing.thread_id))
            forum = await self._thread_forum(thread.forum_id)
            post = await self.posts.edit(parsed, edit_token=token, window=timedelta(seconds=self._edit_window(forum)),
                                         raw=raw, html=html, delete=delete)
        except (PostNotFound, UnknownShard):
            raise APIError(404, "not_found", f"post {post_id!r} does not exist") from None
        except EditRejected as error:
            raise APIError(403, "forbidden", str(error)) from None
        return _json(request, {"post": serialize.post_json(post)})

    @app.route("/api/v1/posts/<post_id>", methods=["PATCH"])
    async def edit_post(self, request: IRequest, post_id: str) -> bytes:
        return await self._edit(request, post_id, delete=False)

    @app.route("/api/v1/posts/<post_id>", methods=["DELETE"])
    async def delete_post(self, request: IRequest, post_id: str) -> bytes:
        return await self._edit(request, post_id, delete=True)

    @app.route("/api/v1/posts/<post_id>/vote", methods=["POST"])
    async def vote(self, request: IRequest, post_id: str) -> bytes:
        self._check_same_origin(request)
        parsed = path_id(post_id, "post")
        body = read_json_body(request, self.config.max_body_bytes)
        voter = text_field(body, "voter", max_length=128)
        if len(voter) < 8:
            raise invalid("voter", "voter must be at least 8 characters; send the random voter id the widget keeps")
        value = body.get("value")
        if type(value) is not int or value not in (-1, 0, 1):
            raise invalid("value", f"value {json_text(value)} is invalid; use 1 (up), -1 (down) or 0 (withdraw)")
        _limit(self.vote_limiter, self.client_address(request), "votes")
        try:
            post, vote = await self.posts.vote(parsed, voter=voter, value=value)
        except (PostNotFound, UnknownShard):
            raise APIError(404, "not_found", f"post {post_id!r} does not exist or takes no votes") from None
        return _json(request, {"post": {"id": str(post.id), "likes": post.likes, "dislikes": post.dislikes,
                                        "score": post.score}, "vote": vote})

    # -- counts ---------------------------------------------------------------------------

    @app.route("/api/v1/counts", methods=["GET"])
    async def counts(self, request: IRequest) -> bytes:
        forum = await self._forum(query_value(request, "forum"))
        identifiers = query_values(request, "identifier", max_count=MAX_COUNT_KEYS, max_length=500)
        urls = query_values(request, "url", max_count=MAX_COUNT_KEYS)
        keys: dict[str, str] = {}
        for url in urls:
            try:
                keys[url] = normalise_url(url)
            except InvalidURL as error:
                raise invalid("url", str(error)) from None

        by_identifier, by_url = await self.threads.counts(
            forum, identifiers=[i.strip() for i in identifiers], url_keys=sorted(set(keys.values()))
        )
        self._allow_cors(request, forum)
        request.setHeader(b"cache-control", b"public, max-age=30")
        return _json(request, {
            "identifiers": {i: by_identifier.get(i.strip(), 0) for i in identifiers},
            "urls": {url: by_url.get(key, 0) for url, key in keys.items()},
        })


class _APIResource(Resource):
    """
    Every route of the node: the thread listing directly, everything else through Klein.

    Klein's URL parts, werkzeug's route matching and its wrappers cost about a fifth of
    a listing's CPU time on the node (docs/benchmarks.md), and the listing is most of the
    traffic, so its path is matched here first.
    """

    isLeaf = True

    def __init__(self, api: CommentsAPI) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # twisted.web.resource is untyped
        self._api = api
        self._routes = api.app.resource()

    def render(self, request: IRequest) -> Any:
        if request.method == b"GET":
            match = _LISTING_PATH.match(request.path)
            if match is not None:
                return self._api.respond(request, self._api.list_posts(request, match.group(1).decode("ascii")))
        return self._routes.render(request)


def _content_type(name: str) -> bytes:
    kinds = {".js": b"text/javascript; charset=utf-8", ".css": b"text/css; charset=utf-8",
             ".html": b"text/html; charset=utf-8", ".svg": b"image/svg+xml", ".png": b"image/png"}
    for suffix, kind in kinds.items():
        if name.endswith(suffix):
            return kind
    return b"application/octet-stream"


def _etag_matches(header: bytes, etag: bytes) -> bool:
    """Return whether an If-None-Match value names ``etag``: ``*``, or a list of tags, weak ones compared weakly."""
    for candidate in header.split(b","):
        candidate = candidate.strip()
        if candidate == b"*" or candidate.removeprefix(b"W/") == etag:
            return True
    return False


def _listing_etag(thread_id: int, version: int, sort: str, limit: str, cursor: str | None) -> bytes:
    return f'"{thread_id}.{version}.{sort}.{limit}.{cursor or ""}"'.encode()


def _limit(limiter: RateLimiter | None, client: str | None, actions: str) -> None:
    """Spend one of ``client``'s tokens in ``limiter``; raise a 429 APIError when none is left."""
    retry_after = limiter.take(client) if limiter is not None else None
    if retry_after is not None:
        raise APIError(429, "rate_limited", f"too many {actions} from this address; wait {retry_after} seconds "
                       "and try again", headers={"Retry-After": str(retry_after)})


def _plain_address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """
    Parse an IP address as PostgreSQL's inet type stores it, or return None.

    An IPv4 address written as IPv6 (``::ffff:192.0.2.1``) becomes plain IPv4, so a
    client has one posting limit whichever way a proxy writes it. An IPv6 address with a
    zone (``fe80::1%eth0``) names no host outside its link, and inet rejects it.
    """
    if text is None:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            return None
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
    return address


def _as_sort(value: str | None) -> Sort:
    assert value in SORTS
    return value
