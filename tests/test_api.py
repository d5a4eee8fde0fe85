"""The HTTP API against the real two-database test cluster."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import treq
from twisted.internet import defer, endpoints, reactor, task
from twisted.internet.protocol import Protocol
from twisted.logger import formatEvent, globalLogPublisher
from twisted.web import http
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

from comments.api.app import CommentsAPI
from comments.api.ratelimit import RateLimiter
from comments.config import Config
from tests.harness import APITestCase


class ThreadTests(APITestCase):
    async def test_create_then_find_by_identifier(self) -> None:
        """The first request creates the thread (201); the next finds the same one (200)."""
        payload = {"forum": "site", "identifier": "post-1", "url": "https://example.org/a", "title": "First"}
        status, first, _ = await self.request("POST", "/api/v1/threads", payload)
        self.assertEqual(status, 201)
        payload["title"] = "Changed"
        status, second, _ = await self.request("POST", "/api/v1/threads", payload)
        self.assertEqual(status, 200)
        self.assertEqual(first["thread"]["id"], second["thread"]["id"])
        self.assertEqual(second["thread"]["title"], "First", "the title is taken on creation only")

    async def test_find_by_normalised_url(self) -> None:
        """Without an identifier, url variants a reader would call the same page share one thread."""
        variants = ["https://Example.org/post/", "https://example.org:443/post#comments", "HTTPS://example.org/post"]
        ids = set()
        for url in variants:
            status, body, _ = await self.request("POST", "/api/v1/threads", {"forum": "site", "url": url})
            self.assertIn(status, (200, 201))
            ids.add(body["thread"]["id"])
        self.assertEqual(len(ids), 1)

    async def test_identifier_and_url_threads_differ(self) -> None:
        """A thread named by identifier is not the url-only thread of the same page."""
        url = "https://example.org/p"
        _, by_url, _ = await self.request("POST", "/api/v1/threads", {"forum": "site", "url": url})
        _, by_identifier, _ = await self.request("POST", "/api/v1/threads",
                                                 {"forum": "site", "url": url, "identifier": "p"})
        self.assertNotEqual(by_url["thread"]["id"], by_identifier["thread"]["id"])

    async def test_concurrent_creation_makes_one_thread(self) -> None:
        """Twenty simultaneous first loads of a page create exactly one thread."""
        payload = {"forum": "site", "identifier": "hot", "url": "https://example.org/hot"}
        results = await defer.gatherResults([
            defer.Deferred.fromCoroutine(self.request("POST", "/api/v1/threads", payload)) for _ in range(20)
        ])
        self.assertEqual({body["thread"]["id"] for _, body, _ in results}.__len__(), 1)
        self.assertEqual(sorted(status for status, _, _ in results).count(201), 1)

    async def test_unknown_forum(self) -> None:
        """An unknown forum is a 404 naming the shortname."""
        status, body, _ = await self.request("POST", "/api/v1/threads", {"forum": "nope", "url": "https://x.org"})
        self.assertEqual(status, 404)
        self.assertEqual(body["error"]["code"], "unknown_forum")
        self.assertIn("'nope'", body["error"]["message"])

    async def test_thread_ids_are_strings(self) -> None:
        """Ids travel as decimal strings, since they exceed JavaScript's 2**53."""
        thread = await self.thread()
        self.assertIsInstance(thread["id"], str)
        self.assertGreater(int(thread["id"]), 2**53)

    async def test_unknown_thread_and_malformed_id(self) -> None:
        """A missing thread, a malformed id and an id on no shard are all 404."""
        for thread_id in ("1", "abc", "99999999999999999999", str((1 << 62) | (8000 << 10))):
            status, body, _ = await self.request("GET", f"/api/v1/threads/{thread_id}/posts")
            self.assertEqual(status, 404, thread_id)
            self.assertEqual(body["error"]["code"], "not_found")


@implementer(IBodyProducer)
class _ChunkedBody:
    """A request body of unknown length, so the client sends it with chunked transfer encoding."""

    length = UNKNOWN_LENGTH

    def __init__(self, data: bytes, chunk: int) -> None:
        self._data = data
        self._chunk = chunk
        self.sent = False

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:
        for start in range(0, len(self._data), self._chunk):
            consumer.write(self._data[start:start + self._chunk])
        self.sent = True
        return defer.succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class ValidationTests(APITestCase):
    async def _post(self, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        thread = await self.thread()
        status, document, _ = await self.request("POST", f"/api/v1/threads/{thread['id']}/posts", body, raw=raw)
        return status, document

    async def assertRejected(self, body: Any, field: str | None, code: str = "invalid_field",
                             raw: bytes | None = None, status: int = 400) -> dict[str, Any]:
        got_status, document = await self._post(body, raw)
        self.assertEqual(got_status, status, document)
        self.assertEqual(document["error"]["code"], code)
        self.assertEqual(document["error"]["field"], field)
        self.assertTrue(document["error"]["message"])
        return document  # type: ignore[no-any-return]

    async def test_invalid_json(self) -> None:
        """A body that is not JSON names the position of the problem."""
        document = await self.assertRejected(None, None, "invalid_json", raw=b'{"author_name": ')
        self.assertIn("line 1", document["error"]["message"])

    async def test_json_not_an_object(self) -> None:
        """A JSON array is rejected."""
        await self.assertRejected(None, None, "invalid_json", raw=b"[1, 2]")

    async def test_invalid_utf8(self) -> None:
        """Bytes that are not UTF-8 are rejected before parsing."""
        await self.assertRejected(None, None, "invalid_encoding", raw=b'{"message": "\xff\xfe"}')

    async def test_nul_character(self) -> None:
        """A NUL character, which PostgreSQL cannot store in text, is rejected by field."""
        await self.assertRejected({"author_name": "A", "message": "x\u0000y"}, "message")
        await self.assertRejected({"author_name": "A\u0000", "message": "x"}, "author_name")

    async def test_unpaired_surrogate(self) -> None:
        """An escaped lone surrogate decodes to text that is not valid UTF-8; it is rejected."""
        await self.assertRejected(None, "message", raw=b'{"author_name": "A", "message": "x\\ud800"}')

    async def test_missing_and_empty_fields(self) -> None:
        """Name and message are required and must not be blank."""
        await self.assertRejected({"message": "hello"}, "author_name")
        await self.assertRejected({"author_name": "A"}, "message")
        await self.assertRejected({"author_name": "A", "message": "   "}, "message")

    async def test_wrong_types(self) -> None:
        """Each field names the type it got."""
        document = await self.assertRejected({"author_name": 5, "message": "x"}, "author_name")
        self.assertIn("a number", document["error"]["message"])
        await self.assertRejected({"author_name": "A", "message": ["x"]}, "message")
        await self.assertRejected({"author_name": "A", "message": "x", "parent": True}, "parent")

    async def test_too_long_message(self) -> None:
        """A message over the limit names its length and the limit."""
        document = await self.assertRejected({"author_name": "A", "message": "x" * 10_001}, "message")
        self.assertIn("10000", document["error"]["message"])

    async def test_body_over_size_limit(self) -> None:
        """A body over max_body_bytes is a 413."""
        await self.assertRejected({"author_name": "A", "message": "x" * 70_000}, None, "body_too_large",
                                  status=413)

    async def test_chunked_body_limit(self) -> None:
        """A chunked body under the limit is read whole; one over it is a 413 and nothing is stored."""
        thread = await self.thread()
        path = f"/api/v1/threads/{thread['id']}/posts"

        async def send_chunked(document: dict[str, Any]) -> tuple[int, Any]:
            producer = _ChunkedBody(json.dumps(document).encode(), chunk=8192)
            response = await treq.request("POST", f"{self.base_url}{path}", data=producer,
                                          headers={"content-type": "application/json"}, pool=self.http_pool)
            self.assertTrue(producer.sent, "the body was not sent")
            return response.code, json.loads(await response.content())

        stored: list[int] = []
        keep = http.Request.handleContentChunk

        def counting_keep(request: http.Request, data: bytes) -> None:
            stored.append(len(data))
            keep(request, data)

        self.patch(http.Request, "handleContentChunk", counting_keep)
        status, body = await send_chunked({"author_name": "A", "message": "chunked " * 1000})
        self.assertEqual(status, 201, body)
        self.assertEqual(body["post"]["raw"], ("chunked " * 1000).strip())
        status, body = await send_chunked({"author_name": "A", "message": "x" * 2_000_000})
        self.assertEqual((status, body["error"]["code"]), (413, "body_too_large"))
        self.assertLessEqual(sum(stored), 2 * self.config.max_body_bytes, "the oversized body was buffered")
        _, listing, _ = await self.request("GET", path)
        self.assertEqual(listing["thread"]["posts"], 1)

    async def test_invalid_email(self) -> None:
        """An e-mail address without a domain is rejected."""
        await self.assertRejected({"author_name": "A", "message": "x", "author_email": "nobody"}, "author_email")

    async def test_parent_in_other_thread(self) -> None:
        """A reply's parent must be in the same thread; nothing is written otherwise."""
        other = await self.thread("other-page")
        parent = await self.post(other["id"])
        thread = await self.thread()
        status, document, _ = await self.request(
            "POST", f"/api/v1/threads/{thread['id']}/posts",
            {"author_name": "A", "message": "reply", "parent": parent["post"]["id"]})
        self.assertEqual(status, 400)
        self.assertEqual(document["error"]["field"], "parent")
        _, listing, _ = await self.request("GET", f"/api/v1/threads/{thread['id']}/posts")
        self.assertEqual(listing["posts"], [])
        self.assertEqual(listing["thread"]["posts"], 0)

    async def test_parent_malformed_or_missing(self) -> None:
        """A malformed parent id and an unknown one are both rejected on the parent field."""
        await self.assertRejected({"author_name": "A", "message": "x", "parent": "12x"}, "parent")
        thread = await self.thread()
        fake_parent = str(int(thread["id"]) + 1)
        await self.assertRejected({"author_name": "A", "message": "x", "parent": fake_parent}, "parent")

    async def test_bad_query_parameters(self) -> None:
        """Unknown sort, out-of-range limit and a forged cursor are 400s naming the parameter."""
        thread = await self.thread()
        for query, field in (("sort=random", "sort"), ("limit=0", "limit"), ("limit=1000", "limit"),
                             ("limit=-1", "limit"), ("cursor=bm9wZQ", "cursor"), ("cursor=%FF", "cursor")):
            status, document, _ = await self.request("GET", f"/api/v1/threads/{thread['id']}/posts?{query}")
            self.assertEqual(status, 400, query)
            self.assertEqual(document["error"]["field"], field, query)

    async def test_forged_cursors_are_400(self) -> None:
        """Cursors with out-of-range numbers, odd JSON or odd characters are 400s, never 500s, with or without ETags."""
        thread = await self.thread()
        await self.post(thread["id"])

        def encoded(key: object) -> str:
            return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")

        forged = [encoded(["newest", "2026-12-04T23:24:15Z", "9" * 23]),
                  encoded(["newest", "2026-12-04T23:24:15Z", str(2**63)]),
                  encoded(["newest", "2026-12-04T23:24:15Z", str(-(2**63))]),
                  encoded(["best", "2026-12-04T23:24:15Z", "1", 2**31]),
                  encoded(["newest", "2026-12-04T23:24:15", "1"]),
                  base64.urlsafe_b64encode(b'["best", "2026-12-04T23:24:15Z", "1", Infinity]').decode().rstrip("="),
                  base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode().rstrip("="),
                  "a%22b%C3%A9", "abc.def",
                  encoded(["newest", "0001-01-01T00:00:00+23:59", "5"]),
                  encoded(["newest", "9999-12-31T23:59:59-23:59", "5"]),
                  encoded(["newest", "2026-01-01T00:00:00Z", 5]),
                  encoded(["newest", "2026-01-01T00:00:00Z", "1.9"]),
                  encoded(["newest", "2026-01-01T00:00:00Z", " 12 "]),
                  encoded(["newest", "2026-01-01T00:00:00Z", "1_000"]),
                  encoded(["newest", "2026-01-01T00:00:00Z", "\u0661\u0662"]),
                  encoded(["newest", "2026-01-01T00:00:00Z", "12", "extra"]),
                  encoded(["newest", "2026-01-01T00:00:00Z", True])]
        sort = {0: "newest", 1: "newest", 2: "newest", 3: "best", 4: "newest", 5: "best"}
        for index, cursor in enumerate(forged):
            path = f"/api/v1/threads/{thread['id']}/posts?sort={sort.get(index, 'newest')}&cursor={cursor}"
            for headers in ({}, {"If-None-Match": "*"}):
                status, document, response_headers = await self.request("GET", path, headers=headers)
                self.assertEqual(status, 400, (cursor, headers, document))
                self.assertEqual(document["error"]["field"], "cursor", cursor)
                self.assertIsNone(response_headers.getRawHeaders("cache-control"), "an error must not be cached")
                self.assertIsNone(response_headers.getRawHeaders("etag"))
        self.assertEqual(self.flushLoggedErrors(), [])
        for score in (3.7, True, "3"):
            cursor = encoded(["best", "2026-01-01T00:00:00Z", "5", score])
            path = f"/api/v1/threads/{thread['id']}/posts?sort=best&cursor={cursor}"
            status, document, _ = await self.request("GET", path)
            self.assertEqual((status, document["error"]["field"]), (400, "cursor"), score)
        for offset in ("+05:30", "+16:00", "+05:30:15.5"):  # PostgreSQL takes only the first, so UTC is sent
            cursor = encoded(["newest", f"2026-01-01T05:30:00{offset}", "5"])
            path = f"/api/v1/threads/{thread['id']}/posts?sort=newest&cursor={cursor}"
            status, _, _ = await self.request("GET", path)
            self.assertEqual(status, 200, offset)

    async def test_hostile_bodies_never_500(self) -> None:
        """A table of hostile bodies each get a 4xx, never a 500."""
        thread = await self.thread()
        bodies = [b"", b"null", b"\x00", b'{"author_name": {"$gt": ""}, "message": "x"}', b"{" * 5000,
                  b'{"author_name": "A", "message": "x", "parent": -1}', b'{"author_name": 1e999, "message": 1}',
                  "{\"author_name\": \"\u202e\", \"message\": \"\U0001F600\"}".encode()]
        for raw in bodies:
            status, document, _ = await self.request("POST", f"/api/v1/threads/{thread['id']}/posts", raw=raw)
            self.assertLess(status, 500, raw[:40])
            if status >= 400:
                self.assertIn("error", document)


class PostTests(APITestCase):
    async def test_markdown_rendered_and_sanitized(self) -> None:
        """Markdown becomes HTML; script is inert; links get rel=nofollow ugc noopener."""
        thread = await self.thread()
        body = await self.post(thread["id"], "**bold** <script>alert(1)</script> [x](https://a.org) "
                                             "[bad](javascript:alert(1))")
        html = body["post"]["message"]
        self.assertIn("<strong>bold</strong>", html)
        self.assertNotIn("<script", html)
        self.assertIn('rel="nofollow ugc noopener"', html)
        self.assertNotIn('href="javascript', html)
        self.assertEqual(body["post"]["raw"].split()[0], "**bold**")

    async def test_email_never_shown(self) -> None:
        """A guest's e-mail address is stored but never appears in a listing."""
        thread = await self.thread()
        status, _, _ = await self.request("POST", f"/api/v1/threads/{thread['id']}/posts",
                                          {"author_name": "A", "author_email": "a@example.org", "message": "hi"})
        self.assertEqual(status, 201)
        _, listing, _ = await self.request("GET", f"/api/v1/threads/{thread['id']}/posts")
        self.assertNotIn("a@example.org", json.dumps(listing))

    async def test_edit_and_delete_with_token(self) -> None:
        """The edit token edits and deletes; a wrong or missing token is refused."""
        thread = await self.thread()
        created = await self.post(thread["id"], "first")
        post_id, token = created["post"]["id"], created["edit_token"]

        status, _, _ = await self.request("PATCH", f"/api/v1/posts/{post_id}", {"message": "x"},
                                          headers={"X-Edit-Token": "wrong"})
        self.assertEqual(status, 403)
        status, _, _ = await self.request("PATCH", f"/api/v1/posts/{post_id}", {"message": "x"})
        self.assertEqual(status, 401)

        status, edited, _ = await self.request("PATCH", f"/api/v1/posts/{post_id}", {"message": "*second*"},
                                               headers={"X-Edit-Token": token})
        self.assertEqual(status, 200)
        self.assertIn("<em>second</em>", edited["post"]["message"])
        self.assertIsNotNone(edited["post"]["edited_at"])

        status, deleted, _ = await self.request("DELETE", f"/api/v1/posts/{post_id}",
                                                headers={"X-Edit-Token": token})
        self.assertEqual(status, 200)
        self.assertEqual(deleted["post"]["state"], "deleted")
        _, listing, _ = await self.request("GET", f"/api/v1/threads/{thread['id']}/posts")
        self.assertEqual(listing["posts"], [])
        self.assertEqual(listing["thread"]["posts"], 0)

    async def test_deleted_parent_keeps_replies(self) -> None:
        """Deleting a post with replies leaves a blank placeholder holding the replies."""
        thread = await self.thread()
        parent = await self.post(thread["id"], "parent text", name="Parent Author")
        await self.post(thread["id"], "reply", parent=parent["post"]["id"])
        await self.request("DELETE", f"/api/v1/posts/{parent['post']['id']}",
                           headers={"X-Edit-Token": parent["edit_token"]})
        _, listing, _ = await self.request("GET", f"/api/v1/threads/{thread['id']}/posts")
        self.assertEqual(len(listing["posts"]), 1)
        placeholder = listing["posts"][0]
        self.assertEqual(placeholder["state"], "deleted")
        self.assertEqual(placeholder["message"], "")
        self.assertEqual(placeholder["author"]["name"], "")
        self.assertEqual(placeholder["replies"][0]["raw"], "reply")

    async def test_edit_window_over(self) -> None:
        """After the window, the token no longer edits."""
        self.api.config = Config(posts_per_minute=0, edit_window_seconds=0)
        thread = await self.thread()
        created = await self.post(thread["id"])
        status, document, _ = await self.request("PATCH", f"/api/v1/posts/{created['post']['id']}",
                                                 {"message": "late"},
                                                 headers={"X-Edit-Token": created["edit_token"]})
        self.assertEqual(status, 403)
        self.assertIn("edit window", document["error"]["message"])

    async def test_rate_limit(self) -> None:
        """Past the per-minute limit a client gets 429 with Retry-After."""
        self.api.config = Config(posts_per_minute=2)
        self.api.post_limiter = RateLimiter(reactor, capacity=2, per_seconds=60)
        thread = await self.thread()
        await self.post(thread["id"])
        await self.post(thread["id"])
        status, document, headers = await self.request("POST", f"/api/v1/threads/{thread['id']}/posts",
                                                       {"author_name": "A", "message": "third"})
        self.assertEqual(status, 429)
        self.assertEqual(document["error"]["code"], "rate_limited")
        self.assertTrue(headers.getRawHeaders("retry-after"))
        response = await treq.request("POST", f"{self.base_url}/api/v1/threads/{thread['id']}/posts",
                                      data=b'{"author_name": "A", "message": "fourth"}', pool=self.http_pool)
        self.assertEqual((response.code, response.phrase), (429, b"Too Many Requests"))
        await response.content()

    async def _stored_ip(self, post_id: str) -> str | None:
        shard = self.cluster.shard_for_id(int(post_id))
        rows = await shard.pool.run_query("ip", f"SELECT host(ip) FROM {shard.schema}.posts WHERE id = %s",
                                          (int(post_id),))
        return rows[0][0]  # type: ignore[no-any-return]

    async def _post_from(self, thread_id: str, forwarded: str | None) -> tuple[int, Any]:
        headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
        status, body, _ = await self.request("POST", f"/api/v1/threads/{thread_id}/posts",
                                             {"author_name": "A", "message": "hi"}, headers=headers)
        return status, body

    async def test_forwarded_address_only_from_trusted_proxy(self) -> None:
        """X-Forwarded-For names the client only when the peer is a trusted proxy."""
        thread = await self.thread()
        _, body = await self._post_from(thread["id"], "203.0.113.7")
        self.assertEqual(await self._stored_ip(body["post"]["id"]), "127.0.0.1", "an untrusted peer's header counted")

        self.api = CommentsAPI(config=Config(posts_per_minute=0, trusted_proxies=("127.0.0.0/8", "10.0.0.0/8")),
                               cluster=self.cluster, reactor=reactor)
        self.site.resource = self.api.resource()
        self.site.api = self.api
        cases = [("203.0.113.7", "203.0.113.7"),
                 ("198.51.100.1, 10.1.2.3", "198.51.100.1"),       # a second trusted proxy in the chain
                 ("192.0.2.66, 198.51.100.1", "198.51.100.1"),     # the client's own forged entry is skipped
                 ("2001:db8::1", "2001:db8::1"),
                 ("::ffff:198.51.100.9", "198.51.100.9"),          # IPv4 written as IPv6 is IPv4
                 ("fe80::1%eth0", "127.0.0.1"),                   # a zone: inet rejects it
                 ("198.51.100.1, fe80::1%zz", "127.0.0.1"),
                 ("not-an-address", "127.0.0.1"),
                 (None, "127.0.0.1")]
        for forwarded, expected in cases:
            status, body = await self._post_from(thread["id"], forwarded)
            self.assertEqual(status, 201, body)
            self.assertEqual(await self._stored_ip(body["post"]["id"]), expected, forwarded)

    async def test_rate_limit_per_forwarded_client(self) -> None:
        """Behind a trusted proxy, each forwarded client has its own posting limit."""
        self.api = CommentsAPI(config=Config(posts_per_minute=1, trusted_proxies=("127.0.0.1",)),
                               cluster=self.cluster, reactor=reactor)
        self.site.resource = self.api.resource()
        self.site.api = self.api
        thread = await self.thread()
        self.assertEqual((await self._post_from(thread["id"], "198.51.100.1"))[0], 201)
        self.assertEqual((await self._post_from(thread["id"], "198.51.100.1"))[0], 429)
        self.assertEqual((await self._post_from(thread["id"], "198.51.100.2"))[0], 201)

    async def test_rejected_post_costs_no_token(self) -> None:
        """A post rejected for its parent does not count against the client's posting limit."""
        self.api.post_limiter = RateLimiter(reactor, capacity=1, per_seconds=60)
        thread = await self.thread()
        for _ in range(3):
            status, body, _ = await self.request("POST", f"/api/v1/threads/{thread['id']}/posts",
                                                 {"author_name": "A", "message": "hi", "parent": "1"})
            self.assertEqual((status, body["error"]["field"]), (400, "parent"))
        self.assertEqual((await self._post_from(thread["id"], None))[0], 201)
        self.assertEqual((await self._post_from(thread["id"], None))[0], 429)

    async def test_premoderated_forum_holds_posts(self) -> None:
        """On a forum with premoderation, a new post is pending and not listed."""
        from tests.support import make_forum

        make_forum(self.database, "strict", settings={"premoderation": True})
        thread = await self.thread(forum="strict")
        created = await self.post(thread["id"])
        self.assertEqual(created["post"]["state"], "pending")
        _, listing, _ = await self.request("GET", f"/api/v1/threads/{thread['id']}/posts")
        self.assertEqual(listing["posts"], [])
        self.assertEqual(listing["thread"]["posts"], 0)


class ListingTests(APITestCase):
    async def _build_thread(self, top_level: int, replies_per_post: int) -> tuple[str, set[str]]:
        thread = await self.thread()
        every_id: set[str] = set()
        for index in range(top_level):
            top = await self.post(thread["id"], f"top {index}")
            every_id.add(top["post"]["id"])
            parent = top["post"]["id"]
            for depth in range(replies_per_post):
                reply = await self.post(thread["id"], f"reply {index}.{depth}", parent=parent)
                every_id.add(reply["post"]["id"])
                parent = reply["post"]["id"]
        return thread["id"], every_id

    def _walk(self, posts: list[dict[str, Any]]) -> list[str]:
        ids = []
        for post in posts:
            ids.append(post["id"])
            ids.extend(self._walk(post["replies"]))
        return ids

    async def _all_pages(self, thread_id: str, sort: str, limit: int) -> list[list[dict[str, Any]]]:
        pages, cursor = [], None
        while True:
            query = f"sort={sort}&limit={limit}" + (f"&cursor={cursor}" if cursor else "")
            status, body, _ = await self.request("GET", f"/api/v1/threads/{thread_id}/posts?{query}")
            self.assertEqual(status, 200, body)
            pages.append(body["posts"])
            cursor = body["cursor"]["next"]
            self.assertEqual(body["cursor"]["has_more"], cursor is not None)
            if cursor is None:
                return pages

    async def test_pages_hold_every_reply_once(self) -> None:
        """Across pages of every sort, each post appears exactly once, replies with their root."""
        thread_id, every_id = await self._build_thread(top_level=7, replies_per_post=3)
        for sort in ("oldest", "newest", "best"):
            pages = await self._all_pages(thread_id, sort, limit=3)
            self.assertEqual([len(page) for page in pages], [3, 3, 1], sort)
            seen = [post_id for page in pages for post_id in self._walk(page)]
            self.assertEqual(len(seen), len(set(seen)), f"{sort}: a post appeared twice")
            self.assertEqual(set(seen), every_id, f"{sort}: a post is missing")

    async def test_nesting_unlimited_depth(self) -> None:
        """A chain of 30 replies nests 30 levels deep."""
        thread_id, _ = await self._build_thread(top_level=1, replies_per_post=30)
        _, body, _ = await self.request("GET", f"/api/v1/threads/{thread_id}/posts")
        depth, node = 0, body["posts"][0]
        while node["replies"]:
            self.assertEqual(len(node["replies"]), 1)
            node = node["replies"][0]
            depth += 1
        self.assertEqual(depth, 30)
        self.assertEqual(node["depth"], 30)

    async def test_sort_orders(self) -> None:
        """oldest is creation order, newest its reverse, best by score."""
        thread = await self.thread()
        ids = [(await self.post(thread["id"], f"p{i}"))["post"]["id"] for i in range(3)]
        await self.request("POST", f"/api/v1/posts/{ids[1]}/vote", {"voter": "voter-one", "value": 1})
        listings = {}
        for sort in ("oldest", "newest", "best"):
            _, body, _ = await self.request("GET", f"/api/v1/threads/{thread['id']}/posts?sort={sort}")
            listings[sort] = [post["id"] for post in body["posts"]]
        self.assertEqual(listings["oldest"], ids)
        self.assertEqual(listings["newest"], ids[::-1])
        self.assertEqual(listings["best"], [ids[1], ids[2], ids[0]])

    async def test_etag_revalidation(self) -> None:
        """An unchanged thread returns 304 for its ETag; a new post changes the ETag."""
        thread = await self.thread()
        await self.post(thread["id"])
        path = f"/api/v1/threads/{thread['id']}/posts"
        _, _, headers = await self.request("GET", path)
        etag = headers.getRawHeaders("etag")[0]
        status, _, _ = await self.request("GET", path, headers={"If-None-Match": etag})
        self.assertEqual(status, 304)
        await self.post(thread["id"])
        status, _, headers = await self.request("GET", path, headers={"If-None-Match": etag})
        self.assertEqual(status, 200)
        self.assertNotEqual(headers.getRawHeaders("etag")[0], etag)

    async def test_times_read_the_same_everywhere(self) -> None:
        """A post's and its thread's times are the same text in every response that carries them."""
        thread = await self.thread()
        created = (await self.post(thread["id"]))["post"]
        _, listing, _ = await self.request("GET", f"/api/v1/threads/{thread['id']}/posts")
        self.assertEqual(listing["posts"][0]["created_at"], created["created_at"])
        self.assertEqual(listing["thread"]["created_at"], thread["created_at"])
        _, alone, _ = await self.request("GET", f"/api/v1/threads/{thread['id']}")
        self.assertEqual(alone["thread"]["created_at"], thread["created_at"])
        self.assertRegex(created["created_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z$")

    async def test_if_none_match_forms(self) -> None:
        """If-None-Match matches a weak tag, a tag in a list and *, and nothing else."""
        thread = await self.thread()
        await self.post(thread["id"])
        path = f"/api/v1/threads/{thread['id']}/posts"
        _, _, headers = await self.request("GET", path)
        etag = headers.getRawHeaders("etag")[0]
        for value, expected in ((f"W/{etag}", 304), (f'"other", {etag}', 304), ("*", 304),
                                ('"other"', 200), (etag[:-2] + '"', 200)):
            status, _, response_headers = await self.request("GET", path, headers={"If-None-Match": value})
            self.assertEqual(status, expected, value)
            self.assertEqual(response_headers.getRawHeaders("etag"), [etag], value)
            self.assertEqual(response_headers.getRawHeaders("cache-control"), ["public, max-age=2, must-revalidate"])


class DirectListingTests(APITestCase):
    """The listing route, which the node matches before Klein's routing."""

    async def test_database_unavailable_is_503(self) -> None:
        """With the thread's shard database gone, the listing returns 503 with Retry-After; the log gets a count."""
        thread = await self.thread()
        self.cluster.shard_for_id(int(thread["id"])).pool.close()
        clock = task.Clock()
        self.api.reactor = clock
        lines: list[str] = []

        counts: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_format", "").startswith("request {method}"):
                lines.append(formatEvent(event))
            if event.get("log_format", "").startswith("{count} more requests"):
                counts.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        for second in (0, 1, 2, 11):
            clock.advance(second - clock.seconds())
            status, body, headers = await self.request("GET", f"/api/v1/threads/{thread['id']}/posts")
            self.assertEqual(status, 503)
            self.assertEqual(body["error"]["code"], "unavailable")
            self.assertEqual(headers.getRawHeaders("retry-after"), ["5"])
        self.assertEqual(len(lines), 2, lines)
        self.assertEqual(counts, ["2 more requests failed because a database was unavailable, over the last 10s"])
        self.assertNotIn("\n", "".join(lines), "a log line must not span lines")
        self.assertEqual(clock.getDelayedCalls(), [])

    async def test_unexpected_error_is_logged_500(self) -> None:
        """A bug in the listing is a JSON 500 for the reader and a logged traceback for the operator."""
        thread = await self.thread()

        async def broken_page(*args: object, **kwargs: object) -> Any:
            raise RuntimeError("listing bug for the test")

        self.patch(self.api.posts, "page", broken_page)
        self.check_contract = False  # the document lists no 500: no route is meant to return one
        status, body, _ = await self.request("GET", f"/api/v1/threads/{thread['id']}/posts")
        self.assertEqual(status, 500)
        self.assertEqual(body["error"]["code"], "internal_error")
        self.assertNotIn("listing bug", json.dumps(body))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    async def test_head_and_other_ids_use_klein_routes(self) -> None:
        """HEAD, and ids the direct path does not take, still reach the same route through Klein."""
        thread = await self.thread()
        await self.post(thread["id"])
        self.check_contract = False  # OpenAPI documents GET; HEAD is implied by HTTP
        status, body, headers = await self.request("HEAD", f"/api/v1/threads/{thread['id']}/posts")
        self.assertEqual((status, body), (200, None))
        self.assertEqual(headers.getRawHeaders("content-type"), ["application/json; charset=utf-8"])
        status, body, _ = await self.request("GET", f"/api/v1/threads/{thread['id']}/posts/")
        self.assertEqual((status, body["error"]["code"]), (404, "not_found"))
        self.check_contract = True
        status, body, _ = await self.request("GET", f"/api/v1/threads/{thread['id']}x/posts")
        self.assertEqual((status, body["error"]["code"]), (404, "not_found"))

    async def test_client_leaving_cancels_listing(self) -> None:
        """A reader who disconnects mid-listing cancels its work, logs nothing and leaves no request in flight."""
        thread = await self.thread()
        started: defer.Deferred[None] = defer.Deferred()
        cancelled: list[bool] = []

        async def slow_page(*args: object, **kwargs: object) -> Any:
            never: defer.Deferred[Any] = defer.Deferred(lambda _: cancelled.append(True))
            started.callback(None)
            return await never

        self.patch(self.api.posts, "page", slow_page)
        port = int(self.base_url.rsplit(":", 1)[1])
        protocol = await endpoints.connectProtocol(
            endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port), Protocol())
        protocol.transport.write(f"GET /api/v1/threads/{thread['id']}/posts HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await started
        self.assertEqual(self.api.in_flight, 1)
        protocol.transport.loseConnection()
        for _ in range(50):
            if cancelled and self.api.in_flight == 0:
                break
            await task.deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(cancelled, [True])
        self.assertEqual(self.api.in_flight, 0)
        self.assertEqual(self.flushLoggedErrors(), [])


class VoteTests(APITestCase):
    async def test_vote_change_and_withdraw(self) -> None:
        """One vote per voter: changing it moves the count, 0 withdraws it."""
        thread = await self.thread()
        post_id = (await self.post(thread["id"]))["post"]["id"]
        path = f"/api/v1/posts/{post_id}/vote"
        _, body, _ = await self.request("POST", path, {"voter": "reader-123", "value": 1})
        self.assertEqual((body["post"]["likes"], body["post"]["dislikes"]), (1, 0))
        _, body, _ = await self.request("POST", path, {"voter": "reader-123", "value": 1})
        self.assertEqual((body["post"]["likes"], body["post"]["dislikes"]), (1, 0))
        _, body, _ = await self.request("POST", path, {"voter": "reader-123", "value": -1})
        self.assertEqual((body["post"]["likes"], body["post"]["dislikes"], body["post"]["score"]), (0, 1, -1))
        _, body, _ = await self.request("POST", path, {"voter": "reader-123", "value": 0})
        self.assertEqual((body["post"]["likes"], body["post"]["dislikes"]), (0, 0))

    async def test_concurrent_votes_lose_no_update(self) -> None:
        """Sixty voters voting at once, a third of them down, leave exact counts."""
        thread = await self.thread()
        post_id = (await self.post(thread["id"]))["post"]["id"]
        votes = [defer.Deferred.fromCoroutine(self.request(
            "POST", f"/api/v1/posts/{post_id}/vote", {"voter": f"voter-{n:04d}", "value": -1 if n % 3 == 0 else 1}))
            for n in range(60)]
        results = await defer.gatherResults(votes)
        self.assertEqual({status for status, _, _ in results}, {200})
        _, listing, _ = await self.request("GET", f"/api/v1/threads/{thread['id']}/posts")
        post = listing["posts"][0]
        self.assertEqual(post["likes"], 40)
        self.assertEqual(post["dislikes"], 20)
        self.assertEqual(post["score"], 20)

    async def test_same_voter_concurrently_counts_once(self) -> None:
        """One voter sending ten up-votes at once counts once."""
        thread = await self.thread()
        post_id = (await self.post(thread["id"]))["post"]["id"]
        await defer.gatherResults([defer.Deferred.fromCoroutine(self.request(
            "POST", f"/api/v1/posts/{post_id}/vote", {"voter": "same-voter", "value": 1})) for _ in range(10)])
        _, listing, _ = await self.request("GET", f"/api/v1/threads/{thread['id']}/posts")
        self.assertEqual(listing["posts"][0]["likes"], 1)

    async def test_invalid_votes(self) -> None:
        """Values other than -1, 0, 1 and short voter ids are rejected."""
        thread = await self.thread()
        post_id = (await self.post(thread["id"]))["post"]["id"]
        for body, field in (({"voter": "reader-123", "value": 2}, "value"),
                            ({"voter": "reader-123", "value": True}, "value"),
                            ({"voter": "short", "value": 1}, "voter")):
            status, document, _ = await self.request("POST", f"/api/v1/posts/{post_id}/vote", body)
            self.assertEqual(status, 400)
            self.assertEqual(document["error"]["field"], field)


class CrossOriginTests(APITestCase):
    """Writes that browsers send from pages on other origins."""

    async def test_writes_need_the_service_origin(self) -> None:
        """Every write from a page on another origin is a 403; the service's own origin and no Origin pass."""
        thread = await self.thread()
        created = await self.post(thread["id"])
        post_id, token = created["post"]["id"], created["edit_token"]
        own = self.base_url
        writes = [
            ("POST", "/api/v1/threads", {"forum": "site", "identifier": "page-2", "url": "https://example.org/2"}, {}),
            ("POST", f"/api/v1/threads/{thread['id']}/posts", {"author_name": "A", "message": "hi"}, {}),
            ("POST", f"/api/v1/posts/{post_id}/vote", {"voter": "voter-one", "value": 1}, {}),
            ("PATCH", f"/api/v1/posts/{post_id}", {"message": "edited"}, {"X-Edit-Token": token}),
        ]
        for method, path, body, headers in writes:
            for origin in ("http://evil.test", "null", own.replace("127.0.0.1", "localhost")):
                status, document, _ = await self.request(method, path, body, headers={**headers, "Origin": origin})
                self.assertEqual((status, document["error"]["code"]), (403, "cross_origin"), (method, path, origin))
            for extra in ({"Origin": own}, {}):
                status, document, _ = await self.request(method, path, body, headers={**headers, **extra})
                self.assertIn(status, (200, 201), (method, path, extra, document))
        status, document, _ = await self.request("DELETE", f"/api/v1/posts/{post_id}",
                                                 headers={"X-Edit-Token": token, "Origin": "http://evil.test"})
        self.assertEqual((status, document["error"]["code"]), (403, "cross_origin"))
        status, _, _ = await self.request("GET", f"/api/v1/threads/{thread['id']}/posts",
                                          headers={"Origin": "http://evil.test"})
        self.assertEqual(status, 200, "reads are open to every origin")

    async def test_votes_limited_per_address(self) -> None:
        """Past votes_per_minute, a client's votes get 429 whatever voter ids it sends."""
        self.api.vote_limiter = RateLimiter(reactor, capacity=2, per_seconds=60)
        thread = await self.thread()
        post_id = (await self.post(thread["id"]))["post"]["id"]
        statuses = []
        for index in range(3):
            status, _, headers = await self.request("POST", f"/api/v1/posts/{post_id}/vote",
                                                    {"voter": f"voter-number-{index}", "value": 1})
            statuses.append(status)
        self.assertEqual(statuses, [200, 200, 429])
        self.assertTrue(headers.getRawHeaders("retry-after"))
        _, listing, _ = await self.request("GET", f"/api/v1/threads/{thread['id']}/posts")
        self.assertEqual(listing["posts"][0]["likes"], 2)


class CountTests(APITestCase):
    async def test_counts_by_identifier_and_url(self) -> None:
        """One request returns counts for many identifiers and urls, zero for unknown ones."""
        first = await self.thread("one")
        await self.post(first["id"])
        await self.post(first["id"])
        second = await self.thread("two")
        await self.post(second["id"])
        status, body, _ = await self.request(
            "GET", "/api/v1/counts?forum=site&identifier=one&identifier=two&identifier=none"
                   "&url=https://EXAMPLE.org/one/&url=https://example.org/missing")
        self.assertEqual(status, 200)
        self.assertEqual(body["identifiers"], {"one": 2, "two": 1, "none": 0})
        self.assertEqual(body["urls"], {"https://EXAMPLE.org/one/": 2, "https://example.org/missing": 0})

    async def test_counts_cors_for_allowed_origin_only(self) -> None:
        """The count script may read counts from the forum's origins only."""
        _, _, headers = await self.request("GET", "/api/v1/counts?forum=site&identifier=a",
                                           headers={"Origin": "https://example.org"})
        self.assertEqual(headers.getRawHeaders("access-control-allow-origin"), ["https://example.org"])
        _, _, headers = await self.request("GET", "/api/v1/counts?forum=site&identifier=a",
                                           headers={"Origin": "https://evil.example"})
        self.assertIsNone(headers.getRawHeaders("access-control-allow-origin"))


class HealthTests(APITestCase):
    async def test_ready(self) -> None:
        """Health is 200 with every database checked."""
        status, body, _ = await self.request("GET", "/health")
        self.assertEqual(status, 200)
        self.assertEqual(set(body["checks"]), {"meta", "users", "shards[0]", "shards[1]"})

    async def test_draining(self) -> None:
        """A draining node reports 503 so the load balancer stops sending requests."""
        self.api.draining = True
        status, body, _ = await self.request("GET", "/health")
        self.assertEqual(status, 503)
        self.assertEqual(body["status"], "draining")

    async def test_draining_closes_kept_alive_connections(self) -> None:
        """Once draining, a kept-alive connection gets Connection: close with its next response and is closed."""
        thread = await self.thread()
        closed: defer.Deferred[None] = defer.Deferred()
        received: list[bytes] = []

        class Client(Protocol):
            def dataReceived(self, data: bytes) -> None:
                received.append(data)

            def connectionLost(self, reason: object = None) -> None:
                closed.callback(None)

        port = int(self.base_url.rsplit(":", 1)[1])
        client = await endpoints.connectProtocol(endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port), Client())
        request = f"GET /api/v1/threads/{thread['id']}/posts HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        client.transport.write(request)
        for _ in range(200):  # until the whole first response is in
            head, _, body = b"".join(received).partition(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: (\d+)", head)
            if length and len(body) >= int(length.group(1)):
                break
            await task.deferLater(reactor, 0.01, lambda: None)
        self.assertNotIn(b"connection: close", b"".join(received).lower(), "closed before draining")
        self.assertFalse(closed.called)

        self.api.draining = True
        received.clear()
        client.transport.write(request)
        await closed
        response = b"".join(received)
        self.assertTrue(response.startswith(b"HTTP/1.1 200"), response[:100])
        self.assertIn(b"connection: close", response.lower())


class ContractTests(APITestCase):
    async def test_document_served(self) -> None:
        """The node serves the OpenAPI document kept in the repository."""
        from tests.contract import DOCUMENT

        status, body, _ = await self.request("GET", "/api/v1/openapi.json")
        self.assertEqual(status, 200)
        self.assertEqual(body, DOCUMENT)

    def test_every_api_route_documented(self) -> None:
        """Each Klein route under /api/v1 and /health appears in the document with its methods."""
        from comments.api.app import CommentsAPI
        from tests.contract import DOCUMENT

        documented = {(path, method.upper()) for path, item in DOCUMENT["paths"].items() for method in item}
        routed = set()
        for rule in CommentsAPI.app.url_map.iter_rules():
            if not (rule.rule.startswith("/api/") or rule.rule == "/health"):
                continue
            path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
            routed |= {(path, method) for method in rule.methods or () if method not in ("HEAD", "OPTIONS")}
        self.assertEqual(routed, documented)

    def test_contract_check_catches_drift(self) -> None:
        """The checker rejects a response missing a documented field, so the contract tests can fail."""
        from tests.contract import check_response

        problems = check_response("GET", "/api/v1/threads/1", 200, {"thread": {"id": "1"}})
        self.assertTrue(problems)
        self.assertEqual(check_response("GET", "/nowhere", 200, {}), ["GET /nowhere is not documented"])


class StaticTests(APITestCase):
    check_contract = False

    async def test_unknown_path_is_json_404(self) -> None:
        """A path no route serves is a JSON 404, not a 500."""
        status, body, _ = await self.request("GET", "/favicon.ico")
        self.assertEqual(status, 404)
        self.assertEqual(body["error"]["code"], "not_found")

    async def test_wrong_method_is_405(self) -> None:
        """A known path with an unsupported method is a JSON 405."""
        status, body, headers = await self.request("PUT", "/api/v1/threads")
        self.assertEqual(status, 405)
        self.assertEqual(body["error"]["code"], "method_not_allowed")
        self.assertEqual(headers.getRawHeaders("allow"), ["POST"])
        status, _, headers = await self.request("OPTIONS", "/api/v1/threads/1/posts")
        self.assertEqual(status, 405)
        self.assertEqual(set(headers.getRawHeaders("allow")[0].split(", ")), {"GET", "HEAD", "POST"})

    async def test_doubled_slash_redirects(self) -> None:
        """A doubled slash inside a path is a 308 to the path the route serves."""
        for path, location in (("/api/v1//forums/site", "/api/v1/forums/site"),
                               ("/api/v1//counts?forum=site&identifier=a&identifier=b%26c",
                                "/api/v1/counts?forum=site&identifier=a&identifier=b%26c")):
            response = await treq.request("GET", f"{self.base_url}{path}", pool=self.http_pool,
                                          allow_redirects=False, headers={"Host": "comments.example.org"})
            self.assertEqual(response.code, 308)
            self.assertEqual(response.headers.getRawHeaders("location"), [location])
            self.assertEqual(json.loads(await response.content()), {"location": location})

    async def test_widget_files_gzipped_on_request(self) -> None:
        """Widget files are sent gzipped to clients that accept it, plain to others."""
        import gzip

        from twisted.internet import reactor
        from twisted.web.client import Agent, readBody
        from twisted.web.http_headers import Headers

        # A bare Agent: treq would decompress the body and drop Content-Encoding.
        agent = Agent(reactor, pool=self.http_pool)
        url = f"{self.base_url}/widget/widget.js".encode()
        plain = await agent.request(b"GET", url)
        plain_body = await readBody(plain)
        packed = await agent.request(b"GET", url, Headers({"Accept-Encoding": ["gzip"]}))
        packed_body = await readBody(packed)
        self.assertEqual(packed.headers.getRawHeaders(b"content-encoding"), [b"gzip"])
        self.assertEqual(gzip.decompress(packed_body), plain_body)
        self.assertLess(len(packed_body), len(plain_body))

    async def test_thread_page_frame_ancestors(self) -> None:
        """The widget page lists the forum's origins as frame-ancestors, and 'none' for unknown forums."""
        _, _, headers = await self.request("GET", "/widget/thread.html?forum=site")
        policy = headers.getRawHeaders("content-security-policy")[0]
        self.assertIn("frame-ancestors https://example.org", policy)
        _, _, headers = await self.request("GET", "/widget/thread.html?forum=unknown")
        self.assertIn("frame-ancestors 'none'", headers.getRawHeaders("content-security-policy")[0])

    async def test_path_traversal_refused(self) -> None:
        """Static routes never serve files outside the widget folder."""
        for path in ("/widget/..%2F__init__.py", "/demo/..%2F..%2Fapi%2Fapp.py", "/widget/%2e%2e/widget.js"):
            status, _, _ = await self.request("GET", path)
            self.assertEqual(status, 404, path)


class PingbackTests(APITestCase):
    async def test_pingbacks_not_listed(self) -> None:
        """An imported pingback stays in the shard but never appears in a listing."""
        from comments.ids import shard_of

        thread = await self.thread()
        comment = await self.post(thread["id"], "a real comment")
        shard = self.cluster.shard(shard_of(int(thread["id"])))
        await shard.pool.run_operation(
            "insert_pingback",
            f"""INSERT INTO {shard.schema}.posts (id, thread_id, forum_id, root_id, state, kind, raw, html, author_name)
                SELECT next.id, %s, %s, next.id, 'approved', 'pingback', 'ping', '<p>ping</p>', 'Other blog'
                FROM (SELECT {shard.schema}.next_id() AS id) AS next""",
            (int(thread["id"]), self.forum_record.id),
        )
        _, listing, _ = await self.request("GET", f"/api/v1/threads/{thread['id']}/posts")
        self.assertEqual([post["id"] for post in listing["posts"]], [comment["post"]["id"]])


class DeepThreadTests(APITestCase):
    timeout = 120

    async def test_chain_deeper_than_nesting_limit(self) -> None:
        """A reply chain of 130 levels lists (no 500); posts below level 100 come flat with their real parent."""
        from comments.storage.posts import MAX_NESTING

        thread = await self.thread()
        parent = None
        ids = []
        for index in range(130):
            created = await self.post(thread["id"], f"level {index}", parent=parent)
            parent = created["post"]["id"]
            ids.append(parent)
        status, listing, _ = await self.request("GET", f"/api/v1/threads/{thread['id']}/posts")
        self.assertEqual(status, 200)

        node, level = listing["posts"][0], 1
        while len(node["replies"]) == 1:
            node, level = node["replies"][0], level + 1
        self.assertEqual(level, MAX_NESTING)
        flat = node["replies"]
        self.assertEqual([post["id"] for post in flat], ids[MAX_NESTING:])
        self.assertEqual([post["parent"] for post in flat], ids[MAX_NESTING - 1:-1])
        self.assertEqual(flat[-1]["depth"], 129)


class HostileInputTests(APITestCase):
    async def test_nul_in_forum_path(self) -> None:
        """A NUL byte in a forum shortname is a 404, not a database error."""
        for path in ("/api/v1/forums/%00", "/api/v1/forums/a%00b", "/api/v1/counts?forum=%00"):
            status, body, _ = await self.request("GET", path)
            self.assertIn(status, (400, 404), path)
            self.assertIn("error", body)

    async def test_non_ascii_digits_in_limit(self) -> None:
        """Digits outside ASCII, which str.isdigit() accepts, are an invalid limit."""
        thread = await self.thread()
        for limit in ("%C2%B2", "%D9%A3", "%EF%BC%95"):
            status, body, _ = await self.request("GET", f"/api/v1/threads/{thread['id']}/posts?limit={limit}")
            self.assertEqual(status, 400, limit)
            self.assertEqual(body["error"]["field"], "limit")

    async def test_deeply_nested_json_body(self) -> None:
        """A body of 5,000 nested arrays is rejected as invalid JSON."""
        thread = await self.thread()
        status, body, _ = await self.request("POST", f"/api/v1/threads/{thread['id']}/posts",
                                             raw=b'{"a":' * 5000 + b"1" + b"}" * 5000)
        self.assertEqual(status, 400)
        self.assertEqual(body["error"]["code"], "invalid_json")

    async def test_huge_json_number(self) -> None:
        """A number of 5,000 digits is rejected as invalid JSON."""
        thread = await self.thread()
        status, body, _ = await self.request("POST", f"/api/v1/threads/{thread['id']}/posts",
                                             raw=b'{"author_name": ' + b"9" * 5000 + b', "message": "x"}')
        self.assertEqual(status, 400)
        self.assertEqual(body["error"]["code"], "invalid_json")
        self.assertIn("more than 4300 digits", body["error"]["message"])
        self.assertNotIn("sys.", body["error"]["message"], "a Python hint is no use to an API client")

    async def test_vote_value_must_be_integer(self) -> None:
        """1.0 and -0.0 are not votes."""
        thread = await self.thread()
        post_id = (await self.post(thread["id"]))["post"]["id"]
        for value in (1.0, -0.0, "1", None):
            status, body, _ = await self.request("POST", f"/api/v1/posts/{post_id}/vote",
                                                 {"voter": "reader-123", "value": value})
            self.assertEqual(status, 400, value)
            self.assertEqual(body["error"]["field"], "value")

    async def test_second_delete_says_deleted(self) -> None:
        """Deleting a deleted post reports it as already deleted."""
        thread = await self.thread()
        created = await self.post(thread["id"])
        headers = {"X-Edit-Token": created["edit_token"]}
        await self.request("DELETE", f"/api/v1/posts/{created['post']['id']}", headers=headers)
        status, body, _ = await self.request("DELETE", f"/api/v1/posts/{created['post']['id']}", headers=headers)
        self.assertEqual(status, 403)
        self.assertIn("already deleted", body["error"]["message"])

    async def test_parent_zero(self) -> None:
        """Parent "0" is rejected as not an id."""
        thread = await self.thread()
        status, body, _ = await self.request("POST", f"/api/v1/threads/{thread['id']}/posts",
                                             {"author_name": "A", "message": "x", "parent": "0"})
        self.assertEqual(status, 400)
        self.assertIn("not an id", body["error"]["message"])
