// The charts' data: GET /cluster/stats answers merged into per-node series over a sliding
// window, and the numbers an SVG line chart needs. Pure: no DOM, no I/O.

export const WINDOW_S = 300; // what the charts show: the last five minutes

export const METRICS = [
  { id: "writes_per_s", title: "Writes", unit: "writes/s" },
  { id: "reads_per_s", title: "Reads", unit: "reads/s" },
  { id: "commit_p99_ms", title: "Commit latency p99", unit: "ms" },
  { id: "fsync_p99_ms", title: "WAL fsync p99", unit: "ms" },
];

/**
 * `series` ({node_id: {samples, error}}) with the answer's samples appended (only those newer
 * than each node's last one), trimmed to the `windowS` seconds before the newest sample.
 */
export function mergeStats(series, answer, windowS = WINDOW_S) {
  const nodes = answer && typeof answer.nodes === "object" && answer.nodes ? answer.nodes : {};
  const out = {};
  for (const [id, old] of Object.entries(series)) out[id] = { samples: old.samples, error: old.error };
  for (const [id, got] of Object.entries(nodes)) {
    const had = out[id]?.samples ?? [];
    if (!got || !Array.isArray(got.samples)) {
      out[id] = { samples: had, error: typeof got?.error === "string" ? got.error : "no samples" };
      continue;
    }
    const lastT = had.length ? had[had.length - 1].t : -Infinity;
    const fresh = got.samples.filter((s) => s && Number.isFinite(s.t) && s.t > lastT);
    out[id] = { samples: had.concat(fresh), error: "" };
  }
  const newest = latestT(out);
  if (newest != null) {
    for (const entry of Object.values(out)) {
      const from = entry.samples.findIndex((s) => s.t >= newest - windowS);
      entry.samples = from < 0 ? [] : from ? entry.samples.slice(from) : entry.samples;
    }
  }
  return out;
}

/** The newest sample time over every node (null when there is none). */
export function latestT(series) {
  let newest = null;
  for (const { samples } of Object.values(series)) {
    const last = samples[samples.length - 1];
    if (last && (newest == null || last.t > newest)) newest = last.t;
  }
  return newest;
}

/** A round upper bound for an axis (1, 2, 5 × 10^n) at or above `v`; 1 for nothing. */
export function niceMax(v) {
  if (!(v > 0)) return 1;
  const step = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * step) return m * step;
  return 10 * step;
}

/** The y axis of `metric` over every node's samples: `{max, ticks}` (ticks from 0 to max). */
export function yAxis(series, metric, count = 4) {
  let top = 0;
  for (const { samples } of Object.values(series))
    for (const s of samples) if (Number.isFinite(s[metric]) && s[metric] > top) top = s[metric];
  const max = niceMax(top);
  return { max, ticks: Array.from({ length: count + 1 }, (_, i) => (max * i) / count) };
}

/**
 * The SVG path of one node's `metric` in a `width` × `height` box whose right edge is `endT`
 * and left edge `endT - windowS`; a missing value (null) breaks the line. Also the point count.
 */
export function linePath(samples, metric, { endT, windowS = WINDOW_S, max, width, height }) {
  let d = "";
  let points = 0;
  let pen = false;
  for (const s of samples) {
    const v = s[metric];
    if (!Number.isFinite(v)) {
      pen = false;
      continue;
    }
    const x = width - ((endT - s.t) / windowS) * width;
    const y = height - (Math.min(v, max) / max) * height;
    d += `${pen ? "L" : "M"}${x.toFixed(1)} ${y.toFixed(1)}`;
    pen = true;
    points += 1;
  }
  return { d, points };
}

/** The newest non-null value of `metric` in `samples` (null when none). */
export function latest(samples, metric) {
  for (let i = samples.length - 1; i >= 0; i--) if (Number.isFinite(samples[i][metric])) return samples[i][metric];
  return null;
}

/** A value for an axis or a legend: few digits, no trailing noise. */
export function formatValue(v) {
  if (v == null) return "—";
  if (v === 0) return "0";
  if (Math.abs(v) >= 100) return String(Math.round(v));
  if (Math.abs(v) >= 10) return v.toFixed(1).replace(/\.0$/, "");
  return v.toFixed(2).replace(/\.?0+$/, "");
}
