import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { createStore } from '../../src/store/registry.js';
import { SQLITE_MIGRATIONS } from '../../src/store/sqlite/migrations.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { StoreUnavailableError } from '../../src/store/store.js';
import { command, storeContract, vehicle } from './store.contract.js';

function tempDir(): { dir: string; remove: () => void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'fleetgate-sqlite-'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

storeContract('sqlite', async () => {
  const { dir, remove } = tempDir();
  const store = new SqliteStore({ file: path.join(dir, 'fleetgate.db') });
  await store.migrate();
  return {
    store,
    cleanup: async () => {
      await store.close();
      remove();
    },
  };
});

describe('SQLite engine', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it('is what the registry opens without a PostgreSQL URL, in <dataDir>/fleetgate.db with a private dir', async () => {
    const { dir, remove } = tempDir();
    cleanups.push(remove);
    const dataDir = path.join(dir, 'nested', 'data');
    const store = await createStore({ dataDir, databaseUrl: undefined });
    cleanups.push(() => store.close());
    expect(store.engine).toBe('sqlite');
    await store.migrate();
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    const db = new Database(path.join(dataDir, 'fleetgate.db'), { readonly: true });
    cleanups.push(() => void db.close());
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.prepare('SELECT version FROM schema_migrations').all()).toEqual(
      SQLITE_MIGRATIONS.map((m) => ({ version: m.version })),
    );
  });

  /** Two stores on one new file, as two fleetgate processes would open it. */
  function twoProcesses(): [SqliteStore, SqliteStore] {
    const { dir, remove } = tempDir();
    cleanups.push(remove);
    const file = path.join(dir, 'fleetgate.db');
    const a = new SqliteStore({ file });
    const b = new SqliteStore({ file });
    cleanups.push(
      () => a.close(),
      () => b.close(),
    );
    return [a, b];
  }

  it('applies migrations once when two processes open the same file', async () => {
    const [a, b] = twoProcesses();
    await Promise.all([a.migrate(), b.migrate()]);
    const v = vehicle();
    await a.insertVehicle(v);
    expect(await b.getVehicle(v.vehicle_id)).toEqual(v);
    // The single-flight index holds across connections, not just within one.
    const c = { vehicle_id: v.vehicle_id, fleet_id: v.fleet_id };
    expect(await a.beginCommand(command(c))).toBe(true);
    expect(await b.beginCommand(command(c))).toBe(false);
  });

  // SPEC: a store that cannot write answers 503 service-unavailable (StoreUnavailableError).
  it('fails the grouped command-path writes as unavailable while another process holds the write lock', async () => {
    const { dir, remove } = tempDir();
    cleanups.push(remove);
    const file = path.join(dir, 'fleetgate.db');
    const store = new SqliteStore({ file, busyTimeoutMs: 0 });
    cleanups.push(() => store.close());
    await store.migrate();
    const v = vehicle({ setup_status: 'SUCCEEDED' });
    await store.insertVehicle(v);
    const { adapter: _adapter, ...record } = command(v, { command: 'LOCK_CENTRAL_LOCK' });

    const other = new Database(file);
    other.prepare('BEGIN IMMEDIATE').run();
    const results = await Promise.allSettled([
      store.startCommand(record),
      store.mergeState(v.vehicle_id, { central_lock: { timestamp: new Date().toISOString(), value: 'LOCKED' } }),
    ]);
    other.prepare('ROLLBACK').run();
    other.close();
    for (const r of results) {
      expect(r.status).toBe('rejected');
      expect((r as PromiseRejectedResult).reason).toBeInstanceOf(StoreUnavailableError);
    }
    expect(await store.getCommand(record.flow_id)).toBeUndefined();
    // Once the lock is free, the same start goes through.
    expect((await store.startCommand(record)).begun).toBe(true);
  });

  // The state cache (src/store/sqlite/state-cache.ts) must never answer with state another
  // process has replaced, nor outlive the vehicle.
  it('merges onto what another process on the same file committed, not onto its cached state', async () => {
    const [a, b] = twoProcesses();
    await a.migrate();
    const v = vehicle();
    await a.insertVehicle(v);
    const t1 = '2026-11-26T10:00:00.000Z';
    const t2 = '2026-11-26T10:00:05.000Z';
    await a.mergeState(v.vehicle_id, { central_lock: { timestamp: t1, value: 'LOCKED' } });
    await b.mergeState(v.vehicle_id, { central_lock: { timestamp: t2, value: 'UNLOCKED' } });
    expect(await a.mergeState(v.vehicle_id, { driving_enabled: { timestamp: t1, value: true } })).toEqual({
      central_lock: { timestamp: t2, value: 'UNLOCKED' },
      driving_enabled: { timestamp: t1, value: true },
    });
    // And the other way round, through the command path's call.
    const c = command(v);
    await b.beginCommand(c);
    const done = { status: 'SUCCEEDED' as const, problem_type: null, detail: null, delivery: null, steps: null };
    const merged = await b.completeCommand(c.flow_id, { ...done, completed_at: t2, duration_ms: 5 }, v.vehicle_id, {
      central_lock: { timestamp: t2, value: 'UNLOCKED' },
    });
    expect(merged.driving_enabled).toEqual({ timestamp: t1, value: true });
  });

  it('reads a vehicle another process on the same file changed, not its cached copy', async () => {
    const [a, b] = twoProcesses();
    await a.migrate();
    const v = vehicle({ setup_status: 'SUCCEEDED' });
    await a.insertVehicle(v);
    expect((await a.getVehicle(v.vehicle_id))?.version).toBe(v.version);
    await b.updateVehicle(v.vehicle_id, { tags: ['moved'] }, v.version, new Date().toISOString());
    expect(await a.getVehicle(v.vehicle_id)).toMatchObject({ tags: ['moved'], version: v.version + 1 });
    // The command path's read too: a vehicle whose setup another process failed gets no command.
    await b.setSetupStatus(v.vehicle_id, { status: 'FAILED', reason: 'unit replaced', at: new Date().toISOString() });
    const { adapter: _adapter, ...record } = command(v, { command: 'LOCK_CENTRAL_LOCK' });
    const started = await a.startCommand(record);
    expect(started.vehicle?.setup_status).toBe('FAILED');
    expect(started.begun).toBe(false);
  });

  it('forgets the state of a deleted vehicle: one added again under the same id starts empty', async () => {
    const { dir, remove } = tempDir();
    cleanups.push(remove);
    const store = new SqliteStore({ file: path.join(dir, 'fleetgate.db') });
    cleanups.push(() => store.close());
    await store.migrate();
    const v = vehicle();
    await store.insertVehicle(v);
    const at = new Date().toISOString();
    await store.mergeState(v.vehicle_id, { central_lock: { timestamp: at, value: 'LOCKED' } });
    expect(await store.deleteVehicle(v.vehicle_id)).toBe(true);
    await store.insertVehicle(v);
    expect(await store.mergeState(v.vehicle_id, { driving_enabled: { timestamp: at, value: false } })).toEqual({
      driving_enabled: { timestamp: at, value: false },
    });
    expect(await store.getState(v.vehicle_id)).toEqual({ driving_enabled: { timestamp: at, value: false } });
  });

  it('refuses to start on a database migrated by a newer fleetgate', async () => {
    const { dir, remove } = tempDir();
    cleanups.push(remove);
    const file = path.join(dir, 'fleetgate.db');
    const newer = new SqliteStore({
      file,
      migrations: [...SQLITE_MIGRATIONS, { version: 999, name: 'from the future', sql: 'CREATE TABLE future (x)' }],
    });
    await newer.migrate();
    await newer.close();
    const current = new SqliteStore({ file });
    cleanups.push(() => current.close());
    await expect(current.migrate()).rejects.toThrow(/schema version 999 is newer/);
  });

  it('rolls a failing migration back entirely', async () => {
    const { dir, remove } = tempDir();
    cleanups.push(remove);
    const file = path.join(dir, 'fleetgate.db');
    const broken = new SqliteStore({
      file,
      migrations: [
        ...SQLITE_MIGRATIONS,
        { version: 2, name: 'broken', sql: 'CREATE TABLE half (x); SELECT * FROM nope' },
      ],
    });
    cleanups.push(() => broken.close());
    await expect(broken.migrate()).rejects.toThrow(/nope/);
    const db = new Database(file, { readonly: true });
    cleanups.push(() => void db.close());
    expect(db.prepare("SELECT name FROM sqlite_master WHERE name IN ('half', 'vehicles')").all()).toEqual([]);
  });

  it('pages a large fleet through indexes, whatever the filters (scale test, 200,000 vehicles)', async () => {
    const { dir, remove } = tempDir();
    cleanups.push(remove);
    const file = path.join(dir, 'fleetgate.db');
    const store = new SqliteStore({ file });
    cleanups.push(() => store.close());
    await store.migrate();
    const db = new Database(file);
    cleanups.push(() => void db.close());
    // Every vehicle carries `common`; one in a hundred also `rare`; one in a thousand FAILED.
    db.exec(`
      WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 199999)
      INSERT INTO vehicles SELECT printf('V%08d', i), 'big', IIF(i % 3 = 0, 'teltonika', 'mqtt'), 'u' || i, 'm',
        NULL, NULL, '{}', '{}', '{}', IIF(i % 100 = 1, '["common","rare"]', '["common"]'), 'OPERATING',
        IIF(i % 1000 = 7, 'FAILED', 'SUCCEEDED'), NULL, 'OFFLINE', 0, 1, 0, 0 FROM n;
      INSERT INTO vehicle_tags SELECT fleet_id, 'common', vehicle_id FROM vehicles;
      INSERT INTO vehicle_tags SELECT fleet_id, 'rare', vehicle_id FROM vehicles WHERE tags LIKE '%rare%';
      ANALYZE;`);
    const filters = [
      {},
      { after: 'V00150000' },
      { tags: ['common'] },
      { tags: ['common', 'rare'], after: 'V00100000' },
      { tags: ['common', 'absent'] },
      { telematics_brand: 'teltonika', after: 'V00190000' },
      { setup_status: 'FAILED' as const },
      { setup_status: 'FAILED' as const, tags: ['rare'] },
    ];
    for (const f of filters) {
      const timings: number[] = [];
      for (let i = 0; i < 3; i++) {
        const started = performance.now();
        await store.listVehicles({ fleet_id: 'big', limit: 50, ...f });
        timings.push(performance.now() - started);
      }
      // A scan of the fleet takes hundreds of milliseconds here; an index walk well under one.
      expect(Math.min(...timings), JSON.stringify(f)).toBeLessThan(40);
    }
    const page = await store.listVehicles({ fleet_id: 'big', limit: 3, tags: ['common', 'rare'], after: 'V00100000' });
    expect(page.map((v) => v.vehicle_id)).toEqual(['V00100001', 'V00100101', 'V00100201']);
  });
});
