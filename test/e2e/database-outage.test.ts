import { describe, expect, it } from 'vitest';
import { postgresRestartDrill } from '../../scripts/lib/fault-drills.js';

// Issue 21 item 1: the answer and the record never disagree. A command whose vehicle answered
// while PostgreSQL was down is answered from what the vehicle reported; its completion is kept
// and written once the database is back, and wins over a deadline expiry written meanwhile
// (src/services/completion-writer.ts, Store.completeCommand's precedence rule). The drill runs
// its own PostgreSQL cluster (scripts/lib/postgres-server.ts), so stopping it touches no other test.
describe('PostgreSQL restart during command traffic', () => {
  it('every 200 has a SUCCEEDED record and every 504 a matching one', async () => {
    const result = await postgresRestartDrill({
      vehicles: 6,
      slowVehicles: 2,
      commandTimeoutMs: 1500,
      answerDelayMs: 300,
      outageMs: 3000,
    });
    expect(result.mismatches).toEqual([]);
    expect(result.byStatus['0'] ?? 0).toBe(0);
    expect(result.ok).toBeGreaterThan(10);
    expect(result.okRecorded).toBe(result.ok);
    expect(result.noConnection).toBeGreaterThan(0);
    expect(result.noConnectionRecorded).toBe(result.noConnection);
    // The outage met commands in flight: some answers had to wait for their records.
    expect(result.duringOutage).toBeGreaterThan(0);
  }, 120_000);
});
