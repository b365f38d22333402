"""schemathesis against a real node: generated requests for every operation of the document it
serves at GET /openapi.json; no answer may be a server error, and every answer's status,
content type and body must be what the document says.

Two runs: a node without auth or cluster key, and one bootstrapped with --auth and a cluster
key, driven with its root token.  What is left out, and why:
  - GET /watch, in both: the stream never ends, so a generated watch would only time out
    (tests/test_watch.py drives it);
  - POST /auth/enable, without auth: it would turn auth on in the middle of the run (the auth
    run covers it: there it is answered 409);
  - POST /cluster/join, without a cluster key: a generated join that is valid adds a learner at
    a generated address, which the leader then dials and resolves (the keyed run covers it:
    without the proof of the key every join is refused 403 and nothing is added).
Removing members is safe on one node: the last voter cannot be removed (409).
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from axon.testing.cluster import Cluster, cluster_key_args

pytest.importorskip("schemathesis")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
MAX_EXAMPLES = 100   # per operation and phase: about 40 s a run on two cores
RUN_TIMEOUT = 300
SEED = 20261204      # the same cases every run; a failure prints how to replay it


def schemathesis(node_http: str, workdir: str, exclude: list[str], headers: dict[str, str]) -> None:
    """Run ``st run`` against the node's own document; fail with its report unless every case passed."""
    command = [os.path.join(os.path.dirname(sys.executable), "st"), "run",
               f"http://{node_http}/openapi.json", "--checks", CHECKS,
               "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "1",
               "--generation-database", "none", "--no-color", "--request-timeout", "10"]
    for path in exclude:
        command += ["--exclude-path", path]
    for name, value in headers.items():
        command += ["--header", f"{name}: {value}"]
    result = subprocess.run(command, cwd=workdir, stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=RUN_TIMEOUT)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert " passed" in report and "failed" not in report.split("SUMMARY")[-1], report


def test_no_server_error_and_every_answer_as_documented_without_auth(tmp_path) -> None:
    with Cluster(tmp_path, n=1) as cluster:
        node = cluster.nodes[0]
        schemathesis(node.http, str(tmp_path), ["/watch", "/auth/enable", "/cluster/join"], {})
        node.check_running()
        status = node.status()
        assert status["state"] == "leader" and status["voters"] == [node.node_id]


def test_no_server_error_and_every_answer_as_documented_with_auth_and_a_cluster_key(tmp_path) -> None:
    with Cluster(tmp_path, n=1, extra_args=["--auth", *cluster_key_args(tmp_path)]) as cluster:
        node = cluster.nodes[0]
        token = node.harness_token()
        assert token
        schemathesis(node.http, str(tmp_path), ["/watch"], {"Authorization": f"Bearer {token}"})
        node.check_running()
        status = node.status()
        assert status["state"] == "leader" and status["voters"] == [node.node_id]
