// The dashboard's watch cursor (src/lib/watchcursor.js): run by tests/test_dashboard_live_units.py.
import { test } from "node:test";
import assert from "node:assert/strict";
import { WatchCursor } from "../src/lib/watchcursor.js";

function deliver(cursor, stream, delivered) {
  for (const [kind, revision] of stream) {
    if (kind === "progress") cursor.progress(revision);
    else if (cursor.change(revision)) delivered.push(revision);
  }
}

test("a break partway through a revision resumes before it and skips what was delivered", () => {
  const cursor = new WatchCursor(9);
  const delivered = [];
  cursor.newStream(10);
  deliver(cursor, [["change", 10], ["change", 12], ["change", 12]], delivered);
  assert.equal(cursor.resumeAfter(), 10);
  cursor.newStream(11);
  deliver(cursor, [["change", 12], ["change", 12], ["change", 12], ["change", 13]], delivered);
  assert.deepEqual(delivered, [10, 12, 12, 12, 13]);
  assert.equal(cursor.resumeAfter(), 12);
});

test("a progress mark completes the revision it covers; the first stream sets the start", () => {
  const cursor = new WatchCursor();
  cursor.newStream(5);
  assert.equal(cursor.resumeAfter(), 4);
  deliver(cursor, [["change", 7], ["change", 7], ["progress", 9]], []);
  assert.equal(cursor.resumeAfter(), 9);
  const delivered = [];
  cursor.newStream(10);
  deliver(cursor, [["change", 10]], delivered);
  assert.deepEqual(delivered, [10]);
});

// Every way to break streams over a few small histories: the changes delivered are the history.
test("any breaks deliver the history once, in order", () => {
  let seed = 7;
  const rand = (n) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  for (let round = 0; round < 500; round++) {
    const history = [];
    let rev = 1 + rand(4);
    for (let i = rand(10); i > 0; i--) {
      rev += 1 + rand(3);
      for (let c = 1 + rand(4); c > 0; c--) history.push(rev);
    }
    const streamFrom = (after, marks) => {
      const pending = history.filter((r) => r > after);
      const out = [];
      pending.forEach((r, i) => {
        out.push(["change", r]);
        if ((i + 1 === pending.length || pending[i + 1] !== r) && marks) out.push(["progress", r]);
      });
      return out;
    };
    const cursor = new WatchCursor(0);
    const delivered = [];
    for (let b = rand(5); b > 0; b--) {
      cursor.newStream(cursor.resumeAfter() + 1);
      const stream = streamFrom(cursor.resumeAfter(), rand(2) === 1);
      deliver(cursor, stream.slice(0, rand(stream.length + 1)), delivered);
      assert.deepEqual(delivered, history.slice(0, delivered.length), `round ${round}`);
    }
    cursor.newStream(cursor.resumeAfter() + 1);
    deliver(cursor, streamFrom(cursor.resumeAfter(), false), delivered);
    assert.deepEqual(delivered, history, `round ${round}`);
  }
});
