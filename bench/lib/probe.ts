/**
 * The bench's probe, preloaded into a fleetgate (or floor D) process it started:
 * `node --import tsx --import ./bench/lib/probe.ts …`. It wraps methods of the product's classes
 * from outside, so the product carries no instrumentation at all: a process without the probe
 * pays nothing, and one with it pays one boolean test per wrapped call until it is switched on.
 *
 * SIGUSR2 switches it on; the next SIGUSR2 switches it off and prints one JSON line
 * `{"type":"probe", …}` with what it saw meanwhile, then the next starts afresh:
 * - `stages`: per stage of the command path, calls, mean, p50 and p99 in µs: `http` (request
 *   start → response finish, Node's own diagnostics channels), `auth` (token check),
 *   `store.startCommand` and `store.completeCommand` (including waiting for their group commit
 *   or batched statement), `store.statement` (each PostgreSQL round trip), `store.commit`
 *   (each transaction of the SQLite group commit, synchronous on the API thread), `adapter` (the
 *   adapter's execute: publish → answer), `broker` (command publish → the unit's answer arriving),
 *   `event loop delay` (how late the API thread's timers ran);
 * - `ingest`: state reports stored (VehicleService.onStateReport resolved with a state) and the
 *   latency from the report's send time (the bench's reporters stamp it, with microseconds, as
 *   the `mileage_in_kilometers` timestamp) to stored, p50/p99 in ms.
 * Class or method names that no longer exist are skipped and listed in `missing`.
 * `store.findVehicleByUnit` and `store.mergeState` time a state report's two store calls.
 */
import diagnostics from 'node:diagnostics_channel';
import { type IntervalHistogram, monitorEventLoopDelay } from 'node:perf_hooks';

type AnyFn = (...args: unknown[]) => unknown;

let on = false;
const samples = new Map<string, number[]>();
const ingest: number[] = [];
let ingestStored = 0;
const missing: string[] = [];

function record(stage: string, ms: number): void {
  let s = samples.get(stage);
  if (!s) {
    s = [];
    samples.set(stage, s);
  }
  if (s.length < 2_000_000) s.push(ms);
}

/** Replaces `proto[method]` with a timed wrapper (async methods: until their promise settles). */
function timed(proto: Record<string, unknown> | undefined, method: string, stage: string): void {
  const original = proto?.[method] as AnyFn | undefined;
  if (!proto || typeof original !== 'function') {
    missing.push(`${stage} (${method})`);
    return;
  }
  proto[method] = function (this: unknown, ...args: unknown[]) {
    if (!on) return original.apply(this, args);
    const t0 = performance.now();
    const out = original.apply(this, args);
    if (out instanceof Promise) {
      return out.finally(() => record(stage, performance.now() - t0));
    }
    record(stage, performance.now() - t0);
    return out;
  };
}

/** Epoch milliseconds with microseconds, the same clock in every process on this machine. */
export function nowEpochMs(): number {
  return performance.timeOrigin + performance.now();
}

/** `2026-12-07T04:00:00.123456Z` → epoch ms with the microseconds (Date.parse drops them). */
export function parseIsoMicros(iso: string): number {
  const dot = iso.indexOf('.');
  if (dot < 0) return Date.parse(iso);
  const whole = Date.parse(`${iso.slice(0, dot)}Z`);
  const fraction = iso.slice(dot + 1, iso.length - 1);
  return whole + Number(`0.${fraction}`) * 1000;
}

async function load(path: string): Promise<Record<string, unknown> | undefined> {
  try {
    return (await import(new URL(path, import.meta.url).href)) as Record<string, unknown>;
  } catch {
    missing.push(path);
    return undefined;
  }
}

const protoOf = (mod: Record<string, unknown> | undefined, name: string) =>
  (mod?.[name] as { prototype?: Record<string, unknown> } | undefined)?.prototype;

const [auth, sqlite, postgres, postgresConnection, groupCommit, adapter, vehicles, mqtt] = await Promise.all([
  load('../../src/services/auth-service.ts'),
  load('../../src/store/sqlite/sqlite-store.ts'),
  load('../../src/store/postgres/postgres-store.ts'),
  load('../../src/store/postgres/connection.ts'),
  load('../../src/store/sqlite/group-commit.ts'),
  load('../../src/telematics/fleetgate-mqtt/fleetgate-mqtt-adapter.ts'),
  load('../../src/services/vehicle-service.ts'),
  import('mqtt') as Promise<Record<string, unknown>>,
]);

timed(protoOf(auth, 'AuthService'), 'verifyToken', 'auth');
for (const [mod, name] of [
  [sqlite, 'SqliteStore'],
  [postgres, 'PostgresStore'],
] as const) {
  timed(protoOf(mod, name), 'startCommand', 'store.startCommand');
  timed(protoOf(mod, name), 'completeCommand', 'store.completeCommand');
  timed(protoOf(mod, name), 'findVehicleByUnit', 'store.findVehicleByUnit');
  timed(protoOf(mod, name), 'mergeState', 'store.mergeState');
}

// An experiment, not a measurement: BENCH_EXPERIMENT=unit-cache answers findVehicleByUnit from a
// map after the first read (as a cache in the product would), to measure what it would save.
if (process.env.BENCH_EXPERIMENT === 'unit-cache') {
  for (const [mod, name] of [
    [sqlite, 'SqliteStore'],
    [postgres, 'PostgresStore'],
  ] as const) {
    const proto = protoOf(mod, name);
    const find = proto?.findVehicleByUnit as AnyFn | undefined;
    if (!proto || !find) continue;
    const cache = new Map<string, unknown>();
    proto.findVehicleByUnit = function (this: unknown, brand: unknown, unit: unknown) {
      const key = `${String(brand)}/${String(unit)}`;
      const hit = cache.get(key);
      if (hit) return Promise.resolve(hit);
      return (find.call(this, brand, unit) as Promise<unknown>).then((v) => {
        if (v) cache.set(key, v);
        return v;
      });
    };
  }
}
timed(protoOf(postgresConnection, 'PostgresConnection'), 'q', 'store.statement');
timed(protoOf(groupCommit, 'GroupCommit'), 'commit', 'store.commit');
timed(protoOf(adapter, 'FleetgateMqttAdapter'), 'execute', 'adapter');

// The broker's share: a command's publish to the unit's answer arriving. One command per
// vehicle at a time (single flight), so the unit id pairs them.
const published = new Map<string, number>();
const client = protoOf(mqtt, 'MqttClient');
const publish = client?.publish as AnyFn | undefined;
if (client && publish) {
  client.publish = function (this: unknown, topic: unknown, ...rest: unknown[]) {
    if (on && typeof topic === 'string' && topic.endsWith('/commands')) {
      published.set(topic.slice(0, -'/commands'.length), performance.now());
    }
    return publish.call(this, topic, ...rest);
  };
} else missing.push('broker (MqttClient.publish)');
const adapterProto = protoOf(adapter, 'FleetgateMqttAdapter');
const onResponse = adapterProto?.onResponse as AnyFn | undefined;
if (adapterProto && onResponse) {
  adapterProto.onResponse = function (this: unknown, unitId: unknown, ...rest: unknown[]) {
    if (on) {
      const key = `fleetgate/v1/units/${String(unitId)}`;
      const t0 = published.get(key);
      if (t0 !== undefined) {
        published.delete(key);
        record('broker', performance.now() - t0);
      }
    }
    return onResponse.call(this, unitId, ...rest);
  };
} else missing.push('broker (onResponse)');

// State reports: stored once onStateReport resolves with the merged state.
const vehicleProto = protoOf(vehicles, 'VehicleService');
const onStateReport = vehicleProto?.onStateReport as AnyFn | undefined;
if (vehicleProto && onStateReport) {
  vehicleProto.onStateReport = function (this: unknown, ...args: unknown[]) {
    const out = onStateReport.apply(this, args) as Promise<unknown>;
    if (!on) return out;
    const raw = args[2] as { mileage_in_kilometers?: { timestamp?: unknown } } | undefined;
    const sent = raw?.mileage_in_kilometers?.timestamp;
    return out.then((merged) => {
      if (merged !== undefined) {
        ingestStored++;
        if (typeof sent === 'string' && ingest.length < 2_000_000) ingest.push(nowEpochMs() - parseIsoMicros(sent));
      }
      return merged;
    });
  };
} else missing.push('ingest (VehicleService.onStateReport)');

// HTTP: Node's built-in channels, subscribed only while on.
const started = new WeakMap<object, number>();
const onStart = (m: unknown) => started.set((m as { request: object }).request, performance.now());
const onFinish = (m: unknown) => {
  const t0 = started.get((m as { request: object }).request);
  if (t0 !== undefined) record('http', performance.now() - t0);
};

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
}

const us = (ms: number) => Math.round(ms * 1000);
let loopDelay: IntervalHistogram | undefined;

function summary(): Record<string, unknown> {
  const stages: Record<string, { calls: number; mean_us: number; p50_us: number; p99_us: number }> = {};
  for (const [stage, s] of samples) {
    const sorted = Float64Array.from(s).sort();
    const mean = s.reduce((a, b) => a + b, 0) / Math.max(1, s.length);
    stages[stage] = {
      calls: s.length,
      mean_us: us(mean),
      p50_us: us(percentile(sorted, 0.5)),
      p99_us: us(percentile(sorted, 0.99)),
    };
  }
  // How late the API thread's timers ran (Node's event loop delay histogram, 1 ms resolution):
  // what any piece of work there waits for the thread.
  if (loopDelay && loopDelay.count > 0) {
    stages['event loop delay'] = {
      calls: loopDelay.count,
      mean_us: us(loopDelay.mean / 1e6),
      p50_us: us(loopDelay.percentile(50) / 1e6),
      p99_us: us(loopDelay.percentile(99) / 1e6),
    };
  }
  const lat = Float64Array.from(ingest).sort();
  return {
    type: 'probe',
    stages,
    ingest: {
      stored: ingestStored,
      latency_ms: {
        p50: Math.round(percentile(lat, 0.5) * 100) / 100,
        p99: Math.round(percentile(lat, 0.99) * 100) / 100,
        max: Math.round(percentile(lat, 1) * 100) / 100,
      },
    },
    missing,
  };
}

process.on('SIGUSR2', () => {
  if (!on) {
    samples.clear();
    ingest.length = 0;
    ingestStored = 0;
    published.clear();
    diagnostics.subscribe('http.server.request.start', onStart);
    diagnostics.subscribe('http.server.response.finish', onFinish);
    loopDelay = monitorEventLoopDelay({ resolution: 1 });
    loopDelay.enable();
    on = true;
    process.stdout.write('{"type":"probe-on"}\n');
    return;
  }
  on = false;
  diagnostics.unsubscribe('http.server.request.start', onStart);
  diagnostics.unsubscribe('http.server.response.finish', onFinish);
  loopDelay?.disable();
  process.stdout.write(`${JSON.stringify(summary())}\n`);
});
