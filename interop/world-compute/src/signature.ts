import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Delivery signatures (LANE.md "Signing"): the worker sends
 *   x-compute-timestamp: <unix seconds>
 *   x-compute-signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<message id>.<attempt>." + raw body)>
 * Several `v1=` entries separated by commas or spaces may be sent (secret rotation);
 * one match is enough.
 */
export function signDelivery(
  secret: string,
  timestamp: number,
  messageId: string,
  attempt: number,
  body: Uint8Array
): string {
  const mac = createHmac('sha256', secret);
  mac.update(`${timestamp}.${messageId}.${attempt}.`);
  mac.update(body);
  return `v1=${mac.digest('hex')}`;
}

export type SignatureCheck = { ok: true } | { ok: false; reason: string };

export function verifyDelivery(
  secret: string,
  headers: { timestamp: string | null; signature: string | null; messageId: string; attempt: number },
  body: Uint8Array,
  toleranceSeconds: number,
  nowSeconds = Math.floor(Date.now() / 1000)
): SignatureCheck {
  if (headers.timestamp === null || headers.signature === null) {
    return { ok: false, reason: 'Missing signature' };
  }
  if (!/^\d{1,12}$/.test(headers.timestamp)) return { ok: false, reason: 'Invalid signature timestamp' };
  const timestamp = Number(headers.timestamp);
  if (Math.abs(nowSeconds - timestamp) > toleranceSeconds) {
    return { ok: false, reason: 'Stale signature' };
  }
  const expected = Buffer.from(
    signDelivery(secret, timestamp, headers.messageId, headers.attempt, body)
  );
  for (const candidate of headers.signature.split(/[\s,]+/)) {
    const given = Buffer.from(candidate.trim());
    if (given.length === expected.length && timingSafeEqual(given, expected)) return { ok: true };
  }
  return { ok: false, reason: 'Invalid signature' };
}
