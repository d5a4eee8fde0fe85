# Start one node with `twistd -ny tac/node.tac`; COMMENTS_CONFIG names the TOML file.
import os

from twisted.application import service

from comments.launch import make_node

application = service.Application("comments")
make_node(os.environ.get("COMMENTS_CONFIG")).setServiceParent(application)
