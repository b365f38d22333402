// Same-origin HTTP helpers: every call resolves to {status, ok, data} or throws ApiError
// (network failure, timeout); the UI never assumes an answer is well formed.

export class ApiError extends Error {
  constructor(status, message, data = null) {
    super(message);
    this.status = status;
    this.data = data;
  }
}

export async function request(method, url, { body, headers = {}, timeoutMs = 10000 } = {}) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  const hdrs = { ...headers };
  if (body !== undefined) hdrs["Content-Type"] = "application/json";
  try {
    const res = await fetch(url, {
      method,
      headers: hdrs,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: ctl.signal,
      cache: "no-store",
      // nodes forward leader-only calls themselves; a redirect would be to another origin
      redirect: "error",
    });
    const text = await res.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    return { status: res.status, ok: res.ok, data };
  } catch (err) {
    if (err instanceof ApiError) throw err;
    if (err && err.name === "AbortError") throw new ApiError(0, `${method} ${url}: timed out`);
    throw new ApiError(0, `${method} ${url}: ${err && err.message ? err.message : "network error"}`);
  } finally {
    clearTimeout(timer);
  }
}

export function errorText(res) {
  const msg = res.data && typeof res.data === "object" && typeof res.data.error === "string" ? res.data.error : "";
  return msg ? `${msg} (HTTP ${res.status})` : `HTTP ${res.status}`;
}

/** Throws ApiError unless the answer's status is one of `expected`. */
export async function call(method, url, options = {}, expected = [200]) {
  const res = await request(method, url, options);
  if (!expected.includes(res.status)) throw new ApiError(res.status, errorText(res), res.data);
  return res.data;
}

export const kvUrl = (key) => "/kv/" + encodeURIComponent(key);

export function listUrl(prefix, limit, after) {
  const q = new URLSearchParams({ prefix, limit: String(limit) });
  if (after != null) q.set("after", after);
  return "/kv?" + q.toString();
}
