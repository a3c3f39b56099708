import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Recorded {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: IncomingMessage['headers'];
  body: unknown;
  raw: string;
}

export interface Reply {
  status?: number;
  body?: unknown;
  /** Raw text instead of JSON. */
  text?: string;
  headers?: Record<string, string>;
  /** Drop the connection without answering. */
  destroy?: boolean;
  /** Stream these chunks, then end. */
  chunks?: Uint8Array[];
}

type Route = (req: Recorded) => Reply | Promise<Reply>;

/** A small stand-in for the worker's world lane: records requests, answers by script. */
export class FakeLane {
  readonly requests: Recorded[] = [];
  private readonly routes = new Map<string, Route[]>();
  private server: Server | undefined;
  url = '';

  /** Answer `METHOD path` with `reply` (a queue of replies is used in order; the last repeats). */
  on(method: string, path: string, ...replies: (Reply | Route)[]): this {
    this.routes.set(
      `${method} ${path}`,
      replies.map((reply) => (typeof reply === 'function' ? reply : () => reply))
    );
    return this;
  }

  calls(method: string, path: string): Recorded[] {
    return this.requests.filter((r) => r.method === method && r.path === path);
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    const { port } = this.server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${port}`;
    return this;
  }

  async stop(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server!.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url ?? '/', 'http://fake');
    const recorded: Recorded = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers: req.headers,
      body: raw === '' ? undefined : JSON.parse(raw),
      raw,
    };
    this.requests.push(recorded);
    const key = `${recorded.method} ${recorded.path}`;
    const queue = this.routes.get(key);
    let reply: Reply;
    if (!queue || queue.length === 0) {
      reply = {
        status: 404,
        body: { code: 'not_found', message: `No route for ${key}`, name: 'WorkflowWorldError' },
      };
    } else {
      const route = queue.length > 1 ? queue.shift()! : queue[0]!;
      reply = await route(recorded);
    }
    if (reply.destroy) {
      req.socket.destroy();
      return;
    }
    if (reply.chunks) {
      res.writeHead(reply.status ?? 200, { 'content-type': 'application/octet-stream', ...reply.headers });
      for (const chunk of reply.chunks) res.write(chunk);
      res.end();
      return;
    }
    const text = reply.text ?? JSON.stringify(reply.body ?? {});
    res.writeHead(reply.status ?? 200, {
      'content-type': reply.text !== undefined ? 'text/plain' : 'application/json',
      ...reply.headers,
    });
    res.end(text);
  }
}

export const bytes = (...values: number[]): { __type: 'Uint8Array'; data: string } => ({
  __type: 'Uint8Array',
  data: Buffer.from(values).toString('base64'),
});
