import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/** Options of {@link createWorld}; each falls back to its environment variable. */
export interface ComputeWorldOptions {
  /** Base URL of the compute-worker server (`WORKFLOW_COMPUTE_URL`), e.g. `http://127.0.0.1:8080`. */
  url?: string;
  /** Bearer key with scope `world:proxy` (`WORKFLOW_COMPUTE_API_KEY`). */
  apiKey?: string;
  /**
   * This app's deployment on the worker (`WORKFLOW_COMPUTE_DEPLOYMENT_ID`), sent as
   * `x-compute-deployment-id` on every lane request.
   */
  deploymentId?: string;
  /**
   * Where the worker delivers queue messages for this app (`WORKFLOW_COMPUTE_APP_URL`);
   * default `http://localhost:$PORT` when `PORT` is set. Read at each call, since
   * servers learn their port after listening.
   */
  appUrl?: string;
  /**
   * The spec version the World declares (`WORKFLOW_COMPUTE_SPEC_VERSION`): 3 for the
   * `@workflow/world` 4.x line, 5 for the 5.0 beta line. Default: 5 when the
   * `@workflow/core` (or `workflow`) installed beside the app is 5.x, otherwise 3.
   */
  specVersion?: number;
  /**
   * Shared secret the worker signs deliveries with (`WORKFLOW_COMPUTE_DELIVERY_SECRET`).
   * When set, the queue handler refuses unsigned or badly signed requests (401).
   */
  deliverySecret?: string;
  /** Seconds a delivery signature stays valid either side of now (default 300). */
  signatureToleranceSeconds?: number;
  /** Retries of one lane call on 429/503 and connection errors (default 5; `WORKFLOW_COMPUTE_MAX_RETRIES`). */
  maxRetries?: number;
  /** First backoff delay in ms, doubled each retry with jitter (default 200). */
  retryBaseDelayMs?: number;
  /** Upper bound of one backoff delay in ms, `Retry-After` included (default 10 000). */
  retryMaxDelayMs?: number;
  /** Timeout of one lane call in ms (default 60 000); live stream reads have none. */
  requestTimeoutMs?: number;
  /** Keep-alive connections to the worker (default 64). */
  connections?: number;
  /** Log each lane call to stderr (`WORKFLOW_COMPUTE_LOG=1`). */
  log?: boolean;
  /** Encryption keys kept in memory (runs), least recently used dropped first (default 10 000). */
  keyCacheSize?: number;
}

export interface ResolvedConfig {
  url: string | undefined;
  apiKey: string | undefined;
  deploymentId: string | undefined;
  appUrl: () => string | undefined;
  specVersion: number;
  deliverySecret: string | undefined;
  signatureToleranceSeconds: number;
  maxRetries: number;
  retryBaseDelayMs: number;
  retryMaxDelayMs: number;
  requestTimeoutMs: number;
  connections: number;
  log: boolean;
  keyCacheSize: number;
}

export const SUPPORTED_SPEC_VERSIONS = [3, 4, 5] as const;

function env(name: string): string | undefined {
  const value = process.env[name];
  return value === undefined || value === '' ? undefined : value;
}

function intFrom(name: string, raw: string | undefined, fallback: number, min: number): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) {
    throw new Error(`world-compute: ${name} must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

function checkSpec(value: number, where: string): number {
  if (!(SUPPORTED_SPEC_VERSIONS as readonly number[]).includes(value)) {
    throw new Error(
      `world-compute: ${where} must be one of ${SUPPORTED_SPEC_VERSIONS.join(', ')}, got ${value}`
    );
  }
  return value;
}

/** The installed version of a package as seen from `fromDir`, or undefined. */
export function installedVersion(pkg: string, fromDir: string): string | undefined {
  const require = createRequire(join(fromDir, 'noop.js'));
  let manifest: string | undefined;
  try {
    manifest = require.resolve(`${pkg}/package.json`);
  } catch {
    try {
      // Packages whose `exports` hide package.json: walk up from the entry point.
      let dir = dirname(require.resolve(pkg));
      for (let depth = 0; depth < 6 && manifest === undefined; depth++) {
        const candidate = join(dir, 'package.json');
        try {
          const parsed = JSON.parse(readFileSync(candidate, 'utf8')) as { name?: string };
          if (parsed.name === pkg) manifest = candidate;
        } catch {
          // not here
        }
        dir = dirname(dir);
      }
    } catch {
      return undefined;
    }
  }
  if (manifest === undefined) return undefined;
  try {
    const parsed = JSON.parse(readFileSync(manifest, 'utf8')) as { version?: unknown };
    return typeof parsed.version === 'string' ? parsed.version : undefined;
  } catch {
    return undefined;
  }
}

/** 5 when the runtime beside the app is the 5.x line, else 3. */
export function detectSpecVersion(fromDir: string = process.cwd()): number {
  for (const pkg of ['@workflow/core', 'workflow', '@workflow/world']) {
    const version = installedVersion(pkg, fromDir);
    if (version !== undefined) {
      const major = Number(version.split('.')[0]);
      return major >= 5 ? 5 : 3;
    }
  }
  return 3;
}

export function resolveConfig(options: ComputeWorldOptions = {}): ResolvedConfig {
  const specRaw = env('WORKFLOW_COMPUTE_SPEC_VERSION');
  const specVersion =
    options.specVersion !== undefined
      ? checkSpec(options.specVersion, 'options.specVersion')
      : specRaw !== undefined
        ? checkSpec(intFrom('WORKFLOW_COMPUTE_SPEC_VERSION', specRaw, 3, 1), 'WORKFLOW_COMPUTE_SPEC_VERSION')
        : detectSpecVersion();
  const url = options.url ?? env('WORKFLOW_COMPUTE_URL');
  if (url !== undefined) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new Error(`world-compute: WORKFLOW_COMPUTE_URL is not a URL: ${JSON.stringify(url)}`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new Error(`world-compute: WORKFLOW_COMPUTE_URL must be http(s), got ${parsed.protocol}`);
    }
  }
  return {
    url: url?.replace(/\/+$/, ''),
    apiKey: options.apiKey ?? env('WORKFLOW_COMPUTE_API_KEY'),
    deploymentId: options.deploymentId ?? env('WORKFLOW_COMPUTE_DEPLOYMENT_ID'),
    appUrl: () => {
      const explicit = options.appUrl ?? env('WORKFLOW_COMPUTE_APP_URL');
      if (explicit !== undefined) return explicit.replace(/\/+$/, '');
      const port = env('PORT');
      // PORT=0 means "any free port": not an address until the server has listened.
      return port !== undefined && /^[1-9]\d{0,4}$/.test(port) ? `http://localhost:${port}` : undefined;
    },
    specVersion,
    deliverySecret: options.deliverySecret ?? env('WORKFLOW_COMPUTE_DELIVERY_SECRET'),
    signatureToleranceSeconds: options.signatureToleranceSeconds ?? 300,
    maxRetries:
      options.maxRetries ?? intFrom('WORKFLOW_COMPUTE_MAX_RETRIES', env('WORKFLOW_COMPUTE_MAX_RETRIES'), 5, 0),
    retryBaseDelayMs: options.retryBaseDelayMs ?? 200,
    retryMaxDelayMs: options.retryMaxDelayMs ?? 10_000,
    requestTimeoutMs: options.requestTimeoutMs ?? 60_000,
    connections: options.connections ?? 64,
    log: options.log ?? env('WORKFLOW_COMPUTE_LOG') === '1',
    keyCacheSize: options.keyCacheSize ?? 10_000,
  };
}
