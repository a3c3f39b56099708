import { describe, expect, it } from 'vitest';
import { createWorld } from '../src/index.js';
import { monotonicUlid } from '../src/ulid.js';

const CROCKFORD = /^[0-9A-HJKMNP-TV-Z]{26}$/;

describe('createRunId', () => {
  it('mints bare ULIDs (no wrun_ prefix) whose time is now', () => {
    const world = createWorld({ url: 'http://127.0.0.1:9', specVersion: 5 });
    const id = world.createRunId({});
    expect(id).toMatch(CROCKFORD);
    const decoded = [...id.slice(0, 10)].reduce((acc, c) => acc * 32 + '0123456789ABCDEFGHJKMNPQRSTVWXYZ'.indexOf(c), 0);
    expect(Math.abs(decoded - Date.now())).toBeLessThan(5_000);
  });

  it('is strictly increasing within one millisecond and across a clock step back', () => {
    let clock = 1_764_669_600_000;
    const next = monotonicUlid(() => clock);
    const ids = [next(), next(), next()];
    clock -= 10;
    ids.push(next());
    clock += 100;
    ids.push(next());
    for (const id of ids) expect(id).toMatch(CROCKFORD);
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids[0]!.slice(0, 10)).toBe(ids[3]!.slice(0, 10));
  });
});
