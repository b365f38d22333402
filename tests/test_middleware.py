"""The middleware chain: order, short cuts, the one error middleware, and one chain for every path."""
from __future__ import annotations

import json
import logging

import bottle
import pytest

from axon.api.errors import (ApiError, Conflict, InvalidInput, NotFound, NotLeader, RevisionMismatch,
                             TooLarge, Unavailable)
from axon.testing.inprocess import api_cluster, request
from axon.web.middleware import Handler, chain
from axon.web.replies import error_replies, status_of
from axon.web.routes import MethodNotAllowed
from axon.web.wire import Request, Response


def answer(status: int = 200, text: str = "ok") -> Handler:
    return lambda req: Response(status, [("Content-Type", "text/plain")], text.encode())


def test_chain_runs_middlewares_outermost_first_around_the_endpoint() -> None:
    seen: list[str] = []

    def tag(name: str):
        def middleware(req: Request, handler: Handler) -> Response:
            seen.append(f"{name} in")
            resp = handler(req)
            seen.append(f"{name} out")
            return resp
        return middleware

    def endpoint(req: Request) -> Response:
        seen.append("endpoint")
        return answer()(req)

    handler = chain([tag("a"), tag("b")], endpoint)
    assert handler(request("GET", "/")).status == 200
    assert seen == ["a in", "b in", "endpoint", "b out", "a out"]
    assert chain([], endpoint)(request("GET", "/")).status == 200


def test_a_middleware_may_answer_without_calling_on() -> None:
    def refuse(req: Request, handler: Handler) -> Response:
        return Response(429, [], b"")
    reached = []
    handler = chain([refuse], lambda req: reached.append(req) or answer()(req))
    assert handler(request("GET", "/")).status == 429
    assert reached == []


def failing(exc: BaseException) -> Handler:
    def endpoint(req: Request) -> Response:
        raise exc
    return endpoint


def json_of(resp: Response) -> dict:
    assert ("Content-Type", "application/json") in resp.headers
    return json.loads(resp.body)


@pytest.mark.parametrize("exc,status", [
    (InvalidInput("bad"), 400), (NotFound("gone", key="k"), 404), (MethodNotAllowed("no"), 405),
    (Conflict("clash"), 409), (RevisionMismatch("mismatch", revision=3), 412), (TooLarge("big"), 413),
    (Unavailable("later", leader="n2", retry_after=2), 503), (NotLeader("n2", "10.0.0.2:7000"), 503),
    (ApiError("unmapped"), 500),
])
def test_errors_become_json_with_their_status(exc: ApiError, status: int) -> None:
    resp = chain([error_replies], failing(exc))(request("GET", "/x"))
    assert resp.status == status == status_of(exc)
    assert json_of(resp) == {"error": exc.message, **exc.details}
    retry_after = dict(resp.headers).get("Retry-After")
    assert retry_after == (str(exc.retry_after) if isinstance(exc, Unavailable) else None)


def test_bottle_errors_keep_their_status_as_json() -> None:
    for status in (404, 405, 403):
        resp = chain([error_replies], failing(bottle.HTTPError(status, "nope")))(request("PUT", "/y"))
        assert resp.status == status and isinstance(json_of(resp)["error"], str)


def test_a_bug_is_a_logged_500_and_the_next_request_is_served(caplog) -> None:
    handler = chain([error_replies], failing(KeyError("boom")))
    with caplog.at_level(logging.ERROR, logger="axon.web"):
        resp = handler(request("GET", "/kv/k"))
    assert resp.status == 500 and json_of(resp) == {"error": "internal error"}
    assert "GET /kv/k" in caplog.text and "KeyError" in caplog.text


def test_one_middleware_sees_the_fast_key_path_and_the_bottle_path() -> None:
    seen: list[tuple[str, str]] = []

    def record(req: Request, handler: Handler) -> Response:
        seen.append((req.method, req.path))
        return handler(req)

    node = api_cluster(extra=[record])["n1"]
    assert node.call("PUT", "/kv/k", {"value": "v"}).status == 200
    assert node.call("GET", "/kv/k").status == 200
    assert node.call("GET", "/cluster/status").status == 200
    assert node.call("GET", "/").status in (200, 404)   # the dashboard, through bottle (404 if not built)
    assert node.call("GET", "/no/such/path").status == 404   # bottle's own 404
    assert seen == [("PUT", "/kv/k"), ("GET", "/kv/k"), ("GET", "/cluster/status"), ("GET", "/"),
                    ("GET", "/no/such/path")]


def test_errors_from_bottle_and_from_routes_pass_the_recording_middleware_as_json() -> None:
    seen = []
    node = api_cluster(extra=[lambda req, handler: seen.append(req.path) or handler(req)])["n1"]
    for method, target, status in (("POST", "/kv/k", 405), ("PUT", "/", 405), ("GET", "/nope", 404),
                                   ("GET", "/static/../../etc/passwd", 404)):
        resp = node.call(method, target)
        assert resp.status in (status, 403), (method, target, resp)
        assert isinstance(json_of(resp)["error"], str)
    assert len(seen) == 4
