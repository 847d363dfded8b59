import { describe, expect, it } from 'vitest';
import { newEventId } from '../../src/domain/events.js';
import { newVehicleId } from '../../src/lib/ids.js';

// Ids draw their randomness from a pool refilled 4 KB at a time: across refills they stay
// well-formed, distinct and evenly spread over the alphabet.
describe('random ids', () => {
  it('event ids are ULIDs, distinct across many pool refills, with the given time', () => {
    const now = 1469918176385; // the ULID spec's example: time part 01ARYZ6S41
    const ids = Array.from({ length: 5_000 }, () => newEventId(now)); // 16 bytes each: ~20 refills
    for (const id of ids) expect(id).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(new Set(ids).size).toBe(ids.length);
    expect(new Set(ids.map((id) => id.slice(0, 10)))).toEqual(new Set(['01ARYZ6S41']));
    const counts = new Map<string, number>();
    for (const id of ids) for (const c of id.slice(10)) counts.set(c, (counts.get(c) ?? 0) + 1);
    // 80,000 characters over 32 symbols: 2,500 each expected; a stuck pool would skew this.
    expect(counts.size).toBe(32);
    for (const n of counts.values()) expect(n).toBeGreaterThan(2_200);
  });

  it('vehicle ids are 12 base32 characters and distinct', () => {
    const ids = Array.from({ length: 2_000 }, () => newVehicleId());
    for (const id of ids) expect(id).toMatch(/^[0-9A-HJKMNP-TV-Z]{12}$/);
    expect(new Set(ids).size).toBe(ids.length);
  });
});
