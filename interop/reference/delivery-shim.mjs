// A test reference of LANE.md §3-4, in front of a real compute-worker: it answers
// GET /v1/world/deployment-id and POST /v1/queue/publish itself (messages kept in
// memory, delivered to the announced app URL exactly as LANE.md §4 says) and
// forwards every other request to the worker unchanged. It exists to check the
// package, the app and the delivery contract end to end before the worker delivers
// on its own, and as an executable reading of the contract. Not durable, one
// process: never a replacement for the worker's queue.
//
// Usage: node delivery-shim.mjs --worker URL [--port 0] [--deployment-id dpl_…] [--secret S]
// Prints "delivery-shim listening on http://127.0.0.1:<port>".
import { createHmac, randomBytes } from 'node:crypto';
import { createServer, request as httpRequest } from 'node:http';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    worker: { type: 'string' },
    port: { type: 'string', default: '0' },
    'deployment-id': { type: 'string', default: 'dpl_wdk_reference' },
    secret: { type: 'string' },
    verbose: { type: 'boolean', default: false },
  },
});
if (!args.worker) {
  console.error('usage: delivery-shim.mjs --worker URL [--port P] [--deployment-id ID] [--secret S]');
  process.exit(2);
}
const worker = new URL(args.worker);
const QUEUE_NAME = /^__(?:[a-z][a-z0-9]*_)?wkf_(workflow|step)_.+$/;
const DELIVERY_TIMEOUT_MS = 300_000;
const SAFETY_CAP = 256;

/** @type {Map<string, any>} */
const messages = new Map();
const byIdempotencyKey = new Map();
const appUrls = new Map();
const busyRuns = new Set();
let counter = 0;

const log = (...parts) => args.verbose && console.error('[shim]', ...parts);

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function answer(res, status, value) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
}

function deploymentOf(req) {
  return req.headers['x-compute-deployment-id'] || args['deployment-id'];
}

function remember(req) {
  const url = req.headers['x-compute-app-url'];
  if (typeof url === 'string' && url !== '') appUrls.set(deploymentOf(req), url.replace(/\/+$/, ''));
}

async function publish(req, res) {
  const raw = await readBody(req);
  let body;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch {
    return answer(res, 400, { code: 'invalid_request', message: 'body must be JSON', name: 'WorkflowWorldError' });
  }
  const match = QUEUE_NAME.exec(String(body.queueName ?? ''));
  if (!match || !('message' in body)) {
    return answer(res, 400, { code: 'invalid_request', message: 'queueName/message', name: 'WorkflowWorldError' });
  }
  remember(req);
  const opts = body.opts ?? {};
  if (opts.idempotencyKey && byIdempotencyKey.has(opts.idempotencyKey)) {
    return answer(res, 200, { messageId: byIdempotencyKey.get(opts.idempotencyKey) });
  }
  const id = `msg_ref${String(++counter).padStart(6, '0')}${randomBytes(6).toString('hex')}`;
  if (opts.idempotencyKey) byIdempotencyKey.set(opts.idempotencyKey, id);
  messages.set(id, {
    id,
    queueName: body.queueName,
    kind: match[1],
    // The message travels as the publisher's JSON: envelopes stay envelopes.
    payload: Buffer.from(JSON.stringify(body.message)),
    runId: body.message?.runId ?? body.message?.workflowRunId,
    headers: opts.headers ?? {},
    deployment: opts.deploymentId ?? deploymentOf(req),
    attempt: 0,
    failures: 0,
    dueAt: Date.now() + Math.max(0, Number(opts.delaySeconds ?? 0)) * 1000,
    inFlight: false,
  });
  log('published', id, body.queueName);
  answer(res, 200, { messageId: id });
}

async function deliver(message) {
  const base = appUrls.get(message.deployment) ?? appUrls.get(args['deployment-id']);
  if (!base) {
    message.dueAt = Date.now() + 500; // no app announced yet
    return;
  }
  const path = message.kind === 'workflow' ? 'flow' : 'step';
  const attempt = message.attempt + 1;
  const headers = {
    ...message.headers,
    'content-type': 'application/json',
    'x-vqs-queue-name': message.queueName,
    'x-vqs-message-id': message.id,
    'x-vqs-message-attempt': String(attempt),
  };
  if (args.secret) {
    const timestamp = Math.floor(Date.now() / 1000);
    const mac = createHmac('sha256', args.secret);
    mac.update(`${timestamp}.${message.id}.${attempt}.`);
    mac.update(message.payload);
    headers['x-compute-timestamp'] = String(timestamp);
    headers['x-compute-signature'] = `v1=${mac.digest('hex')}`;
  }
  let response;
  try {
    response = await fetch(`${base}/.well-known/workflow/v1/${path}`, {
      method: 'POST',
      headers,
      body: message.payload,
      redirect: 'manual',
      signal: AbortSignal.timeout(DELIVERY_TIMEOUT_MS),
    });
  } catch (error) {
    const code = error?.cause?.code;
    const reached = !(code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'UND_ERR_CONNECT_TIMEOUT');
    if (reached) message.attempt = attempt;
    message.failures += 1;
    message.dueAt = Date.now() + Math.min(60_000, 1000 * 2 ** Math.min(message.failures - 1, 6));
    log('delivery failed', message.id, code ?? String(error));
    return;
  }
  message.attempt = attempt;
  const text = await response.text();
  if (response.status >= 200 && response.status < 300) {
    let timeoutSeconds;
    try {
      timeoutSeconds = Number(JSON.parse(text).timeoutSeconds);
    } catch {
      timeoutSeconds = Number.NaN;
    }
    if (Number.isFinite(timeoutSeconds) && timeoutSeconds >= 0) {
      message.failures = 0;
      message.dueAt = Date.now() + timeoutSeconds * 1000;
      log('again in', timeoutSeconds, 's', message.id);
      return;
    }
    messages.delete(message.id);
    log('acked', message.id, message.queueName);
    return;
  }
  message.failures += 1;
  message.dueAt = Date.now() + Math.min(60_000, 1000 * 2 ** Math.min(message.failures - 1, 6));
  console.error(`[shim] ${message.queueName} ${message.id} attempt ${attempt}: HTTP ${response.status} ${text.slice(0, 300)}`);
}

setInterval(() => {
  const now = Date.now();
  for (const message of messages.values()) {
    if (message.inFlight || message.dueAt > now) continue;
    if (message.attempt >= SAFETY_CAP) {
      console.error(`[shim] ${message.id} dropped after ${SAFETY_CAP} deliveries`);
      messages.delete(message.id);
      continue;
    }
    // Two deliveries of one run's workflow messages never overlap.
    if (message.kind === 'workflow' && message.runId && busyRuns.has(message.runId)) continue;
    message.inFlight = true;
    if (message.kind === 'workflow' && message.runId) busyRuns.add(message.runId);
    deliver(message).finally(() => {
      message.inFlight = false;
      if (message.kind === 'workflow' && message.runId) busyRuns.delete(message.runId);
    });
  }
}, 25).unref();

function forward(req, res) {
  const target = new URL(req.url ?? '/', worker);
  const upstream = httpRequest(
    target,
    { method: req.method, headers: { ...req.headers, host: target.host } },
    (reply) => {
      res.writeHead(reply.statusCode ?? 502, reply.headers);
      reply.pipe(res);
    }
  );
  upstream.on('error', (error) => {
    if (!res.headersSent) answer(res, 502, { code: 'bad_gateway', message: String(error), name: 'WorkflowWorldError' });
    else res.destroy();
  });
  req.pipe(upstream);
}

const server = createServer((req, res) => {
  const path = new URL(req.url ?? '/', 'http://x').pathname;
  if (req.method === 'GET' && path === '/v1/world/deployment-id') {
    remember(req);
    return answer(res, 200, { deploymentId: deploymentOf(req) });
  }
  if (req.method === 'POST' && path === '/v1/queue/publish') {
    publish(req, res).catch((error) => answer(res, 500, { code: 'internal_error', message: String(error) }));
    return;
  }
  forward(req, res);
});
server.listen(Number(args.port), '127.0.0.1', () => {
  console.log(`delivery-shim listening on http://127.0.0.1:${server.address().port}`);
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
