/**
 * State-report ingestion, part of `npm run bench` (docs/performance.md, "Ingestion"): for one
 * topology, three receivers of the same reports from the same units (bench/reporters.ts, 1,000
 * per process, as the scale runs spread them):
 * - floor E: one subscriber that only counts (bench/ingest-floor.ts);
 * - floor F: floor E plus the store write a report needs (mergeState on the real store);
 * - fleetgate: its real path (the units log in with their passwords, the broker's ACL, the
 *   adapter, the state catalogue, the merge and, with events, the event), counted by the probe
 *   (bench/lib/probe.ts) as VehicleService.onStateReport resolves.
 * Per receiver: a ladder of open-loop steps of rising rate; a step passes when every report sent
 * was stored within the grace after it (none lost) and the units kept to the schedule; the
 * maximum is the highest passing rate. Then a step at 50 % of it gives the report→stored latency
 * and the CPU per report. For fleetgate, the command p99 at 100 commands/s, alone and with that
 * 50 % ingestion running.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  type BenchProcess,
  cpuPressureMicros,
  machineBusySeconds,
  mainThreadOf,
  type ProbeReport,
  postgresServer,
  probeOff,
  probeOn,
  SERVER_NODE_ARGS,
  startProcess,
} from './lib/processes.js';
import {
  analyzeDatabase,
  freshDatabase,
  seedFleet,
  startFleetgate,
  startMosquitto,
  type Topology,
  UNIT_PASSWORD,
  vehicleId,
} from './lib/topology.js';
import { type Measured, measure, type Setup, untilAllAnswer } from './scenarios.js';

export const INGEST_SCENARIOS = ['floorE', 'floorF', 'fleetgate'] as const;
export type IngestScenario = (typeof INGEST_SCENARIOS)[number];
export const INGEST_LABELS: Record<IngestScenario, string> = {
  floorE: 'E broker → counter',
  floorF: 'F E + store write',
  fleetgate: 'fleetgate ingestion',
};

export interface IngestPlan {
  units: number;
  unitsPerProcess: number;
  /** Seconds per ladder step, and the grace after it within which every report must be stored. */
  stepS: number;
  graceS: number;
  startRate: number;
  factor: number;
  maxSteps: number;
  /** One more step between the best passing rate and the first failing one. */
  refine: boolean;
  /** Command runs at 100/s (fleetgate). */
  commandS: number;
  warmupS: number;
  logLevel: string;
  /** Node.js options for fleetgate's process (`--fleetgate-node-args`). */
  nodeArgs?: string[];
  /** `--ingest-rate R`: no ladder; latency, CPU and the commands at R reports/s (to compare builds). */
  fixedRate?: number;
}

export interface IngestStep {
  offered: number;
  sent: number;
  due: number;
  stored: number;
  lost: number;
  ok: boolean;
  latencyMs: { p50: number; p99: number; max: number };
  /** CPU per stored report, per process, in ms (`machine`: all of the machine's busy CPU). */
  cpuMsPerReport: Record<string, number>;
  /** fleetgate: the probe's stages (the store's calls per report, PostgreSQL round trips). */
  stages?: ProbeReport['stages'];
}

export interface IngestResult {
  scenario: IngestScenario;
  label: string;
  topology: Topology;
  units: number;
  ladder: IngestStep[];
  /** The highest passing rate (reports/s), 0 when none passed; undefined with --ingest-rate (no ladder ran). */
  max: number | undefined;
  atHalf?: IngestStep;
  /** fleetgate: commands at 100/s without ingestion and with ingestion at 50 % of its maximum. */
  commands?: {
    alone: Measured;
    underIngestion: Measured;
    p99Ratio: number;
    /** Share of the time some thread waited for a core (/proc/pressure/cpu), per run. */
    cpuPressurePercent: { alone: number | undefined; underIngestion: number | undefined };
  };
}

interface Receiver {
  on(): Promise<void>;
  off(): Promise<{
    stored: number;
    latency_ms: { p50: number; p99: number; max: number };
    stages?: ProbeReport['stages'];
  }>;
}

interface IngestSetup {
  reporters: BenchProcess[];
  receiver: Receiver;
  processes: Array<Pick<BenchProcess, 'name' | 'cpuSeconds' | 'rssBytes'>>;
  commandSetup?: Setup;
  close(): Promise<void>;
}

const PREFIX = 'in-';

async function startReporters(mqttUrl: string, plan: IngestPlan): Promise<BenchProcess[]> {
  const procs: BenchProcess[] = [];
  for (let from = 0; from < plan.units; from += plan.unitsPerProcess) {
    const spec = {
      mqttUrl,
      prefix: PREFIX,
      from,
      count: Math.min(plan.unitsPerProcess, plan.units - from),
      password: UNIT_PASSWORD,
    };
    procs.push(startProcess(`reporters-${procs.length + 1}`, ['bench/reporters.ts', JSON.stringify(spec)]));
  }
  try {
    await Promise.all(procs.map((p) => p.message('ready', 300_000)));
  } catch (e) {
    await Promise.all(procs.map((p) => p.stop()));
    throw e;
  }
  return procs;
}

async function setUpIngest(scenario: IngestScenario, topology: Topology, plan: IngestPlan): Promise<IngestSetup> {
  const mosquitto = topology === 'production' ? await startMosquitto() : undefined;
  const brokerProcs = mosquitto ? [Object.assign(mosquitto.proc, { name: 'mosquitto' })] : [];
  const dataDir = mkdtempSync(path.join(tmpdir(), 'fleetgate-bench-ingest-'));
  const cleanUp: Array<() => Promise<void>> = [
    async () => rmSync(dataDir, { recursive: true, force: true }),
    async () => mosquitto?.close(),
  ];
  const close = async () => {
    for (const f of cleanUp.splice(0).reverse()) await f().catch(() => undefined);
  };
  try {
    const needsStore = scenario !== 'floorE';
    const databaseUrl =
      needsStore && topology === 'production' ? await freshDatabase('fleetgate_bench_ingest') : undefined;
    const where = { dataDir, databaseUrl };
    const client = needsStore
      ? await seedFleet(where, { count: plan.units, fleetId: 'bench', unitPrefix: PREFIX, history: 20 })
      : undefined;
    const db = databaseUrl ? [postgresServer()] : [];

    if (scenario !== 'fleetgate') {
      const spec = { mode: scenario === 'floorE' ? 'count' : 'store', mqttUrl: mosquitto?.url, prefix: PREFIX };
      const receiver = startProcess(
        'receiver',
        ['bench/ingest-floor.ts', JSON.stringify(needsStore ? { ...spec, store: where } : spec)],
        { nodeArgs: SERVER_NODE_ARGS },
      );
      cleanUp.push(() => receiver.stop());
      const ready = await receiver.message<{ mqttUrl: string }>('ready');
      const reporters = await startReporters(ready.mqttUrl, plan);
      cleanUp.push(() => Promise.all(reporters.map((r) => r.stop())).then(() => undefined));
      const stats = async () => {
        const m = receiver.message<{ stored: number; latency_ms: { p50: number; p99: number; max: number } }>(
          'stats',
          30_000,
        );
        receiver.send({ type: 'stats' });
        return m;
      };
      return {
        reporters,
        receiver: { on: async () => void (await stats()), off: stats },
        processes: [receiver, mainThreadOf(receiver), ...brokerProcs, ...db, ...reporters],
        close,
      };
    }

    const fg = await startFleetgate(where, {
      mqttUrl: mosquitto?.url,
      client: client!,
      logLevel: plan.logLevel,
      nodeArgs: plan.nodeArgs,
    });
    cleanUp.push(() => fg.proc.stop());
    const reporters = await startReporters(fg.mqttUrl, plan);
    cleanUp.push(() => Promise.all(reporters.map((r) => r.stop())).then(() => undefined));
    const targets = Array.from(
      { length: plan.units },
      (_, i) => `/vehicles/${vehicleId(i)}/commands/unlock-central-lock`,
    );
    await untilAllAnswer(fg.url, fg.token, targets);
    await analyzeDatabase(where);
    const processes = [Object.assign(fg.proc, { name: 'fleetgate' }), mainThreadOf(fg.proc), ...brokerProcs, ...db];
    return {
      reporters,
      receiver: {
        on: () => probeOn(fg.proc),
        off: async () => {
          const r = await probeOff(fg.proc);
          return { ...r.ingest, stages: r.stages };
        },
      },
      processes: [...processes, ...reporters],
      commandSetup: {
        transport: 'http',
        probe: fg.proc,
        url: fg.url,
        headers: { authorization: `Bearer ${fg.token}` },
        targets,
        processes: [...processes, ...reporters],
        close: async () => undefined,
      },
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

/** Tells every reporter process to publish its share of `rate` for `seconds`; resolves when done. */
async function report(setup: IngestSetup, rate: number, seconds: number): Promise<{ sent: number; due: number }> {
  const per = rate / setup.reporters.length;
  const done = setup.reporters.map((r) =>
    r.message<{ sent: number; due: number }>('reported', seconds * 1000 + 60_000),
  );
  for (const r of setup.reporters) r.send({ type: 'report', rate: per, seconds });
  const all = await Promise.all(done);
  return { sent: all.reduce((s, r) => s + r.sent, 0), due: all.reduce((s, r) => s + r.due, 0) };
}

async function step(setup: IngestSetup, rate: number, plan: IngestPlan): Promise<IngestStep> {
  await setup.receiver.on();
  const before = setup.processes.map((p) => p.cpuSeconds());
  const machineBefore = machineBusySeconds();
  const { sent, due } = await report(setup, rate, plan.stepS);
  await new Promise((r) => setTimeout(r, plan.graceS * 1000));
  const got = await setup.receiver.off();
  const cpuMsPerReport: Record<string, number> = {};
  const per = (seconds: number) => Math.round(((seconds * 1000) / Math.max(1, got.stored)) * 1000) / 1000;
  setup.processes.forEach((p, i) => {
    const name = p.name.startsWith('reporters-') ? 'reporters' : p.name;
    cpuMsPerReport[name] = (cpuMsPerReport[name] ?? 0) + per(p.cpuSeconds() - before[i]!);
  });
  for (const k of Object.keys(cpuMsPerReport)) cpuMsPerReport[k] = Math.round(cpuMsPerReport[k]! * 1000) / 1000;
  cpuMsPerReport.machine = per(machineBusySeconds() - machineBefore);
  const lost = Math.max(0, sent - got.stored);
  return {
    offered: rate,
    sent,
    due,
    stored: got.stored,
    lost,
    // None lost, no queue (every report stored within the grace: a backlog that grows through
    // the step is not sustained even if it drains after), and the units kept to the schedule.
    ok: lost === 0 && got.latency_ms.p99 <= plan.graceS * 1000 && sent >= due * 0.97,
    latencyMs: got.latency_ms,
    cpuMsPerReport,
    ...(got.stages ? { stages: got.stages } : {}),
  };
}

/**
 * A failed step leaves a backlog: wait until 2 s pass with nothing stored (≤ 60 s). Half a second
 * was not enough: on PostgreSQL one statement of a backlog took longer than that, the next step
 * began with the backlog still queued and stored more reports than it sent (19:27 UTC: 9,832 of
 * 8,440 at 50 %).
 */
async function drain(setup: IngestSetup): Promise<void> {
  const until = Date.now() + 60_000;
  while (Date.now() < until) {
    await setup.receiver.on();
    await new Promise((r) => setTimeout(r, 2_000));
    if ((await setup.receiver.off()).stored === 0) return;
  }
}

/** Starts a measure of CPU pressure; the function returned gives its share of the time since, in %. */
function cpuPressureShare(): () => number | undefined {
  const t0 = performance.now();
  const p0 = cpuPressureMicros();
  return () => {
    const p1 = cpuPressureMicros();
    if (p0 === undefined || p1 === undefined) return undefined;
    return Math.round(((p1 - p0) / 1000 / (performance.now() - t0)) * 1000) / 10;
  };
}

/** The probe's stages of a command (bench/lib/probe.ts) printed for the commands under ingestion. */
const COMMAND_STAGES = [
  'event loop delay',
  'http',
  'store.startCommand',
  'store.completeCommand',
  'store.commit',
  'store.statement',
  'adapter',
  'broker',
];

const fmtStep = (s: IngestStep) =>
  `${s.offered}/s: sent ${s.sent}/${s.due}, stored ${s.stored}, lost ${s.lost}, p50 ${s.latencyMs.p50} p99 ${s.latencyMs.p99} ms${s.ok ? '' : ' FAILED'}`;

export async function runIngestion(
  scenario: IngestScenario,
  topology: Topology,
  plan: IngestPlan,
  log: (s: string) => void,
): Promise<IngestResult> {
  const setup = await setUpIngest(scenario, topology, plan);
  try {
    // Unmeasured: a fresh receiver is still compiling its hot paths.
    await step(setup, Math.round(plan.startRate / 2), { ...plan, stepS: 1 });
    await drain(setup);
    const ladder: IngestStep[] = [];
    let rate = plan.startRate;
    let best = 0;
    let failed = 0;
    for (let i = 0; plan.fixedRate === undefined && i < plan.maxSteps; i++) {
      const s = await step(setup, rate, plan);
      log(`  ${fmtStep(s)}`);
      ladder.push(s);
      if (!s.ok) {
        failed = rate;
        // Even the first rate is too much (a busy machine): go down until one passes.
        if (best === 0 && rate > plan.startRate / 16) {
          rate = Math.round(rate / plan.factor);
          await drain(setup);
          continue;
        }
        break;
      }
      best = rate;
      if (failed > 0) break;
      rate = Math.round(rate * plan.factor);
    }
    if (plan.refine && failed > 0 && best > 0) {
      await drain(setup);
      const mid = Math.round(Math.sqrt(best * failed));
      const s = await step(setup, mid, plan);
      log(`  ${fmtStep(s)} (between)`);
      ladder.push(s);
      if (s.ok) best = mid;
    }
    const result: IngestResult = {
      scenario,
      label: INGEST_LABELS[scenario],
      topology,
      units: plan.units,
      ladder,
      max: plan.fixedRate === undefined ? best : undefined,
    };
    // With --ingest-rate, that rate stands for "50 % of the maximum"; no maximum was measured.
    const half = plan.fixedRate ?? Math.round(best / 2);
    if (half === 0) return result;
    await drain(setup);
    result.atHalf = await step(setup, half, plan);
    log(`  at 50 %: ${fmtStep(result.atHalf)}; CPU ms/report ${JSON.stringify(result.atHalf.cpuMsPerReport)}`);
    const st = result.atHalf.stages;
    if (st) {
      const per = (k: string) =>
        st[k] ? `${(st[k]!.calls / Math.max(1, result.atHalf!.stored)).toFixed(2)} × ${st[k]!.mean_us} µs` : '—';
      log(
        `  per report: findVehicleByUnit ${per('store.findVehicleByUnit')}, mergeState ${per('store.mergeState')}, PostgreSQL round trips ${per('store.statement')}, SQLite commits ${per('store.commit')}`,
      );
    }
    if (setup.commandSetup) {
      const spec = { mode: 'rate' as const, rate: 100, durationS: plan.commandS, warmupS: plan.warmupS };
      const pressure = cpuPressureShare();
      const alone = await measure(setup.commandSetup, spec, { stages: true });
      const pressureAlone = pressure();
      // The load process starts in ~1 s; the reports run from before its warm-up to after its end.
      const reporting = report(setup, half, plan.commandS + plan.warmupS + 4);
      const pressureWith = cpuPressureShare();
      const underIngestion = await measure(setup.commandSetup, spec, { stages: true });
      const pressureWithReports = pressureWith();
      await reporting;
      const p99Ratio = Math.round((underIngestion.latencyMs.p99 / Math.max(0.001, alone.latencyMs.p99)) * 100) / 100;
      result.commands = {
        alone,
        underIngestion,
        p99Ratio,
        cpuPressurePercent: { alone: pressureAlone, underIngestion: pressureWithReports },
      };
      log(
        `  commands at 100/s: p99 ${alone.latencyMs.p99} ms alone, ${underIngestion.latencyMs.p99} ms with ${half} reports/s (${p99Ratio}×), errors ${alone.errors}/${underIngestion.errors}; time some thread waited for a core (CPU pressure) ${pressureAlone ?? '—'} % alone, ${pressureWithReports ?? '—'} % with reports`,
      );
      for (const [name, m] of [
        ['alone', alone],
        ['with reports', underIngestion],
      ] as const) {
        const st = m.stages ?? {};
        log(
          `    ${name}, µs mean / p99: ${COMMAND_STAGES.filter((k) => st[k])
            .map((k) => `${k} ${st[k]!.mean_us} / ${st[k]!.p99_us}`)
            .join(', ')}`,
        );
      }
    }
    return result;
  } finally {
    await setup.close();
  }
}
