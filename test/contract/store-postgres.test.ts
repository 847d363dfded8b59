import net from 'node:net';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../../scripts/lib/free-port.js';
import type { VehicleState } from '../../src/domain/state-catalogue.js';
import { PostgresConnection } from '../../src/store/postgres/connection.js';
import { POSTGRES_MIGRATIONS } from '../../src/store/postgres/migrations.js';
import { PostgresStore } from '../../src/store/postgres/postgres-store.js';
import { isoFromPostgres } from '../../src/store/postgres/rows.js';
import { createStore } from '../../src/store/registry.js';
import { StoreUnavailableError } from '../../src/store/store.js';
import { eventually } from '../helpers/eventually.js';
import { createTestDatabase, TEST_DATABASE_URL } from '../helpers/postgres.js';
import { command, storeContract, succeededAt, vehicle } from './store.contract.js';

storeContract('postgres', async () => {
  const db = await createTestDatabase();
  const store = new PostgresStore({ url: db.url });
  await store.migrate();
  return {
    store,
    cleanup: async () => {
      await store.close();
      await db.drop();
    },
  };
});

/** A TCP relay in front of the real server, so a test can take "the database" away and back. */
async function startRelay(port = 0): Promise<{ port: number; stop: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ noDelay: true }, (client) => {
    const upstream = net.connect({ host: '127.0.0.1', port: 5432, noDelay: true });
    sockets.add(client).add(upstream);
    client.pipe(upstream).pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function viaPort(url: string, port: number): string {
  const u = new URL(url);
  u.port = String(port);
  return u.toString();
}

describe('PostgreSQL engine', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function database(): Promise<string> {
    const db = await createTestDatabase();
    cleanups.push(db.drop);
    return db.url;
  }

  function open(url: string, options: Partial<ConstructorParameters<typeof PostgresStore>[0]> = {}): PostgresStore {
    const store = new PostgresStore({ url, ...options });
    cleanups.push(() => store.close());
    return store;
  }

  it('is what the registry opens for postgres:// and postgresql:// URLs', async () => {
    const url = await database();
    for (const databaseUrl of [url, url.replace(/^postgres:/, 'postgresql:')]) {
      const store = await createStore({ databaseUrl, dataDir: '/nonexistent/never-created' });
      cleanups.push(() => store.close());
      expect(store.engine).toBe('postgres');
      await store.ping();
    }
  });

  it('applies the schema once when several instances migrate a fresh database at once', async () => {
    const url = await database();
    const stores = [open(url), open(url), open(url)];
    await Promise.all(stores.map((s) => s.migrate()));
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    cleanups.push(() => client.end());
    const { rows } = await client.query('SELECT version FROM schema_migrations ORDER BY version');
    expect(rows).toEqual(POSTGRES_MIGRATIONS.map((m) => ({ version: m.version })));
    // Every instance works against the one schema.
    const v = vehicle();
    await stores[0]!.insertVehicle(v);
    expect(await stores[2]!.getVehicle(v.vehicle_id)).toEqual(v);
  });

  // SPEC §1: one command at a time per vehicle, across all fleetgate instances
  it('keeps single flight across instances: 20 begins over two pools, one wins', async () => {
    const url = await database();
    const a = open(url);
    const b = open(url);
    await a.migrate();
    const v = vehicle();
    await a.insertVehicle(v);
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).beginCommand(command(v))));
    expect(results.filter(Boolean)).toHaveLength(1);
  });

  // A sequence hands out seq before commit: seq 11 may commit while seq 10 is still in flight.
  it('never lets a reader pass an event whose transaction commits after a later one', async () => {
    const url = await database();
    const store = open(url);
    await store.migrate();
    const v = vehicle();
    await store.insertVehicle(v);
    let first = await store.events.read({ fleet_id: v.fleet_id, limit: 10 });
    await eventually(async () => {
      first = await store.events.read({ fleet_id: v.fleet_id, limit: 10 });
      return first.items.length === 1;
    });
    const slow = new pg.Client({ connectionString: url });
    await slow.connect();
    cleanups.push(() => slow.end());
    await slow.query('BEGIN');
    const envelope = { metadata: { id: 'slow', type: 'VehicleStateRecorded' }, data: {} };
    await slow.query(
      "INSERT INTO events (id, fleet_id, vehicle_id, type, envelope) VALUES ('slow', $1, $2, 'VehicleStateRecorded', $3)",
      [v.fleet_id, v.vehicle_id, JSON.stringify(envelope)],
    );
    // Commits now, with a later seq and a later transaction id.
    await store.mergeState(v.vehicle_id, {
      position: { timestamp: new Date().toISOString(), value: { lat: 1, lon: 2 } },
    });
    const held = await store.events.read({ fleet_id: v.fleet_id, after: first.next_cursor, limit: 10 });
    expect(held.items).toEqual([]);
    await slow.query('COMMIT');
    let page = held;
    await eventually(async () => {
      page = await store.events.read({ fleet_id: v.fleet_id, after: held.next_cursor, limit: 10 });
      return page.items.length === 2;
    });
    expect(page.items.map((e) => e.event.metadata.id)[0]).toBe('slow');
    expect(page.items[1]!.event.metadata.type).toBe('VehicleStateRecorded');
  });

  // docs/performance.md: a state write leaves out what this instance last read, unchanged
  it('writes only what differs from the state it last read, and answers with what is stored now', async () => {
    const url = await database();
    const a = open(url);
    const b = open(url);
    await a.migrate();
    const v = vehicle({ setup_status: 'SUCCEEDED' });
    await a.insertVehicle(v);
    const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();
    const sent: string[] = [];
    const pool = (a as unknown as { db: { pool: pg.Pool } }).db.pool;
    const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
    (pool as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      const config = args[0] as { values?: unknown[] };
      // The outbox's candidate events (state-events-sql.ts) carry the whole report, as the
      // VehicleStateRecorded event does: only the state write itself is left out of the check.
      for (const p of config.values ?? (args[1] as unknown[]) ?? []) {
        if (typeof p === 'string' && !p.startsWith('[{"kind"')) sent.push(p);
      }
      return query(...args);
    };
    const report = {
      ignition: { timestamp: at(1), value: 'OFF' },
      central_lock: { timestamp: at(1), value: 'LOCKED' },
      location: { timestamp: at(1), value: { latitude: 52.5, longitude: 13.4 } },
    };
    expect(await a.mergeState(v.vehicle_id, report)).toEqual(report);
    // Another instance stores a newer ignition meanwhile.
    await b.mergeState(v.vehicle_id, { ignition: { timestamp: at(2), value: 'ON' } });

    sent.length = 0;
    const again = { ...report, location: { timestamp: at(1), value: { longitude: 13.4, latitude: 52.5 } } };
    const mileage = { timestamp: at(1), value: 5 };
    expect(await a.mergeState(v.vehicle_id, { ...again, mileage_in_kilometers: mileage })).toEqual({
      ...report,
      ignition: { timestamp: at(2), value: 'ON' },
      mileage_in_kilometers: mileage,
    });
    expect(sent.join()).toContain('mileage_in_kilometers');
    for (const unchanged of ['ignition', 'central_lock', 'location']) expect(sent.join()).not.toContain(unchanged);

    // The same on the command path, where the older ignition is left out too; a newer timestamp
    // with the same value is written.
    const { adapter: _adapter, ...record } = command(v);
    expect((await a.startCommand(record)).begun).toBe(true);
    sent.length = 0;
    const answer = { ...again, central_lock: { timestamp: at(3), value: 'LOCKED' }, mileage_in_kilometers: mileage };
    const completion = succeededAt(at(4));
    expect(await a.completeCommand(record.flow_id, completion, v.vehicle_id, answer)).toEqual({
      ...report,
      ignition: { timestamp: at(2), value: 'ON' },
      central_lock: { timestamp: at(3), value: 'LOCKED' },
      mileage_in_kilometers: mileage,
    });
    expect(sent.join()).toContain('central_lock');
    for (const unchanged of ['ignition', 'location', 'mileage_in_kilometers'])
      expect(sent.join()).not.toContain(unchanged);
    expect(await b.getState(v.vehicle_id)).toEqual(await a.getState(v.vehicle_id));
  });

  // A completion and a state report read the stored state in their own statement (mergeReport),
  // not in a second one. Another writer holds ignition's row while the write runs, then commits a
  // newer value: the write's older report is not stored, and its answer keeps the report's value.
  for (const kind of ['completion', 'state report'] as const) {
    it(`answers a ${kind} with its report over the state stored when its statement began`, async () => {
      const url = await database();
      const a = open(url);
      await a.migrate();
      const v = vehicle({ setup_status: 'SUCCEEDED' });
      await a.insertVehicle(v);
      const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();
      const mileage = { timestamp: at(1), value: 5 };
      await a.mergeState(v.vehicle_id, {
        ignition: { timestamp: at(1), value: 'OFF' },
        mileage_in_kilometers: mileage,
      });
      const completion = succeededAt(at(4));
      /** A completion's command begins before the write (and before a deletion). */
      const begin = async (): Promise<string | undefined> => {
        if (kind === 'state report') return undefined;
        const { adapter: _adapter, ...record } = command(v);
        expect((await a.startCommand(record)).begun).toBe(true);
        return record.flow_id;
      };
      const write = (flowId: string | undefined, report: VehicleState) =>
        flowId === undefined
          ? a.mergeState(v.vehicle_id, report)
          : a.completeCommand(flowId, completion, v.vehicle_id, report);

      const flowId = await begin();
      const other = new pg.Client({ connectionString: url });
      await other.connect();
      cleanups.push(() => other.end());
      await other.query('BEGIN');
      await other.query(
        `UPDATE vehicle_state SET ts = $2, value = '"OFF"' WHERE vehicle_id = $1 AND property = 'ignition'`,
        [v.vehicle_id, at(3)],
      );
      const answer = write(flowId, { ignition: { timestamp: at(2), value: 'ON' } });
      await eventually(
        async () => {
          const { rows } = await other.query(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = 'fleetgate' AND wait_event_type = 'Lock'",
          );
          return rows.length === 1;
        },
        5000,
        `the ${kind} waiting for the row lock`,
      );
      await other.query('COMMIT');
      expect(await answer).toEqual({ ignition: { timestamp: at(2), value: 'ON' }, mileage_in_kilometers: mileage });
      expect(await a.getState(v.vehicle_id)).toEqual({
        ignition: { timestamp: at(3), value: 'OFF' },
        mileage_in_kilometers: mileage,
      });
      if (flowId) expect((await a.getCommand(flowId))?.status).toBe('SUCCEEDED');

      // A vehicle deleted meanwhile answers {}: also when the report is what this instance last
      // read, so that nothing of it is written (and no foreign key fails).
      const pending = await begin();
      expect(await a.deleteVehicle(v.vehicle_id)).toBe(true);
      expect(await write(pending, { ignition: { timestamp: at(2), value: 'ON' } })).toEqual({});
      if (kind === 'state report') {
        expect(await write(undefined, { ignition: { timestamp: at(9), value: 'ON' } })).toEqual({});
      }
    });
  }

  it('reads state timestamps back as written, at every precision PostgreSQL prints, whatever the server time zone', async () => {
    const url = await database();
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    // The store's sessions set TimeZone=UTC themselves; this default must not leak into its reads.
    await admin.query(`ALTER DATABASE "${new URL(url).pathname.slice(1)}" SET TimeZone = 'Asia/Kolkata'`);
    await admin.end();
    const store = open(url);
    await store.migrate();
    const v = vehicle({ setup_status: 'SUCCEEDED' });
    await store.insertVehicle(v);
    const state = {
      ignition: { timestamp: '2026-01-01T00:00:00.000Z', value: 'OFF' },
      central_lock: { timestamp: '2026-01-01T00:00:00.100Z', value: 'LOCKED' },
      mileage_in_kilometers: { timestamp: '2026-01-01T00:00:00.120Z', value: 5 },
      // Any valid ISO time is stored as its millisecond UTC form.
      fuel_level_percentage: { timestamp: '2026-01-01T05:30:00.123456+05:30', value: 50 },
    };
    await store.mergeState(v.vehicle_id, state);
    expect(await store.getState(v.vehicle_id)).toEqual({
      ...state,
      fuel_level_percentage: { timestamp: '2026-01-01T00:00:00.123Z', value: 50 },
    });
  });

  it('turns any timestamptz text into toISOString form', () => {
    expect(isoFromPostgres('2026-11-26 16:22:19+00')).toBe('2026-11-26T16:22:19.000Z');
    expect(isoFromPostgres('2026-11-26 16:22:19.1+00')).toBe('2026-11-26T16:22:19.100Z');
    expect(isoFromPostgres('2026-11-26 16:22:19.123456+00')).toBe('2026-11-26T16:22:19.123Z');
    // Another session time zone: parsed as pg parses it.
    expect(isoFromPostgres('2026-11-26 21:52:19.5+05:30')).toBe('2026-11-26T16:22:19.500Z');
  });

  it('refuses to start on a database migrated by a newer fleetgate', async () => {
    const url = await database();
    const future = { version: 999, name: 'from the future', sql: 'CREATE TABLE future (x int)' };
    await open(url, { migrations: [...POSTGRES_MIGRATIONS, future] }).migrate();
    await expect(open(url).migrate()).rejects.toThrow(/schema version 999 is newer/);
  });

  it('rolls a failing migration back entirely', async () => {
    const url = await database();
    const broken = { version: 2, name: 'broken', sql: 'CREATE TABLE half (x int); SELECT * FROM nope' };
    await expect(open(url, { migrations: [...POSTGRES_MIGRATIONS, broken] }).migrate()).rejects.toThrow(/nope/);
    const store = open(url);
    await store.migrate();
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    cleanups.push(() => client.end());
    const { rows } = await client.query("SELECT to_regclass('half') AS half");
    expect(rows).toEqual([{ half: null }]);
  });

  it('answers StoreUnavailableError, not a hang, when nothing listens', async () => {
    const url = viaPort(TEST_DATABASE_URL, await freePort());
    const store = open(url, { connectionTimeoutMs: 1_000 });
    await expect(store.ping()).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(store.getVehicle('x')).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(store.insertVehicle(vehicle())).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(store.migrate()).rejects.toBeInstanceOf(StoreUnavailableError);
  });

  it('answers StoreUnavailableError within the connection timeout when the server never answers', async () => {
    const accepted = new Set<net.Socket>();
    const silent = net.createServer((socket) => void accepted.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          for (const s of accepted) s.destroy();
          silent.close(() => resolve());
        }),
    );
    const { port } = silent.address() as net.AddressInfo;
    const store = open(viaPort(TEST_DATABASE_URL, port), { connectionTimeoutMs: 300 });
    const started = Date.now();
    await expect(store.ping()).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it('gives up on a statement that waits past statement_timeout with StoreUnavailableError', async () => {
    const url = await database();
    const store = open(url, { statementTimeoutMs: 200 });
    await store.migrate();
    const v = vehicle();
    await store.insertVehicle(v);
    const locker = new pg.Client({ connectionString: url });
    await locker.connect();
    cleanups.push(() => locker.end());
    await locker.query('BEGIN');
    await locker.query('SELECT 1 FROM vehicles WHERE vehicle_id = $1 FOR UPDATE', [v.vehicle_id]);
    const started = Date.now();
    await expect(store.setLifeStatus(v.vehicle_id, 'ONLINE', new Date().toISOString())).rejects.toBeInstanceOf(
      StoreUnavailableError,
    );
    expect(Date.now() - started).toBeLessThan(2_000);
    await locker.query('ROLLBACK');
    expect(await store.setLifeStatus(v.vehicle_id, 'ONLINE', new Date().toISOString())).toBe(true);
  });

  it('recovers by itself when the database comes back', async () => {
    const url = await database();
    await open(url).migrate();
    let relay = await startRelay();
    const port = relay.port;
    cleanups.push(() => relay.stop());
    const store = open(viaPort(url, port), { connectionTimeoutMs: 1_000 });
    const v = vehicle();
    await store.insertVehicle(v);

    await relay.stop();
    await expect(store.getVehicle(v.vehicle_id)).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(store.ping()).rejects.toBeInstanceOf(StoreUnavailableError);

    relay = await startRelay(port);
    // No restart, no reconfiguration: the pool replaces its dead connections on demand.
    await expect(store.ping()).resolves.toBeUndefined();
    expect(await store.getVehicle(v.vehicle_id)).toEqual(v);
  });

  it('runs again a transaction or statement the server rolled back as a deadlock victim (40P01)', async () => {
    const conn = new PostgresConnection({ url: await database() });
    cleanups.push(() => conn.close());
    await conn.q('CREATE TABLE t (id int PRIMARY KEY, n int NOT NULL)');
    await conn.q('INSERT INTO t VALUES (1, 0), (2, 0)');
    // Two transactions each lock one row, then (once both hold one) the other's: a real deadlock,
    // of which PostgreSQL rolls one back; that one runs again and both end committed.
    let holding = 0;
    let bothHold!: () => void;
    const both = new Promise<void>((resolve) => (bothHold = resolve));
    let runs = 0;
    const cross = (first: number, second: number) =>
      conn.tx(async (c) => {
        runs++;
        await conn.q('UPDATE t SET n = n + 1 WHERE id = $1', [first], c);
        if (++holding === 2) bothHold();
        await both;
        await conn.q('UPDATE t SET n = n + 1 WHERE id = $1', [second], c);
      });
    await Promise.all([cross(1, 2), cross(2, 1)]);
    expect(runs).toBe(3);
    expect((await conn.q('SELECT sum(n)::int AS s FROM t')).rows).toEqual([{ s: 4 }]);
    // A statement outside a transaction, failing so once.
    await conn.q('CREATE SEQUENCE once');
    await conn.q(`CREATE FUNCTION flaky() RETURNS int LANGUAGE plpgsql AS $$ BEGIN
        IF nextval('once') = 1 THEN RAISE EXCEPTION 'deadlock victim' USING ERRCODE = '40P01'; END IF;
        RETURN 7; END $$`);
    expect((await conn.q('SELECT flaky() AS v')).rows).toEqual([{ v: 7 }]);
  });

  it('recovers when the server terminates its connections (admin shutdown, 57P01)', async () => {
    const url = await database();
    const store = open(url);
    await store.migrate();
    await Promise.all(Array.from({ length: 5 }, () => store.ping()));
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    cleanups.push(() => admin.end());
    const { rowCount } = await admin.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'fleetgate'",
    );
    expect(rowCount).toBeGreaterThan(0);
    // Every pooled connection is dead now; requests are retried on fresh ones, none fails.
    await expect(Promise.all(Array.from({ length: 5 }, () => store.getVehicle('x')))).resolves.toEqual(
      Array(5).fill(undefined),
    );
    await expect(store.ping()).resolves.toBeUndefined();
  });
});
