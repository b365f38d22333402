"""``GET /openapi.json``: the OpenAPI 3 document of the node's HTTP API, served as it is stored.

The document (axon/web/openapi.json, package data; docs/openapi.json points to it) is
written by hand beside the route table: tests/test_openapi.py fails when a route of
axon/web/endpoints.py is missing from it or it names a route the table does not have.
It is read once, on the first request, and kept as bytes.
"""
from __future__ import annotations

import os

from axon.api.auth import Decision
from axon.web.replies import JSON
from axon.web.routes import Route
from axon.web.wire import Request, Response

DOCUMENT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openapi.json")
ROUTE_PATH = "/openapi.json"


def openapi_routes(path: str = DOCUMENT_PATH) -> list[Route]:
    """The route serving the document; open (it describes the API and holds no data)."""
    cached: list[bytes] = []

    def document(req: Request) -> Response:
        if not cached:
            with open(path, "rb") as f:
                cached.append(f.read())
        return Response(200, [JSON], cached[0])

    return [Route("GET", ROUTE_PATH, document, Decision.OPEN)]
