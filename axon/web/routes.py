"""Routing: a table of (method, pattern, endpoint) and the Handler that dispatches by it.

A pattern is a literal path, optionally with parameters: ``<name>`` takes one path
segment, ``<name:path>`` the rest of the path, slashes included.  Parameters reach the
endpoint decoded strictly (axon/web/params.py) as positional arguments after the request.
A path no pattern claims goes to the fallback Handler (bottle, for the dashboard's files);
a path claimed for other methods only is MethodNotAllowed.  HEAD is routed as GET.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable

from axon.api.auth import Decision
from axon.api.errors import ApiError
from axon.web.middleware import Handler
from axon.web.params import decode_component
from axon.web.wire import Request, Response

Endpoint = Callable[..., Response]   # (request, *decoded path parameters) -> Response
_PARAM = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)(:path)?>")


class MethodNotAllowed(ApiError):
    """The path exists, but not for this method."""


@dataclass(frozen=True)
class Route:
    """One route; ``decision`` says who may call it when auth is on (axon/api/auth.py).

    A Router built with a ``gate`` refuses a route without a decision, so the node's
    table cannot grow a route nobody decided on.
    """
    method: str
    pattern: str
    endpoint: Endpoint
    decision: Decision | None = None


# (request, the route's decision, the decoded path parameters): returns, or raises a refusal
Gate = Callable[[Request, Decision, tuple], None]


class _Pattern:
    """One parameterized pattern: a literal prefix to test first, then the parameters."""

    def __init__(self, pattern: str) -> None:
        params = list(_PARAM.finditer(pattern))
        self.pattern = pattern
        self.names = tuple(m.group(1) for m in params)
        self.prefix = pattern[:params[0].start()]
        self.methods: dict[str, Endpoint] = {}
        if len(params) == 1 and params[0].group(2) and params[0].end() == len(pattern):
            self.regex = None   # one trailing path parameter (the key routes): slicing is enough
            return
        parts, end = [], 0
        for m in params:
            parts += [re.escape(pattern[end:m.start()]), "(.*)" if m.group(2) else "([^/]+)"]
            end = m.end()
        parts.append(re.escape(pattern[end:]))
        self.regex = re.compile("".join(parts), re.DOTALL)

    def match(self, path: str) -> tuple[str, ...] | None:
        """The raw (still encoded) parameters if ``path`` fits, else None."""
        if not path.startswith(self.prefix):
            return None
        if self.regex is None:
            return (path[len(self.prefix):],)
        m = self.regex.fullmatch(path)
        return m.groups() if m else None


class Router:
    """The Handler that calls the endpoint a request's method and path select."""

    def __init__(self, routes: Iterable[Route], fallback: Handler, gate: Gate | None = None) -> None:
        """With ``gate``, every route must carry a decision and the gate sees it before the endpoint."""
        self.fallback = fallback
        self._exact: dict[str, dict[str, Endpoint]] = {}
        self._patterns: list[_Pattern] = []
        by_pattern: dict[str, _Pattern] = {}
        for route in routes:
            if _PARAM.search(route.pattern) is None:
                methods = self._exact.setdefault(route.pattern, {})
            else:
                if route.pattern not in by_pattern:
                    by_pattern[route.pattern] = _Pattern(route.pattern)
                    self._patterns.append(by_pattern[route.pattern])
                methods = by_pattern[route.pattern].methods
            if route.method in methods:
                raise ValueError(f"two routes for {route.method} {route.pattern}")
            methods[route.method] = route.endpoint if gate is None else _guarded(route, gate)

    def __call__(self, req: Request) -> Response:
        path = req.path
        methods = self._exact.get(path)
        if methods is not None:
            req.route = path
            return _endpoint(methods, req)(req)
        for pattern in self._patterns:
            raw = pattern.match(path)
            if raw is not None:
                req.route = pattern.pattern
                endpoint = _endpoint(pattern.methods, req)
                return endpoint(req, *map(decode_component, raw, pattern.names))
        return self.fallback(req)


def _guarded(route: Route, gate: Gate) -> Endpoint:
    """``route``'s endpoint behind ``gate`` (ValueError for a route without a decision)."""
    decision, endpoint = route.decision, route.endpoint
    if decision is None:
        raise ValueError(f"route {route.method} {route.pattern} has no auth decision")

    def guarded(req: Request, *args: str) -> Response:
        gate(req, decision, args)
        return endpoint(req, *args)
    return guarded


def _endpoint(methods: dict[str, Endpoint], req: Request) -> Endpoint:
    endpoint = methods.get(req.method)
    if endpoint is None:
        endpoint = methods.get("GET") if req.method == "HEAD" else None
        if endpoint is None:
            raise MethodNotAllowed(f"method {req.method} not allowed on {req.path}")
    return endpoint
