import { describe, expect, it } from 'vitest';
import { decodeJson, encodeJson, normalizeEntity, normalizePage } from '../src/codec.js';

describe('bytes on the wire', () => {
  it('every Uint8Array and Buffer becomes an envelope, at any depth; Dates become ISO strings', () => {
    const all = new Uint8Array(256).map((_, i) => i);
    const text = encodeJson({
      a: all,
      b: [{ c: Buffer.from([1, 2]) }, new Uint8Array(0)],
      d: new Date('2026-01-02T03:04:05.006Z'),
      e: 'plain',
      f: new Uint8Array(new Uint8Array([9, 8, 7]).buffer, 1, 2),
    });
    const parsed = JSON.parse(text);
    expect(parsed.a).toEqual({ __type: 'Uint8Array', data: Buffer.from(all).toString('base64') });
    expect(parsed.b).toEqual([{ c: { __type: 'Uint8Array', data: 'AQI=' } }, { __type: 'Uint8Array', data: '' }]);
    expect(parsed.d).toBe('2026-01-02T03:04:05.006Z');
    expect(parsed.e).toBe('plain');
    expect(parsed.f).toEqual({ __type: 'Uint8Array', data: Buffer.from([8, 7]).toString('base64') });
  });

  it('envelopes come back as bytes at any depth, byte-exact', () => {
    const all = new Uint8Array(256).map((_, i) => i);
    const decoded = decodeJson(encodeJson({ x: [{ y: all }] })) as { x: { y: Uint8Array }[] };
    expect(decoded.x[0]!.y).toBeInstanceOf(Uint8Array);
    expect(Buffer.compare(decoded.x[0]!.y, all)).toBe(0);
    expect(decodeJson('{"__type":"Uint8Array","data":1}')).toEqual({ __type: 'Uint8Array', data: 1 });
  });
});

describe('entities', () => {
  it('drop nulls, turn date fields into Dates, clean error and eventData; leave payloads alone', () => {
    const entity = normalizeEntity<Record<string, unknown>>({
      runId: 'wrun_1',
      specVersion: null,
      createdAt: '2026-12-02T10:00:00.000Z',
      completedAt: 1764669600000,
      error: { message: 'm', stack: null },
      eventData: { resumeAt: '2026-12-02T11:00:00.000Z', token: null },
      executionContext: { keep: null },
      output: new Uint8Array([1]),
    });
    expect(entity).toEqual({
      runId: 'wrun_1',
      createdAt: new Date('2026-12-02T10:00:00.000Z'),
      completedAt: new Date(1764669600000),
      error: { message: 'm' },
      eventData: { resumeAt: new Date('2026-12-02T11:00:00.000Z') },
      executionContext: { keep: null },
      output: new Uint8Array([1]),
    });
  });

  it('pages keep a null cursor and default what is missing', () => {
    expect(normalizePage({ data: [], cursor: null, hasMore: false, pageInfo: null })).toEqual({
      data: [],
      cursor: null,
      hasMore: false,
    });
    expect(normalizePage({})).toEqual({ data: [], cursor: null, hasMore: false });
  });
});
