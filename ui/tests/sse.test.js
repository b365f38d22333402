// The hand-written SSE parser (src/lib/sse.js): run by tests/test_dashboard_live_units.py.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SseParser, SseError } from "../src/lib/sse.js";

test("events split anywhere, with CRLF, CR or LF, comments and ids", () => {
  const text = ": watching from revision 5\n\nid: 5\r\nevent: put\r\ndata: {\"key\": \"a\"}\r\n\r\nid: 6\revent: delete\rdata: x\rdata: y\r\r:\n";  // a CR last may be half of a CRLF: the comment after it settles it
  for (let cut = 0; cut <= text.length; cut++) {
    const p = new SseParser();
    const got = [...p.feed(text.slice(0, cut)), ...p.feed(text.slice(cut))];
    assert.deepEqual(got, [
      { event: "put", data: '{"key": "a"}', id: "5" },
      { event: "delete", data: "x\ny", id: "6" },
    ], `cut at ${cut}`);
    assert.equal(p.lastId, "6");
  }
});

test("no data, no event; an id with NUL is ignored; a field without a colon", () => {
  const p = new SseParser();
  assert.deepEqual(p.feed("id: 7\n\nid: 8\0\ndata\n\n"), [{ event: "message", data: "", id: "7" }]);
});

test("an event past the limit breaks the stream", () => {
  const p = new SseParser(10);
  assert.throws(() => p.feed("data: 0123456789abc"), SseError);
});
