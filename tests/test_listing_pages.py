"""A listing page is bounded by bytes: fewer items and `next` set, never a page past the budget."""
from __future__ import annotations

import json

import pytest

from axon.kv.commands import Put, encode_commands
from axon.kv.store import Slot, Store, page_item_bytes
from axon.testing.cluster import Cluster
from axon.testing.fake_raft import MemoryStore
from axon.web.endpoints import PAGE_PIECE_BYTES, STREAM_PAGE_ABOVE, page_reply
from axon.web.replies import ok

MiB = 1 << 20
VALUES = {f"p/{i:02d}": chr(ord("a") + i) * (100 * (i + 1)) for i in range(12)}


@pytest.fixture(params=["leveldb", "memory"])
def store(request, tmp_path):
    """The real store and the fake one the API tests use: both page the same way."""
    if request.param == "memory":
        fake = MemoryStore()
        fake.apply([Put(k, v) for k, v in VALUES.items()])
        yield fake
        return
    with Store.open(str(tmp_path / "store")) as real:
        real.apply([Slot(1, 1, encode_commands([Put(k, v) for k, v in VALUES.items()]))])
        yield real


def pages(store, limit: int, max_bytes: int | None) -> list[list[tuple[str, str, int]]]:
    out, after = [], None
    while True:
        items, after = store.scan("p/", after, limit, max_bytes)
        out.append(items)
        if after is None:
            return out


def test_a_byte_budget_ends_pages_early_and_every_key_comes_once(store) -> None:
    budget = 1000
    got = pages(store, 1000, budget)
    assert len(got) > 1
    keys = [k for page in got for k, _, _ in page]
    assert keys == sorted(VALUES)
    for page in got:
        sizes = [page_item_bytes(len(k), len(v)) for k, v, _ in page]
        assert len(page) == 1 or sum(sizes) <= budget


def test_an_item_bigger_than_the_budget_comes_alone(store) -> None:
    got = pages(store, 1000, 10)
    assert [len(page) for page in got] == [1] * len(VALUES)


def test_count_and_bytes_bound_together(store) -> None:
    assert [len(page) for page in pages(store, 5, None)] == [5, 5, 2]
    both = pages(store, 5, 2000)
    assert len(both[0]) == 5 and 1 <= max(len(page) for page in both[1:]) < 5   # count, then bytes
    assert [k for page in both for k, _, _ in page] == sorted(VALUES)
    assert [(k, v) for k, v, _ in pages(store, 1000, None)[0]] == sorted(VALUES.items())


@pytest.mark.parametrize("value", [
    "\u00e9\"x" * 30000,                     # escaped: each item's text built whole
    "plain ascii ~ " * 20000,                # sent as it is, between its item's other parts
    "x" * (PAGE_PIECE_BYTES - 1),            # just short of a part of its own
    "tab\there" * 20000,                     # ASCII that still needs escapes
])
def test_a_big_page_is_streamed_as_the_same_json(value: str) -> None:
    page = {"items": [{"key": f"k\"{i}", "value": value[i:], "revision": i} for i in range(8)]
            + [{"key": "small", "value": "v", "revision": 9}], "next": "k7"}
    reply = page_reply(page)
    assert reply.stream is not None
    pieces = list(reply.stream)
    assert b"".join(pieces) == ok(page).body   # the very text of the unstreamed answer
    longest_item = max(len(json.dumps(item)) for item in page["items"])
    assert all(pieces) and max(map(len, pieces)) < PAGE_PIECE_BYTES + longest_item
    if value.startswith("plain"):
        assert value[3:].encode() in pieces   # a piece of its own, for the server to send as it is
    small = {"items": [{"key": "k", "value": "v", "revision": 1}], "next": None}
    assert page_reply(small).body == ok(small).body and page_reply(small).stream is None
    assert STREAM_PAGE_ABOVE < 4 * MiB


# ---------------------------------------------------------------------- a real node

def test_a_node_pages_1mib_values_by_bytes(tmp_path) -> None:
    bound = 4 * MiB   # the default --max-page-bytes
    values = {f"big/{i:02d}": chr(ord("a") + i) * (MiB - 64) for i in range(10)}
    with Cluster(tmp_path, n=1) as cluster:
        node = cluster.nodes[0]
        for key, value in values.items():
            node.client.put(key, value)
        seen: list[str] = []
        after, sizes = "", []
        while True:
            answer = node.pool.request("GET", node.http, f"/kv?prefix=big/&limit=1000&after={after}")
            assert answer.status == 200
            sizes.append(len(answer.body))
            page = answer.json()
            assert all(item["value"] == values[item["key"]] for item in page["items"])
            seen += [item["key"] for item in page["items"]]
            if page["next"] is None:
                break
            assert page["next"] == seen[-1]
            after = page["next"]
        print(f"pages of {[round(s / MiB, 2) for s in sizes]} MiB")
        assert seen == sorted(values)
        assert len(sizes) > 1 and max(sizes) <= bound
