/**
 * `npm run bench -- --scale [--units 15000] [--fleet 1000000] [--topology embedded|production]
 * [--skip-units] [--skip-fleet] [--log-level warn] [--fleetgate-node-args "…"]`: the scale runs of docs/performance.md.
 *
 * - Connected units: `--units` simulated units (1,000 per process) on one fleetgate; memory of
 *   fleetgate, the broker and the simulators per connected unit, CPU while idle (keepalives), and
 *   command latency at a fixed rate spread over all units.
 * - Reconnect storm (after the connected-units part, with its 15,000 units): restart the broker
 *   (production: Mosquitto; embedded: the broker is fleetgate's), then restart fleetgate; each
 *   time, how long until every vehicle is ONLINE in the database and a command to every 15th
 *   vehicle has succeeded, fleetgate's CPU per reconnecting unit, and what was lost (every unit
 *   reports its state on reconnecting: vehicles whose stored state is not newer than the restart).
 * - Fleet size: `--fleet` vehicles in the database (inserted with SQL from one template row, in
 *   batches with progress), 1,000 of them with connected units: p50/p99 of vehicle list pages
 *   (first page and pages at random cursors) and commands, against a 1,000-vehicle fleet.
 * Writes bench/results/scale.json and prints a summary.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import pg from 'pg';
import { encodePageToken } from '../src/lib/pagination.js';
import { oneOf, parseCommandLine, wholeNumber } from './lib/args.js';
import { type BenchProcess, machineLoad, postgresServer, ROOT, startProcess, threadCpuOf } from './lib/processes.js';
import {
  type BenchMosquitto,
  type FleetgateInstance,
  freshDatabase,
  MODEL,
  type StoreLocation,
  seedFleet,
  startFleetgate,
  startMosquitto,
  TOPOLOGIES,
  type Topology,
  UNIT_PASSWORD,
  vehicleId,
} from './lib/topology.js';
import { measure, type Setup } from './scenarios.js';

const argv = process.argv.slice(2);
const USAGE =
  'npm run bench -- --scale [--topology embedded|production] [--units 15000] [--storms 3] [--fleet 1000000] [--skip-units] [--skip-fleet] [--log-level warn] [--fleetgate-node-args "…"]';
const { values: args } = parseCommandLine(
  USAGE,
  {
    options: {
      scale: { type: 'boolean' },
      topology: { type: 'string' },
      units: { type: 'string' },
      storms: { type: 'string' },
      fleet: { type: 'string' },
      'skip-units': { type: 'boolean' },
      'skip-fleet': { type: 'boolean' },
      'fleetgate-node-args': { type: 'string' },
      'log-level': { type: 'string' },
    },
  },
  argv,
  ['--fleetgate-node-args'],
);
const topologies: Topology[] = args.topology
  ? [oneOf(USAGE, 'topology', args.topology, TOPOLOGIES)]
  : ['embedded', 'production'];
const UNITS = wholeNumber(USAGE, 'units', args.units, 15_000);
/**
 * Each kind of reconnect storm runs this often in a row; the run with the median CPU per unit is
 * reported, with every run's figures beside it: on a shared machine one storm's CPU varies by
 * ±30 % for the same code (bench/HISTORY.md).
 */
const STORMS = wholeNumber(USAGE, 'storms', args.storms, 3, 1);
const FLEET = wholeNumber(USAGE, 'fleet', args.fleet, 1_000_000);
// e.g. --fleetgate-node-args "--trace-gc" or "--cpu-prof --cpu-prof-dir=/tmp/prof", as in run.ts.
const NODE_ARGS = args['fleetgate-node-args']?.split(' ').filter(Boolean);
/** fleetgate's log level (with BENCH_LOG_DIR, to read what it did in a storm). */
const LOG_LEVEL = args['log-level'];
/**
 * Simulated units per process, as in the full run (RunSettings.unitsPerProcess). With 5,000 each, a
 * stall of one simulator process (a major GC of its ~95 MB heap took 36-41 ms in a traced run)
 * held up the answers of a third of the fleet at once: production p99 at 500/s was 38-85 ms over
 * five runs, against 16-29 ms in four with 1,000 each (docs/performance.md, Connected units).
 */
const PER_PROCESS = 1_000;
/** Logins in flight over all simulator processes (at most 100 per process): 300 for 15,000 units. */
const PARALLEL_LOGINS = 300;
const PREFIX = 'fg-';
const log = (s: string) => process.stderr.write(`${s}\n`);
const mb = (b: number) => Math.round(b / 2 ** 20);
const out: Record<string, unknown> = {
  schema: 'fleetgate-bench-scale/1',
  generated_at: new Date().toISOString(),
  command: `npm run bench -- ${argv.join(' ')}`,
  load_average_at_start: machineLoad().loadavg1,
};

let loginRetries = 0;

async function startUnits(mqttUrl: string, count: number): Promise<BenchProcess[]> {
  const procs: BenchProcess[] = [];
  const parallel = Math.max(1, Math.min(100, Math.round(PARALLEL_LOGINS / Math.ceil(count / PER_PROCESS))));
  for (let from = 0; from < count; from += PER_PROCESS) {
    const spec = {
      mqttUrl,
      prefix: PREFIX,
      from,
      count: Math.min(PER_PROCESS, count - from),
      password: UNIT_PASSWORD,
      model: MODEL,
      parallel,
    };
    procs.push(startProcess(`units-${procs.length + 1}`, ['bench/units.ts', JSON.stringify(spec)]));
  }
  for (const p of procs) {
    const r = await p.message<{ failed: number; failures: string[]; ms: number }>('ready', 1_800_000);
    log(
      `  ${p.name}: connected in ${(r.ms / 1000).toFixed(1)} s${r.failed ? `, ${r.failed} FAILED ${r.failures[0]}` : ''}`,
    );
  }
  return procs;
}

async function location(topology: Topology, name: string): Promise<StoreLocation> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'fleetgate-scale-'));
  return topology === 'production' ? { dataDir, databaseUrl: await freshDatabase(name) } : { dataDir };
}

/** Polls until fleetgate answers a command for every sampled vehicle (it has seen them online). */
async function untilOnline(url: string, token: string, count: number): Promise<void> {
  const sample = Array.from({ length: Math.min(count, 200) }, (_, k) => Math.floor((k * count) / Math.min(count, 200)));
  const until = Date.now() + 300_000;
  for (const i of sample) {
    for (;;) {
      const res = await fetch(`${url}/vehicles/${vehicleId(i)}/commands/request-vehicle-state`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}` },
      });
      await res.arrayBuffer();
      if (res.status === 200) break;
      if (Date.now() > until) throw new Error(`vehicle ${i} never answered: ${res.status}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Connected units

async function connectedUnits(topology: Topology) {
  log(`\n${topology}: ${UNITS} connected units`);
  const mosquitto = topology === 'production' ? await startMosquitto() : undefined;
  const where = await location(topology, 'fleetgate_scale_units');
  const client = await seedFleet(where, { count: UNITS, fleetId: 'bench', unitPrefix: PREFIX, history: 20 });
  let fg = await startFleetgate(where, { mqttUrl: mosquitto?.url, client, nodeArgs: NODE_ARGS, logLevel: LOG_LEVEL });
  const db = where.databaseUrl ? postgresServer() : undefined;
  const broker = mosquitto?.proc ?? fg.proc;
  const fgBefore = fg.proc.rssBytes();
  // What starting costs without any unit (compiling, migrations, the broker thread): a restart's
  // CPU per reconnecting unit leaves it out.
  const startupCpuSeconds = fg.proc.cpuSeconds();
  const brokerBefore = mosquitto ? mosquitto.proc.rssBytes() : 0;
  const t0 = Date.now();
  const cpu0 = fg.proc.cpuSeconds();
  let units: BenchProcess[] = [];
  try {
    loginRetries = 0;
    units = await startUnits(fg.mqttUrl, UNITS);
    const retries = loginRetries;
    const connectS = (Date.now() - t0) / 1000;
    const connectCpu = fg.proc.cpuSeconds() - cpu0;
    await untilOnline(fg.url, fg.token, UNITS);
    // Idle cost: keepalives (every unit pings every 30 s) and nothing else.
    const idle0 = { fg: fg.proc.cpuSeconds(), broker: broker.cpuSeconds() };
    await new Promise((r) => setTimeout(r, 20_000));
    const idleCpu = {
      fleetgate_percent: Math.round(((fg.proc.cpuSeconds() - idle0.fg) / 20) * 1000) / 10,
      broker_percent: mosquitto ? Math.round(((broker.cpuSeconds() - idle0.broker) / 20) * 1000) / 10 : undefined,
    };
    const setup: Setup = {
      transport: 'http',
      url: fg.url,
      headers: { authorization: `Bearer ${fg.token}` },
      targets: Array.from({ length: UNITS }, (_, i) => `/vehicles/${vehicleId(i)}/commands/unlock-central-lock`),
      processes: [
        Object.assign(fg.proc, { name: 'fleetgate' }),
        ...(mosquitto ? [mosquitto.proc] : []),
        ...(db ? [db] : []),
        ...units,
      ],
      close: async () => undefined,
    };
    const rates = [];
    for (const rate of [100, 500]) {
      const m = await measure(setup, { mode: 'rate', rate, durationS: 10, warmupS: 2 });
      log(
        `  ${rate}/s over ${UNITS} units: p50 ${m.latencyMs.p50} p99 ${m.latencyMs.p99} max ${m.latencyMs.max} ms, errors ${m.errors}`,
      );
      rates.push(m);
    }
    const fgAfter = fg.proc.rssBytes();
    const brokerAfter = mosquitto ? mosquitto.proc.rssBytes() : 0;
    const unitsRss = units.reduce((s, u) => s + u.rssBytes(), 0);
    const r = {
      units: UNITS,
      connect_seconds: Math.round(connectS),
      first_logins_timed_out: retries,
      fleetgate_cpu_seconds_for_logins: Math.round(connectCpu * 10) / 10,
      fleetgate_rss_mb: { before_units: mb(fgBefore), with_units: mb(fgAfter) },
      fleetgate_kb_per_unit: Math.round(((fgAfter - fgBefore) / 1024 / UNITS) * 10) / 10,
      broker: mosquitto ? 'mosquitto' : 'embedded (in fleetgate)',
      broker_rss_mb: mosquitto ? { before_units: mb(brokerBefore), with_units: mb(brokerAfter) } : undefined,
      broker_kb_per_unit: mosquitto ? Math.round(((brokerAfter - brokerBefore) / 1024 / UNITS) * 10) / 10 : undefined,
      simulator_kb_per_unit: Math.round(unitsRss / 1024 / UNITS),
      idle_cpu: idleCpu,
      commands: rates,
    };
    log(
      `  fleetgate ${r.fleetgate_kb_per_unit} KB/unit${mosquitto ? `, mosquitto ${r.broker_kb_per_unit} KB/unit` : ''}, idle CPU ${JSON.stringify(idleCpu)}`,
    );
    const storms: Record<string, unknown> = {};
    if (mosquitto) {
      storms.broker_restart = await repeatedStorm('broker restart', () =>
        reconnectStorm('broker restart', where, fg, units, async () => void (await mosquitto.restart()), mosquitto, 0),
      );
    }
    storms.fleetgate_restart = await repeatedStorm('fleetgate restart', () =>
      reconnectStorm(
        'fleetgate restart',
        where,
        fg,
        units,
        async () => {
          // Its CPU up to the stop: a process that is gone has none to read.
          const oldCpuSeconds = fg.proc.cpuSeconds();
          const stopping = Date.now();
          await fg.proc.stop();
          log(`    the old fleetgate stopped in ${((Date.now() - stopping) / 1000).toFixed(1)} s`);
          // The embedded broker listens where the units reconnect to: the same port again.
          const port = new URL(fg.mqttUrl).port;
          fg = await startFleetgate(where, {
            mqttUrl: mosquitto?.url,
            client,
            nodeArgs: NODE_ARGS,
            logLevel: LOG_LEVEL,
            extra: mosquitto ? {} : { 'mqtt-port': port },
            readyTimeoutMs: 300_000,
          });
          return { fg, oldCpuSeconds };
        },
        mosquitto,
        startupCpuSeconds,
      ),
    );
    return { ...r, reconnect_storm: storms };
  } finally {
    await Promise.all(units.map((u) => u.stop()));
    await fg.proc.stop();
    await mosquitto?.close();
    rmSync(where.dataDir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Reconnect storm

/** Rows of one query on fleetgate's database (SQLite: a read-only connection beside fleetgate's). */
async function queryRows(
  where: StoreLocation,
  sqlite: string,
  postgres: string,
  params: unknown[],
): Promise<Record<string, unknown>[]> {
  if (where.databaseUrl) {
    const c = new pg.Client({ connectionString: where.databaseUrl });
    await c.connect();
    try {
      return (await c.query(postgres, params)).rows;
    } finally {
      await c.end();
    }
  }
  const db = new Database(path.join(where.dataDir, 'fleetgate.db'), { readonly: true, fileMustExist: true });
  try {
    return db.prepare(sqlite).all(...params) as Record<string, unknown>[];
  } finally {
    db.close();
  }
}

/** One number from the database: the first column of the first row. */
async function scalar(where: StoreLocation, sqlite: string, postgres: string, params: unknown[]): Promise<number> {
  const [row] = await queryRows(where, sqlite, postgres, params);
  return Number(Object.values(row ?? {})[0] ?? 0);
}

/** Telematics unit ids of vehicles that are not ONLINE in the database (at most `limit`). */
async function notOnlineUnits(where: StoreLocation, limit: number): Promise<string[]> {
  const sql = "SELECT telematics_unit_id FROM vehicles WHERE life_status <> 'ONLINE' ORDER BY telematics_unit_id LIMIT";
  const rows = await queryRows(where, `${sql} ?`, `${sql} $1`, [limit]);
  return rows.map((r) => String(r.telematics_unit_id));
}

/** The retained status each unit's topic holds on the broker ('none' when it holds none). */
async function retainedStatuses(brokerUrl: string, unitIds: string[]): Promise<Record<string, number>> {
  const client = await mqtt.connectAsync(brokerUrl, { clientId: `bench-diag-${process.pid}`, clean: true });
  const seen = new Map<string, string>();
  client.on('message', (topic, payload) => {
    const id = topic.split('/')[3]!;
    seen.set(id, payload.length === 0 ? 'empty' : (JSON.parse(payload.toString()) as { status: string }).status);
  });
  try {
    // The broker sends a topic's retained message before it acknowledges the subscription.
    for (const id of unitIds) await client.subscribeAsync(`fleetgate/v1/units/${id}/status`, { qos: 0 });
  } finally {
    await client.endAsync();
  }
  const counts: Record<string, number> = {};
  for (const id of unitIds) counts[seen.get(id) ?? 'none'] = (counts[seen.get(id) ?? 'none'] ?? 0) + 1;
  return counts;
}

/**
 * Why vehicles are still not ONLINE: how many of their units are connected (per the simulators)
 * and what retained status the broker holds for them (production only: the bench's Mosquitto
 * takes anonymous clients, the embedded broker does not).
 */
async function diagnoseNotOnline(
  where: StoreLocation,
  units: BenchProcess[],
  brokerUrl: string | undefined,
  fleetgate: BenchProcess,
): Promise<string> {
  const ids = await notOnlineUnits(where, 2_000);
  const stats = await unitStats(units);
  const down = new Set(stats.notConnected);
  const connected = ids.filter((id) => !down.has(id)).length;
  const retained = brokerUrl ? JSON.stringify(await retainedStatuses(brokerUrl, ids)) : 'not read';
  return `${ids.length} not ONLINE (first 2,000): units connected ${connected} (simulators: ${stats.connected} connected, first not connected ${stats.notConnected.slice(0, 5).join(', ') || 'none'}); their retained status ${retained}; fleetgate's last log records ${logTally(fleetgate.output())}`;
}

/** How often each message appears among the pino log records in a process's output. */
function logTally(output: string): string {
  const counts: Record<string, number> = {};
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const r = JSON.parse(line) as { msg?: string; err?: { message?: string } };
      const key = `${r.msg ?? '?'}${r.err?.message ? `: ${r.err.message.slice(0, 80)}` : ''}`;
      counts[key] = (counts[key] ?? 0) + 1;
    } catch {
      // a line cut short by the output's size limit
    }
  }
  return JSON.stringify(counts);
}

async function unitStats(units: BenchProcess[]) {
  const all = await Promise.all(
    units.map((u) => {
      const m = u.message<{ connects: number; reports: number; connected: number; notConnected: string[] }>(
        'stats',
        30_000,
      );
      u.send({ type: 'stats' });
      return m;
    }),
  );
  return all.reduce((a, b) => ({
    connects: a.connects + b.connects,
    reports: a.reports + b.reports,
    connected: a.connected + b.connected,
    notConnected: [...a.notConnected, ...b.notConnected],
  }));
}

/**
 * Restarts the broker or fleetgate (`restart`, which may return a new fleetgate) with every unit
 * connected, and measures the way back: until every vehicle is ONLINE in the database, and until a
 * command to every 15th vehicle succeeded (each retried until it does), all from the moment the
 * restart began; fleetgate's CPU meanwhile per unit; and what was lost.
 */
async function reconnectStorm(
  what: string,
  where: StoreLocation,
  before: FleetgateInstance,
  units: BenchProcess[],
  restart: () => Promise<{ fg: FleetgateInstance; oldCpuSeconds: number } | undefined>,
  mosquitto: BenchMosquitto | undefined,
  /** A restarted fleetgate's own start-up CPU, left out of its CPU per unit. */
  startupCpuSeconds: number,
) {
  log(`  reconnect storm: ${what}`);
  const stats0 = await unitStats(units);
  const t0 = Date.now();
  const cpuBefore = before.proc.cpuSeconds();
  const threads0 = threadCpuOf(before.proc.child.pid);
  // This storm's log records only: the same fleetgate may have lived through earlier storms.
  const logMark = before.proc.outputLength();
  const restarted = await restart();
  const fg = restarted?.fg ?? before;
  // A restarted fleetgate's CPU counts from its start; the old one's until it stopped.
  const cpuOld = restarted ? restarted.oldCpuSeconds - cpuBefore : 0;
  const cpu0 = restarted ? 0 : cpuBefore;
  const brokerCpu0 = mosquitto?.proc.cpuSeconds() ?? 0;
  const restartedS = (Date.now() - t0) / 1000;
  const until = t0 + 300_000;
  // ONLINE in the database (what GET /vehicles shows).
  const online = (async () => {
    for (;;) {
      const n = await scalar(
        where,
        "SELECT count(*) FROM vehicles WHERE life_status = 'ONLINE'",
        "SELECT count(*) FROM vehicles WHERE life_status = 'ONLINE'",
        [],
      );
      if (n >= UNITS) return (Date.now() - t0) / 1000;
      if (Date.now() > until) {
        const why = await diagnoseNotOnline(where, units, mosquitto?.url, fg.proc).catch((e: unknown) => String(e));
        throw new Error(`${n} of ${UNITS} vehicles ONLINE after 300 s; ${why}`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  })();
  // Commands: every 15th vehicle, 32 at a time, each retried every second until it succeeds (at
  // every 200 ms the refused commands' records and answers showed high in fleetgate's profile of
  // a long storm, and they are not the cost of logging in).
  const sample = Array.from({ length: Math.ceil(UNITS / 15) }, (_, k) => k * 15);
  let refused = 0;
  let next = 0;
  const commands = (async () => {
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < sample.length) {
          const i = sample[next++]!;
          for (;;) {
            const res = await fetch(`${fg.url}/vehicles/${vehicleId(i)}/commands/unlock-central-lock`, {
              method: 'POST',
              headers: { authorization: `Bearer ${fg.token}` },
            }).catch(() => undefined);
            await res?.arrayBuffer();
            if (res?.status === 200) break;
            refused++;
            if (Date.now() > until) throw new Error(`vehicle ${i} never answered: ${res?.status}`);
            await new Promise((r) => setTimeout(r, 1_000));
          }
        }
      }),
    );
    return (Date.now() - t0) / 1000;
  })();
  const [onlineS, commandsS] = await Promise.all([online, commands]);
  const backS = Math.max(onlineS, commandsS);
  const fgCpu = fg.proc.cpuSeconds() - cpu0 + cpuOld - (restarted ? startupCpuSeconds : 0);
  // Where it went, by thread (a restarted process's start-up left in): the main thread, the
  // busiest other one (embedded: the broker's worker), and the rest (V8's and libuv's helpers).
  const pid = fg.proc.child.pid;
  const deltas = [...threadCpuOf(pid)].map(
    ([tid, s]) => [tid, s - (restarted ? 0 : (threads0.get(tid) ?? 0))] as const,
  );
  const others = deltas.filter(([tid]) => tid !== pid).sort((x, y) => y[1] - x[1]);
  const tenths = (x: number) => Math.round(x * 10) / 10;
  const byThread = {
    main: tenths(deltas.find(([tid]) => tid === pid)?.[1] ?? 0),
    busiest_other: tenths(others[0]?.[1] ?? 0),
    rest: tenths(others.slice(1).reduce((sum, [, x]) => sum + x, 0)),
    // Each other thread in the order they started (tid − pid), with its seconds.
    others_in_start_order: others
      .filter(([, x]) => x >= 0.05)
      .sort(([a], [b]) => a - b)
      .map(([tid, x]) => `${tid - (pid ?? 0)}:${tenths(x)}`)
      .join(' '),
  };
  const brokerCpu = mosquitto ? mosquitto.proc.cpuSeconds() - brokerCpu0 : undefined;
  // Let the last reports land, then count what the units sent and what was stored.
  await new Promise((r) => setTimeout(r, 2_000));
  const stats1 = await unitStats(units);
  const reconnects = stats1.connects - stats0.connects;
  const reportsSent = stats1.reports - stats0.reports;
  const since = new Date(t0);
  const countFresh = () =>
    scalar(
      where,
      "SELECT count(DISTINCT vehicle_id) FROM vehicle_state WHERE property = 'mileage_in_kilometers' AND ts >= ?",
      "SELECT count(DISTINCT vehicle_id) FROM vehicle_state WHERE property = 'mileage_in_kilometers' AND ts >= $1",
      [where.databaseUrl ? since.toISOString() : since.getTime()],
    );
  // Reports still on their way (queued, or waiting to be written again) are not lost: count until
  // every reconnected unit's report is stored, or the count stood still for 10 s (at most 120 s).
  let fresh = await countFresh();
  for (let still = 0, waited = 0; fresh < Math.min(reconnects, UNITS) && still < 10 && waited < 120; waited++) {
    await new Promise((r) => setTimeout(r, 1_000));
    const n = await countFresh();
    still = n === fresh ? still + 1 : 0;
    fresh = n;
  }
  const r = {
    what,
    fleetgate_restart_seconds: restarted ? Math.round(restartedS * 10) / 10 : undefined,
    all_online_seconds: Math.round(onlineS * 10) / 10,
    commands_back_seconds: Math.round(commandsS * 10) / 10,
    back_seconds: Math.round(backS * 10) / 10,
    units_reconnected: reconnects,
    units_connected_after: stats1.connected,
    fleetgate_cpu_seconds: Math.round(fgCpu * 10) / 10,
    fleetgate_cpu_seconds_by_thread: byThread,
    fleetgate_startup_cpu_seconds_left_out: restarted ? Math.round(startupCpuSeconds * 10) / 10 : undefined,
    fleetgate_cpu_ms_per_unit: Math.round((fgCpu * 1000 * 100) / UNITS) / 100,
    broker_cpu_seconds: brokerCpu === undefined ? undefined : Math.round(brokerCpu * 10) / 10,
    sample_commands: sample.length,
    commands_refused_before_back: refused,
    reports_sent: reportsSent,
    vehicles_with_a_report_stored: fresh,
    // Every unit that reconnected reports its state: a vehicle without it stored lost that report.
    reports_lost: reconnects > 0 ? Math.max(0, Math.min(reconnects, UNITS) - fresh) : 0,
    // What fleetgate logged at warn and above during this storm (of the last 50–100 KB of its output).
    fleetgate_log: logTally(restarted ? fg.proc.output() : fg.proc.outputSince(logMark)),
  };
  log(
    `    back after ${r.back_seconds} s (all ONLINE ${r.all_online_seconds} s, commands ${r.commands_back_seconds} s${restarted ? `, fleetgate ready after ${r.fleetgate_restart_seconds} s` : ''}); ${reconnects} reconnects; fleetgate ${r.fleetgate_cpu_seconds} s CPU = ${r.fleetgate_cpu_ms_per_unit} ms/unit (by thread${restarted ? ', start-up included' : ''}: ${JSON.stringify(r.fleetgate_cpu_seconds_by_thread)})${brokerCpu === undefined ? '' : `, mosquitto ${r.broker_cpu_seconds} s`}; reports sent ${reportsSent}, vehicles with a fresh state ${fresh}, lost ${r.reports_lost}; ${refused} commands refused before back; fleetgate logged ${r.fleetgate_log}`,
  );
  return r;
}

// ---------------------------------------------------------------------------------------------
// Fleet size

/** Copies vehicle 0 (seeded through the store) into vehicles seeded…count-1 with SQL, in batches. */
async function growFleet(where: StoreLocation, seeded: number, count: number): Promise<void> {
  const batch = 100_000;
  const started = Date.now();
  if (where.databaseUrl) {
    const c = new pg.Client({ connectionString: where.databaseUrl });
    await c.connect();
    const cols = (
      await c.query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'vehicles' ORDER BY ordinal_position",
      )
    ).rows.map((r) => String(r.column_name));
    const select = cols.map((col) =>
      col === 'vehicle_id' ? "'B' || lpad(i::text, 11, '0')" : col === 'telematics_unit_id' ? `'${PREFIX}' || i` : col,
    );
    for (let from = seeded; from < count; from += batch) {
      const to = Math.min(count - 1, from + batch - 1);
      await c.query(
        `INSERT INTO vehicles (${cols.join(', ')}) SELECT ${select.join(', ')} FROM vehicles, generate_series(${from}, ${to}) AS i WHERE vehicle_id = '${vehicleId(0)}'`,
      );
      log(`  ${to + 1} vehicles (${((Date.now() - started) / 1000).toFixed(0)} s)`);
    }
    await c.query('ANALYZE vehicles');
    await c.end();
    return;
  }
  const db = new Database(path.join(where.dataDir, 'fleetgate.db'));
  db.pragma('journal_mode = WAL');
  const cols = (db.prepare("SELECT name FROM pragma_table_info('vehicles')").all() as Array<{ name: string }>).map(
    (r) => r.name,
  );
  const select = cols.map((col) =>
    col === 'vehicle_id' ? "'B' || printf('%011d', i)" : col === 'telematics_unit_id' ? `'${PREFIX}' || i` : col,
  );
  for (let from = seeded; from < count; from += batch) {
    const to = Math.min(count - 1, from + batch - 1);
    db.exec(
      `WITH RECURSIVE s(i) AS (SELECT ${from} UNION ALL SELECT i + 1 FROM s WHERE i < ${to})
       INSERT INTO vehicles (${cols.join(', ')}) SELECT ${select.join(', ')} FROM vehicles, s WHERE vehicle_id = '${vehicleId(0)}'`,
    );
    log(`  ${to + 1} vehicles (${((Date.now() - started) / 1000).toFixed(0)} s)`);
  }
  db.exec('ANALYZE');
  db.close();
}

async function listPages(url: string, token: string, fleet: number, concurrency: number) {
  const samples: number[] = [];
  const requests = 1_000;
  let errors = 0;
  let next = 0;
  const worker = async () => {
    while (next < requests) {
      const k = next++;
      // Half first pages, half pages after a random vehicle (keyset cursor).
      const cursor =
        k % 2 === 0 ? '' : `&page_token=${encodePageToken('v', vehicleId(Math.floor(Math.random() * fleet)))}`;
      const t0 = performance.now();
      const res = await fetch(`${url}/vehicles?limit=50${cursor}`, { headers: { authorization: `Bearer ${token}` } });
      await res.arrayBuffer();
      samples.push(performance.now() - t0);
      if (res.status !== 200) errors++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  samples.sort((a, b) => a - b);
  const at = (q: number) => Math.round(samples[Math.ceil(q * samples.length) - 1]! * 100) / 100;
  return { requests, errors, concurrency, limit: 50, p50: at(0.5), p99: at(0.99), max: at(1) };
}

async function fleetSize(topology: Topology, fleet: number) {
  log(`\n${topology}: ${fleet} vehicles in the database`);
  const mosquitto = topology === 'production' ? await startMosquitto() : undefined;
  const where = await location(topology, 'fleetgate_scale_fleet');
  const client = await seedFleet(where, {
    count: Math.min(fleet, 1_000),
    fleetId: 'bench',
    unitPrefix: PREFIX,
    history: 20,
  });
  if (fleet > 1_000) await growFleet(where, 1_000, fleet);
  const fg = await startFleetgate(where, { mqttUrl: mosquitto?.url, client, nodeArgs: NODE_ARGS, logLevel: LOG_LEVEL });
  let units: BenchProcess[] = [];
  try {
    units = await startUnits(fg.mqttUrl, 1_000);
    await untilOnline(fg.url, fg.token, 1_000);
    const pages = await listPages(fg.url, fg.token, fleet, 1);
    const pages4 = await listPages(fg.url, fg.token, fleet, 4);
    for (const p of [pages, pages4]) {
      log(
        `  list page (limit 50, ${p.concurrency} at a time): p50 ${p.p50} p99 ${p.p99} max ${p.max} ms, errors ${p.errors}`,
      );
    }
    const setup: Setup = {
      transport: 'http',
      url: fg.url,
      headers: { authorization: `Bearer ${fg.token}` },
      targets: Array.from({ length: 1_000 }, (_, i) => `/vehicles/${vehicleId(i)}/commands/unlock-central-lock`),
      processes: [
        Object.assign(fg.proc, { name: 'fleetgate' }),
        ...(mosquitto ? [mosquitto.proc] : []),
        ...(where.databaseUrl ? [postgresServer()] : []),
        ...units,
      ],
      close: async () => undefined,
    };
    const max = await measure(setup, { mode: 'max', concurrency: 32, durationS: 8, warmupS: 2 });
    const rate = await measure(setup, { mode: 'rate', rate: 300, durationS: 8, warmupS: 2 });
    log(
      `  commands: max ${max.rps}/s (${max.errors} errors); at 300/s p50 ${rate.latencyMs.p50} p99 ${rate.latencyMs.p99} ms`,
    );
    return {
      vehicles: fleet,
      list_page: pages,
      list_page_4_concurrent: pages4,
      commands_max: max,
      commands_at_300: rate,
    };
  } finally {
    await Promise.all(units.map((u) => u.stop()));
    await fg.proc.stop();
    await mosquitto?.close();
    rmSync(where.dataDir, { recursive: true, force: true });
  }
}

// Results merge into bench/results/scale.json per topology and part, so parts can run apart.
const file = path.join(ROOT, 'bench/results/scale.json');
const previous = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>) : {};
async function attempt(name: string, fn: () => Promise<unknown>) {
  try {
    return await fn();
  } catch (e) {
    log(`  ${name} FAILED: ${String(e).slice(0, 2000)}`);
    return { error: String(e).slice(0, 2000) };
  }
}
type StormRun = Awaited<ReturnType<typeof reconnectStorm>>;
type StormFigures = Pick<StormRun, 'fleetgate_cpu_ms_per_unit' | 'back_seconds' | 'reports_lost'>;

/**
 * Runs a storm STORMS times; the run with the median CPU per unit, with every run's CPU per unit,
 * time until back and losses beside it (`runs`). A failed run is reported as such and ends the row.
 */
async function repeatedStorm(what: string, storm: () => Promise<StormRun>) {
  const runs: StormRun[] = [];
  for (let i = 1; i <= STORMS; i++) {
    const run = await attempt(`reconnect storm (${what}, ${i} of ${STORMS})`, storm);
    if ('error' in (run as object)) return runs.length === 0 ? run : { ...medianRun(runs), failed_run: run };
    runs.push(run as StormRun);
  }
  return medianRun(runs);
}

function medianRun(runs: StormRun[]) {
  const byCpu = [...runs].sort((a, b) => a.fleetgate_cpu_ms_per_unit - b.fleetgate_cpu_ms_per_unit);
  return {
    // The upper middle one for an even count: the report does not round in fleetgate's favour.
    ...byCpu[Math.floor(byCpu.length / 2)]!,
    runs: runs.map(
      (r): StormFigures => ({
        fleetgate_cpu_ms_per_unit: r.fleetgate_cpu_ms_per_unit,
        back_seconds: r.back_seconds,
        reports_lost: r.reports_lost,
      }),
    ),
  };
}

/** The storms of this run, one row per topology and kind: the median run, every run in brackets. */
function printStormTable(): void {
  // With --skip-units no storm ran: scale.json's older ones are not this run's.
  if (args['skip-units']) return;
  const rows: string[][] = [];
  for (const topology of topologies) {
    const storms = (
      (out[topology] as Record<string, unknown> | undefined)?.connected_units as
        | { reconnect_storm?: Record<string, (StormRun & { runs?: StormFigures[] }) | { error: string }> }
        | undefined
    )?.reconnect_storm;
    for (const [kind, storm] of Object.entries(storms ?? {})) {
      if ('error' in storm) {
        rows.push([topology, kind.replace('_', ' '), 'FAILED', '', '']);
        continue;
      }
      const failed = 'failed_run' in storm ? ` + 1 FAILED` : '';
      const all: StormFigures[] = storm.runs ?? [storm];
      const list = (f: (x: StormFigures) => number) => all.map(f).join(', ');
      rows.push([
        topology,
        kind.replace('_', ' '),
        `${storm.back_seconds} (${list((x) => x.back_seconds)})`,
        `${storm.fleetgate_cpu_ms_per_unit} (${list((x) => x.fleetgate_cpu_ms_per_unit)})`,
        `${storm.reports_lost} (${list((x) => x.reports_lost)})${failed}`,
      ]);
    }
  }
  if (rows.length === 0) return;
  const head = ['topology', 'storm', 'back after s', 'fleetgate CPU ms/unit', 'reports lost'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  log('');
  log(`RECONNECT STORMS — ${UNITS} units; the run with the median CPU per unit, every run in brackets`);
  log(line(head));
  for (const r of rows) log(line(r));
  log('targets: every unit back within 60 s, fleetgate CPU ≤ 1 ms per reconnecting unit, nothing lost');
}

for (const topology of topologies) {
  const r: Record<string, unknown> = { ...((previous[topology] as Record<string, unknown> | undefined) ?? {}) };
  if (!args['skip-units']) r.connected_units = await attempt('connected units', () => connectedUnits(topology));
  if (!args['skip-fleet']) {
    r.fleet_small = await attempt('fleet 1,000', () => fleetSize(topology, 1_000));
    r.fleet_large = await attempt(`fleet ${FLEET}`, () => fleetSize(topology, FLEET));
  }
  out[topology] = r;
}
printStormTable();
out.load_average_at_end = machineLoad().loadavg1;
mkdirSync(path.join(ROOT, 'bench/results'), { recursive: true });
writeFileSync(file, `${JSON.stringify({ ...previous, ...out }, null, 2)}\n`);
log('wrote bench/results/scale.json');
