"""``GET /watch``: a watch (axon/api/watch.py) as a Server-Sent Events stream.

Each change is ``id: <revision>``, ``event: put|delete``, ``data: {"key", "value", "revision"}``;
a quiet interval gives ``event: progress`` with ``{"revision"}`` (its id too, so a client
that resumes with ``Last-Event-ID`` skips what it has already seen); the end of a watch the
node cannot continue is one ``event: error`` with ``{"error"[, "compacted_revision"]}``.
The answer's ``X-Axon-Start-Revision`` header says the first revision the watch delivers.

A watch "from now" starts at the leader's ReadIndex: a follower asks its leader for it
(``GET /cluster/read-index``, passed on like any leader-only call, with the client's token)
and serves the stream itself from what it applies.  The client's token is checked again at
every progress event, so a revoked token stops its watches within one interval.
"""
from __future__ import annotations

import json
from dataclasses import replace
from typing import Callable, Iterator

from axon import jsontext
from axon.api.auth import Decision
from axon.api.errors import ApiError, NotLeader, Unavailable
from axon.api.watch import Change, Ended, Progress, Watch, WatchService, parse_watch
from axon.web.forward import Forwarder
from axon.web.params import query_params
from axon.web.replies import ok
from axon.web.routes import Route
from axon.web.sse import format_comment, format_event, sse_response
from axon.web.wire import Request, Response

READ_INDEX_PATH = "/cluster/read-index"
Recheck = Callable[[Request], None]   # raises ApiError once the request's token may no longer watch


def watch_routes(watches: WatchService, forwarder: Forwarder, max_key_bytes: int,
                 recheck: Recheck) -> list[Route]:
    """The watch route and the read-index route a follower's watch asks its leader."""

    def read_index(req: Request) -> Response:
        return ok({"index": watches.now() - 1})

    def watch(req: Request) -> Response:
        query = query_params(req.query)
        spec = parse_watch(query.get("key"), query.get("prefix"), query.get("from_revision"),
                           req.headers.get("last-event-id"), max_key_bytes)
        if spec.start is None:
            opened = watches.open(spec, read_now(req, watches, forwarder), catch_up=True)
        else:
            opened = watches.open(spec, spec.start)
        return sse_response(_stream(opened, lambda: recheck(req)),
                            [("X-Accel-Buffering", "no"),   # proxies must not hold events back
                             # where a client resumes if the stream breaks before any event
                             ("X-Axon-Start-Revision", str(opened.start))])

    return [
        Route("GET", "/watch", watch, Decision.WATCH),
        Route("GET", READ_INDEX_PATH, forwarder.leader_only(read_index), Decision.ANY_TOKEN),
    ]


def read_now(req: Request, watches: WatchService, forwarder: Forwarder) -> int:
    """The first revision of a watch from now: the leader's ReadIndex + 1, asked of it if need be."""
    try:
        return watches.now()
    except NotLeader as exc:
        ask = replace(req, method="GET", path=READ_INDEX_PATH, query="", body=b"")
        answer = forwarder.forward(ask, exc)
        try:
            index = json.loads(answer.body)["index"] if answer.status == 200 else None
        except (ValueError, KeyError, TypeError):
            index = None
        if type(index) is not int or index < 0:
            raise Unavailable(f"the leader did not give a read index (HTTP {answer.status})",
                              leader=exc.leader) from None
        return index + 1


def _stream(watch: Watch, recheck: Callable[[], None]) -> Iterator[bytes]:
    """The watch's events as SSE bytes, one write per batch; unsubscribes when the client leaves."""
    try:
        yield format_comment(f"watching from revision {watch.start}")   # the head goes out now
        for batch in watch.batches():
            pieces = []
            for event in batch:
                if type(event) is Change:
                    pieces.append(_change(event))
                elif type(event) is Progress:
                    try:
                        recheck()
                    except ApiError as err:
                        pieces.append(format_event(jsontext.dumps({"error": f"watch ended: {err.message}"}),
                                                   event="error"))
                        yield b"".join(pieces)
                        return
                    pieces.append(format_event(jsontext.dumps({"revision": event.revision}), event="progress",
                                               event_id=str(event.revision)))
                elif type(event) is Ended:
                    pieces.append(_ended(event))
            yield b"".join(pieces)
    finally:
        watch.close()


def _change(change: Change) -> bytes:
    data = jsontext.dumps({"key": change.key, "value": change.value, "revision": change.revision})
    return format_event(data, event=change.kind, event_id=str(change.revision))


def _ended(ended: Ended) -> bytes:
    body: dict = {"error": ended.reason}
    if ended.compacted_revision is not None:
        body["compacted_revision"] = ended.compacted_revision
    return format_event(jsontext.dumps(body), event="error")
