"""The twistd plugin: ``twistd -n comments --config FILE`` starts one node."""

from __future__ import annotations

from typing import Any

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from zope.interface import implementer


@implementer(IServiceMaker, IPlugin)
class _CommentsServiceMaker:
    tapname = "comments"
    description = "A comments service node: HTTP API and widget over partitioned PostgreSQL."

    @property
    def options(self) -> Any:
        from comments.launch import Options

        return Options

    def makeService(self, options: Any) -> Any:
        from comments.launch import make_node

        return make_node(options["config"], options["listen"])


serviceMaker = _CommentsServiceMaker()
