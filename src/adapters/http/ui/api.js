// The public API, called with the API key entered in the page (session storage only).
const KEY = "compute-worker.api-key";

export function apiKey() {
  return sessionStorage.getItem(KEY) || "";
}

export function setApiKey(value) {
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, body) {
    const message = body && typeof body === "object" && body.message ? body.message : `HTTP ${status}`;
    super(message);
    this.status = status;
    this.code = body && typeof body === "object" ? body.code : undefined;
  }
}

function headers(extra = {}) {
  const out = { Accept: "application/json", ...extra };
  const key = apiKey();
  if (key) out.Authorization = `Bearer ${key}`;
  return out;
}

function url(path, query) {
  const target = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") target.searchParams.set(name, value);
  }
  return target;
}

export async function api(path, { method = "GET", body, query, signal, idempotent = false } = {}) {
  const extra = body === undefined ? {} : { "Content-Type": "application/json" };
  if (idempotent) extra["Idempotency-Key"] = crypto.randomUUID();
  const response = await fetch(url(path, query), {
    method,
    headers: headers(extra),
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    cache: "no-store",
  });
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// Every page of a listing (bounded, so a huge history cannot hang the page).
export async function all(path, query = {}, maxPages = 20) {
  const items = [];
  let cursor;
  for (let page = 0; page < maxPages; page += 1) {
    const found = await api(path, { query: { ...query, limit: 1000, cursor } });
    items.push(...found.data);
    if (!found.hasMore) break;
    cursor = found.cursor;
  }
  return items;
}

// A run's stream, live: calls onText with each piece as it arrives, until it closes.
export async function tail(path, onText, signal) {
  const response = await fetch(url(path), { headers: headers(), signal, cache: "no-store" });
  if (!response.ok) throw new ApiError(response.status, null);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    onText(decoder.decode(value, { stream: true }));
  }
}
