"""Answers as JSON Responses, and the one place an exception becomes one.

``STATUS`` is the one table from error class to HTTP status.  ``error_replies`` is the
outermost middleware: domain errors get their status and ``{"error": message, ...details}``
(with Retry-After when the client should retry), bottle's own errors keep their status,
and anything else is a bug: logged, and answered 500.
"""
from __future__ import annotations

import logging
from typing import Any, Iterable

import bottle

from axon import jsontext
from axon.api.errors import (ApiError, Compacted, Conflict, Forbidden, InvalidInput, NoSpace,
                             NotFound, RevisionMismatch, TokenRequired, TooLarge, Unauthenticated, Unavailable)
from axon.web.middleware import Handler
from axon.web.routes import MethodNotAllowed
from axon.web.wire import JSON, Request, Response

log = logging.getLogger("axon.web")

STATUS: dict[type[ApiError], int] = {
    InvalidInput: 400,
    TokenRequired: 401,     # answered with WWW-Authenticate: Bearer
    Forbidden: 403,
    Unauthenticated: 403,   # no WWW-Authenticate scheme to offer, so not 401
    NotFound: 404,
    MethodNotAllowed: 405,
    Conflict: 409,
    Compacted: 410,
    RevisionMismatch: 412,
    TooLarge: 413,
    NoSpace: 507,       # Insufficient Storage, as the disk alarm's contract says
    Unavailable: 503,   # NotLeader too, when it was not passed on to the leader
}
_BOTTLE_MESSAGES = {404: "nothing at {method} {path}", 405: "method {method} not allowed on {path}"}


def ok(body: Any) -> Response:
    """200 with ``body`` as JSON (the hot path: no extra headers)."""
    return Response(200, [JSON], jsontext.dumps_bytes(body))


def json_reply(status: int, body: Any, headers: Iterable[tuple[str, str]] = ()) -> Response:
    return Response(status, [JSON, *headers], jsontext.dumps_bytes(body))


def status_of(err: ApiError) -> int:
    """The HTTP status of a domain error: that of its nearest class in STATUS (500 for none)."""
    for cls in type(err).__mro__:
        status = STATUS.get(cls)
        if status is not None:
            return status
    return 500


def error_reply(err: ApiError) -> Response:
    headers = [("Retry-After", str(err.retry_after))] if isinstance(err, Unavailable) else []
    if isinstance(err, TokenRequired):
        headers.append(("WWW-Authenticate", "Bearer"))
    return json_reply(status_of(err), {"error": err.message, **err.details}, headers)


def internal_error() -> Response:
    return json_reply(500, {"error": "internal error"})


def error_replies(req: Request, handler: Handler) -> Response:
    """Middleware: every exception below it becomes a JSON answer."""
    try:
        return handler(req)
    except ApiError as err:
        return error_reply(err)
    except bottle.HTTPError as err:   # bottle's router or static_file refused (404, 405, 403 ...)
        return json_reply(err.status_code, {"error": _bottle_message(err, req)})
    except Exception:   # a bug: log it, answer JSON, keep serving
        log.exception("unhandled error in %s %s", req.method, req.path)
        return internal_error()


def _bottle_message(err: bottle.HTTPError, req: Request) -> str:
    template = _BOTTLE_MESSAGES.get(err.status_code)
    if template is not None:
        return template.format(method=req.method, path=req.path)
    return err.body if isinstance(err.body, str) and err.body else err.status_line
