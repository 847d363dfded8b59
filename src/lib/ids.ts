import { randomBytes } from 'node:crypto';

// Crockford base32 without I, L, O, U: unambiguous when read out over the phone.
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** A random opaque id of `length` base32 characters (5 bits each). */
export function opaqueId(length: number): string {
  const bytes = randomBytes(length);
  let out = '';
  for (const b of bytes) out += ALPHABET[b & 31];
  return out;
}

/** Vehicle ids: 12 characters, 60 random bits. */
export const newVehicleId = (): string => opaqueId(12);

/** API client ids: `fgc_` and 20 characters. */
export const newClientId = (): string => `fgc_${opaqueId(20).toLowerCase()}`;

/** Console user ids: `fgu_` and 20 characters. */
export const newUserId = (): string => `fgu_${opaqueId(20).toLowerCase()}`;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;

export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID.test(value);
}
