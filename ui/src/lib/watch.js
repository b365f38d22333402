// One live watch of a prefix (GET /watch, Server-Sent Events) read with fetch(), so that it
// carries the token; whenever the stream breaks it resumes where its cursor says (watchcursor.js:
// no change lost or repeated, even partway through a revision), and gives up only when the node
// says the history is gone (410) or the token may not.
import { withAuth, unauthorized, watchUrl } from "./api.js";
import { SseParser } from "./sse.js";
import { WatchCursor } from "./watchcursor.js";

const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 5000;
const SILENCE_MS = 30000; // a node sends progress at least every 10 s: quiet this long, it is gone

/**
 * Watches `prefix` from now until `stop()` is called. Callbacks:
 * `onopen(start)`: a stream is open (first one: `start` is the first revision it delivers);
 * `onchange({kind, key, value, revision})`: a put or delete, in revision order, each once;
 * `onstate(state, detail)`: "connecting" | "live" | "retrying" | "off";
 * `oncompacted()`: the history no longer reaches back: re-read the keys and watch again.
 */
export function watchPrefix(prefix, { onopen = () => {}, onchange, onstate = () => {}, oncompacted }) {
  let stopped = false;
  let ctl = null;
  const cursor = new WatchCursor(); // how far the changes were delivered: where a new stream resumes

  async function once() {
    ctl = new AbortController();
    const headers = withAuth({ Accept: "text/event-stream" });
    if (cursor.resumeAfter() != null) headers["Last-Event-ID"] = String(cursor.resumeAfter());
    let silence = setTimeout(() => ctl.abort(), SILENCE_MS);
    try {
      const res = await fetch(watchUrl(prefix), { headers, signal: ctl.signal, cache: "no-store", redirect: "error" });
      if (res.status !== 200) {
        const text = await res.text().catch(() => "");
        let data = null;
        try {
          data = JSON.parse(text);
        } catch {
          data = null;
        }
        return { status: res.status, error: typeof data?.error === "string" ? data.error : `HTTP ${res.status}`, data };
      }
      const start = Number(res.headers.get("X-Axon-Start-Revision"));
      cursor.newStream(Number.isInteger(start) && start > 0 ? start : (cursor.resumeAfter() ?? 0) + 1);
      onopen(start);
      onstate("live");
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      const parser = new SseParser();
      for (;;) {
        const { done, value } = await reader.read();
        if (done || stopped) return { status: 0, error: "the stream ended" };
        clearTimeout(silence);
        silence = setTimeout(() => ctl.abort(), SILENCE_MS);
        for (const ev of parser.feed(decoder.decode(value, { stream: true }))) {
          let data;
          try {
            data = JSON.parse(ev.data);
          } catch {
            continue;
          }
          if ((ev.event === "put" || ev.event === "delete") && Number.isInteger(data?.revision)) {
            if (cursor.change(data.revision)) {
              onchange({ kind: ev.event, key: data.key, value: data.value, revision: data.revision });
            }
          } else if (ev.event === "progress" && Number.isInteger(data?.revision)) {
            cursor.progress(data.revision);
          } else if (ev.event === "error") {
            if (Number.isInteger(data?.compacted_revision)) return { status: 410, error: data.error };
            return { status: 0, error: String(data?.error ?? "the watch ended") };
          }
        }
      }
    } catch (err) {
      return { status: 0, error: stopped ? "stopped" : err?.name === "AbortError" ? "the node went quiet" : err.message };
    } finally {
      clearTimeout(silence);
      ctl.abort();
    }
  }

  (async () => {
    let wait = RETRY_MIN_MS;
    onstate("connecting");
    while (!stopped) {
      const opened = Date.now();
      const ended = await once();
      if (stopped) return;
      if (ended.status === 410) {
        onstate("off", "the change history moved on");
        oncompacted();
        return;
      }
      if (ended.status === 401) unauthorized({ status: 401, ok: false, data: ended.data });
      if (ended.status === 401 || ended.status === 403 || ended.status === 400) {
        onstate("off", ended.error);
        return;
      }
      if (Date.now() - opened > RETRY_MAX_MS) wait = RETRY_MIN_MS; // it was up a while: retry at once
      onstate("retrying", ended.error);
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(RETRY_MAX_MS, wait * 2);
    }
  })();

  return () => {
    stopped = true;
    onstate("off", "");
    ctl?.abort();
  };
}
