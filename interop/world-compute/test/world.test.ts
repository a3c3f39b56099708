import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type ComputeWorld, createWorld } from '../src/index.js';
import { bytes, FakeLane } from './fake-lane.js';

let lane: FakeLane;
let world: ComputeWorld;

const RUN = {
  runId: 'wrun_01',
  status: 'running',
  deploymentId: 'dpl_1',
  workflowName: 'wf',
  specVersion: null,
  input: bytes(1, 2),
  createdAt: '2026-12-02T10:00:00.000Z',
  updatedAt: '2026-12-02T10:00:01.000Z',
  startedAt: '2026-12-02T10:00:01.000Z',
  error: { message: 'x', stack: null, code: 'USER_ERROR' },
};

beforeEach(async () => {
  lane = await new FakeLane().start();
  world = createWorld({
    url: lane.url,
    apiKey: 'k1',
    deploymentId: 'dpl_app',
    appUrl: 'http://localhost:4000',
    specVersion: 3,
    retryBaseDelayMs: 1,
  });
});

afterEach(async () => {
  await world.close();
  await lane.stop();
});

describe('storage', () => {
  it('runs.get: route, auth and deployment headers, dates, nulls dropped, bytes', async () => {
    lane.on('GET', '/v1/world/runs/wrun_01', { body: RUN });
    const run = await world.runs.get('wrun_01', { resolveData: 'none' });
    const [call] = lane.calls('GET', '/v1/world/runs/wrun_01');
    expect(call!.query).toEqual({ resolveData: 'none' });
    expect(call!.headers.authorization).toBe('Bearer k1');
    expect(call!.headers['x-compute-deployment-id']).toBe('dpl_app');
    expect(run.createdAt).toBeInstanceOf(Date);
    expect(run.createdAt.toISOString()).toBe('2026-12-02T10:00:00.000Z');
    expect(run.startedAt).toBeInstanceOf(Date);
    expect('specVersion' in run).toBe(false);
    expect(run.input).toEqual(new Uint8Array([1, 2]));
    expect(run.error).toEqual({ message: 'x', code: 'USER_ERROR' });
  });

  it('runs.list posts its params and keeps a null cursor', async () => {
    lane.on('POST', '/v1/world/runs/list', { body: { data: [RUN], cursor: null, hasMore: false } });
    const page = await world.runs.list({ workflowName: 'wf', status: 'running', pagination: { limit: 2 } });
    expect(lane.calls('POST', '/v1/world/runs/list')[0]!.body).toEqual({
      workflowName: 'wf',
      status: 'running',
      pagination: { limit: 2 },
    });
    expect(page.cursor).toBeNull();
    expect(page.hasMore).toBe(false);
    expect(page.data[0].updatedAt).toBeInstanceOf(Date);
  });

  it('steps.get with and without runId, steps.list', async () => {
    const step = {
      runId: 'wrun_01',
      stepId: 'step_1',
      stepName: 's',
      status: 'pending',
      attempt: 1,
      input: bytes(7),
      retryAfter: '2026-12-02T10:00:05.000Z',
      createdAt: '2026-12-02T10:00:00.000Z',
      updatedAt: '2026-12-02T10:00:00.000Z',
      specVersion: null,
    };
    lane.on('GET', '/v1/world/steps/step_1', { body: step });
    lane.on('POST', '/v1/world/steps/list', { body: { data: [step], cursor: 'c1', hasMore: true } });
    const got = await world.steps.get('wrun_01', 'step_1', { resolveData: 'all' });
    await world.steps.get(undefined, 'step_1');
    const calls = lane.calls('GET', '/v1/world/steps/step_1');
    expect(calls[0]!.query).toEqual({ runId: 'wrun_01', resolveData: 'all' });
    expect(calls[1]!.query).toEqual({});
    expect(got.retryAfter).toBeInstanceOf(Date);
    expect(got.input).toEqual(new Uint8Array([7]));
    const listed = await world.steps.list({ runId: 'wrun_01', pagination: { cursor: 'c0' } });
    expect(lane.calls('POST', '/v1/world/steps/list')[0]!.body).toEqual({
      runId: 'wrun_01',
      pagination: { cursor: 'c0' },
    });
    expect(listed.cursor).toBe('c1');
    expect(listed.hasMore).toBe(true);
  });

  it('events.create sends bytes as envelopes and params whole; normalizes the result', async () => {
    lane.on('POST', '/v1/world/events/create', {
      body: {
        event: {
          eventId: 'evnt_1',
          runId: 'wrun_01',
          eventType: 'wait_created',
          correlationId: 'wait_1',
          createdAt: '2026-12-02T10:00:00.000Z',
          eventData: { resumeAt: '2026-12-02T11:00:00.000Z', extra: null },
        },
        wait: {
          waitId: 'wrun_01-wait_1',
          runId: 'wrun_01',
          status: 'waiting',
          resumeAt: '2026-12-02T11:00:00.000Z',
          completedAt: null,
          createdAt: '2026-12-02T10:00:00.000Z',
          updatedAt: '2026-12-02T10:00:00.000Z',
        },
        events: [{ eventId: 'evnt_0', runId: 'wrun_01', eventType: 'run_created', createdAt: '2026-12-02T09:00:00.000Z' }],
        run: null,
      },
    });
    const occurredAt = new Date('2026-12-02T10:00:00.500Z');
    const result = await world.events.create(
      'wrun_01',
      {
        eventType: 'step_completed',
        correlationId: 'step_1',
        eventData: { result: new Uint8Array([0, 255]), nested: [{ deep: Buffer.from('hi') }] },
      },
      { resolveData: 'none', stateUpdatedAt: 17, occurredAt, requestId: 'r1' }
    );
    const call = lane.calls('POST', '/v1/world/events/create')[0]!;
    expect(call.body).toEqual({
      runId: 'wrun_01',
      data: {
        eventType: 'step_completed',
        correlationId: 'step_1',
        eventData: { result: bytes(0, 255), nested: [{ deep: bytes(104, 105) }] },
      },
      params: { resolveData: 'none', stateUpdatedAt: 17, occurredAt: '2026-12-02T10:00:00.500Z', requestId: 'r1' },
    });
    expect(result.event.createdAt).toBeInstanceOf(Date);
    expect(result.event.eventData.resumeAt).toBeInstanceOf(Date);
    expect('extra' in result.event.eventData).toBe(false);
    expect(result.wait.resumeAt).toBeInstanceOf(Date);
    expect('completedAt' in result.wait).toBe(false);
    expect('run' in result).toBe(false);
    expect(result.events[0].createdAt).toBeInstanceOf(Date);
  });

  it('events.create with a null runId (run_created)', async () => {
    lane.on('POST', '/v1/world/events/create', { body: { run: RUN } });
    await world.events.create(null, { eventType: 'run_created', eventData: { input: new Uint8Array([1]) } });
    expect((lane.calls('POST', '/v1/world/events/create')[0]!.body as { runId: unknown }).runId).toBeNull();
  });

  it('events.get uses its route when the worker has it', async () => {
    lane.on('GET', '/v1/world/events/evnt_2', {
      body: { eventId: 'evnt_2', runId: 'wrun_01', eventType: 'run_started', createdAt: '2026-12-02T10:00:00.000Z' },
    });
    const event = await world.events.get('wrun_01', 'evnt_2', { resolveData: 'none' });
    expect(lane.calls('GET', '/v1/world/events/evnt_2')[0]!.query).toEqual({ runId: 'wrun_01', resolveData: 'none' });
    expect(event.createdAt).toBeInstanceOf(Date);
  });

  it('events.get falls back to scanning events.list on a worker without the route', async () => {
    lane.on(
      'POST',
      '/v1/world/events/list',
      { body: { data: [{ eventId: 'evnt_1', runId: 'wrun_01', eventType: 'run_created', createdAt: '2026-12-02T10:00:00.000Z' }], cursor: 'c1', hasMore: true } },
      { body: { data: [{ eventId: 'evnt_2', runId: 'wrun_01', eventType: 'run_started', createdAt: '2026-12-02T10:00:00.000Z' }], cursor: 'c2', hasMore: false } }
    );
    const event = await world.events.get('wrun_01', 'evnt_2');
    expect(event.eventType).toBe('run_started');
    const lists = lane.calls('POST', '/v1/world/events/list');
    expect(lists.map((c) => (c.body as { pagination: { cursor?: string } }).pagination.cursor)).toEqual([undefined, 'c1']);
    await expect(world.events.get('wrun_01', 'evnt_9')).rejects.toMatchObject({
      name: 'WorkflowWorldError',
      status: 404,
      code: 'event_not_found',
    });
  });

  it('events.list and listByCorrelationId post their params', async () => {
    lane.on('POST', '/v1/world/events/list', { body: { data: [], cursor: null, hasMore: false } });
    lane.on('POST', '/v1/world/events/list-by-correlation', { body: { data: [], cursor: null, hasMore: false } });
    await world.events.list({ runId: 'wrun_01', pagination: { sortOrder: 'desc' }, resolveData: 'none' });
    await world.events.listByCorrelationId({ correlationId: 'step_1', runId: 'wrun_01' });
    expect(lane.calls('POST', '/v1/world/events/list')[0]!.body).toEqual({
      runId: 'wrun_01',
      pagination: { sortOrder: 'desc' },
      resolveData: 'none',
    });
    expect(lane.calls('POST', '/v1/world/events/list-by-correlation')[0]!.body).toEqual({
      correlationId: 'step_1',
      runId: 'wrun_01',
    });
  });

  it('hooks.get, getByToken (token URL-encoded), list', async () => {
    const hook = { runId: 'wrun_01', hookId: 'hook_1', token: 'a/b c', ownerId: '', projectId: '', environment: '', createdAt: '2026-12-02T10:00:00.000Z', metadata: null, specVersion: null };
    lane.on('GET', '/v1/world/hooks/hook_1', { body: hook });
    lane.on('GET', '/v1/world/hooks/by-token/a%2Fb%20c', { body: hook });
    lane.on('POST', '/v1/world/hooks/list', { body: { data: [hook], cursor: null, hasMore: false } });
    const got = await world.hooks.get('hook_1', { resolveData: 'none' });
    expect(lane.calls('GET', '/v1/world/hooks/hook_1')[0]!.query).toEqual({ resolveData: 'none' });
    expect('metadata' in got).toBe(false);
    const byToken = await world.hooks.getByToken('a/b c', { resolveData: 'none' });
    expect(byToken.hookId).toBe('hook_1');
    expect(lane.calls('GET', '/v1/world/hooks/by-token/a%2Fb%20c')[0]!.query).toEqual({ resolveData: 'none' });
    const listed = await world.hooks.list({ runId: 'wrun_01' });
    expect(listed.data[0].createdAt).toBeInstanceOf(Date);
  });
});

describe('streams', () => {
  beforeEach(() => {
    lane.on('POST', '/v1/world/streams/write', { body: { ok: true } });
    lane.on('POST', '/v1/world/streams/close', { body: { ok: true } });
    lane.on('GET', '/v1/world/streams/list', { body: { streams: ['strm_a', 'strm_b'] } });
    lane.on('GET', '/v1/world/streams/info', { body: { tailIndex: 2, done: true } });
    lane.on('GET', '/v1/world/streams/chunks', {
      body: { data: [{ index: 0, data: bytes(9) }], cursor: null, hasMore: false, done: true },
    });
    lane.on('GET', '/v1/world/streams/read', { chunks: [new Uint8Array([1, 2]), new Uint8Array([3])] });
  });

  it('4.x flat methods', async () => {
    await world.writeToStream('strm_a', 'wrun_01', 'hé');
    await world.writeToStreamMulti('strm_a', 'wrun_01', [new Uint8Array([5]), 'x']);
    await world.writeToStreamMulti('strm_a', 'wrun_01', []);
    await world.closeStream('strm_a', 'wrun_01');
    const writes = lane.calls('POST', '/v1/world/streams/write').map((c) => c.body);
    expect(writes).toEqual([
      { name: 'strm_a', runId: 'wrun_01', chunk: 'hé' },
      { name: 'strm_a', runId: 'wrun_01', chunks: [bytes(5), 'x'] },
    ]);
    expect(lane.calls('POST', '/v1/world/streams/close')[0]!.body).toEqual({ name: 'strm_a', runId: 'wrun_01' });
    const stream = await world.readFromStream('strm_a', -2);
    expect(new Uint8Array(await new Response(stream).arrayBuffer())).toEqual(new Uint8Array([1, 2, 3]));
    expect(lane.calls('GET', '/v1/world/streams/read')[0]!.query).toEqual({ name: 'strm_a', startIndex: '-2' });
    expect(await world.listStreamsByRunId('wrun_01')).toEqual(['strm_a', 'strm_b']);
    expect(await world.getStreamInfo('strm_a', 'wrun_01')).toEqual({ tailIndex: 2, done: true });
    const chunks = await world.getStreamChunks('strm_a', 'wrun_01', { limit: 5, cursor: 'c' });
    expect(chunks).toEqual({ data: [{ index: 0, data: new Uint8Array([9]) }], cursor: null, hasMore: false, done: true });
    expect(lane.calls('GET', '/v1/world/streams/chunks')[0]!.query).toEqual({ name: 'strm_a', runId: 'wrun_01', limit: '5', cursor: 'c' });
  });

  it('5.0 streams namespace (runId first) hits the same routes', async () => {
    await world.streams.write('wrun_01', 'strm_a', new Uint8Array([1]));
    await world.streams.writeMulti('wrun_01', 'strm_a', ['a', 'b']);
    await world.streams.close('wrun_01', 'strm_a');
    const stream = await world.streams.get('wrun_01', 'strm_a', 1);
    await new Response(stream).arrayBuffer();
    expect(lane.calls('GET', '/v1/world/streams/read')[0]!.query).toEqual({ name: 'strm_a', startIndex: '1', runId: 'wrun_01' });
    expect(await world.streams.list('wrun_01')).toEqual(['strm_a', 'strm_b']);
    expect(await world.streams.getInfo('wrun_01', 'strm_a')).toEqual({ tailIndex: 2, done: true });
    expect((await world.streams.getChunks('wrun_01', 'strm_a')).done).toBe(true);
    expect(lane.calls('POST', '/v1/world/streams/write').map((c) => c.body)).toEqual([
      { name: 'strm_a', runId: 'wrun_01', chunk: bytes(1) },
      { name: 'strm_a', runId: 'wrun_01', chunks: ['a', 'b'] },
    ]);
  });

  it('listStreamsByRunId accepts a bare array too', async () => {
    lane.on('GET', '/v1/world/streams/list', { body: ['strm_z'] });
    expect(await world.listStreamsByRunId('wrun_01')).toEqual(['strm_z']);
  });
});

describe('queue and deployment', () => {
  it('queue posts name, message (bytes, dates) and opts with the app URL; namespaced names pass through', async () => {
    lane.on('POST', '/v1/queue/publish', { body: { messageId: 'msg_1' } });
    const requestedAt = new Date('2026-12-02T10:00:00.000Z');
    const answer = await world.queue(
      '__ns_wkf_workflow_wf',
      { runId: 'wrun_01', requestedAt, runInput: { input: new Uint8Array([4]) } },
      { deploymentId: 'dpl_app', idempotencyKey: 'k', delaySeconds: 2, headers: { a: 'b' }, specVersion: 3 }
    );
    expect(answer).toEqual({ messageId: 'msg_1' });
    const call = lane.calls('POST', '/v1/queue/publish')[0]!;
    expect(call.body).toEqual({
      queueName: '__ns_wkf_workflow_wf',
      message: { runId: 'wrun_01', requestedAt: '2026-12-02T10:00:00.000Z', runInput: { input: bytes(4) } },
      opts: { deploymentId: 'dpl_app', idempotencyKey: 'k', delaySeconds: 2, headers: { a: 'b' }, specVersion: 3 },
    });
    expect(call.headers['x-compute-app-url']).toBe('http://localhost:4000');
  });

  it('getDeploymentId asks the worker with the configured deployment and app URL', async () => {
    lane.on('GET', '/v1/world/deployment-id', { body: { deploymentId: 'dpl_app' } });
    expect(await world.getDeploymentId()).toBe('dpl_app');
    const call = lane.calls('GET', '/v1/world/deployment-id')[0]!;
    expect(call.headers['x-compute-deployment-id']).toBe('dpl_app');
    expect(call.headers['x-compute-app-url']).toBe('http://localhost:4000');
  });

  it('the app URL defaults to localhost:$PORT, read at call time (PORT=0 is no address)', async () => {
    const previous = process.env.PORT;
    const bare = createWorld({ url: lane.url, specVersion: 3 });
    lane.on('GET', '/v1/world/deployment-id', { body: { deploymentId: 'd' } });
    try {
      delete process.env.PORT;
      await bare.getDeploymentId();
      process.env.PORT = '0';
      await bare.getDeploymentId();
      process.env.PORT = '4321';
      await bare.getDeploymentId();
    } finally {
      if (previous === undefined) delete process.env.PORT;
      else process.env.PORT = previous;
      await bare.close();
    }
    const calls = lane.calls('GET', '/v1/world/deployment-id');
    expect(calls[0]!.headers['x-compute-app-url']).toBeUndefined();
    expect(calls[0]!.headers.authorization).toBeUndefined();
    expect(calls[1]!.headers['x-compute-app-url']).toBeUndefined();
    expect(calls[2]!.headers['x-compute-app-url']).toBe('http://localhost:4321');
  });
});

describe('encryption keys', () => {
  const KEY = Buffer.alloc(32, 7).toString('base64');

  it('are asked once per run and deployment, concurrent asks share one request', async () => {
    lane.on('POST', '/v1/world/encryption-key', { body: { key: KEY } });
    const run = { runId: 'wrun_01', deploymentId: 'dpl_1' };
    const keys = await Promise.all([
      world.getEncryptionKeyForRun(run),
      world.getEncryptionKeyForRun(run),
      world.getEncryptionKeyForRun('wrun_01', { deploymentId: 'dpl_1' }),
    ]);
    await world.getEncryptionKeyForRun(run);
    expect(keys[0]).toEqual(new Uint8Array(32).fill(7));
    expect(keys[1]).toBe(keys[0]);
    const calls = lane.calls('POST', '/v1/world/encryption-key');
    expect(calls).toHaveLength(1);
    expect(calls[0]!.body).toEqual({ runId: 'wrun_01', deploymentId: 'dpl_1' });
    await world.getEncryptionKeyForRun('wrun_02');
    expect(lane.calls('POST', '/v1/world/encryption-key')[1]!.body).toEqual({ runId: 'wrun_02' });
  });

  it('null means no encryption (undefined), and is cached too', async () => {
    lane.on('POST', '/v1/world/encryption-key', { body: { key: null } });
    expect(await world.getEncryptionKeyForRun('wrun_01')).toBeUndefined();
    expect(await world.getEncryptionKeyForRun('wrun_01')).toBeUndefined();
    expect(lane.calls('POST', '/v1/world/encryption-key')).toHaveLength(1);
  });

  it('a failed ask is not cached; a key of the wrong size is refused', async () => {
    lane.on(
      'POST',
      '/v1/world/encryption-key',
      { status: 400, body: { code: 'invalid_request', message: 'bad', name: 'WorkflowWorldError' } },
      { body: { key: Buffer.alloc(16).toString('base64') } }
    );
    await expect(world.getEncryptionKeyForRun('wrun_01')).rejects.toMatchObject({ name: 'WorkflowWorldError', status: 400 });
    await expect(world.getEncryptionKeyForRun('wrun_01')).rejects.toThrow(/16 bytes, expected 32/);
    expect(lane.calls('POST', '/v1/world/encryption-key')).toHaveLength(2);
  });

  it('the cache is bounded (least recently used dropped)', async () => {
    const small = createWorld({ url: lane.url, specVersion: 3, keyCacheSize: 2 });
    lane.on('POST', '/v1/world/encryption-key', { body: { key: KEY } });
    try {
      await small.getEncryptionKeyForRun('a');
      await small.getEncryptionKeyForRun('b');
      await small.getEncryptionKeyForRun('a');
      await small.getEncryptionKeyForRun('c'); // drops b
      await small.getEncryptionKeyForRun('a');
      await small.getEncryptionKeyForRun('b');
    } finally {
      await small.close();
    }
    const asked = lane.calls('POST', '/v1/world/encryption-key').map((c) => (c.body as { runId: string }).runId);
    expect(asked).toEqual(['a', 'b', 'c', 'b']);
  });
});

describe('spec lines', () => {
  it('spec 3 has no experimentalSetAttributes; spec 5 maps it to the attributes route', async () => {
    expect(world.specVersion).toBe(3);
    expect(world.runs.experimentalSetAttributes).toBeUndefined();
    const five = createWorld({ url: lane.url, specVersion: 5 });
    lane.on('POST', '/v1/world/runs/wrun_01/attributes', { body: { attributes: { a: '1' } } });
    try {
      expect(five.specVersion).toBe(5);
      const out = await five.runs.experimentalSetAttributes!('wrun_01', [{ key: 'a', value: '1' }, { key: 'b', value: null }], {
        allowReservedAttributes: true,
      });
      expect(out).toEqual({ attributes: { a: '1' } });
      expect(lane.calls('POST', '/v1/world/runs/wrun_01/attributes')[0]!.body).toEqual({
        changes: [{ key: 'a', value: '1' }, { key: 'b', value: null }],
        allowReservedAttributes: true,
      });
    } finally {
      await five.close();
    }
  });

  it('a missing URL fails at the first call with a clear error, not at creation', async () => {
    const previous = process.env.WORKFLOW_COMPUTE_URL;
    delete process.env.WORKFLOW_COMPUTE_URL;
    try {
      const bare = createWorld({ specVersion: 3 });
      await expect(bare.runs.get('wrun_01')).rejects.toThrow(/WORKFLOW_COMPUTE_URL is not set/);
      await bare.close();
    } finally {
      if (previous !== undefined) process.env.WORKFLOW_COMPUTE_URL = previous;
    }
  });

  it('a closed World refuses calls', async () => {
    await world.close();
    await expect(world.runs.get('wrun_01')).rejects.toThrow(/closed/);
  });
});
