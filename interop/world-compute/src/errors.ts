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

/** The lane's error body (README "The World lane"). */
export interface LaneErrorBody {
  code?: string;
  message?: string;
  name?: string;
  retryAfter?: number;
  details?: Record<string, unknown>;
}

/** What the request was about, for errors whose constructor wants an id. */
export interface ErrorContext {
  method: string;
  url: string;
  runId?: string;
  token?: string;
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function num(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  if (typeof value === 'string' && value.trim() !== '' && Number.isFinite(Number(value))) {
    return Number(value);
  }
  return undefined;
}

/** Retry-After in seconds from a header (delta-seconds or an HTTP date). */
export function parseRetryAfter(header: string | null | undefined, now = Date.now()): number | undefined {
  if (header === null || header === undefined || header.trim() === '') return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const at = Date.parse(header);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, (at - now) / 1000);
}

function withFields<T extends Error>(error: T, fields: Record<string, unknown>): T {
  for (const [key, value] of Object.entries(fields)) {
    if (value !== undefined) (error as unknown as Record<string, unknown>)[key] = value;
  }
  return error;
}

/**
 * Rebuild a lane error as the `@workflow/errors` class the runtime dispatches on
 * (each class's static `is()` compares `error.name`). The body's `name` decides;
 * without one the status does, as world-vercel's client maps them.
 */
export function errorFromResponse(
  status: number,
  body: LaneErrorBody | undefined,
  retryAfterHeader: string | null,
  context: ErrorContext
): Error {
  const details = body?.details ?? {};
  const code = str(body?.code);
  const retryAfter = num(body?.retryAfter) ?? parseRetryAfter(retryAfterHeader);
  const message =
    str(body?.message) ?? `${context.method} ${context.url} -> HTTP ${status}`;
  const common = { status, code, url: context.url };
  let name = str(body?.name);
  if (name === undefined || name === 'WorkflowWorldError') {
    // Status fallbacks, for bodies without a specific class.
    if (status === 409) name = 'EntityConflictError';
    else if (status === 410) name = 'RunExpiredError';
    else if (status === 412) name = 'PreconditionFailedError';
    else if (status === 425) name = 'TooEarlyError';
    else if (status === 429) name = 'ThrottleError';
    else name = 'WorkflowWorldError';
  }
  switch (name) {
    case 'EntityConflictError':
      return withFields(new EntityConflictError(message), common);
    case 'RunExpiredError':
      return withFields(new RunExpiredError(message), common);
    case 'TooEarlyError':
      return withFields(new TooEarlyError(message, { retryAfter }), { ...common, retryAfter });
    case 'ThrottleError':
      return withFields(new ThrottleError(message, { retryAfter }), { ...common, retryAfter });
    case 'PreconditionFailedError':
      return withFields(new PreconditionFailedError(message, { retryAfter }), {
        ...common,
        retryAfter,
      });
    case 'WorkflowRunNotFoundError': {
      const runId = str(details.runId) ?? context.runId ?? '';
      return withFields(new WorkflowRunNotFoundError(runId), { message, ...common });
    }
    case 'HookNotFoundError': {
      const token = str(details.token) ?? context.token ?? '';
      return withFields(new HookNotFoundError(token), { message, ...common });
    }
    case 'HookConflictError': {
      const token = str(details.token) ?? context.token ?? '';
      return withFields(new HookConflictError(token, str(details.conflictingRunId)), {
        message,
        ...common,
      });
    }
    case 'RunNotSupportedError': {
      const runSpec = num(details.runSpecVersion) ?? 0;
      const worldSpec = num(details.worldSpecVersion) ?? num(details.supportedSpecVersion) ?? 0;
      return withFields(new RunNotSupportedError(runSpec, worldSpec), { message, ...common });
    }
    default:
      return new WorkflowWorldError(message, { ...common, retryAfter });
  }
}
