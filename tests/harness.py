"""Trial test cases wired to the real test cluster."""

from __future__ import annotations

import json
from typing import Any

import treq
from twisted.internet import defer, endpoints, reactor
from twisted.trial import unittest
from twisted.web.client import HTTPConnectionPool

from comments.api.app import CommentsAPI
from comments.api.site import build_site
from comments.config import Config
from comments.db.cluster import Cluster
from tests.contract import check_response
from tests.support import make_forum, reset_data, test_database

__all__ = ["APITestCase", "ClusterTestCase"]


class ClusterTestCase(unittest.TestCase):
    """A test case with an empty, started cluster in ``self.cluster`` and a forum ``self.forum``."""

    timeout = 60

    async def _setUp(self) -> None:
        self.database = test_database()
        reset_data(self.database)
        self.forum_record = make_forum(self.database, "site")
        self.cluster = Cluster(self.database, reactor)
        await self.cluster.start()
        self.addCleanup(self.cluster.close)

    def setUp(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._setUp())


class APITestCase(ClusterTestCase):
    """A cluster test case with the API served on a real port of 127.0.0.1 at ``self.base_url``."""

    config = Config(posts_per_minute=0, votes_per_minute=0)
    check_contract = True

    async def _setUp(self) -> None:
        await super()._setUp()
        self.api = CommentsAPI(config=self.config, cluster=self.cluster, reactor=reactor)
        self.addCleanup(lambda: self.api.close())  # the current API: some tests replace it
        site = build_site(self.api)
        self.site = site
        port = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
        self.addCleanup(port.stopListening)
        self.base_url = f"http://127.0.0.1:{port.getHost().port}"
        self.http_pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.http_pool.closeCachedConnections)

    async def request(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                      headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
        """Send one request; return the status, the decoded JSON body (or None) and the headers."""
        data = raw
        if data is None and body is not None:
            data = json.dumps(body).encode()
        response = await treq.request(method, f"{self.base_url}{path}", data=data, headers=headers or {},
                                      pool=self.http_pool)
        content = await response.content()
        try:
            document = json.loads(content) if content else None
        except ValueError:
            document = content
        if self.check_contract:
            problems = check_response(method, path, response.code, document)
            self.assertEqual(problems, [], "the response breaks the OpenAPI document")
        return response.code, document, response.headers

    async def thread(self, identifier: str = "page-1", forum: str = "site") -> dict[str, Any]:
        """Find or create a thread and return its JSON."""
        status, body, _ = await self.request("POST", "/api/v1/threads", {
            "forum": forum, "identifier": identifier, "url": f"https://example.org/{identifier}", "title": "A page"})
        assert status in (200, 201), body
        return body["thread"]  # type: ignore[no-any-return]

    async def post(self, thread_id: str, message: str = "hello", parent: str | None = None,
                   name: str = "Reader") -> dict[str, Any]:
        """Create a post and return the whole 201 body."""
        payload: dict[str, Any] = {"author_name": name, "message": message}
        if parent is not None:
            payload["parent"] = parent
        status, body, _ = await self.request("POST", f"/api/v1/threads/{thread_id}/posts", payload)
        assert status == 201, body
        return body  # type: ignore[no-any-return]
