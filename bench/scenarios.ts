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
  startProcess,
} from './lib/processes.js';
import {
  analyzeDatabase,
  freshDatabase,
  MODEL,
  seedFleet,
  startFleetgate,
  startMosquitto,
  type Topology,
  UNIT_PASSWORD,
  unitId,
  vehicleId,
} from './lib/topology.js';
import type { LoadResult, LoadSpec } from './load.js';

export const SCENARIOS = ['floorA', 'floorB', 'floorC', 'floorD', 'fleetgate'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

export const SCENARIO_LABELS: Record<ScenarioName, string> = {
  floorA: 'A bare HTTP',
  floorB: 'B bare MQTT req/reply',
  floorC: 'C bare pipeline',
  floorD: 'D pipeline + store',
  fleetgate: 'fleetgate end to end',
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
  close(): Promise<void>;
}

export interface RunSettings {
  units: number;
  /** Units per simulator process. */
  unitsPerProcess: number;
  logLevel: string;
  nodeArgs?: string[];
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
    const server = startProcess('server', ['bench/floor-server.ts', JSON.stringify({ mode: 'http' })]);
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
      const server = startProcess(scenario === 'floorB' ? 'broker' : 'server', [
        'bench/floor-server.ts',
        JSON.stringify({ mode, mqttUrl: mosquitto?.url }),
      ]);
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

    // fleetgate end to end
    const dataDir = mkdtempSync(path.join(tmpdir(), 'fleetgate-bench-'));
    const databaseUrl = topology === 'production' ? await freshDatabase('fleetgate_bench') : undefined;
    const where = { dataDir, databaseUrl };
    const prefix = 'fg-';
    const client = await seedFleet(where, { count: s.units, fleetId: 'bench', unitPrefix: prefix, history: 20 });
    const fg = await startFleetgate(where, {
      mqttUrl: mosquitto?.url,
      client,
      logLevel: s.logLevel,
      nodeArgs: s.nodeArgs,
    });
    let units: BenchProcess[] = [];
    try {
      units = await startUnits(fg.mqttUrl, prefix, s.units, s.unitsPerProcess);
      const targets = Array.from(
        { length: s.units },
        (_, i) => `/vehicles/${vehicleId(i)}/commands/unlock-central-lock`,
      );
      await untilAllAnswer(fg.url, fg.token, targets);
      // Every vehicle now has its full state: statistics as a running deployment has them.
      await analyzeDatabase(where);
    } catch (e) {
      await stopAll(units);
      await fg.proc.stop();
      throw e;
    }
    return {
      transport: 'http',
      url: fg.url,
      headers: { authorization: `Bearer ${fg.token}` },
      targets: Array.from({ length: s.units }, (_, i) => `/vehicles/${vehicleId(i)}/commands/unlock-central-lock`),
      probe: fg.proc,
      processes: [
        Object.assign(fg.proc, { name: 'fleetgate' }),
        mainThreadOf(fg.proc),
        ...brokerProcs,
        ...(databaseUrl ? [postgresServer()] : []),
        ...units,
      ],
      close: async () => {
        await stopAll(units);
        await fg.proc.stop();
        await mosquitto?.close();
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    await mosquitto?.close();
    throw e;
  }
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
  const databaseUrl = topology === 'production' ? await freshDatabase('fleetgate_bench') : undefined;
  const where = { dataDir, databaseUrl };
  const prefix = 'fg-';
  await seedFleet(where, { count: s.units, fleetId: 'bench', unitPrefix: prefix, history: 20 });
  const server = startProcess(
    'server',
    ['bench/floor-server.ts', JSON.stringify({ mode: 'pipeline', mqttUrl: mosquitto?.url, store: where })],
    { preload: [PROBE] },
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
  const result = await load.message<LoadResult>('result', (spec.durationS + spec.warmupS) * 1000 + 120_000);
  const wall = (performance.now() - t0) / 1000;
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
  const { type: _type, ...rest } = result;
  return {
    ...rest,
    ...(spec.concurrency ? { concurrency: spec.concurrency } : {}),
    cpuPercent,
    cpuMsPerRequest,
    ...(stages ? { stages } : {}),
  };
}
