import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

function encodeTime(ms: number): string {
  let out = '';
  let rest = ms;
  for (let i = 0; i < 10; i++) {
    out = ALPHABET[rest % 32] + out;
    rest = Math.floor(rest / 32);
  }
  return out;
}

/**
 * Monotonic ULIDs (48-bit ms time + 80 random bits, Crockford base32): within one
 * millisecond each id is the previous one plus one, so ids sort in creation order.
 */
export function monotonicUlid(now: () => number = Date.now): () => string {
  let lastTime = -1;
  let lastRandom: number[] = [];
  return () => {
    let time = now();
    if (time <= lastTime) {
      time = lastTime;
      // increment the 16 base32 digits of randomness
      let i = lastRandom.length - 1;
      while (i >= 0 && lastRandom[i] === 31) {
        lastRandom[i] = 0;
        i--;
      }
      if (i < 0) throw new Error('ULID randomness overflow within one millisecond');
      lastRandom[i] = (lastRandom[i] ?? 0) + 1;
    } else {
      lastTime = time;
      const bytes = randomBytes(16);
      // 15 digits of 5 random bits; the first digit keeps its top bit clear so
      // incrementing cannot overflow in practice.
      lastRandom = Array.from(bytes, (b, i) => (i === 0 ? b & 15 : b & 31));
    }
    return encodeTime(time) + lastRandom.map((d) => ALPHABET[d]).join('');
  };
}
