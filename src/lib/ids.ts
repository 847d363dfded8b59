import { randomBase32 } from '../domain/random-id.js';

/** A random opaque id of `length` base32 characters (5 bits each). */
export const opaqueId = (length: number): string => randomBase32(length);

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
