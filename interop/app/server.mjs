// Serves the app built by `workflow build` (standalone target):
//   POST /.well-known/workflow/v1/flow|step   the worker's queue deliveries
//   ANY  /.well-known/workflow/v1/webhook/:token
//   POST /start {workflow, args}               starts a workflow by its export name -> {runId}
//   GET  /workflows                            the names /start accepts
//   GET  /runs/:runId                          {status, output?, error?} read and decrypted by the runtime
//   GET  /runs/:runId/readable                 the run's default stream, decoded, as text lines
//   POST /resume {token, payload}              resumeHook() from inside the app (the worker's
//                                              public POST /v1/runs/resume is the other way)
//   GET  /health                               200 once listening
// The World comes from WORKFLOW_TARGET_WORLD (start.sh sets it to world-compute).
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { Readable } from 'node:stream';
import { getRun, resumeHook, start } from 'workflow/api';
import flow from './.well-known/workflow/v1/flow.js';
import step from './.well-known/workflow/v1/step.js';
import * as webhook from './.well-known/workflow/v1/webhook.js';

const manifest = JSON.parse(
  readFileSync(new URL('./.well-known/workflow/v1/manifest.json', import.meta.url), 'utf8')
);
const workflows = Object.fromEntries(
  Object.values(manifest.workflows).flatMap((byName) => Object.entries(byName))
);

function toRequest(req, body) {
  const url = new URL(req.url ?? '/', `http://${req.headers.host ?? 'localhost'}`);
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (Array.isArray(value)) for (const item of value) headers.append(name, item);
    else if (value !== undefined) headers.set(name, value);
  }
  const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
  return new Request(url, { method: req.method, headers, ...(hasBody ? { body } : {}) });
}

async function send(res, response) {
  res.writeHead(response.status, Object.fromEntries(response.headers));
  if (response.body) Readable.fromWeb(response.body).pipe(res);
  else res.end();
}

function json(res, status, value) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
}

async function route(req, res) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const body = Buffer.concat(chunks);
  const path = new URL(req.url ?? '/', 'http://x').pathname;
  if (req.method === 'POST' && path === '/.well-known/workflow/v1/flow') {
    return send(res, await flow.POST(toRequest(req, body)));
  }
  if (req.method === 'POST' && path === '/.well-known/workflow/v1/step') {
    return send(res, await step.POST(toRequest(req, body)));
  }
  if (path.startsWith('/.well-known/workflow/v1/webhook/')) {
    const handler = webhook[req.method ?? 'POST'];
    if (!handler) return json(res, 405, { error: 'method not allowed' });
    return send(res, await handler(toRequest(req, body)));
  }
  if (req.method === 'GET' && path === '/health') return json(res, 200, { ok: true });
  if (req.method === 'GET' && path === '/workflows') return json(res, 200, Object.keys(workflows));
  if (req.method === 'POST' && path === '/start') {
    let parsed;
    try {
      parsed = JSON.parse(body.toString('utf8') || '{}');
    } catch {
      return json(res, 400, { error: 'body must be JSON {workflow, args}' });
    }
    const entry = workflows[parsed.workflow];
    if (!entry) return json(res, 404, { error: `unknown workflow ${parsed.workflow}`, known: Object.keys(workflows) });
    const args = Array.isArray(parsed.args) ? parsed.args : [];
    const run = await start(entry, args);
    return json(res, 202, { runId: run.runId, workflowName: entry.workflowId });
  }
  const runMatch = /^\/runs\/([^/]+)(\/readable)?$/.exec(path);
  if (req.method === 'GET' && runMatch) {
    const run = getRun(decodeURIComponent(runMatch[1]));
    if (runMatch[2]) {
      const reader = run.getReadable().getReader();
      const values = [];
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        values.push(value);
      }
      return json(res, 200, { values });
    }
    const status = await run.status;
    const answer = { runId: run.runId, status };
    if (status === 'completed') answer.output = await run.returnValue;
    if (status === 'failed') {
      try {
        await run.returnValue;
      } catch (error) {
        answer.error = String(error?.cause?.message ?? error?.message ?? error);
      }
    }
    return json(res, 200, answer);
  }
  if (req.method === 'POST' && path === '/resume') {
    const parsed = JSON.parse(body.toString('utf8') || '{}');
    try {
      const hook = await resumeHook(parsed.token, parsed.payload);
      return json(res, 202, { runId: hook.runId, hookId: hook.hookId });
    } catch (error) {
      if (error?.name === 'HookNotFoundError') return json(res, 404, { error: String(error) });
      throw error;
    }
  }
  return json(res, 404, { error: `no route for ${req.method} ${path}` });
}

const server = createServer((req, res) => {
  route(req, res).catch((error) => {
    console.error('[app] request failed:', error);
    if (!res.headersSent) json(res, 500, { error: String(error) });
    else res.destroy();
  });
});

const port = Number(process.env.PORT ?? 0);
server.listen(port, process.env.HOST ?? '127.0.0.1', () => {
  const address = server.address();
  process.env.PORT = String(address.port); // world-compute announces localhost:$PORT
  console.log(`wdk-app listening on http://127.0.0.1:${address.port}`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
