import { describe, expect, it } from 'vitest';
import { createWorld, signDelivery } from '../src/index.js';
import type { QueueMeta } from '../src/queue-handler.js';

const URL_FLOW = 'http://localhost:3000/.well-known/workflow/v1/flow';
const SECRET = 'delivery-secret-for-tests';

function delivery(
  body: string | undefined,
  headers: Record<string, string> = {},
  queueName = '__wkf_workflow_wf'
): Request {
  return new Request(URL_FLOW, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-vqs-queue-name': queueName,
      'x-vqs-message-id': 'msg_01',
      'x-vqs-message-attempt': '2',
      ...headers,
    },
    ...(body !== undefined ? { body } : {}),
  });
}

function signed(body: string, secret = SECRET, timestamp = Math.floor(Date.now() / 1000), attempt = 2): Record<string, string> {
  return {
    'x-compute-timestamp': String(timestamp),
    'x-compute-signature': signDelivery(secret, timestamp, 'msg_01', attempt, Buffer.from(body)),
  };
}

const world = createWorld({ url: 'http://127.0.0.1:9', specVersion: 3 });
const guarded = createWorld({ url: 'http://127.0.0.1:9', specVersion: 3, deliverySecret: SECRET });

describe('createQueueHandler (world-local semantics)', () => {
  it('hands the decoded message (bytes revived) and meta to the handler; answers {ok: true}', async () => {
    const seen: [unknown, QueueMeta][] = [];
    const handle = world.createQueueHandler('__wkf_workflow_', async (message, meta) => {
      seen.push([message, meta]);
    });
    const body = JSON.stringify({ runId: 'wrun_1', runInput: { input: { __type: 'Uint8Array', data: 'AAH/' } } });
    const response = await handle(delivery(body));
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ ok: true });
    expect(seen).toEqual([
      [
        { runId: 'wrun_1', runInput: { input: new Uint8Array([0, 1, 255]) } },
        { attempt: 2, queueName: '__wkf_workflow_wf', messageId: 'msg_01' },
      ],
    ]);
  });

  it('namespaced queue names are accepted under their own prefix', async () => {
    const handle = world.createQueueHandler('__ns_wkf_step_', async () => undefined);
    const response = await handle(delivery('{}', {}, '__ns_wkf_step_s'));
    expect(response.status).toBe(200);
  });

  it('answers {timeoutSeconds} when the handler asks for a later delivery', async () => {
    const handle = world.createQueueHandler('__wkf_workflow_', async () => ({ timeoutSeconds: 12.5 }));
    const response = await handle(delivery('{"runId":"wrun_1"}'));
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ timeoutSeconds: 12.5 });
  });

  it('a timeoutSeconds of 0 is kept (deliver again at once)', async () => {
    const handle = world.createQueueHandler('__wkf_workflow_', async () => ({ timeoutSeconds: 0 }));
    expect(await (await handle(delivery('{}'))).json()).toEqual({ timeoutSeconds: 0 });
  });

  it('a thrown handler is a 500 with the error as a JSON string', async () => {
    const handle = world.createQueueHandler('__wkf_workflow_', async () => {
      throw new TypeError('boom');
    });
    const response = await handle(delivery('{}'));
    expect(response.status).toBe(500);
    expect(await response.json()).toBe('TypeError: boom');
  });

  it('an invoke:true message answers {result}', async () => {
    const handle = world.createQueueHandler('__wkf_workflow_', async () => ({ answer: 42 }));
    const response = await handle(delivery('{"invoke":true,"runId":"wrun_1"}'));
    expect(await response.json()).toEqual({ result: { answer: 42 } });
  });

  it('refuses a missing body, missing or bad headers, another queue, a non-JSON body', async () => {
    const handle = world.createQueueHandler('__wkf_workflow_', async () => undefined);
    const cases: [Request, string][] = [
      [delivery(undefined), 'Missing request body'],
      [delivery('{}', { 'x-vqs-message-attempt': 'two' }), 'Missing required headers'],
      [delivery('{}', {}, 'not-a-queue'), 'Missing required headers'],
      [
        new Request(URL_FLOW, { method: 'POST', body: '{}', headers: { 'x-vqs-queue-name': '__wkf_workflow_wf' } }),
        'Missing required headers',
      ],
      [delivery('{}', {}, '__wkf_step_s'), 'Unhandled queue'],
      [delivery('{nope'), 'Invalid JSON body'],
    ];
    for (const [request, error] of cases) {
      const response = await handle(request);
      expect(response.status, error).toBe(400);
      expect(await response.json()).toEqual({ error });
    }
  });
});

describe('delivery signatures', () => {
  const body = '{"runId":"wrun_1"}';
  const calls: unknown[] = [];
  const handle = guarded.createQueueHandler('__wkf_workflow_', async (message) => {
    calls.push(message);
  });

  it('a good signature passes', async () => {
    const response = await handle(delivery(body, signed(body)));
    expect(response.status).toBe(200);
    expect(calls).toHaveLength(1);
  });

  it('one matching signature among several passes (rotation)', async () => {
    const good = signed(body);
    const response = await handle(
      delivery(body, { ...good, 'x-compute-signature': `v1=${'0'.repeat(64)}, ${good['x-compute-signature']}` })
    );
    expect(response.status).toBe(200);
  });

  it('refuses missing, wrong, tampered, replayed-attempt and stale signatures without calling the handler', async () => {
    const before = calls.length;
    const now = Math.floor(Date.now() / 1000);
    const cases: [Record<string, string>, string, string][] = [
      [{}, body, 'Missing signature'],
      [signed(body, 'another-secret'), body, 'Invalid signature'],
      [signed(body), '{"runId":"wrun_2"}', 'Invalid signature'],
      [signed(body, SECRET, now, 1), body, 'Invalid signature'],
      [signed(body, SECRET, now - 3600), body, 'Stale signature'],
      [{ 'x-compute-timestamp': 'yesterday', 'x-compute-signature': 'v1=00' }, body, 'Invalid signature timestamp'],
    ];
    for (const [headers, sent, error] of cases) {
      const response = await handle(delivery(sent, headers));
      expect(response.status, error).toBe(401);
      expect(await response.json()).toEqual({ error });
    }
    expect(calls.length).toBe(before);
  });
});
