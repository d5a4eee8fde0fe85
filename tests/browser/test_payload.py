"""Size budget of what a reader downloads to see the widget."""

from __future__ import annotations

import gzip
import unittest

from tests.support import REPOSITORY

STATIC = REPOSITORY / "comments" / "widget" / "static"
WIDGET_FILES = ("embed.js", "thread.html", "widget.js", "widget.css", "locale.js")
# Maximum gzip-compressed size of WIDGET_FILES together, in bytes.
GZIP_BUDGET = 30 * 1024


class PayloadSizeTests(unittest.TestCase):
    def test_widget_payload_within_budget(self) -> None:
        # Each file is compressed on its own, as a server compresses each response.
        sizes = {name: len(gzip.compress((STATIC / name).read_bytes(), compresslevel=6)) for name in WIDGET_FILES}
        total = sum(sizes.values())
        self.assertLessEqual(total, GZIP_BUDGET, f"gzipped widget files add up to {total} bytes: {sizes}")

    def test_thread_page_has_no_inline_code(self) -> None:
        # The node serves thread.html with script-src 'self' and style-src 'self', which
        # block inline scripts, inline styles and event handler attributes.
        html = (STATIC / "thread.html").read_text()
        self.assertNotIn("<style", html)
        self.assertNotRegex(html, r"<script(?![^>]*\bsrc=)")
        self.assertNotRegex(html, r"\sstyle=")
        self.assertNotRegex(html, r"\son[a-z]+=")
