"""Checks HTTP responses against the OpenAPI document the node serves."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

__all__ = ["DOCUMENT", "check_response", "template_for"]

DOCUMENT: dict[str, Any] = json.loads(resources.files("comments.api").joinpath("openapi.json").read_text())
_BASE = "urn:comments-openapi"
_REGISTRY = Registry().with_resource(_BASE, Resource.from_contents(DOCUMENT, default_specification=DRAFT202012))
_TEMPLATES = [
    (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"), template) for template in DOCUMENT["paths"]
]


def template_for(path: str) -> str | None:
    """Return the documented path template matching ``path`` (query string removed), or None."""
    bare = path.split("?", 1)[0]
    for pattern, template in _TEMPLATES:
        if pattern.match(bare):
            return template
    return None


def _pointer(*parts: str) -> str:
    return "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def check_response(method: str, path: str, status: int, body: Any) -> list[str]:
    """Return every way this response breaks the document; an empty list when it conforms."""
    template = template_for(path)
    if template is None:
        return [f"{method} {path} is not documented"]
    operation = DOCUMENT["paths"][template].get(method.lower())
    if operation is None:
        return [f"{method} {template} is not documented"]
    response = operation["responses"].get(str(status))
    if response is None:
        return [f"{method} {template} answered {status}, which is not documented"]
    if "content" not in response:
        return [] if body in (None, b"") else [f"{method} {template} {status} has a body but documents none"]
    pointer = _pointer("paths", template, method.lower(), "responses", str(status), "content", "application/json",
                       "schema")
    validator = Draft202012Validator({"$ref": f"{_BASE}#/{pointer}"}, registry=_REGISTRY)
    return [f"{method} {template} {status}: {error.message} at {list(error.absolute_path)}"
            for error in validator.iter_errors(body)]
