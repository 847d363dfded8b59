import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { parseServeBanner } from '../../scripts/lib/fleetgate-process.js';
import { startOnFreePort } from '../../scripts/lib/free-port.js';
import { mosquittoPortTaken } from '../../scripts/lib/mosquitto-server.js';
import type { Vehicle } from '../../src/domain/vehicle.js';
import { deriveKey, keyedHash } from '../../src/lib/secrets.js';
import { createApiClient } from '../../src/services/auth-service.js';
import { createStore } from '../../src/store/registry.js';
import type { Store } from '../../src/store/store.js';
import { fleetgateModel } from '../../src/telematics/fleetgate-mqtt/models.js';
import { type BenchProcess, PROBE, SERVER_NODE_ARGS, startProcess } from './processes.js';

export const TOPOLOGIES = ['embedded', 'production'] as const;
export type Topology = (typeof TOPOLOGIES)[number];

export const PG_ADMIN_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const UNIT_PASSWORD = 'bench-unit-password-0123456789';
export const MODEL = 'fleetgate-car-v1';
const SECRET_KEY = 'bench-secret-key-that-is-long-enough-0123456789';

/**
 * Mosquitto for the bench: the settings of deploy/mosquitto/mosquitto.conf that matter for speed
 * (set_tcp_nodelay, max_queued_messages, max_packet_size), but anonymous access instead of the
 * dynamic security plugin: seeded vehicles are not provisioned, and fleetgate runs with
 * `--mqtt-provisioning none`.
 */
export interface BenchMosquitto {
  url: string;
  /** The running broker process (a new one after restart()). */
  proc: BenchProcess;
  /** Stops the broker (SIGTERM) and starts it again on the same port; nothing persists. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

export async function startMosquitto(): Promise<BenchMosquitto> {
  return startOnFreePort(startMosquittoOn, mosquittoPortTaken);
}

async function startMosquittoOn(port: number): Promise<BenchMosquitto> {
  const dir = mkdtempSync(path.join(tmpdir(), 'fleetgate-bench-mosquitto-'));
  const conf = [
    'per_listener_settings false',
    `listener ${port} 127.0.0.1`,
    'set_tcp_nodelay true',
    'allow_anonymous true',
    'max_queued_messages 100000',
    'max_packet_size 262144',
    'persistence false',
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    'log_type notice',
    'log_type information',
    'connection_messages false',
    ...(process.getuid?.() === 0 ? ['user root'] : []),
  ].join('\n');
  writeFileSync(path.join(dir, 'mosquitto.conf'), `${conf}\n`);
  const launch = async () => {
    const proc = startProcess('mosquitto', ['-c', path.join(dir, 'mosquitto.conf')], { raw: '/usr/sbin/mosquitto' });
    const until = Date.now() + 10_000;
    while (!/running/.test(proc.output())) {
      if (proc.child.exitCode !== null || Date.now() > until) {
        await proc.stop();
        throw new Error(`mosquitto did not start:\n${proc.output()}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    return proc;
  };
  let proc: BenchProcess;
  try {
    proc = await launch();
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const broker: BenchMosquitto = {
    url: `mqtt://127.0.0.1:${port}`,
    get proc() {
      return proc;
    },
    async restart() {
      await proc.stop();
      proc = await launch();
    },
    async close() {
      await proc.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return broker;
}

/** A fresh PostgreSQL database for one bench run; returns its URL. */
export async function freshDatabase(name: string): Promise<string> {
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const u = new URL(PG_ADMIN_URL);
  u.pathname = `/${name}`;
  return u.toString();
}

export interface StoreLocation {
  dataDir: string;
  databaseUrl?: string;
}

export function vehicleId(i: number): string {
  // 12 characters like fleetgate's own ids; sorted by i.
  return `B${String(i).padStart(11, '0')}`;
}

export function unitId(prefix: string, i: number): string {
  return `${prefix}${i}`;
}

/** One vehicle row as VehicleService.add would create it, with setup already SUCCEEDED. */
export function benchVehicle(
  i: number,
  fleetId: string,
  unitPrefix: string,
  passwordHash: string,
  at: string,
): Vehicle {
  const model = fleetgateModel(MODEL)!;
  return {
    vehicle_id: vehicleId(i),
    fleet_id: fleetId,
    telematics_brand: 'FLEETGATE',
    telematics_unit_id: unitId(unitPrefix, i),
    vehicle_model_id: model.id,
    unit_password_hash: passwordHash,
    credentials_id: null,
    capabilities: structuredClone(model.capabilities),
    master_data: { vehicle_type: model.vehicle_type },
    custom_fields: {},
    tags: [],
    operation_status: 'OPERATING',
    setup_status: 'SUCCEEDED',
    setup_failure_reason: null,
    life_status: 'OFFLINE',
    life_status_modified_at: at,
    version: 2,
    created_at: at,
    modified_at: at,
  };
}

/**
 * Seeds `count` FLEETGATE vehicles (ids vehicleId(0…count-1), units `${unitPrefix}i`) and one API
 * client through the store, not HTTP. All units share one password hash (hashed once).
 */
export async function seedFleet(
  where: StoreLocation,
  options: { count: number; fleetId: string; unitPrefix: string; history?: number; scopes?: string[] },
): Promise<{ clientId: string; clientSecret: string }> {
  const store: Store = await createStore({ dataDir: where.dataDir, databaseUrl: where.databaseUrl });
  try {
    await store.migrate();
    // As VehicleService stores it: keyed with the key fleetgate derives from its secret key.
    const hash = keyedHash(UNIT_PASSWORD, deriveKey(SECRET_KEY, 'unit-password'));
    const at = new Date().toISOString();
    for (let i = 0; i < options.count; i += 100) {
      const batch = [];
      for (let j = i; j < Math.min(options.count, i + 100); j++) {
        batch.push(store.insertVehicle(benchVehicle(j, options.fleetId, options.unitPrefix, hash, at)));
      }
      await Promise.all(batch);
    }
    const c = await createApiClient(store, {
      fleetId: options.fleetId,
      scopes: options.scopes ?? ['vehicles', 'vehicle-commands'],
    });
    if (options.history) await seedHistory(where, options.history);
    return { clientId: c.client_id, clientSecret: c.client_secret };
  } finally {
    await store.close();
  }
}

/**
 * Makes the database look like an operating fleet's: `perVehicle` finished commands per vehicle,
 * a state per vehicle (older than anything a unit reports), then fresh planner statistics (and
 * again once every unit reported, analyzeDatabase). On an empty database PostgreSQL plans for
 * tables of a few rows and keeps those plans (sequential scans of a growing `commands`) until
 * autovacuum's first ANALYZE a minute later, after most runs end; a deployed fleetgate meets
 * that only in its first minute.
 */
async function seedHistory(where: StoreLocation, perVehicle: number): Promise<void> {
  const history = (uuid: string, now: string) =>
    `INSERT INTO commands (flow_id, fleet_id, client_id, vehicle_id, command, adapter, instance_id, status,
       requested_at, deadline_at, completed_at, duration_ms)
     SELECT ${uuid}, fleet_id, 'history', vehicle_id, 'LOCK_CENTRAL_LOCK', telematics_brand, 'history', 'SUCCEEDED',
       ${now}, ${now}, ${now}, 1
     FROM vehicles, (SELECT 1 FROM vehicles LIMIT ${Math.trunc(perVehicle)}) AS n`;
  const state = (ts: string) =>
    `INSERT INTO vehicle_state (vehicle_id, property, ts, value)
     SELECT vehicle_id, 'central_lock', ${ts}, '"LOCKED"' FROM vehicles`;
  if (where.databaseUrl) {
    const c = new pg.Client({ connectionString: where.databaseUrl });
    await c.connect();
    try {
      await c.query(history('gen_random_uuid()::text', "now() - interval '1 day'"));
      await c.query(state("now() - interval '1 day'"));
    } finally {
      await c.end();
    }
  } else {
    const db = new Database(path.join(where.dataDir, 'fleetgate.db'));
    try {
      const dayAgo = `${Date.now() - 86_400_000}`;
      db.exec(history('lower(hex(randomblob(16)))', dayAgo));
      db.exec(state(dayAgo));
    } finally {
      db.close();
    }
  }
  await analyzeDatabase(where);
}

/** Fresh planner statistics (as autovacuum keeps them in a deployment); cached plans are redone. */
export async function analyzeDatabase(where: StoreLocation): Promise<void> {
  if (where.databaseUrl) {
    const c = new pg.Client({ connectionString: where.databaseUrl });
    await c.connect();
    try {
      await c.query('ANALYZE');
    } finally {
      await c.end();
    }
    return;
  }
  const db = new Database(path.join(where.dataDir, 'fleetgate.db'));
  try {
    db.exec('ANALYZE');
  } finally {
    db.close();
  }
}

/**
 * Counts the events in the outbox (every fleet's), straight from the database: what the bench's
 * webhook receiver must have received. In PostgreSQL `seq` is not commit order, so `after` is a
 * `seq` read while nothing was being written.
 */
export async function openEventCounter(
  where: StoreLocation,
): Promise<{ lastSeq(): Promise<number>; countAfter(seq: number): Promise<number>; close(): Promise<void> }> {
  if (where.databaseUrl) {
    const c = new pg.Client({ connectionString: where.databaseUrl });
    await c.connect();
    const one = async (sql: string, params: unknown[] = []) => Number((await c.query(sql, params)).rows[0].n);
    return {
      lastSeq: () => one('SELECT coalesce(max(seq), 0) AS n FROM events'),
      countAfter: (seq) => one('SELECT count(*) AS n FROM events WHERE seq > $1', [seq]),
      close: () => c.end(),
    };
  }
  const db = new Database(path.join(where.dataDir, 'fleetgate.db'), { readonly: true });
  const one = (sql: string, ...params: unknown[]) => Number((db.prepare(sql).get(...params) as { n: number }).n);
  return {
    lastSeq: async () => one('SELECT coalesce(max(seq), 0) AS n FROM events'),
    countAfter: async (seq) => one('SELECT count(*) AS n FROM events WHERE seq > ?', seq),
    close: async () => {
      db.close();
    },
  };
}

export interface FleetgateInstance {
  url: string;
  mqttUrl: string;
  proc: BenchProcess;
  token: string;
}

/** `node --import tsx src/cli/main.ts serve …` as a child process, ready and with a token. */
export async function startFleetgate(
  where: StoreLocation,
  options: {
    mqttUrl?: string;
    client: { clientId: string; clientSecret: string };
    logLevel?: string;
    extra?: Record<string, string>;
    nodeArgs?: string[];
    /** How long it may take to answer /health/ready (a restart amid a reconnect storm takes longer). */
    readyTimeoutMs?: number;
  },
): Promise<FleetgateInstance> {
  // Port 0: the process binds free ports itself and its start-up banner tells which.
  const settings: Record<string, string> = {
    host: '127.0.0.1',
    port: '0',
    'mqtt-host': '127.0.0.1',
    'mqtt-port': '0',
    'teltonika-port': '0',
    'data-dir': where.dataDir,
    'log-level': options.logLevel ?? 'warn',
    'secret-key': SECRET_KEY,
    'rate-limit-per-minute': '10000000',
    'token-ttl-seconds': '86400',
    'instance-id': 'bench',
    ...(where.databaseUrl ? { 'database-url': where.databaseUrl } : {}),
    ...(options.mqttUrl ? { 'mqtt-url': options.mqttUrl, 'mqtt-provisioning': 'none' } : {}),
    ...(options.extra ?? {}),
  };
  const args = ['src/cli/main.ts', 'serve'];
  for (const [k, v] of Object.entries(settings)) args.push(`--${k}`, v);
  // The probe (stages, stored reports) sleeps until the bench switches it on.
  const proc = startProcess('fleetgate', args, {
    nodeArgs: [...SERVER_NODE_ARGS, ...(options.nodeArgs ?? [])],
    preload: [PROBE],
  });
  const until = Date.now() + (options.readyTimeoutMs ?? 60_000);
  let banner: ReturnType<typeof parseServeBanner>;
  for (;;) {
    banner ??= parseServeBanner(proc.output());
    const ok =
      banner !== undefined &&
      (await fetch(`${banner.url}/health/ready`).then(
        (r) => r.status === 200,
        () => false,
      ));
    if (ok) break;
    if (proc.child.exitCode !== null || Date.now() > until) {
      await proc.stop();
      throw new Error(`fleetgate did not get ready:\n${proc.output().slice(-4000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const url = banner!.url;
  // An external broker's URL as given (the banner may hide its credentials).
  const mqttUrl = options.mqttUrl ?? banner!.mqttUrl;
  const basic = Buffer.from(`${options.client.clientId}:${options.client.clientSecret}`).toString('base64');
  const res = await fetch(`${url}/auth/oauth/token?grant_type=client_credentials`, {
    method: 'POST',
    headers: { authorization: `Basic ${basic}` },
  });
  if (res.status !== 200) throw new Error(`token: ${res.status} ${await res.text()}`);
  const token = ((await res.json()) as { access_token: string }).access_token;
  return { url, mqttUrl, proc, token };
}
