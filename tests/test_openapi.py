"""The OpenAPI document (axon/web/openapi.json) against the node's route table, and its route.

The drift test reads the route table itself: a route added to axon/web/endpoints.py without
its operation in the document (or an operation left behind when a route goes) fails here.
"""
from __future__ import annotations

import configparser
import json
import os
import re
import sys
import tempfile

import pytest

import axon
from axon.api.auth import Decision
from axon.testing.inprocess import api_cluster
from axon.web.endpoints import api_routes
from axon.web.openapi import DOCUMENT_PATH, ROUTE_PATH
from axon.web.routes import Route

REPO = os.path.dirname(os.path.dirname(os.path.abspath(axon.__file__)))
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
EVERY_ROUTE = {"400", "403", "421", "503"}   # what any route may answer (bad query, browser guard, Host, busy)


def load() -> dict:
    with open(DOCUMENT_PATH, encoding="utf-8") as f:
        return json.load(f)


class _Stand:
    """Any collaborator api_routes only keeps for later: each attribute is a no-op wrapper."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: (lambda *more: None)


def route_table() -> list[Route]:
    node = api_cluster(1)["n1"]
    return api_routes(node.service, _Stand(), "n1", _Stand(), _Stand(), _Stand())


def openapi_path(pattern: str) -> str:
    """``/kv/<key:path>`` -> ``/kv/{key}``: the router's parameters as OpenAPI writes them."""
    return re.sub(r"<([A-Za-z_][A-Za-z0-9_]*)(:path)?>", r"{\1}", pattern)


def operations(doc: dict) -> dict[tuple[str, str], dict]:
    return {(method.upper(), path): op for path, item in doc["paths"].items()
            for method, op in item.items() if method in METHODS}


def test_every_route_is_in_the_document_and_every_operation_is_a_route() -> None:
    routes = {(r.method, openapi_path(r.pattern)): r for r in route_table()}
    documented = operations(load())
    missing = sorted(set(routes) - set(documented))
    extra = sorted(set(documented) - set(routes))
    assert not missing, f"routes missing from axon/web/openapi.json: {missing}"
    assert not extra, f"operations in axon/web/openapi.json that no route serves: {extra}"


def test_each_operation_states_its_routes_auth_decision() -> None:
    documented = operations(load())
    for route in route_table():
        op = documented[route.method, openapi_path(route.pattern)]
        assert op["x-axon-auth"] == route.decision.value, (route.method, route.pattern)
        open_route = route.decision is Decision.OPEN
        assert (op.get("security") == []) is open_route, (route.method, route.pattern)
        assert ("401" in op["responses"]) is not open_route, (route.method, route.pattern)


def test_path_parameters_match_the_pattern_and_every_operation_has_the_shared_refusals() -> None:
    doc = load()
    ids = []
    for (method, path), op in operations(doc).items():
        in_path = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert in_path == set(re.findall(r"{(\w+)}", path)), (method, path)
        assert EVERY_ROUTE <= set(op["responses"]), (method, path)
        assert any(code.startswith("2") for code in op["responses"]), (method, path)
        if "requestBody" in op:
            assert "413" in op["responses"], (method, path)
        ids.append(op["operationId"])
    assert len(ids) == len(set(ids))


def test_every_reference_resolves() -> None:
    doc = load()
    text = json.dumps(doc)
    for ref in set(re.findall(r'"\$ref": "#/([^"]+)"', text)):
        node = doc
        for part in ref.split("/"):
            assert part in node, f"dangling $ref #/{ref}"
            node = node[part]
    ids = {op["operationId"] for op in operations(doc).values()}
    for (method, path), op in operations(doc).items():
        for answer in op["responses"].values():
            for name, target in answer.get("links", {}).items():
                assert target["operationId"] in ids, (method, path, name)


def test_the_document_names_this_version_and_ships_with_the_package() -> None:
    doc = load()
    assert doc["openapi"].startswith("3.") and doc["info"]["version"] == axon.__version__
    parser = configparser.ConfigParser()
    parser.read(os.path.join(REPO, "setup.cfg"))
    assert "web/openapi.json" in parser.get("options.package_data", "axon")
    assert os.path.samefile(os.path.join(REPO, "docs", "openapi.json"), DOCUMENT_PATH)
    sys.path.insert(0, REPO)
    try:
        import build_zipapp
    finally:
        sys.path.remove(REPO)
    with tempfile.TemporaryDirectory() as no_dependencies:
        archived = build_zipapp.collect(no_dependencies, os.path.dirname(axon.__file__))
    assert archived[build_zipapp.PAYLOAD + "axon/web/openapi.json"] == DOCUMENT_PATH


@pytest.mark.parametrize("auth", [False, True])
def test_the_node_serves_the_document_to_anyone(auth: bool) -> None:
    node = api_cluster(1)["n1"]
    if auth:
        assert node.call("POST", "/auth/enable").status == 201
        assert node.call("GET", "/cluster/status").status == 401
    for method in ("GET", "HEAD"):
        answer = node.call(method, ROUTE_PATH)
        assert answer.status == 200
        assert ("Content-Type", "application/json") in answer.headers
        assert json.loads(answer.body) == load()


def test_the_watch_answers_the_documented_event_stream() -> None:
    """GET /watch, which schemathesis leaves out (its stream never ends), as the document says."""
    documented = load()["paths"]["/watch"]["get"]["responses"]["200"]
    answer = api_cluster(1)["n1"].call("GET", "/watch?key=a&from_revision=1")
    try:
        assert answer.status == 200 and answer.stream is not None
        assert ("Content-Type", next(iter(documented["content"]))) in answer.headers
        assert set(documented["headers"]) <= {name for name, _ in answer.headers}
    finally:
        answer.stream.close()


# ---------------------------------------------------------------- what schemathesis found

def test_a_transaction_operation_whose_op_is_not_a_string_is_bad_input() -> None:
    """It was a 500: ``{"op": {}}`` is unhashable, and the lookup of its kind raised TypeError."""
    node = api_cluster(1)["n1"]
    for op in ({}, [], None, 1):
        answer = node.call("POST", "/txn", {"success": [{"op": op, "key": "k"}]})
        assert answer.status == 400 and "op" in json.loads(answer.body)["error"]


def test_removing_the_last_voter_is_a_conflict_not_a_retry() -> None:
    """It was a 503 (raft's ConfChangeError as Unavailable), which tells a client to retry forever."""
    node = api_cluster(1)["n1"]
    for method, path in (("DELETE", "/cluster/nodes/n1"), ("POST", "/cluster/leave")):
        answer = node.call(method, path)
        assert answer.status == 409 and "last voter" in json.loads(answer.body)["error"]
    assert node.raft.config.voters.keys() == {"n1"}
