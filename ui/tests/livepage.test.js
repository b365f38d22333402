// The live page (src/lib/livepage.js) and the charts' series (src/lib/series.js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { applyChange, compareKeys } from "../src/lib/livepage.js";
import { linePath, mergeStats, niceMax, yAxis } from "../src/lib/series.js";

const item = (key, revision, value = "v") => ({ key, value, revision });
const put = (key, revision, value = "v") => ({ kind: "put", key, value, revision });
const del = (key, revision) => ({ kind: "delete", key, revision });

test("a put inserts in key order, replaces a newer revision only", () => {
  let page = { items: [item("a", 1), item("c", 2)], next: null };
  page = applyChange(page, put("b", 3), null, 10);
  assert.deepEqual(page.items.map((i) => i.key), ["a", "b", "c"]);
  const same = applyChange(page, put("c", 2, "old"), null, 10);
  assert.equal(same, page);
  page = applyChange(page, put("c", 4, "new"), null, 10);
  assert.equal(page.items[2].value, "new");
});

test("a delete removes only what it is newer than", () => {
  const page = { items: [item("a", 5)], next: null };
  assert.equal(applyChange(page, del("a", 4), null, 10), page);   // re-created after the delete
  assert.deepEqual(applyChange(page, del("a", 6), null, 10).items, []);
  assert.equal(applyChange(page, del("zz", 6), null, 10), page);
});

test("only keys of the page; a full page passes its last key on", () => {
  const page = { items: [item("b", 1), item("d", 1)], next: "d" };
  assert.equal(applyChange(page, put("a", 2), "a", 2), page);   // before the page (after = "a")
  assert.equal(applyChange(page, put("e", 2), "a", 2), page);   // after it (next = "d")
  const grown = applyChange(page, put("c", 2), "a", 2);
  assert.deepEqual(grown.items.map((i) => i.key), ["b", "c"]);
  assert.equal(grown.next, "c");
});

test("keys compare as the store sorts them (code points, not UTF-16 units)", () => {
  assert.ok(compareKeys("\u{1F600}", "\uFFFF") > 0);
  assert.ok(compareKeys("a", "ab") < 0);
});

test("stats merge per node, skip what is known, keep the window", () => {
  const s = (t, w) => ({ t, writes_per_s: w, reads_per_s: 0, commit_p99_ms: null, fsync_p99_ms: 1 });
  let series = mergeStats({}, { nodes: { n1: { samples: [s(1, 1), s(2, 2)] }, n2: { error: "no answer" } } }, 10);
  series = mergeStats(series, { nodes: { n1: { samples: [s(2, 2), s(3, 3), s(20, 4)] } } }, 10);
  assert.deepEqual(series.n1.samples.map((x) => x.t), [20]);
  assert.equal(series.n2.error, "no answer");
  assert.equal(yAxis(series, "writes_per_s").max, 5);
  assert.equal(niceMax(0), 1);
  assert.equal(niceMax(101), 200);
});

test("a line breaks at a missing value and maps time to x", () => {
  const samples = [{ t: 0, m: 1 }, { t: 5, m: null }, { t: 10, m: 2 }];
  const line = linePath(samples, "m", { endT: 10, windowS: 10, max: 2, width: 100, height: 50 });
  assert.equal(line.d, "M0.0 25.0M100.0 0.0");
  assert.equal(line.points, 2);
});
