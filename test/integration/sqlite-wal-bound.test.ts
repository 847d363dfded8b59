import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Vehicle } from '../../src/domain/vehicle.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { command, vehicle } from '../contract/store.contract.js';
import { eventually } from '../helpers/eventually.js';

const MB = 2 ** 20;
const LIMIT_MB = 16;
/** Commands in flight at once, one per vehicle, as concurrent requests group their commits. */
const CONCURRENCY = 64;
/**
 * 12,800 commands: on the store before the bound, the log grew to ~660 MB over them (~50 KB of
 * log per command, ~100 MB/s) and stayed that size.
 */
const ROUNDS = 200;
/**
 * The bound's backstop acts at twice the limit (checkpointer.ts); beyond it the file grows by
 * what this loop writes until a look at its size (every 100 ms) and a checkpoint of the thread
 * then running end: ~0.4 s at most here, at up to ~150 MB/s.
 */
const MARGIN_MB = 64;

const walBytes = (file: string): number => statSync(`${file}-wal`, { throwIfNoEntry: false })?.size ?? 0;

describe('SQLite write-ahead log bound (src/store/sqlite/checkpoint-thread.ts, --sqlite-wal-limit-mb)', () => {
  let dir: string;
  let file: string;
  let store: SqliteStore | undefined;

  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'fg-wal-bound-'));
    file = path.join(dir, 'fleetgate.db');
  });

  afterEach(async () => {
    await store?.close();
    store = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  /** One command's store calls with an Idempotency-Key, as the command path makes them. */
  const runCommand = async (s: SqliteStore, v: Vehicle, round: number): Promise<void> => {
    const { adapter: _adapter, ...record } = command(v, {
      command: 'LOCK_CENTRAL_LOCK',
      requested_at: new Date().toISOString(),
    });
    const key = randomUUID();
    const claim = await s.claimIdempotencyKey({
      fleet_id: v.fleet_id,
      key,
      vehicle_id: v.vehicle_id,
      command: 'LOCK_CENTRAL_LOCK',
      flow_id: record.flow_id,
      created_at: new Date().toISOString(),
    });
    expect(claim.claimed).toBe(true);
    expect((await s.startCommand(record)).begun).toBe(true);
    const at = new Date().toISOString();
    const lock = round % 2 === 0 ? 'LOCKED' : 'UNLOCKED';
    await s.completeCommand(
      record.flow_id,
      {
        status: 'SUCCEEDED',
        problem_type: null,
        detail: null,
        delivery: 'DELIVERED',
        steps: null,
        completed_at: at,
        duration_ms: 3,
      },
      v.vehicle_id,
      { central_lock: { timestamp: at, value: lock } },
    );
    await s.completeIdempotencyKey(v.fleet_id, key, 200, {
      flow_id: record.flow_id,
      status: 'SUCCEEDED',
      vehicle_state: { central_lock: { timestamp: at, value: lock } },
    });
  };

  it('keeps the -wal file near its limit under back-to-back commands with distinct idempotency keys, and empties it once they stop', async () => {
    const s = new SqliteStore({ file, walLimitMb: LIMIT_MB });
    store = s;
    await s.migrate();
    const vehicles = Array.from({ length: CONCURRENCY }, () => vehicle({ setup_status: 'SUCCEEDED' }));
    for (const v of vehicles) await s.insertVehicle(v);

    let peak = 0;
    for (let round = 0; round < ROUNDS; round++) {
      await Promise.all(
        vehicles.map(async (v) => {
          await runCommand(s, v, round);
          peak = Math.max(peak, walBytes(file));
        }),
      );
    }
    // The load outgrew the limit, so the bound was put to work, and held.
    expect(peak).toBeGreaterThan(LIMIT_MB * MB);
    expect(peak).toBeLessThan((2 * LIMIT_MB + MARGIN_MB) * MB);

    // Idle: the log is copied into the database and the file emptied, not kept at its last size.
    await eventually(() => walBytes(file) === 0, 10_000, 'the idle -wal file emptied');
    const reader = new Database(file, { readonly: true });
    try {
      // Every command reached the database file itself before the log was emptied.
      expect(reader.prepare("SELECT count(*) FROM commands WHERE status = 'SUCCEEDED'").pluck().get()).toBe(
        ROUNDS * CONCURRENCY,
      );
      expect(reader.prepare('SELECT count(*) FROM idempotency_keys WHERE status_code = 200').pluck().get()).toBe(
        ROUNDS * CONCURRENCY,
      );
    } finally {
      reader.close();
    }
  });
});
