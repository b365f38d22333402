"""``/leases``: grant, keepalive, show and revoke a lease (axon/api/leases.py), all on the leader.

Each route needs a write token (``Decision.LEASE``); showing a lease also needs read on each
of its keys, revoking it write on each (the keys it deletes), decided with the lease's keys
as a transaction's are decided with its body.
"""
from __future__ import annotations

from axon.api.auth import Decision
from axon.api.leases import LeaseService
from axon.web.auth import AuthGate
from axon.web.forward import Forwarder
from axon.web.replies import json_reply, ok
from axon.web.routes import Route
from axon.web.wire import Request, Response


def lease_routes(leases: LeaseService, forwarder: Forwarder, gate: AuthGate) -> list[Route]:
    """The lease routes, each passed on to the leader by a follower."""
    leader_only = forwarder.leader_only

    def grant(req: Request) -> Response:
        return json_reply(201, leases.grant(req.body))

    def keepalive(req: Request, lease_id: str) -> Response:
        return ok(leases.keepalive(lease_id))

    def show(req: Request, lease_id: str) -> Response:
        answer = leases.show(lease_id)
        gate.check_keys(req, answer["keys"], ())
        return ok(answer)

    def revoke(req: Request, lease_id: str) -> Response:
        # the keys are checked now and their scope again when the entry applies: a key attached
        # in between (by a token that may write it) must not be deleted on this token's word
        gate.check_keys(req, (), leases.keys(lease_id))
        return ok(leases.revoke(lease_id, within=gate.write_scope(req)))

    return [
        Route("POST", "/leases", leader_only(grant), Decision.LEASE),
        Route("POST", "/leases/<lease_id>/keepalive", leader_only(keepalive), Decision.LEASE),
        Route("GET", "/leases/<lease_id>", leader_only(show), Decision.LEASE),
        Route("DELETE", "/leases/<lease_id>", leader_only(revoke), Decision.LEASE),
    ]
