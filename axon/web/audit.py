"""Auditing as a middleware: the routes marked here are recorded in the audit log with their outcome.

The api stays free of it: what was asked (method, path, the target's id), by whom (the
principal the auth middleware leaves on the request, else "anonymous"), from where, and
the status the client got are all HTTP facts, known here for every marked route alike —
including refusals by the browser check or auth.  A forwarded request is recorded on the
node that took it and on the leader, which also names the node it came through ("via").
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Callable
from urllib.parse import unquote

from axon.audit import ANONYMOUS, AuditLog
from axon.web.middleware import Handler, Middleware
from axon.web.peers import ORIGIN
from axon.web.wire import Request, Response

Target = Callable[[Request, "re.Match[str]", Response], str]


def path_target(req: Request, match: "re.Match[str]", resp: Response) -> str:
    """The target named in the path (the pattern's group 'target')."""
    return unquote(match.group("target"))


def body_field(name: str) -> Target:
    """The target named by a string field of the request's JSON body (never the whole body)."""
    def target(req: Request, match: "re.Match[str]", resp: Response) -> str:
        return _json_field(req.body, name)
    return target


def answer_field(name: str) -> Target:
    """The target named by a string field of the JSON answer (e.g. the id of a node just added)."""
    def target(req: Request, match: "re.Match[str]", resp: Response) -> str:
        return _json_field(resp.body, name)
    return target


def fixed(value: str) -> Target:
    return lambda req, match, resp: value


@dataclass(frozen=True)
class Audited:
    """One audited route: its method, a regex over the path, the action's name and its target."""
    method: str
    pattern: str
    action: str
    target: Target = fixed("")


def node_audited(node_id: str) -> list[Audited]:
    """A node's audited routes: membership changes and auth changes."""
    return [
        Audited("POST", r"/cluster/join", "join", body_field("node_id")),
        Audited("POST", r"/cluster/leave", "leave", fixed(node_id)),
        Audited("DELETE", r"/cluster/nodes/(?P<target>[^/]+)", "remove", path_target),
        Audited("POST", r"/auth/enable", "auth.enable"),
        Audited("POST", r"/auth/disable", "auth.disable"),
        Audited("POST", r"/auth/tokens", "auth.token.create", body_field("name")),
        Audited("DELETE", r"/auth/tokens/(?P<target>[^/]+)", "auth.token.revoke", path_target),
    ]


def launcher_audited() -> list[Audited]:
    """The launcher's audited routes: every action on its nodes."""
    return [
        Audited("POST", r"/api/nodes", "launcher.add", answer_field("node_id")),
        Audited("DELETE", r"/api/nodes/(?P<target>[^/]+)", "launcher.decommission", path_target),
        Audited("POST", r"/api/nodes/(?P<target>[^/]+)/(?P<verb>start|stop|restart)", "launcher.{verb}",
                path_target),
    ]


def outcome_of(status: int) -> str:
    """ok (2xx/3xx), refused (401, 403, 421: not allowed), failed (any other error)."""
    if status < 400:
        return "ok"
    return "refused" if status in (401, 403, 421) else "failed"


def audit_middleware(log: AuditLog, audited: list[Audited]) -> Middleware:
    """Records every request to an audited route after it is answered; others pass untouched."""
    by_method: dict[str, list[tuple[re.Pattern[str], Audited]]] = {}
    for rule in audited:
        by_method.setdefault(rule.method, []).append((re.compile(rule.pattern), rule))

    def audit(req: Request, handler: Handler) -> Response:
        rules = by_method.get(req.method)
        if rules is None:   # the hot path: GET and PUT are never audited
            return handler(req)
        for pattern, rule in rules:
            match = pattern.fullmatch(req.path)
            if match is not None:
                resp = handler(req)
                _record(log, req, match, rule, resp)
                return resp
        return handler(req)
    return audit


def _record(log: AuditLog, req: Request, match: "re.Match[str]", rule: Audited, resp: Response) -> None:
    try:
        target = rule.target(req, match, resp)
    except Exception:   # a target we cannot read must not cost the record
        target = ""
    via = req.headers.get(ORIGIN)   # left by PeerTrust only on a member's genuine forward
    details = {"status": resp.status, **({"via": via} if via else {})}
    log.record(rule.action.format(**match.groupdict()), outcome_of(resp.status),
               principal=getattr(req, "principal", None) or ANONYMOUS, remote=req.remote,
               target=target, **details)


def _json_field(data: bytes, name: str) -> str:
    if not data or len(data) > 64 << 10:
        return ""
    try:
        value = json.loads(data).get(name)
    except (ValueError, AttributeError, RecursionError):
        return ""
    return value if isinstance(value, str) else ""
