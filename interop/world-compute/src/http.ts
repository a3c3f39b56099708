import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowWorldError } from '@workflow/errors';
import { Agent, fetch, type Response } from 'undici';
import { decodeJson, encodeJson } from './codec.js';
import type { ResolvedConfig } from './config.js';
import { errorFromResponse, type LaneErrorBody, parseRetryAfter } from './errors.js';

export interface CallOptions {
  query?: Record<string, string | number | undefined>;
  body?: unknown;
  /**
   * Safe to send again after a failure that may have reached the server
   * (a reset connection). Writes that would duplicate data say false: they
   * are retried only when the request provably did not arrive (connect
   * errors) or the server refused it whole (429, 503).
   */
  idempotent?: boolean;
  /** Extra request headers. */
  headers?: Record<string, string>;
  /** For errors whose class wants an id. */
  runId?: string;
  token?: string;
  /** Live response (streams): no timeout, the body is returned unread. */
  stream?: boolean;
}

const CONNECT_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_CONNECT_TIMEOUT',
]);
const RESET_CODES = new Set([
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);

function errorCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current !== null && typeof current === 'object'; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/** The part of the lane client a World needs; a class so tests can count calls. */
export class LaneClient {
  private readonly agent: Agent;
  private readonly streamAgent: Agent;
  private closed = false;

  constructor(private readonly config: ResolvedConfig) {
    // headersTimeout 0 on both: a lane call is bounded by requestTimeoutMs
    // (an AbortSignal), a live stream read by nothing.
    this.agent = new Agent({
      connections: config.connections,
      keepAliveTimeout: 4_000,
      headersTimeout: 0,
      bodyTimeout: 0,
    });
    this.streamAgent = new Agent({
      connections: config.connections,
      keepAliveTimeout: 4_000,
      headersTimeout: 0,
      bodyTimeout: 0,
    });
  }

  private baseUrl(): string {
    if (this.config.url === undefined) {
      throw new WorkflowWorldError(
        'world-compute: WORKFLOW_COMPUTE_URL is not set (the compute-worker base URL, e.g. http://127.0.0.1:8080)'
      );
    }
    return this.config.url;
  }

  private headers(extra: Record<string, string> | undefined, hasBody: boolean): Record<string, string> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (hasBody) headers['content-type'] = 'application/json';
    if (this.config.apiKey !== undefined) headers.authorization = `Bearer ${this.config.apiKey}`;
    if (this.config.deploymentId !== undefined) {
      headers['x-compute-deployment-id'] = this.config.deploymentId;
    }
    return { ...headers, ...extra };
  }

  private delayFor(attempt: number, retryAfterSeconds: number | undefined): number {
    const backoff = Math.min(
      this.config.retryMaxDelayMs,
      this.config.retryBaseDelayMs * 2 ** attempt
    );
    const jittered = backoff / 2 + Math.random() * (backoff / 2);
    if (retryAfterSeconds === undefined) return jittered;
    return Math.min(this.config.retryMaxDelayMs, Math.max(retryAfterSeconds * 1000, 0));
  }

  private log(line: string): void {
    if (this.config.log) process.stderr.write(`[world-compute] ${line}\n`);
  }

  private warn(line: string): void {
    process.stderr.write(`[world-compute] ${line}\n`);
  }

  /** One lane call: JSON in, JSON out (envelopes decoded), errors rebuilt. */
  async call<T = unknown>(method: 'GET' | 'POST', path: string, options: CallOptions = {}): Promise<T> {
    const response = await this.send(method, path, options);
    if (options.stream) return response as unknown as T;
    const text = await response.text();
    return (text === '' ? undefined : decodeJson(text)) as T;
  }

  /** The raw response of a successful call (errors thrown). */
  async send(method: 'GET' | 'POST', path: string, options: CallOptions = {}): Promise<Response> {
    if (this.closed) throw new WorkflowWorldError('world-compute: the World was closed');
    const url = new URL(this.baseUrl() + path);
    for (const [key, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined) url.searchParams.set(key, String(value));
    }
    const hasBody = options.body !== undefined;
    const body = hasBody ? encodeJson(options.body) : undefined;
    const headers = this.headers(options.headers, hasBody);
    const idempotent = options.idempotent ?? method === 'GET';
    const context = {
      method,
      url: url.pathname,
      ...(options.runId !== undefined ? { runId: options.runId } : {}),
      ...(options.token !== undefined ? { token: options.token } : {}),
    };
    for (let attempt = 0; ; attempt++) {
      const started = Date.now();
      let response: Response;
      try {
        response = await fetch(url, {
          method,
          headers,
          ...(body !== undefined ? { body } : {}),
          dispatcher: options.stream ? this.streamAgent : this.agent,
          ...(options.stream ? {} : { signal: AbortSignal.timeout(this.config.requestTimeoutMs) }),
        });
      } catch (error) {
        const code = errorCode(error);
        const timedOut = (error as { name?: string }).name === 'TimeoutError';
        const retryable =
          (code !== undefined && CONNECT_CODES.has(code)) ||
          (idempotent && ((code !== undefined && RESET_CODES.has(code)) || timedOut));
        if (retryable && attempt < this.config.maxRetries && !this.closed) {
          const delay = this.delayFor(attempt, undefined);
          this.warn(
            `${method} ${url.pathname} failed (${code ?? (error as Error).message}); retry ${attempt + 1}/${this.config.maxRetries} in ${Math.round(delay)} ms`
          );
          await sleep(delay);
          continue;
        }
        throw new WorkflowWorldError(
          `${method} ${url.pathname} failed: ${(error as Error).message}${code ? ` (${code})` : ''}`,
          { url: url.pathname, ...(code !== undefined ? { code } : {}), cause: error }
        );
      }
      this.log(`${method} ${url.pathname} -> ${response.status} in ${Date.now() - started} ms`);
      if (response.ok) return response;
      const retryAfter = parseRetryAfter(response.headers.get('retry-after'));
      if (
        (response.status === 429 || response.status === 503) &&
        attempt < this.config.maxRetries &&
        !this.closed &&
        (retryAfter === undefined || retryAfter * 1000 <= this.config.retryMaxDelayMs)
      ) {
        await response.body?.cancel();
        const delay = this.delayFor(attempt, retryAfter);
        this.warn(
          `${method} ${url.pathname} -> ${response.status}; retry ${attempt + 1}/${this.config.maxRetries} in ${Math.round(delay)} ms`
        );
        await sleep(delay);
        continue;
      }
      const text = await response.text();
      let parsed: LaneErrorBody | undefined;
      try {
        const value = JSON.parse(text) as unknown;
        if (value !== null && typeof value === 'object') parsed = value as LaneErrorBody;
      } catch {
        parsed = undefined;
      }
      if (parsed?.message === undefined && text !== '' && parsed === undefined) {
        parsed = { message: `${method} ${url.pathname} -> HTTP ${response.status}: ${text.slice(0, 500)}` };
      }
      throw errorFromResponse(response.status, parsed, response.headers.get('retry-after'), context);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([this.agent.close(), this.streamAgent.close()]);
  }
}
