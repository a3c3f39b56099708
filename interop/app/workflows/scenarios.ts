// The stable-line scenarios the Python interop tests drive through the worker.
// Each workflow is started by name through server.mjs (POST /start) and watched
// through the worker's public API.
import {
  createHook,
  FatalError,
  getStepMetadata,
  getWritable,
  RetryableError,
  sleep,
} from 'workflow';

async function add(a: number, b: number): Promise<number> {
  'use step';
  return a + b;
}

async function double(n: number): Promise<number> {
  'use step';
  return n * 2;
}

async function flaky(label: string): Promise<{ label: string; attempt: number }> {
  'use step';
  const { attempt } = getStepMetadata();
  if (attempt < 2) {
    throw new RetryableError(`flaky ${label}: attempt ${attempt} fails on purpose`, {
      retryAfter: '1s',
    });
  }
  return { label, attempt };
}

async function refuse(reason: string): Promise<never> {
  'use step';
  throw new FatalError(`refused: ${reason}`);
}

async function emit(lines: string[]): Promise<number> {
  'use step';
  const writer = getWritable<string>().getWriter();
  for (const line of lines) await writer.write(`${line}\n`);
  await writer.close();
  return lines.length;
}

/** No step at all: the run completes in one flow invocation. */
export async function noStep(a: number, b: number) {
  'use workflow';
  return { sum: a + b };
}

/** Several steps in sequence and in parallel. */
export async function severalSteps(n: number) {
  'use workflow';
  const first = await add(n, 1);
  const [x, y] = await Promise.all([double(first), add(first, 10)]);
  const last = await add(x, y);
  return { first, x, y, last };
}

/** A step that fails once (RetryableError), then succeeds on its second attempt. */
export async function retryThenSucceed(label: string) {
  'use workflow';
  return await flaky(label);
}

/** A step that throws FatalError: no retry, the run fails. */
export async function fatalError(reason: string) {
  'use workflow';
  await refuse(reason);
  return 'unreachable';
}

/** A durable sleep. */
export async function sleeper(seconds: number) {
  'use workflow';
  const before = Date.now();
  await sleep(`${seconds}s`);
  return { sleptAtLeastMs: Date.now() - before };
}

/** Waits on a hook with a caller-chosen token; resumed through POST /v1/runs/resume. */
export async function hookWaiter(token: string) {
  'use workflow';
  const hook = createHook<{ approved: boolean }>({ token });
  const payload = await hook;
  return { token, payload };
}

/** A step that writes a stream (read through the worker's API). */
export async function streamer(count: number) {
  'use workflow';
  const lines = Array.from({ length: count }, (_, i) => `line ${i + 1}`);
  const written = await emit(lines);
  return { written };
}

/** Sleeps an hour: something to cancel through POST /v1/runs/:id/cancel. */
export async function cancellable() {
  'use workflow';
  await sleep('1h');
  return 'not cancelled';
}

/**
 * For crash recovery: a step, a sleep long enough to kill -9 the worker in, a step.
 * After a restart the run completes; the first step must not start again (one
 * step_started for it in the log).
 */
export async function stepsAroundSleep(seconds: number) {
  'use workflow';
  const before = await add(seconds, 0);
  await sleep(`${seconds}s`);
  const after = await double(before);
  return { before, after };
}

/** Ten sequential trivial steps: bench/wdk.py's per-step figure (worker vs world-local). */
export async function tenSteps(n: number) {
  'use workflow';
  let value = n;
  for (let i = 0; i < 10; i++) value = await add(value, 1);
  return { value };
}
