import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  type BenchProcess,
  machineBusySeconds,
  mainThreadOf,
  PROBE,
  type ProbeReport,
  postgresServer,
  probeOff,
  probeOn,
  SERVER_NODE_ARGS,
  startProcess,
} from './lib/processes.js';
import {
  analyzeDatabase,
  type FleetgateInstance,
  freshDatabase,
  MODEL,
  openEventCounter,
  type StoreLocation,
  seedFleet,
  startFleetgate,
  startMosquitto,
  type Topology,
  UNIT_PASSWORD,
  unitId,
  vehicleId,
} from './lib/topology.js';
import type { LoadResult, LoadSpec } from './load.js';

export const SCENARIOS = ['floorA', 'floorB', 'floorC', 'floorD', 'fleetgate', 'fleetgateWebhook'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

export const SCENARIO_LABELS: Record<ScenarioName, string> = {
  floorA: 'A bare HTTP',
  floorB: 'B bare MQTT req/reply',
  floorC: 'C bare pipeline',
  floorD: 'D pipeline + store',
  fleetgate: 'fleetgate end to end',
  fleetgateWebhook: 'fleetgate + webhook',
};

/** What a scenario's load runs need, and what to stop afterwards. */
export interface Setup {
  transport: 'http' | 'mqtt';
  url: string;
  credentials?: { username: string; password: string };
  headers?: Record<string, string>;
  targets: string[];
  /** Processes whose CPU time the report breaks down (the load generator is added per run). */
  processes: Array<Pick<BenchProcess, 'name' | 'cpuSeconds' | 'rssBytes'>>;
  /** The server with the probe preloaded (fleetgate, floor D): per-stage times on request. */
  probe?: BenchProcess;
  /** fleetgate + webhook: what the receiver got of each run's events. */
  events?: { afterRun(from: number, to: number, commands: number): Promise<EventsMeasured> };
  close(): Promise<void>;
}

export interface RunSettings {
  units: number;
  /** Units per simulator process. */
  unitsPerProcess: number;
  logLevel: string;
  nodeArgs?: string[];
  /** fleetgate + webhook: how long after a run its events may take to reach the receiver. */
  eventsDrainLimitS?: number;
}

async function startUnits(mqttUrl: string, prefix: string, count: number, perProcess: number): Promise<BenchProcess[]> {
  const procs: BenchProcess[] = [];
  for (let from = 0; from < count; from += perProcess) {
    const spec = {
      mqttUrl,
      prefix,
      from,
      count: Math.min(perProcess, count - from),
      password: UNIT_PASSWORD,
      model: MODEL,
    };
    procs.push(startProcess(`units-${procs.length + 1}`, ['bench/units.ts', JSON.stringify(spec)]));
  }
  for (const p of procs) {
    const ready = await p.message<{ failed: number; failures: string[] }>('ready');
    if (ready.failed > 0)
      throw new Error(`${p.name}: ${ready.failed} units failed to connect: ${ready.failures.join('; ')}`);
  }
  return procs;
}

async function stopAll(procs: BenchProcess[]): Promise<void> {
  await Promise.all(procs.map((p) => p.stop()));
}

/** Starts everything a scenario needs for one topology. */
export async function setUp(scenario: ScenarioName, topology: Topology, s: RunSettings): Promise<Setup> {
  if (scenario === 'floorA') {
    const server = startProcess('server', ['bench/floor-server.ts', JSON.stringify({ mode: 'http' })], {
      nodeArgs: SERVER_NODE_ARGS,
    });
    const ready = await server.message<{ url: string }>('ready');
    return {
      transport: 'http',
      url: ready.url,
      targets: Array.from({ length: s.units }, () => '/ping'),
      processes: [server],
      close: () => server.stop(),
    };
  }

  const mosquitto = topology === 'production' ? await startMosquitto() : undefined;
  const brokerProcs = mosquitto ? [Object.assign(mosquitto.proc, { name: 'mosquitto' })] : [];
  try {
    if (scenario === 'floorB' || scenario === 'floorC') {
      const mode = scenario === 'floorB' ? 'broker' : 'pipeline';
      const server = startProcess(
        scenario === 'floorB' ? 'broker' : 'server',
        ['bench/floor-server.ts', JSON.stringify({ mode, mqttUrl: mosquitto?.url })],
        { nodeArgs: SERVER_NODE_ARGS },
      );
      const ready = await server.message<{
        url?: string;
        mqttUrl: string;
        credentials?: { username: string; password: string };
      }>('ready');
      const prefix = `${scenario}-`;
      const units = await startUnits(ready.mqttUrl, prefix, s.units, s.unitsPerProcess);
      const ids = Array.from({ length: s.units }, (_, i) => unitId(prefix, i));
      return {
        transport: scenario === 'floorB' ? 'mqtt' : 'http',
        url: scenario === 'floorB' ? ready.mqttUrl : ready.url!,
        credentials: ready.credentials,
        targets: scenario === 'floorB' ? ids : ids.map((id) => `/units/${id}/command`),
        // With Mosquitto, floor B's "broker" process only reports the URL: leave it out.
        processes: [
          // Floor C's server: the process and its HTTP thread; floor B's broker process is all broker.
          ...(scenario === 'floorB' ? (mosquitto ? [] : [server]) : [server, mainThreadOf(server)]),
          ...brokerProcs,
          ...units,
        ],
        close: async () => {
          await stopAll(units);
          await server.stop();
          await mosquitto?.close();
        },
      };
    }

    if (scenario === 'floorD') return await setUpFloorD(topology, s, mosquitto, brokerProcs);

    return await setUpFleetgate(topology, s, mosquitto, brokerProcs, scenario === 'fleetgateWebhook');
  } catch (e) {
    await mosquitto?.close();
    throw e;
  }
}

/**
 * fleetgate end to end; with `webhook`, plus one webhook subscription to every event type, to a
 * receiver in a process of its own (bench/webhook-receiver.ts), created once every vehicle has
 * answered (so it receives the measured runs' events only).
 */
async function setUpFleetgate(
  topology: Topology,
  s: RunSettings,
  mosquitto: Awaited<ReturnType<typeof startMosquitto>> | undefined,
  brokerProcs: BenchProcess[],
  webhook: boolean,
): Promise<Setup> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'fleetgate-bench-'));
  // A database per scenario: the in-turn runs (bench/run.ts) keep fleetgate and fleetgate +
  // webhook running side by side, and a fresh database of the same name would drop the other's.
  const databaseUrl =
    topology === 'production'
      ? await freshDatabase(webhook ? 'fleetgate_bench_webhook' : 'fleetgate_bench')
      : undefined;
  const where = { dataDir, databaseUrl };
  const prefix = 'fg-';
  const client = await seedFleet(where, {
    count: s.units,
    fleetId: 'bench',
    unitPrefix: prefix,
    history: 20,
    ...(webhook ? { scopes: ['vehicles', 'vehicle-commands', 'events'] } : {}),
  });
  const fg = await startFleetgate(where, {
    mqttUrl: mosquitto?.url,
    client,
    logLevel: s.logLevel,
    nodeArgs: s.nodeArgs,
    ...(webhook ? { extra: { 'webhooks-allow-private-urls': 'true' } } : {}),
  });
  let units: BenchProcess[] = [];
  let receiver: Awaited<ReturnType<typeof subscribeReceiver>> | undefined;
  const close = async () => {
    await stopAll(units);
    await receiver?.close();
    await fg.proc.stop();
    rmSync(dataDir, { recursive: true, force: true });
  };
  const targets = Array.from({ length: s.units }, (_, i) => `/vehicles/${vehicleId(i)}/commands/unlock-central-lock`);
  try {
    units = await startUnits(fg.mqttUrl, prefix, s.units, s.unitsPerProcess);
    await untilAllAnswer(fg.url, fg.token, targets);
    // Every vehicle now has its full state: statistics as a running deployment has them.
    await analyzeDatabase(where);
    if (webhook) receiver = await subscribeReceiver(fg, where, s.eventsDrainLimitS ?? 60);
  } catch (e) {
    await close();
    throw e;
  }
  return {
    transport: 'http',
    url: fg.url,
    headers: { authorization: `Bearer ${fg.token}` },
    targets,
    probe: fg.proc,
    processes: [
      Object.assign(fg.proc, { name: 'fleetgate' }),
      mainThreadOf(fg.proc),
      ...brokerProcs,
      ...(databaseUrl ? [postgresServer()] : []),
      ...units,
      ...(receiver ? [receiver.proc] : []),
    ],
    ...(receiver ? { events: receiver } : {}),
    close: async () => {
      await close();
      await mosquitto?.close();
    },
  };
}

/** What the webhook's receiver got of the events committed during and after one load run. */
export interface EventsMeasured {
  /**
   * Events committed since the previous run's drain (this run's, warm-up included), and how many
   * of them the receiver verified.
   */
  committed: number;
  received: number;
  /**
   * What had not arrived when the bench stopped waiting: 0 once every committed event arrived.
   * Otherwise the drain would have taken longer than the limit, and the subscription was replaced
   * by a new one (starting at the feed's head) for the next run.
   */
  backlog: number;
  /** From the run's end until every committed event had arrived (or the bench stopped waiting). */
  drainS: number;
  /**
   * Events/s that arrived meanwhile, with no load running: one subscription's delivery rate
   * (undefined when the drain took under a second).
   */
  drainedPerS?: number;
  duplicates: number;
  rejected: number;
  /** Events that arrived during the measured period, per second. */
  deliveredPerS: number;
  /** Events that occurred (committed) in the measured period, per command, and their latency. */
  events: number;
  eventsPerCommand: number;
  /** Arrival at the receiver − `metadata.occurred_at` (stamped in the committing transaction). */
  latencyMs: { p50: number; p99: number; max: number };
}

interface ReceiverStats {
  received: number;
  duplicates: number;
  rejected: number;
  arrivedInWindow: number;
  occurredInWindow: { events: number; latencyMs: { p50: number; p99: number; max: number } };
}

/**
 * Starts the receiver, subscribes it to every event type, and counts the committed events in the
 * database. A run's events drain before the next run starts, so that each run's latency is its
 * own; a backlog that would take longer than `drainLimitS` to drain is given up instead.
 */
async function subscribeReceiver(fg: FleetgateInstance, where: StoreLocation, drainLimitS: number) {
  const proc = startProcess('receiver', ['bench/webhook-receiver.ts']);
  const counter = await openEventCounter(where).catch(async (e: unknown) => {
    await proc.stop();
    throw e;
  });
  const close = async () => {
    await proc.stop();
    await counter.close();
  };
  const api = async (method: string, route: string, body?: unknown) => {
    const res = await fetch(fg.url + route, {
      method,
      headers: {
        authorization: `Bearer ${fg.token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (res.status >= 300) throw new Error(`${method} ${route}: ${res.status} ${text}`);
    return (text ? JSON.parse(text) : {}) as Record<string, string>;
  };
  const stats = async (path: string, from?: number, to?: number) => {
    const answer = proc.message<ReceiverStats>('stats', 30_000);
    proc.send({ type: 'stats', path, from, to });
    return answer;
  };
  let url = '';
  let subscriptions = 0;
  let current = { id: '', path: '', baseline: 0 };
  /** The current subscription's totals at the previous run's end. */
  let before = { committed: 0, received: 0, duplicates: 0, rejected: 0 };
  // Created disabled, enabled once the receiver holds the secret. Nothing is written while no
  // load runs: every event after `baseline` is the new subscription's.
  const subscribe = async (n: number) => {
    const path = `/hooks/${n}`;
    const created = await api('POST', '/webhooks', { url: `${url}${path}`, enabled: false });
    const baseline = await counter.lastSeq();
    const set = proc.message('secret-set', 10_000);
    proc.send({ type: 'secret', path, secret: created.secret });
    await set;
    await api('PATCH', `/webhooks/${created.webhook_id}`, { enabled: true });
    current = { id: created.webhook_id!, path, baseline };
    before = { committed: 0, received: 0, duplicates: 0, rejected: 0 };
  };
  try {
    url = (await proc.message<{ url: string }>('ready', 60_000)).url;
    await subscribe(++subscriptions);
  } catch (e) {
    await close();
    throw e;
  }
  return {
    proc,
    close,
    /** After a run (its measured period from … to, epoch ms): waits for the drain, then reports. */
    async afterRun(from: number, to: number, commands: number): Promise<EventsMeasured> {
      const ended = Date.now();
      const { path, baseline } = current;
      const inRun = await stats(path, from, to);
      const deliveredPerS = inRun.arrivedInWindow / Math.max(0.001, (to - from) / 1000);
      let committed = await counter.countAfter(baseline);
      let received = inRun.received;
      for (;;) {
        if (received >= committed) break;
        const waited = (Date.now() - ended) / 1000;
        if (waited >= drainLimitS) break;
        // After a few seconds the drain's own pace tells whether it ends within the limit.
        if (waited >= 3 && committed - received > ((received - inRun.received) / waited) * (drainLimitS - waited))
          break;
        await new Promise((r) => setTimeout(r, 100));
        committed = await counter.countAfter(baseline);
        received = (await stats(path)).received;
      }
      const got = await stats(path, from, to);
      const drainS = Math.round((Date.now() - ended) / 100) / 10;
      const backlog = Math.max(0, committed - got.received);
      const now = { committed, received: got.received, duplicates: got.duplicates, rejected: got.rejected };
      const run = {
        committed: now.committed - before.committed,
        received: now.received - before.received,
        duplicates: now.duplicates - before.duplicates,
        rejected: now.rejected - before.rejected,
      };
      before = now;
      if (backlog > 0) {
        await api('DELETE', `/webhooks/${current.id}`);
        await subscribe(++subscriptions);
      }
      const w = got.occurredInWindow;
      return {
        ...run,
        backlog,
        drainS,
        ...(drainS >= 1 ? { drainedPerS: Math.round((got.received - inRun.received) / drainS) } : {}),
        deliveredPerS: Math.round(deliveredPerS),
        events: w.events,
        eventsPerCommand: Math.round((w.events / Math.max(1, commands)) * 100) / 100,
        latencyMs: w.latencyMs,
      };
    },
  };
}

/**
 * Floor D: floor C's server with the store calls of a recorded command, on a fleet seeded as
 * fleetgate's (bench/floor-server.ts).
 */
async function setUpFloorD(
  topology: Topology,
  s: RunSettings,
  mosquitto: Awaited<ReturnType<typeof startMosquitto>> | undefined,
  brokerProcs: BenchProcess[],
): Promise<Setup> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'fleetgate-bench-'));
  const databaseUrl = topology === 'production' ? await freshDatabase('fleetgate_bench_floor_d') : undefined;
  const where = { dataDir, databaseUrl };
  const prefix = 'fg-';
  await seedFleet(where, { count: s.units, fleetId: 'bench', unitPrefix: prefix, history: 20 });
  const server = startProcess(
    'server',
    ['bench/floor-server.ts', JSON.stringify({ mode: 'pipeline', mqttUrl: mosquitto?.url, store: where })],
    { nodeArgs: SERVER_NODE_ARGS, preload: [PROBE] },
  );
  let units: BenchProcess[] = [];
  const close = async () => {
    await stopAll(units);
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  };
  const targets = Array.from(
    { length: s.units },
    (_, i) => `/vehicles/${vehicleId(i)}/units/${unitId(prefix, i)}/command`,
  );
  try {
    const ready = await server.message<{ url: string; mqttUrl: string }>('ready');
    units = await startUnits(ready.mqttUrl, prefix, s.units, s.unitsPerProcess);
    await untilAllAnswer(ready.url, undefined, targets);
    await analyzeDatabase(where);
    return {
      transport: 'http',
      url: ready.url,
      targets,
      probe: server,
      processes: [server, mainThreadOf(server), ...brokerProcs, ...(databaseUrl ? [postgresServer()] : []), ...units],
      close: async () => {
        await close();
        await mosquitto?.close();
      },
    };
  } catch (e) {
    await close();
    throw e;
  }
}

/**
 * Every vehicle answers a command once before measuring: fleetgate has seen each unit's retained
 * `online` status, and the first command per vehicle (caches, prepared statements) is behind us.
 */
export async function untilAllAnswer(url: string, token: string | undefined, targets: string[]): Promise<void> {
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  const todo = [...targets];
  const until = Date.now() + 60_000;
  let last = '';
  const worker = async () => {
    while (todo.length > 0) {
      const t = todo.pop()!;
      const res = await fetch(url + t, { method: 'POST', headers });
      const text = await res.text();
      if (res.status !== 200) {
        last = `${res.status} ${text.slice(0, 300)}`;
        if (Date.now() > until) throw new Error(`fleetgate does not answer ${t}: ${last}`);
        todo.unshift(t);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
}

export interface Measured extends Omit<LoadResult, 'type'> {
  concurrency?: number;
  /**
   * CPU used per process during the run, in % of one core (200 % = both cores); `machine` is all
   * of the machine's busy CPU, and `other` what of it no listed process used (the bench's own
   * controller, the kernel's loopback work outside any process, other services).
   */
  cpuPercent: Record<string, number>;
  /** CPU milliseconds per completed request, per process: robust to a busy machine. */
  cpuMsPerRequest: Record<string, number>;
  /** With `stages`: the probe's per-stage times over the measured period. */
  stages?: ProbeReport['stages'];
  /** fleetgate + webhook: the events of this run at the receiver. */
  events?: EventsMeasured;
}

/** One load run in its own process, with the CPU every involved process used meanwhile. */
export async function measure(
  setup: Setup,
  spec: Omit<LoadSpec, 'transport' | 'url' | 'targets'>,
  options: { stages?: boolean } = {},
): Promise<Measured> {
  const full: LoadSpec = {
    ...spec,
    transport: setup.transport,
    url: setup.url,
    credentials: setup.credentials,
    headers: setup.headers,
    targets: setup.targets,
  };
  const specFile = path.join(tmpdir(), `fleetgate-bench-load-${process.pid}.json`);
  writeFileSync(specFile, JSON.stringify(full));
  const load = startProcess('load', ['bench/load.ts', `@${specFile}`]);
  await load.message('measuring', spec.warmupS * 1000 + 120_000);
  rmSync(specFile, { force: true });
  const probe = options.stages ? setup.probe : undefined;
  if (probe) await probeOn(probe);
  const before = setup.processes.map((p) => p.cpuSeconds());
  const loadBefore = load.cpuSeconds();
  const machineBefore = machineBusySeconds();
  const t0 = performance.now();
  const from = Date.now();
  const result = await load.message<LoadResult>('result', (spec.durationS + spec.warmupS) * 1000 + 120_000);
  const wall = (performance.now() - t0) / 1000;
  const to = Date.now();
  const machine = ((machineBusySeconds() - machineBefore) / wall) * 100;
  const stages = probe ? (await probeOff(probe)).stages : undefined;
  const cpuPercent: Record<string, number> = {};
  setup.processes.forEach((p, i) => {
    const name = p.name.startsWith('units-') ? 'units' : p.name;
    cpuPercent[name] = (cpuPercent[name] ?? 0) + ((p.cpuSeconds() - before[i]!) / wall) * 100;
  });
  cpuPercent.load = ((load.cpuSeconds() - loadBefore) / wall) * 100;
  // Threads are part of their process's figure: only whole processes add up.
  const listed = Object.entries(cpuPercent).reduce((sum, [k, v]) => (k.endsWith('main thread') ? sum : sum + v), 0);
  cpuPercent.other = Math.max(0, machine - listed);
  cpuPercent.machine = machine;
  await load.stop();
  const cpuMsPerRequest: Record<string, number> = {};
  for (const k of Object.keys(cpuPercent)) {
    cpuMsPerRequest[k] =
      Math.round(((cpuPercent[k]! / 100) * wall * 1000 * 1000) / Math.max(1, result.requests)) / 1000;
    cpuPercent[k] = Math.round(cpuPercent[k]!);
  }
  // After the CPU figures: the drain's delivery work is not the run's.
  const events = await setup.events?.afterRun(from, to, result.requests);
  const { type: _type, ...rest } = result;
  return {
    ...rest,
    ...(spec.concurrency ? { concurrency: spec.concurrency } : {}),
    cpuPercent,
    cpuMsPerRequest,
    ...(stages ? { stages } : {}),
    ...(events ? { events } : {}),
  };
}
