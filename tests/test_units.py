"""Configuration loading, url normalisation and Markdown sanitizing."""

from __future__ import annotations

import os
import tempfile

import lxml.html
from twisted.trial import unittest

from comments.config import ConfigError, load_config
from comments.render import render_markdown, sanitize_html
from comments.urls import InvalidURL, normalise_url


def _write(text: str) -> str:
    handle, path = tempfile.mkstemp(suffix=".toml")
    with os.fdopen(handle, "w") as file:
        file.write(text)
    return path


class ConfigTests(unittest.SynchronousTestCase):
    def test_defaults_are_embedded(self) -> None:
        """With no file and no variables, the node uses the embedded database."""
        config = load_config(None, environ={})
        self.assertTrue(config.database.embedded)
        self.assertEqual(config.database.logical_shards, 64)

    def test_every_problem_reported_together(self) -> None:
        """One load lists every invalid key, each by name."""
        path = _write("""
[node]
listen = "nonsense:1"
roles = ["web", "cook"]
[database]
meta = "host=a"
logical_shards = 0
pool_size = "four"
[posts]
edit_window_seconds = -1
colour = "blue"
""")
        error = self.assertRaises(ConfigError, load_config, path, {})
        text = str(error)
        for key in ("node.listen", "node.roles", "database.users", "database.shards", "database.logical_shards",
                    "database.pool_size", "posts.edit_window_seconds", "posts.colour"):
            self.assertIn(key, text)
        self.assertGreaterEqual(len(error.problems), 8)

    def test_trusted_proxies(self) -> None:
        """Trusted proxies are addresses or networks; anything else is named with an example."""
        config = load_config(None, {"COMMENTS_NODE_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8, ::1"})
        self.assertEqual(config.trusted_proxies, ("127.0.0.1", "10.0.0.0/8", "::1"))
        error = self.assertRaises(ConfigError, load_config, None, {"COMMENTS_NODE_TRUSTED_PROXIES": "haproxy"})
        self.assertIn("node.trusted_proxies: 'haproxy' is not an IP address or network", str(error))

    def test_environment_overrides_file(self) -> None:
        """COMMENTS_SECTION_KEY variables override the file and convert their type."""
        path = _write('[node]\nlisten = "tcp:8080"\n[posts]\nmax_message_length = 100\n')
        config = load_config(path, environ={
            "COMMENTS_NODE_LISTEN": "tcp:9090", "COMMENTS_POSTS_MAX_MESSAGE_LENGTH": "200",
            "COMMENTS_DATABASE_META": "host=m", "COMMENTS_DATABASE_USERS": "host=u",
            "COMMENTS_DATABASE_SHARDS": "host=s1, host=s2"})
        self.assertEqual(config.listen, "tcp:9090")
        self.assertEqual(config.max_message_length, 200)
        self.assertEqual(config.database.shards, ("host=s1", "host=s2"))
        self.assertIn("environment", config.source)

    def test_bad_environment_value_named(self) -> None:
        """A variable that does not convert is reported by its own name."""
        error = self.assertRaises(ConfigError, load_config, None, {"COMMENTS_POSTS_MAX_BODY_BYTES": "lots"})
        self.assertIn("COMMENTS_POSTS_MAX_BODY_BYTES", str(error))

    def test_unknown_variable_named(self) -> None:
        """A misspelt variable is reported instead of being ignored."""
        error = self.assertRaises(ConfigError, load_config, None, {"COMMENTS_NODE_LISTN": "tcp:1"})
        self.assertIn("COMMENTS_NODE_LISTN", str(error))

    def test_toml_strings_not_converted(self) -> None:
        """In the file, a quoted "yes" or "5" is not a boolean or an integer; only variables convert."""
        path = _write('[node]\ndemo = "yes"\n[posts]\nposts_per_minute = "5"\n')
        error = self.assertRaises(ConfigError, load_config, path, {})
        self.assertIn("node.demo: expected true or false", str(error))
        self.assertIn("posts.posts_per_minute: expected an integer", str(error))

    def test_invalid_toml_and_missing_file(self) -> None:
        """Broken TOML and a missing file are errors that name the file."""
        path = _write("[node\n")
        self.assertIn(path, str(self.assertRaises(ConfigError, load_config, path, {})))
        self.assertIn("not found", str(self.assertRaises(ConfigError, load_config, "/nonexistent.toml", {})))


class URLTests(unittest.SynchronousTestCase):
    def test_same_page_variants(self) -> None:
        """Variants a reader sees as one page normalise to one key."""
        same = [
            "http://example.org/post",
            "HTTP://EXAMPLE.ORG/post",
            "http://example.org:80/post",
            "http://example.org/post/",
            "http://example.org/post#comment-3",
            "http://example.org/post?utm_source=feed&utm_medium=rss",
            "http://example.org/%70ost",
            "http://example.org./post",
        ]
        self.assertEqual({normalise_url(url) for url in same}, {"http://example.org/post"})

    def test_different_pages_stay_apart(self) -> None:
        """Path case, scheme, port, query and host differences keep pages apart."""
        different = [
            "http://example.org/post",
            "http://example.org/Post",
            "https://example.org/post",
            "http://example.org:8080/post",
            "http://example.org/post?page=2",
            "http://www.example.org/post",
        ]
        self.assertEqual(len({normalise_url(url) for url in different}), len(different))

    def test_root_and_unicode_hosts(self) -> None:
        """The root path and internationalised hosts normalise predictably."""
        self.assertEqual(normalise_url("https://example.org/"), normalise_url("https://example.org"))
        self.assertEqual(normalise_url("http://Bücher.example/x"), "http://xn--bcher-kva.example/x")
        self.assertEqual(normalise_url("http://example.org/caf%C3%A9"), normalise_url("http://example.org/café"))

    def test_invalid_urls(self) -> None:
        """Relative, non-http and malformed urls are rejected."""
        for url in ("/relative", "ftp://example.org/x", "javascript:alert(1)", "http://", "http://[::1/x",
                    "http://example.org:99999/"):
            self.assertRaises(InvalidURL, normalise_url, url)


class RenderTests(unittest.SynchronousTestCase):
    def test_hostile_markup_is_inert(self) -> None:
        """Script, event handlers, javascript: and SVG payloads never survive rendering."""
        payloads = [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "[click](javascript:alert(1))",
            "<svg onload=alert(1)>",
            "![x](javascript:alert(1))",
            "<a href='data:text/html,<script>alert(1)</script>'>x</a>",
            "[x](JaVaScRiPt:alert(1))",
        ]
        for payload in payloads:
            tree = lxml.html.fragment_fromstring(render_markdown(payload), create_parent="div")
            for element in tree.iter():
                self.assertNotIn(element.tag, ("script", "svg", "iframe"), payload)
                for name, value in element.attrib.items():
                    self.assertFalse(name.lower().startswith("on"), f"{payload}: attribute {name}")
                    self.assertFalse(value.strip().lower().startswith(("javascript:", "data:")),
                                     f"{payload}: {name}={value}")

    def test_links_get_rel(self) -> None:
        """Every link carries rel=nofollow ugc noopener."""
        html = render_markdown("[a](https://a.example) and <https://b.example>")
        self.assertEqual(html.count('rel="nofollow ugc noopener"'), 2)

    def test_imported_html_sanitized(self) -> None:
        """Imported HTML keeps formatting and loses style and script."""
        html = sanitize_html('<p style="color:red" onclick="x()">Hi <b>there</b><iframe src="https://e"></iframe></p>')
        self.assertNotIn("style=", html)
        self.assertNotIn("onclick", html)
        self.assertNotIn("<iframe", html)
        self.assertIn("there", html)


class TimestampTextTests(unittest.SynchronousTestCase):
    def test_utc_text_to_iso(self) -> None:
        """PostgreSQL's UTC text form becomes ISO 8601 with Z, with or without a fraction."""
        from comments.storage.posts import _iso

        self.assertEqual(_iso("2026-12-04 21:12:05.729373"), "2026-12-04T21:12:05.729373Z")
        self.assertEqual(_iso("2026-12-04 21:12:05"), "2026-12-04T21:12:05Z")
        self.assertIsNone(_iso(None))

    def test_text_order_is_time_order(self) -> None:
        """PostgreSQL's UTC text timestamps, with trimmed fractions, sort in time order."""
        from datetime import datetime

        texts = ["2026-12-04 21:12:05", "2026-12-04 21:12:05.000001", "2026-12-04 21:12:05.12",
                 "2026-12-04 21:12:05.123", "2026-12-04 21:12:05.5", "2026-12-04 21:12:06",
                 "2026-12-04 21:12:10.05", "2027-01-01 00:00:00"]
        shuffled = texts[3:] + texts[:3]
        self.assertEqual(sorted(shuffled), sorted(shuffled, key=datetime.fromisoformat))
        self.assertEqual(sorted(shuffled), texts)


class MarkdownImageTests(unittest.SynchronousTestCase):
    def test_image_syntax_becomes_link(self) -> None:
        """Markdown image syntax renders as a link, so no remote image loads for readers."""
        html = render_markdown("![a cat](https://images.example/cat.png)")
        self.assertNotIn("<img", html)
        expected = '<p><a href="https://images.example/cat.png" rel="nofollow ugc noopener">a cat</a></p>\n'
        self.assertEqual(html, expected, "the alt text is the link text, with no stray '!'")
        self.assertIn('>https://images.example/a.png</a>', render_markdown("![](https://images.example/a.png)"))
        unsafe = render_markdown('![x](javascript:alert(1)) ![y](https://a.example/"onx=1)')
        self.assertNotIn('href="javascript', unsafe)
        self.assertIn('href="https://a.example/%22onx=1"', unsafe)
