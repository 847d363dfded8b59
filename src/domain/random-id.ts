import { randomFillSync } from 'node:crypto';

// Crockford base32 without I, L, O, U: unambiguous when read out over the phone.
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

// Random bytes drawn from a pool filled 4 KB at a time: one call into the CSPRNG per ~200 ids
// instead of one each (every event gets an id; a reconnect storm writes tens of thousands).
const pool = Buffer.alloc(4096);
let poolUsed = pool.length;

/** `length` (≤ 4096) cryptographically random bytes, valid until the next call. */
function randomChunk(length: number): Buffer {
  if (poolUsed + length > pool.length) {
    randomFillSync(pool);
    poolUsed = 0;
  }
  poolUsed += length;
  return pool.subarray(poolUsed - length, poolUsed);
}

/** `length` random Crockford base32 characters (5 bits each). */
export function randomBase32(length: number): string {
  const bytes = randomChunk(length);
  let out = '';
  for (let i = 0; i < length; i++) out += ALPHABET[bytes[i]! & 31];
  return out;
}
