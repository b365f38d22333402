"""The dashboard's built files (axon/static), served by bottle behind the route table.

Bottle raises instead of answering errors itself, its own 404 and 405 included, so that
the one error middleware (axon/web/replies.py) answers them as JSON like every other.
"""
from __future__ import annotations

import os

import bottle

from axon.api.errors import NotFound
from axon.web.middleware import Handler
from axon.web.server import wsgi_handler

STATIC_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "static")


def dashboard_handler(static_dir: str = STATIC_DIR) -> Handler:
    """GET / and /static/<path>; anything else raises bottle's 404 or 405."""
    app = bottle.Bottle()
    app.config["catchall"] = False
    app.default_error_handler = _raise   # bottle's error pages become exceptions

    def static(path: str) -> bottle.HTTPResponse:
        if not os.path.isdir(static_dir):
            raise NotFound("dashboard not built")
        return bottle.static_file(path, root=static_dir)   # a missing file: HTTPError(404), raised

    app.route("/", "GET", lambda: static("index.html"))
    app.route("/static/<path:path>", "GET", static)
    return wsgi_handler(app)


def _raise(err: bottle.HTTPError) -> None:
    raise err
