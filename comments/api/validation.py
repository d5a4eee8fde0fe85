"""
Request parsing and field checks for the JSON API.

Every check raises APIError naming the field and the fix, so no bad input reaches a
database query: PostgreSQL rejects NUL characters and unpaired surrogates in text with an
error that would otherwise surface as a 500.
"""

from __future__ import annotations

import json
import re
from typing import Any

from twisted.web.iweb import IRequest

from comments.ids import InvalidId, parse_id

__all__ = [
    "APIError", "id_field", "json_text", "optional_text_field", "query_values", "read_json_body", "text_field",
]

_EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class APIError(Exception):
    """A client error, sent as ``{"error": {"code", "field", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """Return the JSON error document."""
        return {"error": {"code": self.code, "field": self.field, "message": self.message}}


def invalid(field: str, message: str) -> APIError:
    """Return a 400 error about ``field``."""
    return APIError(400, "invalid_field", message, field)


def read_json_body(request: IRequest, max_bytes: int) -> dict[str, Any]:
    """Read the request body as a JSON object of at most ``max_bytes`` bytes."""
    too_large = APIError(413, "body_too_large", f"the request body is over the limit of {max_bytes} bytes; "
                         "send a shorter message")
    declared = request.getHeader(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    content = request.content
    assert content is not None
    if getattr(content, "over_limit", False):
        raise too_large  # the node's request class dropped a chunked body at the limit
    data = content.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise too_large
    if not data.strip():
        raise APIError(400, "invalid_json", "the request body is empty; send a JSON object")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise APIError(400, "invalid_encoding", f"the request body is not valid UTF-8 at byte {error.start}; "
                       "encode the body as UTF-8") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise APIError(400, "invalid_json", f"the request body is not valid JSON: {error}") from None
    except RecursionError:
        raise APIError(400, "invalid_json", "the request body nests arrays or objects too deeply; "
                       "send a flat JSON object") from None
    except ValueError:
        # Python refuses to convert integers of more than 4,300 digits.
        raise APIError(400, "invalid_json", "the request body contains an integer of more than 4300 digits; "
                       "send shorter numbers") from None
    if not isinstance(document, dict):
        raise APIError(400, "invalid_json", f"the request body must be a JSON object, not {type(document).__name__}")
    return document


def _check_text(field: str, value: str) -> None:
    if "\x00" in value:
        raise invalid(field, f"{field} contains a NUL character (\\u0000); remove it")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(field, f"{field} contains an unpaired surrogate, which is not valid UTF-8; "
                      "send well-formed Unicode text") from None


def text_field(document: dict[str, Any], field: str, *, max_length: int, strip: bool = True) -> str:
    """Return the required, non-empty string ``field`` of at most ``max_length`` characters."""
    value = optional_text_field(document, field, max_length=max_length, strip=strip)
    if value is None or value == "":
        raise invalid(field, f"{field} is missing or empty; it is required")
    return value


def optional_text_field(document: dict[str, Any], field: str, *, max_length: int, strip: bool = True) -> str | None:
    """Return the string ``field``, or None when it is absent or null."""
    value = document.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(field, f"{field} must be a string, not {_json_type(value)}")
    _check_text(field, value)
    if strip:
        value = value.strip()
    if len(value) > max_length:
        raise invalid(field, f"{field} is {len(value)} characters long; the limit is {max_length}")
    return value


def email_field(document: dict[str, Any], field: str) -> str | None:
    """Return the optional e-mail address ``field``."""
    value = optional_text_field(document, field, max_length=254)
    if not value:
        return None
    if not _EMAIL_PATTERN.match(value):
        raise invalid(field, f"{field} {value!r} is not an e-mail address; leave it empty or fix it")
    return value


def id_field(document: dict[str, Any], field: str) -> int | None:
    """Return the optional id ``field``; ids travel as decimal strings."""
    value = document.get(field)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise invalid(field, f"{field} must be an id string, not {_json_type(value)}")
    try:
        return parse_id(value)
    except InvalidId as error:
        raise invalid(field, f"{field}: {error}") from None


def path_id(value: str, what: str) -> int:
    """Parse an id from the url path; an invalid one is simply not found."""
    try:
        return parse_id(value)
    except InvalidId:
        raise APIError(404, "not_found", f"{what} {value!r} does not exist; ids are decimal strings") from None


def query_values(request: IRequest, name: str, *, max_count: int = 1, max_length: int = 2048) -> list[str]:
    """Return the decoded values of query parameter ``name``, checked like body text."""
    raw_values = (request.args or {}).get(name.encode("ascii"), [])
    if len(raw_values) > max_count:
        raise invalid(name, f"{name} is given {len(raw_values)} times; the limit is {max_count}")
    values = []
    for raw in raw_values:
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise invalid(name, f"{name} is not valid UTF-8; percent-encode UTF-8 bytes") from None
        _check_text(name, value)
        if len(value) > max_length:
            raise invalid(name, f"{name} is {len(value)} characters long; the limit is {max_length}")
        values.append(value)
    return values


def query_value(request: IRequest, name: str, default: str | None = None) -> str | None:
    """Return the single value of query parameter ``name``, or ``default``."""
    values = query_values(request, name)
    return values[0] if values else default


def _json_type(value: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)


def json_text(value: Any) -> str:
    """Return ``value`` as it was written in JSON, for error messages."""
    try:
        return json.dumps(value, ensure_ascii=False)[:100]
    except (TypeError, ValueError):
        return repr(value)[:100]
