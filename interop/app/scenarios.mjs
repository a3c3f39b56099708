// Drives the stable-line app through a compute-worker: starts the app (start.sh) with
// world-compute pointed at the worker (or at reference/delivery-shim.mjs in front of
// it with --shim), runs each scenario, prints one line per scenario and
// "N passed, M failed". Exit 1 on any failure.
//
// Usage: node scenarios.mjs --worker URL --key KEY [--shim] [--secret S] [--only name,name]
// The key needs world:proxy plus runs:write (cancel, resume) and runs:read.
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    worker: { type: 'string' },
    key: { type: 'string' },
    shim: { type: 'boolean', default: false },
    secret: { type: 'string' },
    only: { type: 'string' },
    timeout: { type: 'string', default: '60' },
  },
});
if (!args.worker || !args.key) {
  console.error('usage: scenarios.mjs --worker URL --key KEY [--shim] [--secret S] [--only a,b]');
  process.exit(2);
}
const worker = args.worker.replace(/\/+$/, '');
const auth = { authorization: `Bearer ${args.key}` };
const children = [];
const here = (p) => fileURLToPath(new URL(p, import.meta.url));

function launch(command, argv, env, ready) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    const onData = (chunk) => {
      out += chunk;
      const match = ready.exec(out);
      if (match) resolve({ child, url: match[1], output: () => out });
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (chunk) => {
      out += chunk;
      if (process.env.SCENARIOS_VERBOSE) process.stderr.write(chunk);
    });
    child.on('exit', (code) => reject(new Error(`${command} exited ${code}:\n${out}`)));
    setTimeout(() => reject(new Error(`${command} did not start in 60 s:\n${out}`)), 60_000).unref();
  });
}

function cleanup() {
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
}
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));

async function call(url, init = {}) {
  const response = await fetch(url, init);
  const text = await response.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: response.status, body };
}

let lane = worker;
if (args.shim) {
  const shim = await launch(
    process.execPath,
    [here('../reference/delivery-shim.mjs'), '--worker', worker, ...(args.secret ? ['--secret', args.secret] : [])],
    {},
    /delivery-shim listening on (\S+)/
  );
  lane = shim.url;
}
const app = await launch(
  here('./start.sh'),
  [lane, args.key, '0'],
  args.secret ? { WORKFLOW_COMPUTE_DELIVERY_SECRET: args.secret } : {},
  /wdk-app listening on (\S+)/
);

const deadline = Number(args.timeout) * 1000;

async function startRun(workflow, runArgs) {
  const { status, body } = await call(`${app.url}/start`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ workflow, args: runArgs }),
  });
  if (status !== 202) throw new Error(`/start ${workflow}: ${status} ${JSON.stringify(body)}`);
  return body.runId;
}

async function waitFor(runId, statuses) {
  const until = Date.now() + deadline;
  let last;
  while (Date.now() < until) {
    last = await call(`${app.url}/runs/${runId}`);
    if (last.status === 200 && statuses.includes(last.body.status)) return last.body;
    await sleep(200);
  }
  throw new Error(`run ${runId} not ${statuses.join('/')} after ${deadline} ms: ${JSON.stringify(last?.body)}`);
}

async function eventTypes(runId) {
  const types = [];
  let cursor;
  for (;;) {
    const { status, body } = await call(`${worker}/v1/world/events/list`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ runId, pagination: { limit: 1000, ...(cursor ? { cursor } : {}) } }),
    });
    if (status !== 200) throw new Error(`events/list: ${status} ${JSON.stringify(body)}`);
    types.push(...body.data.map((e) => e.eventType));
    if (!body.hasMore || !body.cursor || body.cursor === cursor) return types;
    cursor = body.cursor;
  }
}

function expect(condition, message) {
  if (!condition) throw new Error(message);
}
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const count = (list, item) => list.filter((x) => x === item).length;

const scenarios = {
  async noStep() {
    const run = await waitFor(await startRun('noStep', [1, 2]), ['completed', 'failed']);
    expect(run.status === 'completed' && same(run.output, { sum: 3 }), JSON.stringify(run));
  },
  async severalSteps() {
    const runId = await startRun('severalSteps', [1]);
    const run = await waitFor(runId, ['completed', 'failed']);
    expect(run.status === 'completed' && same(run.output, { first: 2, x: 4, y: 12, last: 16 }), JSON.stringify(run));
    const types = await eventTypes(runId);
    expect(count(types, 'step_completed') === 4, `4 step_completed expected: ${types}`);
  },
  async retryThenSucceed() {
    const runId = await startRun('retryThenSucceed', ['r']);
    const run = await waitFor(runId, ['completed', 'failed']);
    expect(run.status === 'completed' && same(run.output, { label: 'r', attempt: 2 }), JSON.stringify(run));
    const types = await eventTypes(runId);
    expect(count(types, 'step_retrying') === 1 && count(types, 'step_started') === 2, `events: ${types}`);
  },
  async fatalError() {
    const runId = await startRun('fatalError', ['nope']);
    const run = await waitFor(runId, ['completed', 'failed']);
    expect(run.status === 'failed' && /refused: nope/.test(run.error ?? ''), JSON.stringify(run));
    const types = await eventTypes(runId);
    expect(count(types, 'step_retrying') === 0 && types.includes('step_failed'), `events: ${types}`);
  },
  async sleeper() {
    const runId = await startRun('sleeper', [2]);
    const run = await waitFor(runId, ['completed', 'failed']);
    expect(run.status === 'completed' && run.output.sleptAtLeastMs >= 1900, JSON.stringify(run));
    const types = await eventTypes(runId);
    expect(types.includes('wait_created') && types.includes('wait_completed'), `events: ${types}`);
  },
  async stepsAroundSleep() {
    const runId = await startRun('stepsAroundSleep', [1]);
    const run = await waitFor(runId, ['completed', 'failed']);
    expect(run.status === 'completed' && same(run.output, { before: 1, after: 2 }), JSON.stringify(run));
    const types = await eventTypes(runId);
    expect(count(types, 'step_started') === 2 && count(types, 'step_completed') === 2, `events: ${types}`);
  },
  async hookResumedInApp() {
    const token = `in-app-${Date.now()}-${Math.random().toString(36).slice(2)}`;
    const runId = await startRun('hookWaiter', [token]);
    const until = Date.now() + deadline;
    for (;;) {
      const resumed = await call(`${app.url}/resume`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ token, payload: { approved: false } }),
      });
      if (resumed.status === 202) break;
      expect(Date.now() < until, `resumeHook never found ${token}: ${JSON.stringify(resumed.body)}`);
      await sleep(200);
    }
    const run = await waitFor(runId, ['completed', 'failed']);
    expect(run.status === 'completed' && same(run.output, { token, payload: { approved: false } }), JSON.stringify(run));
  },
  async hookResumedThroughPublicApi() {
    const token = `approve-${Date.now()}-${Math.random().toString(36).slice(2)}`;
    const runId = await startRun('hookWaiter', [token]);
    const until = Date.now() + deadline;
    for (;;) {
      const found = await call(`${worker}/v1/world/hooks/by-token/${encodeURIComponent(token)}`, { headers: auth });
      if (found.status === 200) break;
      expect(Date.now() < until, `hook ${token} never created`);
      await sleep(200);
    }
    const resumed = await call(`${worker}/v1/runs/resume`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ token, payload: { approved: true } }),
    });
    expect(resumed.status === 202, `POST /v1/runs/resume: ${resumed.status} ${JSON.stringify(resumed.body)}`);
    const run = await waitFor(runId, ['completed', 'failed']);
    expect(run.status === 'completed' && same(run.output, { token, payload: { approved: true } }), JSON.stringify(run));
  },
  async streamer() {
    const runId = await startRun('streamer', [3]);
    const run = await waitFor(runId, ['completed', 'failed']);
    expect(run.status === 'completed' && same(run.output, { written: 3 }), JSON.stringify(run));
    const read = await call(`${app.url}/runs/${runId}/readable`);
    expect(same(read.body.values, ['line 1\n', 'line 2\n', 'line 3\n']), `stream: ${JSON.stringify(read.body)}`);
    const listed = await call(`${worker}/v1/world/streams/list?runId=${runId}`, { headers: auth });
    expect(listed.status === 200 && listed.body.streams.length >= 1, `streams/list: ${JSON.stringify(listed.body)}`);
  },
  async cancelThroughPublicApi() {
    const runId = await startRun('cancellable', []);
    const until = Date.now() + deadline;
    while (!(await eventTypes(runId)).includes('wait_created')) {
      expect(Date.now() < until, 'the run never started sleeping');
      await sleep(200);
    }
    const cancelled = await call(`${worker}/v1/runs/${runId}/cancel`, { method: 'POST', headers: auth });
    expect(cancelled.status === 200, `cancel: ${cancelled.status} ${JSON.stringify(cancelled.body)}`);
    const run = await waitFor(runId, ['cancelled', 'completed', 'failed']);
    expect(run.status === 'cancelled', JSON.stringify(run));
    const seen = await call(`${worker}/v1/runs/${runId}`, { headers: auth });
    expect(seen.body.status === 'cancelled', `public run: ${JSON.stringify(seen.body)}`);
  },
};

const only = args.only ? new Set(args.only.split(',')) : undefined;
let passed = 0;
let failed = 0;
for (const [name, scenario] of Object.entries(scenarios)) {
  if (only && !only.has(name)) continue;
  const started = Date.now();
  try {
    await scenario();
    passed += 1;
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (error) {
    failed += 1;
    console.log(`FAIL ${name} (${Date.now() - started} ms): ${error.message}`);
  }
}
console.log(`${passed} passed, ${failed} failed`);
cleanup();
process.exit(failed === 0 ? 0 : 1);
