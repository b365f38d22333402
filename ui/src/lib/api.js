// Same-origin HTTP helpers: every call resolves to {status, ok, data} or throws ApiError
// (network failure, timeout); the UI never assumes an answer is well formed.

export class ApiError extends Error {
  constructor(status, message, data = null) {
    super(message);
    this.status = status;
    this.data = data;
  }
}

// The token lives in sessionStorage: it goes when the tab closes and is not shared with other
// tabs or windows (docs/security.md, browser section).
const TOKEN_KEY = "axon.token";
let onUnauthorized = () => {};

export const getToken = () => sessionStorage.getItem(TOKEN_KEY);
export const setToken = (token) => sessionStorage.setItem(TOKEN_KEY, token);
export const clearToken = () => sessionStorage.removeItem(TOKEN_KEY);

/** `handler(res)` runs on every 401 answer (the app goes back to sign-in). */
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

/** `headers` plus the signed-in token's Authorization, if any. */
export function withAuth(headers = {}) {
  const token = getToken();
  return token ? { ...headers, Authorization: `Bearer ${token}` } : { ...headers };
}

/** Tells the app a call was refused with 401 (a call made without `request`, e.g. a watch). */
export function unauthorized(answer) {
  onUnauthorized(answer);
}

export async function request(method, url, { body, headers = {}, timeoutMs = 10000 } = {}) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  const hdrs = withAuth(headers);
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
    const answer = { status: res.status, ok: res.ok, data };
    if (res.status === 401) onUnauthorized(answer);
    return answer;
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
  const why = res.status === 403 ? "not allowed for this token: " : "";
  return msg ? `${why}${msg} (HTTP ${res.status})` : `${why}HTTP ${res.status}`;
}

/** Runs `step` (async) again and again, `ms` apart from start to start, until `stopped()`. */
export async function repeat(ms, step, stopped) {
  while (!stopped()) {
    const started = Date.now();
    await step();
    await new Promise((r) => setTimeout(r, Math.max(100, ms - (Date.now() - started))));
  }
}

/** Throws ApiError unless the answer's status is one of `expected`. */
export async function call(method, url, options = {}, expected = [200]) {
  const res = await request(method, url, options);
  if (!expected.includes(res.status)) throw new ApiError(res.status, errorText(res), res.data);
  return res.data;
}

export const kvUrl = (key) => "/kv/" + encodeURIComponent(key);

export function watchUrl(prefix) {
  return "/watch?" + new URLSearchParams({ prefix }).toString();
}

export function listUrl(prefix, limit, after) {
  const q = new URLSearchParams({ prefix, limit: String(limit) });
  if (after != null) q.set("after", after);
  return "/kv?" + q.toString();
}
