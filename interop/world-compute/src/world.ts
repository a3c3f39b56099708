import { WorkflowWorldError } from '@workflow/errors';
import {
  type Json,
  normalizeEntity,
  normalizeEventResult,
  normalizePage,
} from './codec.js';
import { type ComputeWorldOptions, type ResolvedConfig, resolveConfig } from './config.js';
import { LaneClient } from './http.js';
import { createQueueHandler, type QueueHandler } from './queue-handler.js';
import { monotonicUlid } from './ulid.js';

/**
 * Entities travel as the server sends them (after the codec's normalisation); their
 * exact shapes are `@workflow/world`'s, which differ between the 4.x and 5.0 lines,
 * so this package types them loosely and lets either line's World type accept it
 * (checked in test/types.ts).
 */
type Entity = any;
type Params = Entity;
type Chunk = string | Uint8Array;

export interface ComputeWorld {
  readonly specVersion: number;
  /** The resolved configuration (secrets included: do not log it). */
  readonly config: Readonly<ResolvedConfig>;

  getDeploymentId(): Promise<string>;
  queue(
    queueName: string,
    message: unknown,
    opts?: Entity
  ): Promise<{ messageId: Entity }>;
  createQueueHandler(prefix: string, handler: QueueHandler): (req: Request) => Promise<Response>;

  runs: {
    get(id: string, params?: Params): Promise<Entity>;
    list(params?: Params): Promise<Entity>;
    experimentalSetAttributes?(
      runId: string,
      changes: { key: string; value: string | null }[],
      options?: { allowReservedAttributes?: boolean }
    ): Promise<{ attributes: Record<string, string> }>;
  };
  steps: {
    get(runId: string | undefined, stepId: string, params?: Params): Promise<Entity>;
    list(params: Entity): Promise<Entity>;
  };
  events: {
    create(runId: string | null, data: Entity, params?: Params): Promise<Entity>;
    get(runId: string, eventId: string, params?: Params): Promise<Entity>;
    list(params: Entity): Promise<Entity>;
    listByCorrelationId(params: Entity): Promise<Entity>;
  };
  hooks: {
    get(hookId: string, params?: Params): Promise<Entity>;
    getByToken(token: string, params?: Params): Promise<Entity>;
    list(params: Entity): Promise<Entity>;
  };

  // @workflow/world 4.x streams (name first)
  writeToStream(name: string, runId: string, chunk: Chunk): Promise<void>;
  writeToStreamMulti(name: string, runId: string, chunks: Chunk[]): Promise<void>;
  closeStream(name: string, runId: string): Promise<void>;
  readFromStream(name: string, startIndex?: number): Promise<ReadableStream<Uint8Array>>;
  listStreamsByRunId(runId: string): Promise<string[]>;
  getStreamChunks(name: string, runId: string, options?: { limit?: number; cursor?: string }): Promise<Entity>;
  getStreamInfo(name: string, runId: string): Promise<{ tailIndex: number; done: boolean }>;

  // @workflow/world 5.0 streams (runId first)
  streams: {
    write(runId: string, name: string, chunk: Chunk): Promise<void>;
    writeMulti(runId: string, name: string, chunks: Chunk[]): Promise<void>;
    close(runId: string, name: string): Promise<void>;
    get(runId: string, name: string, startIndex?: number): Promise<ReadableStream<Uint8Array>>;
    list(runId: string): Promise<string[]>;
    getChunks(runId: string, name: string, options?: { limit?: number; cursor?: string }): Promise<Entity>;
    getInfo(runId: string, name: string): Promise<{ tailIndex: number; done: boolean }>;
  };

  getEncryptionKeyForRun(
    run: string | { runId: string; deploymentId?: string },
    context?: Record<string, unknown>
  ): Promise<Uint8Array | undefined>;

  /** A new run id without its `wrun_` prefix (a monotonic ULID), for the 5.0 runtime's `start()`. */
  createRunId(options?: Readonly<Record<string, unknown>>): string;

  close(): Promise<void>;
}

function resolveQuery(params: Params): string | undefined {
  const value = params?.resolveData;
  return typeof value === 'string' ? value : undefined;
}

function isRouteMissing(error: unknown): boolean {
  return (
    WorkflowWorldError.is(error) &&
    (error as { status?: number }).status === 404 &&
    (error as { code?: string }).code === 'not_found'
  );
}

/** Least-recently-used map of promises, so concurrent asks share one request. */
class KeyCache {
  private readonly entries = new Map<string, Promise<Uint8Array | undefined>>();
  constructor(private readonly limit: number) {}

  get(key: string, load: () => Promise<Uint8Array | undefined>): Promise<Uint8Array | undefined> {
    const hit = this.entries.get(key);
    if (hit !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit;
    }
    const loading = load();
    this.entries.set(key, loading);
    loading.catch(() => {
      if (this.entries.get(key) === loading) this.entries.delete(key);
    });
    while (this.entries.size > this.limit) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest);
    }
    return loading;
  }

  get size(): number {
    return this.entries.size;
  }
}

/**
 * A World over a compute-worker's world lane. Both interface lines at once:
 * `@workflow/world` 4.x (flat stream methods, spec 3) and the 5.0 beta
 * (`streams.*` with runId first, spec 5); `specVersion` says which one the
 * runtime should expect (see {@link ComputeWorldOptions.specVersion}).
 */
export function createWorld(options: ComputeWorldOptions = {}): ComputeWorld {
  const config = resolveConfig(options);
  const lane = new LaneClient(config);
  const keys = new KeyCache(config.keyCacheSize);
  const nextUlid = monotonicUlid();

  const appHeaders = (): Record<string, string> => {
    const appUrl = config.appUrl();
    return appUrl !== undefined ? { 'x-compute-app-url': appUrl } : {};
  };

  const page = async (path: string, body: Json, runId?: string): Promise<Entity> =>
    normalizePage(
      await lane.call('POST', path, {
        body,
        idempotent: true,
        ...(runId !== undefined ? { runId } : {}),
      })
    );

  const write = async (name: string, runId: string, chunks: Chunk[]): Promise<void> => {
    if (chunks.length === 0) return;
    const body = chunks.length === 1 ? { name, runId, chunk: chunks[0] } : { name, runId, chunks };
    // Not idempotent: a write sent twice appends twice.
    await lane.call('POST', '/v1/world/streams/write', { body, idempotent: false, runId });
  };
  const close = async (name: string, runId: string): Promise<void> => {
    // A second close is a no-op on the server, so it may be retried.
    await lane.call('POST', '/v1/world/streams/close', { body: { name, runId }, idempotent: true, runId });
  };
  const read = async (
    name: string,
    startIndex: number | undefined,
    runId?: string
  ): Promise<ReadableStream<Uint8Array>> => {
    const response = await lane.send('GET', '/v1/world/streams/read', {
      query: { name, startIndex, runId },
      stream: true,
    });
    if (response.body === null) return new ReadableStream<Uint8Array>({ start: (c) => c.close() });
    return response.body as unknown as ReadableStream<Uint8Array>;
  };
  const list = async (runId: string): Promise<string[]> => {
    const answer = await lane.call<unknown>('GET', '/v1/world/streams/list', { query: { runId } });
    if (Array.isArray(answer)) return answer as string[];
    const streams = (answer as { streams?: unknown } | undefined)?.streams;
    return Array.isArray(streams) ? (streams as string[]) : [];
  };
  const chunks = async (
    name: string,
    runId: string,
    opts?: { limit?: number; cursor?: string }
  ): Promise<Entity> => {
    const answer = await lane.call<Json>('GET', '/v1/world/streams/chunks', {
      query: { name, runId, limit: opts?.limit, cursor: opts?.cursor },
    });
    return {
      data: Array.isArray(answer?.data) ? answer.data : [],
      cursor: typeof answer?.cursor === 'string' ? answer.cursor : null,
      hasMore: Boolean(answer?.hasMore),
      done: Boolean(answer?.done),
    };
  };
  const info = async (name: string, runId: string): Promise<{ tailIndex: number; done: boolean }> => {
    const answer = await lane.call<Json>('GET', '/v1/world/streams/info', { query: { name, runId } });
    return { tailIndex: Number(answer?.tailIndex ?? -1), done: Boolean(answer?.done) };
  };

  const world: ComputeWorld = {
    specVersion: config.specVersion,
    config,

    async getDeploymentId() {
      const answer = await lane.call<Json>('GET', '/v1/world/deployment-id', { headers: appHeaders() });
      const id = answer?.deploymentId;
      if (typeof id !== 'string' || id === '') {
        throw new WorkflowWorldError('world-compute: the worker answered no deploymentId');
      }
      return id;
    },

    async queue(queueName, message, opts) {
      const idempotencyKey = opts?.idempotencyKey;
      const answer = await lane.call<Json>('POST', '/v1/queue/publish', {
        body: { queueName, message, ...(opts !== undefined ? { opts } : {}) },
        headers: appHeaders(),
        // With a key the server de-duplicates, so a resend is harmless.
        idempotent: typeof idempotencyKey === 'string' && idempotencyKey !== '',
      });
      const messageId = answer?.messageId;
      return { messageId: typeof messageId === 'string' ? messageId : null };
    },

    createQueueHandler(prefix, handler) {
      return createQueueHandler(prefix, handler, {
        deliverySecret: config.deliverySecret,
        signatureToleranceSeconds: config.signatureToleranceSeconds,
      });
    },

    runs: {
      async get(id, params) {
        return normalizeEntity(
          await lane.call('GET', `/v1/world/runs/${encodeURIComponent(id)}`, {
            query: { resolveData: resolveQuery(params) },
            runId: id,
          })
        );
      },
      async list(params) {
        return page('/v1/world/runs/list', { ...(params ?? {}) });
      },
    },

    steps: {
      async get(runId, stepId, params) {
        return normalizeEntity(
          await lane.call('GET', `/v1/world/steps/${encodeURIComponent(stepId)}`, {
            query: { runId, resolveData: resolveQuery(params) },
            ...(runId !== undefined ? { runId } : {}),
          })
        );
      },
      async list(params) {
        return page('/v1/world/steps/list', { ...params }, params?.runId);
      },
    },

    events: {
      async create(runId, data, params) {
        return normalizeEventResult(
          await lane.call('POST', '/v1/world/events/create', {
            body: { runId, data, ...(params !== undefined ? { params } : {}) },
            // A resent event would be a second event (or a 409): only provably
            // unsent requests and whole refusals (429/503) are retried.
            idempotent: false,
            ...(runId !== null ? { runId } : {}),
          })
        );
      },
      async get(runId, eventId, params) {
        try {
          return normalizeEntity(
            await lane.call('GET', `/v1/world/events/${encodeURIComponent(eventId)}`, {
              query: { runId, resolveData: resolveQuery(params) },
              runId,
            })
          );
        } catch (error) {
          if (!isRouteMissing(error)) throw error;
        }
        // A worker without the route: find the event in the run's log.
        let cursor: string | undefined;
        for (;;) {
          const found = await page(
            '/v1/world/events/list',
            {
              runId,
              pagination: { limit: 1000, sortOrder: 'asc', ...(cursor ? { cursor } : {}) },
              ...(params?.resolveData !== undefined ? { resolveData: params.resolveData } : {}),
            },
            runId
          );
          const match = (found.data as Json[]).find((event) => event.eventId === eventId);
          if (match !== undefined) return match;
          if (!found.hasMore || typeof found.cursor !== 'string' || found.cursor === cursor) break;
          cursor = found.cursor;
        }
        throw Object.assign(
          new WorkflowWorldError(`Event "${eventId}" not found in run "${runId}"`, {
            status: 404,
            code: 'event_not_found',
          })
        );
      },
      async list(params) {
        return page('/v1/world/events/list', { ...params }, params?.runId);
      },
      async listByCorrelationId(params) {
        return page('/v1/world/events/list-by-correlation', { ...params });
      },
    },

    hooks: {
      async get(hookId, params) {
        return normalizeEntity(
          await lane.call('GET', `/v1/world/hooks/${encodeURIComponent(hookId)}`, {
            query: { resolveData: resolveQuery(params) },
          })
        );
      },
      async getByToken(token, params) {
        return normalizeEntity(
          await lane.call('GET', `/v1/world/hooks/by-token/${encodeURIComponent(token)}`, {
            query: { resolveData: resolveQuery(params) },
            token,
          })
        );
      },
      async list(params) {
        return page('/v1/world/hooks/list', { ...params });
      },
    },

    writeToStream: (name, runId, chunk) => write(name, runId, [chunk]),
    writeToStreamMulti: (name, runId, list) => write(name, runId, list),
    closeStream: (name, runId) => close(name, runId),
    readFromStream: (name, startIndex) => read(name, startIndex),
    listStreamsByRunId: (runId) => list(runId),
    getStreamChunks: (name, runId, opts) => chunks(name, runId, opts),
    getStreamInfo: (name, runId) => info(name, runId),

    streams: {
      write: (runId, name, chunk) => write(name, runId, [chunk]),
      writeMulti: (runId, name, list) => write(name, runId, list),
      close: (runId, name) => close(name, runId),
      get: (runId, name, startIndex) => read(name, startIndex, runId),
      list: (runId) => list(runId),
      getChunks: (runId, name, opts) => chunks(name, runId, opts),
      getInfo: (runId, name) => info(name, runId),
    },

    async getEncryptionKeyForRun(run, context) {
      const runId = typeof run === 'string' ? run : run.runId;
      const deploymentId =
        typeof run === 'string'
          ? typeof context?.deploymentId === 'string'
            ? context.deploymentId
            : undefined
          : run.deploymentId;
      return keys.get(`${runId}|${deploymentId ?? ''}`, async () => {
        const answer = await lane.call<Json>('POST', '/v1/world/encryption-key', {
          body: { runId, ...(deploymentId !== undefined ? { deploymentId } : {}) },
          idempotent: true,
          runId,
        });
        const key = answer?.key;
        if (key === null || key === undefined) return undefined;
        if (typeof key !== 'string') {
          throw new WorkflowWorldError('world-compute: encryption-key answered a non-string key');
        }
        const bytes = new Uint8Array(Buffer.from(key, 'base64'));
        if (bytes.length !== 32) {
          throw new WorkflowWorldError(
            `world-compute: encryption-key answered ${bytes.length} bytes, expected 32`
          );
        }
        return bytes;
      });
    },

    createRunId: () => nextUlid(),

    async close() {
      await lane.close();
    },
  };

  if (config.specVersion >= 4) {
    world.runs.experimentalSetAttributes = async (runId, changes, opts) => {
      const answer = await lane.call<Json>(
        'POST',
        `/v1/world/runs/${encodeURIComponent(runId)}/attributes`,
        {
          body: { changes, ...(opts?.allowReservedAttributes ? { allowReservedAttributes: true } : {}) },
          // Setting the same values again gives the same attributes.
          idempotent: true,
          runId,
        }
      );
      const attributes = answer?.attributes;
      return { attributes: (attributes ?? {}) as Record<string, string> };
    };
  }

  return world;
}
