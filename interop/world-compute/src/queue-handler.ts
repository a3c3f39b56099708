import { decodeJson } from './codec.js';
import { verifyDelivery } from './signature.js';

/**
 * `@workflow/world` brands queue names and message ids (zod `.brand()`); they are
 * plain strings at run time, typed loosely here so both lines' handler types fit.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type BrandedString = any;

export interface QueueMeta {
  attempt: number;
  queueName: BrandedString;
  messageId: BrandedString;
  requestId?: string;
}

export type QueueHandler = (message: unknown, meta: QueueMeta) => Promise<unknown>;

const QUEUE_NAME = /^__(?:[a-z][a-z0-9]*_)?wkf_(?:workflow|step)_.+$/;

function json(body: unknown, status = 200): Response {
  return Response.json(body, { status });
}

export interface HandlerSettings {
  deliverySecret: string | undefined;
  signatureToleranceSeconds: number;
}

/**
 * The app side of a delivery, request for request what `@workflow/world-local`'s
 * `createQueueHandler` (4.4.x and the 5.0 beta) answers:
 * - 400 `{error: "Missing request body" | "Missing required headers"}` when the
 *   body or one of `x-vqs-queue-name` (a valid queue name), `x-vqs-message-id`,
 *   `x-vqs-message-attempt` (a number) is missing;
 * - 400 `{error: "Unhandled queue"}` when the queue name lacks `prefix`;
 * - 200 `{timeoutSeconds: N}` when the handler returns one (deliver again after N s);
 * - 200 `{result}` for a 5.0 `invoke: true` message;
 * - 200 `{ok: true}` otherwise; 500 with the error string when the handler throws.
 * Added: with a delivery secret, 401 `{error: "Missing signature" | "Invalid signature"
 * | "Stale signature" | …}` before anything is parsed; 400 `{error: "Invalid JSON body"}`
 * for a body that is not JSON (world-local would throw).
 */
export function createQueueHandler(
  prefix: string,
  handler: QueueHandler,
  settings: HandlerSettings
): (req: Request) => Promise<Response> {
  return async (req: Request): Promise<Response> => {
    const queueName = req.headers.get('x-vqs-queue-name');
    const messageId = req.headers.get('x-vqs-message-id');
    const attemptRaw = req.headers.get('x-vqs-message-attempt');
    const attempt = attemptRaw === null || attemptRaw.trim() === '' ? Number.NaN : Number(attemptRaw);
    if (!req.body) return json({ error: 'Missing request body' }, 400);
    if (
      queueName === null ||
      !QUEUE_NAME.test(queueName) ||
      messageId === null ||
      !Number.isFinite(attempt)
    ) {
      return json({ error: 'Missing required headers' }, 400);
    }
    const raw = new Uint8Array(await req.arrayBuffer());
    if (settings.deliverySecret !== undefined) {
      const check = verifyDelivery(
        settings.deliverySecret,
        {
          timestamp: req.headers.get('x-compute-timestamp'),
          signature: req.headers.get('x-compute-signature'),
          messageId,
          attempt,
        },
        raw,
        settings.signatureToleranceSeconds
      );
      if (!check.ok) return json({ error: check.reason }, 401);
    }
    if (!queueName.startsWith(prefix)) return json({ error: 'Unhandled queue' }, 400);
    let body: unknown;
    try {
      body = decodeJson(Buffer.from(raw).toString('utf8'));
    } catch {
      return json({ error: 'Invalid JSON body' }, 400);
    }
    try {
      const result = await handler(body, { attempt, queueName, messageId });
      if (
        typeof body === 'object' &&
        body !== null &&
        (body as { invoke?: unknown }).invoke === true
      ) {
        return json({ result });
      }
      if (
        typeof result === 'object' &&
        result !== null &&
        typeof (result as { timeoutSeconds?: unknown }).timeoutSeconds === 'number'
      ) {
        return json({ timeoutSeconds: (result as { timeoutSeconds: number }).timeoutSeconds });
      }
      return json({ ok: true });
    } catch (error) {
      return json(String(error), 500);
    }
  };
}
