/**
 * The lane's wire format (README "The World lane"): JSON, bytes anywhere as
 * `{"__type":"Uint8Array","data":"<base64>"}`, dates as ISO-8601 strings.
 *
 * Going out, every Uint8Array (Buffers included) becomes an envelope and every
 * Date its ISO string. Coming back, every envelope becomes a Uint8Array; the
 * entities (runs, steps, hooks, waits, events) then get their date fields as
 * `Date` and lose the fields the server sent as `null`, because WDK's zod
 * schemas declare them `optional()` and reject `null`.
 */

const DATE_KEYS = new Set([
  'createdAt',
  'updatedAt',
  'startedAt',
  'completedAt',
  'expiredAt',
  'retryAfter',
  'resumeAt',
  'occurredAt',
]);

export interface ByteEnvelope {
  __type: 'Uint8Array';
  data: string;
}

export function toEnvelope(bytes: Uint8Array): ByteEnvelope {
  return {
    __type: 'Uint8Array',
    data: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64'),
  };
}

export function isEnvelope(value: unknown): value is ByteEnvelope {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as { __type?: unknown }).__type === 'Uint8Array' &&
    typeof (value as { data?: unknown }).data === 'string'
  );
}

/** JSON text of a request body. */
export function encodeJson(value: unknown): string {
  return JSON.stringify(value, function replacer(this: unknown, key: string, replaced: unknown) {
    // `replaced` went through toJSON already (a Buffer would be {type:'Buffer'});
    // the holder still has the original value.
    const original = (this as Record<string, unknown>)[key];
    if (original instanceof Uint8Array) return toEnvelope(original);
    return replaced;
  });
}

/** Parse a response body, turning every envelope back into bytes. */
export function decodeJson(text: string): unknown {
  return JSON.parse(text, (_key, value: unknown) => {
    if (isEnvelope(value)) return new Uint8Array(Buffer.from(value.data, 'base64'));
    return value;
  });
}

export type Json = Record<string, unknown>;

function isPlainObject(value: unknown): value is Json {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    !(value instanceof Uint8Array) &&
    !(value instanceof Date)
  );
}

function reviveDate(value: unknown): unknown {
  if (typeof value === 'string' || typeof value === 'number') {
    const date = new Date(value);
    if (!Number.isNaN(date.getTime())) return date;
  }
  return value;
}

/** One level of cleaning: nulls dropped, known date fields as Date. */
function clean(object: Json): Json {
  const out: Json = {};
  for (const [key, value] of Object.entries(object)) {
    if (value === null || value === undefined) continue;
    out[key] = DATE_KEYS.has(key) ? reviveDate(value) : value;
  }
  return out;
}

/**
 * A run, step, hook, wait or event as the WDK schemas expect it. The opaque
 * parts (`input`, `output`, `metadata`, `executionContext`, payloads) are not
 * touched beyond the byte envelopes.
 */
export function normalizeEntity<T = Json>(value: unknown): T {
  if (!isPlainObject(value)) return value as T;
  const out = clean(value);
  if (isPlainObject(out.error)) out.error = clean(out.error);
  if (isPlainObject(out.eventData)) out.eventData = clean(out.eventData);
  return out as T;
}

/** `{data, cursor, hasMore}` with each item normalized; `cursor: null` is kept (nullable). */
export function normalizePage(value: unknown): Json {
  const page = isPlainObject(value) ? value : {};
  const out: Json = {};
  for (const [key, item] of Object.entries(page)) {
    if (item === null && key !== 'cursor') continue;
    out[key] = item;
  }
  out.data = Array.isArray(page.data) ? page.data.map((item) => normalizeEntity(item)) : [];
  if (!('cursor' in out)) out.cursor = null;
  out.hasMore = Boolean(page.hasMore);
  return out;
}

const RESULT_ENTITIES = ['event', 'run', 'step', 'hook', 'wait'] as const;

/** An `EventResult`: each entity normalized, `events` too. */
export function normalizeEventResult(value: unknown): Json {
  const result = isPlainObject(value) ? value : {};
  const out: Json = {};
  for (const [key, item] of Object.entries(result)) {
    if (item === null && key !== 'cursor') continue;
    out[key] = item;
  }
  for (const key of RESULT_ENTITIES) {
    if (isPlainObject(out[key])) out[key] = normalizeEntity(out[key]);
  }
  if (Array.isArray(out.events)) out.events = out.events.map((item) => normalizeEntity(item));
  return out;
}
