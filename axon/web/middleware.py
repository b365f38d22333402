"""The request pipeline: middlewares wrapped around an endpoint, as plain function calls.

A middleware sees every request before the endpoint and every response (or exception)
after it; it may answer by itself without calling on.  ``chain`` nests them once, at
start-up, so a request costs two plain calls per middleware (it and the closure binding
its next handler) and nothing else.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

from axon.metrics import OTHER_ROUTE, HttpMetrics
from axon.web.wire import Request, Response

Handler = Callable[[Request], Response]
Middleware = Callable[[Request, Handler], Response]


def chain(middlewares: Sequence[Middleware], endpoint: Handler) -> Handler:
    """One Handler: ``middlewares[0]`` sees the request first and the response last."""
    handler = endpoint
    for middleware in reversed(middlewares):
        handler = _bind(middleware, handler)
    return handler


def _bind(middleware: Middleware, handler: Handler) -> Handler:
    # a closure, not functools.partial(middleware, handler=...): a partial with a keyword
    # builds a dict on every call, and costs more than this frame
    def bound(req: Request) -> Response:
        return middleware(req, handler)
    return bound


def http_metrics(metrics: HttpMetrics) -> Middleware:
    """Count every request by method, route pattern (never the raw path: labels must stay few;
    the router notes the pattern in ``req.route``) and status, with its time to the response's head."""
    clock = time.perf_counter
    observe = metrics.observe

    def measure(req: Request, handler: Handler) -> Response:
        started = clock()
        resp = handler(req)
        observe(req.method, req.route or OTHER_ROUTE, resp.status, clock() - started,
                "x-axon-forwarded" in req.headers)
        return resp
    return measure

