// Server-Sent Events, parsed by hand from a fetch() body: EventSource cannot send the
// Authorization header the dashboard signs in with. Pure (no I/O): feed it text, get events.

export const MAX_EVENT_CHARS = 64 << 20; // one event's text; past it the stream is broken, not buffered on

export class SseError extends Error {}

/** Splits a text stream into events `{event, data, id}`, as the EventSource algorithm does. */
export class SseParser {
  constructor(maxChars = MAX_EVENT_CHARS) {
    this.maxChars = maxChars;
    this.buffer = "";
    this.data = [];
    this.size = 0;
    this.event = "";
    this.lastId = null; // the stream's last event id: what a reconnect sends as Last-Event-ID
  }

  /** The events completed by `text` (a decoded piece of the body, split anywhere). */
  feed(text) {
    this.buffer += text;
    const events = [];
    let start = 0;
    for (;;) {
      const cr = this.buffer.indexOf("\r", start);
      const lf = this.buffer.indexOf("\n", start);
      if (cr < 0 && lf < 0) break;
      let end, next;
      if (cr >= 0 && (lf < 0 || cr < lf)) {
        // a lone CR ends a line too; a CR last in the piece may be half of a CRLF: wait for more
        if (cr === this.buffer.length - 1) break;
        end = cr;
        next = this.buffer[cr + 1] === "\n" ? cr + 2 : cr + 1;
      } else {
        end = lf;
        next = lf + 1;
      }
      const event = this.line(this.buffer.slice(start, end));
      if (event) events.push(event);
      start = next;
    }
    this.buffer = this.buffer.slice(start);
    if (this.buffer.length + this.size > this.maxChars) throw new SseError("an event longer than the limit");
    return events;
  }

  line(line) {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return null; // a comment: keep-alive
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") {
      this.data.push(value);
      this.size += value.length + 1;
    } else if (field === "event") this.event = value;
    else if (field === "id" && !value.includes("\0")) this.lastId = value;
    return null;
  }

  dispatch() {
    const data = this.data;
    const event = this.event || "message";
    this.data = [];
    this.size = 0;
    this.event = "";
    if (!data.length) return null;
    return { event, data: data.join("\n"), id: this.lastId };
  }
}
