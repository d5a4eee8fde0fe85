"""Normalisation of page urls, so one page never splits into several threads."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit, urlunsplit

__all__ = ["InvalidURL", "normalise_url"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Tracking parameters that name the same page under another campaign.
_TRACKING_PARAMETER = re.compile(r"^(utm_[a-z]+|fbclid|gclid|mc_cid|mc_eid)$", re.IGNORECASE)
# Characters that stay percent-encoded in a path: RFC 3986 reserved characters and '%'.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


class InvalidURL(ValueError):
    """A page url is not an absolute http or https url."""


def normalise_url(url: str) -> str:
    """
    Return the key under which ``url``'s thread is stored.

    Scheme and host are lowercased, the default port, the fragment, tracking parameters and
    a trailing slash are dropped, and needless percent-encoding is decoded, so
    ``HTTP://Example.org:80/Post/#c1`` and ``http://example.org/Post`` name one thread.
    Path case and the order of the other query parameters are kept: servers may treat them
    as different pages.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as error:
        raise InvalidURL(f"{url!r} is not a valid url: {error}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise InvalidURL(f"{url!r} is not an absolute http or https url")

    host = parts.hostname.rstrip(".")
    try:
        host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        host = host.lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"

    path = quote(unquote(parts.path), safe=_PATH_SAFE).rstrip("/")
    query_pairs = [
        pair for pair in parts.query.split("&") if pair and not _TRACKING_PARAMETER.match(pair.split("=")[0])
    ]
    return urlunsplit((scheme, netloc, path, "&".join(query_pairs), ""))
