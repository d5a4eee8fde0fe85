"""Import and export of comment archives in the Disqus and WordPress (WXR) formats.

The parsers stream a file into format-neutral records, and the writers stream
records back into a file. Neither touches the database.
"""

from comments.porting.disqus import parse_disqus, write_disqus
from comments.porting.errors import ImportFormatError, detect_format
from comments.porting.records import (
    PostKind,
    PostState,
    Skipped,
    SourcePost,
    SourceRecord,
    SourceThread,
)
from comments.porting.wxr import parse_wxr, write_wxr

__all__ = [
    "ImportFormatError",
    "PostKind",
    "PostState",
    "Skipped",
    "SourcePost",
    "SourceRecord",
    "SourceThread",
    "detect_format",
    "parse_disqus",
    "parse_wxr",
    "write_disqus",
    "write_wxr",
]
