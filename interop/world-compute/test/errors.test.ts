import {
  EntityConflictError,
  HookConflictError,
  HookNotFoundError,
  PreconditionFailedError,
  RunExpiredError,
  RunNotSupportedError,
  ThrottleError,
  TooEarlyError,
  WorkflowRunNotFoundError,
  WorkflowWorldError,
} from '@workflow/errors';
import { createServer } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type ComputeWorld, createWorld } from '../src/index.js';
import { parseRetryAfter } from '../src/errors.js';
import { FakeLane } from './fake-lane.js';

let lane: FakeLane;
let world: ComputeWorld;

beforeEach(async () => {
  lane = await new FakeLane().start();
  world = createWorld({ url: lane.url, specVersion: 3, maxRetries: 3, retryBaseDelayMs: 1, retryMaxDelayMs: 2_000 });
});

afterEach(async () => {
  await world.close();
  await lane.stop();
});

const fail = (status: number, body: Record<string, unknown>, headers?: Record<string, string>) => ({
  status,
  body,
  ...(headers ? { headers } : {}),
});

describe('error bodies become @workflow/errors classes', () => {
  const cases: [string, number, Record<string, unknown>, (e: unknown) => boolean, Record<string, unknown>][] = [
    ['EntityConflictError', 409, { code: 'entity_conflict', message: 'dup', name: 'EntityConflictError' }, EntityConflictError.is, { status: 409, code: 'entity_conflict' }],
    ['RunExpiredError', 410, { code: 'run_expired', message: 'gone', name: 'RunExpiredError' }, RunExpiredError.is, { status: 410 }],
    ['TooEarlyError', 425, { code: 'too_early', message: 'wait', name: 'TooEarlyError', retryAfter: 7 }, TooEarlyError.is, { retryAfter: 7 }],
    ['PreconditionFailedError', 412, { code: 'precondition_failed', message: 'stale', name: 'PreconditionFailedError', retryAfter: 1 }, PreconditionFailedError.is, { retryAfter: 1 }],
    ['WorkflowRunNotFoundError', 404, { code: 'run_not_found', message: 'no run', name: 'WorkflowRunNotFoundError', details: { runId: 'wrun_9' } }, WorkflowRunNotFoundError.is, { runId: 'wrun_9', message: 'no run' }],
    ['HookNotFoundError', 404, { code: 'hook_not_found', message: 'Hook not found', name: 'HookNotFoundError' }, HookNotFoundError.is, { token: 'wrun_01' }],
    ['HookConflictError', 409, { code: 'hook_conflict', message: 'taken', name: 'HookConflictError', details: { token: 't', conflictingRunId: 'wrun_2' } }, HookConflictError.is, { token: 't', conflictingRunId: 'wrun_2' }],
    ['RunNotSupportedError', 422, { code: 'run_not_supported', message: 'new', name: 'RunNotSupportedError', details: { runSpecVersion: 5, supportedSpecVersion: 3 } }, RunNotSupportedError.is, { runSpecVersion: 5, worldSpecVersion: 3 }],
    ['WorkflowWorldError', 404, { code: 'step_not_found', message: 'no step', name: 'WorkflowWorldError' }, WorkflowWorldError.is, { status: 404, code: 'step_not_found', message: 'no step' }],
    ['an unknown name', 400, { code: 'invalid_request', message: 'bad', name: 'SomethingNew' }, WorkflowWorldError.is, { status: 400, code: 'invalid_request' }],
  ];
  for (const [label, status, body, is, fields] of cases) {
    it(label, async () => {
      lane.on('GET', '/v1/world/hooks/by-token/wrun_01', fail(status, body));
      const error = await world.hooks.getByToken('wrun_01').catch((e: unknown) => e);
      expect(is(error)).toBe(true);
      expect(error).toMatchObject(fields);
    });
  }

  it('a 404 on runs.get carries the run id when the body has none', async () => {
    lane.on('GET', '/v1/world/runs/wrun_5', fail(404, { code: 'run_not_found', message: 'x', name: 'WorkflowRunNotFoundError' }));
    const error = await world.runs.get('wrun_5').catch((e: unknown) => e);
    expect(WorkflowRunNotFoundError.is(error)).toBe(true);
    expect(error).toMatchObject({ runId: 'wrun_5' });
  });

  it('status decides when the body names no specific class', async () => {
    lane.on('GET', '/v1/world/runs/wrun_1', fail(409, { message: 'conflict' }));
    expect(EntityConflictError.is(await world.runs.get('wrun_1').catch((e: unknown) => e))).toBe(true);
    lane.on('GET', '/v1/world/runs/wrun_2', fail(425, { code: 'too_early', message: 'x', name: 'WorkflowWorldError' }, { 'retry-after': '3' }));
    const early = await world.runs.get('wrun_2').catch((e: unknown) => e);
    expect(TooEarlyError.is(early)).toBe(true);
    expect(early).toMatchObject({ retryAfter: 3 });
  });

  it('a body that is not JSON keeps its status and text', async () => {
    lane.on('GET', '/v1/world/runs/wrun_1', { status: 500, text: 'Internal Server Error' });
    const error = await world.runs.get('wrun_1').catch((e: unknown) => e);
    expect(WorkflowWorldError.is(error)).toBe(true);
    expect(error).toMatchObject({ status: 500 });
    expect((error as Error).message).toContain('HTTP 500: Internal Server Error');
  });

  it('Retry-After parses seconds and HTTP dates', () => {
    expect(parseRetryAfter('5')).toBe(5);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 4_000)).toBe(6);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter(null)).toBeUndefined();
  });
});

describe('retries', () => {
  const RUN = { runId: 'wrun_1', status: 'pending', createdAt: '2026-12-02T10:00:00.000Z', updatedAt: '2026-12-02T10:00:00.000Z' };

  it('503 then 200: retried, success', async () => {
    lane.on('GET', '/v1/world/runs/wrun_1', fail(503, { code: 'storage_unavailable', message: 'db', name: 'WorkflowWorldError' }), { body: RUN });
    expect((await world.runs.get('wrun_1')).runId).toBe('wrun_1');
    expect(lane.calls('GET', '/v1/world/runs/wrun_1')).toHaveLength(2);
  });

  it('429 honours Retry-After before the next try', async () => {
    const times: number[] = [];
    lane.on(
      'POST',
      '/v1/world/events/create',
      () => (times.push(Date.now()), fail(429, { code: 'rate_limited', message: 'slow down', name: 'WorkflowWorldError' }, { 'retry-after': '1' })),
      () => (times.push(Date.now()), { body: { run: RUN } })
    );
    await world.events.create('wrun_1', { eventType: 'run_started' });
    expect(times).toHaveLength(2);
    expect(times[1]! - times[0]!).toBeGreaterThanOrEqual(950);
  });

  it('a Retry-After beyond the bound is not waited for: ThrottleError with retryAfter', async () => {
    lane.on('GET', '/v1/world/runs/wrun_1', fail(429, { code: 'throttled', message: 'later', name: 'ThrottleError', retryAfter: 120 }, { 'retry-after': '120' }));
    const error = await world.runs.get('wrun_1').catch((e: unknown) => e);
    expect(ThrottleError.is(error)).toBe(true);
    expect(error).toMatchObject({ retryAfter: 120 });
    expect(lane.calls('GET', '/v1/world/runs/wrun_1')).toHaveLength(1);
  });

  it('gives up after maxRetries with the last error', async () => {
    lane.on('GET', '/v1/world/runs/wrun_1', fail(503, { code: 'storage_unavailable', message: 'down', name: 'WorkflowWorldError' }));
    const error = await world.runs.get('wrun_1').catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'WorkflowWorldError', status: 503, code: 'storage_unavailable' });
    expect(lane.calls('GET', '/v1/world/runs/wrun_1')).toHaveLength(4);
  });

  it('a reset connection is retried for reads', async () => {
    lane.on('GET', '/v1/world/runs/wrun_1', { destroy: true }, { body: RUN });
    expect((await world.runs.get('wrun_1')).runId).toBe('wrun_1');
    expect(lane.calls('GET', '/v1/world/runs/wrun_1')).toHaveLength(2);
  });

  it('a reset connection is not retried for an event or a stream write (it may have landed)', async () => {
    lane.on('POST', '/v1/world/events/create', { destroy: true }, { body: { run: RUN } });
    lane.on('POST', '/v1/world/streams/write', { destroy: true }, { body: { ok: true } });
    await expect(world.events.create('wrun_1', { eventType: 'run_started' })).rejects.toMatchObject({ name: 'WorkflowWorldError' });
    await expect(world.writeToStream('strm_1', 'wrun_1', 'a')).rejects.toMatchObject({ name: 'WorkflowWorldError' });
    expect(lane.calls('POST', '/v1/world/events/create')).toHaveLength(1);
    expect(lane.calls('POST', '/v1/world/streams/write')).toHaveLength(1);
  });

  it('a refused connection is retried, then reported', async () => {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as { port: number }).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const dead = createWorld({ url: `http://127.0.0.1:${port}`, specVersion: 3, maxRetries: 2, retryBaseDelayMs: 1 });
    try {
      const error = await dead.events.create('wrun_1', { eventType: 'run_started' }).catch((e: unknown) => e);
      expect(WorkflowWorldError.is(error)).toBe(true);
      expect(error).toMatchObject({ code: 'ECONNREFUSED' });
    } finally {
      await dead.close();
    }
  });
});
