/**
 * `npm run bench [-- --quick] [-- --topology embedded|production] [-- --log-level info]`
 *
 * Measures fleetgate against floors on the same machine in one invocation (docs/performance.md),
 * for the embedded (SQLite + aedes) and production (PostgreSQL + Mosquitto) topologies:
 * - commands: A bare HTTP, B bare MQTT request/reply, C bare HTTP→MQTT→HTTP pipeline, D floor C
 *   plus the store's calls, and fleetgate end to end. Per scenario: the maximum commands/s
 *   (closed loop) and latency at fixed offered loads (open loop at fractions of floor C's
 *   maximum); at 10 % of floor C, where the time of floor D's and fleetgate's commands goes
 *   (bench/lib/probe.ts);
 * - events: fleetgate + webhook, fleetgate's scenario with one webhook subscription to every event
 *   type, delivered to a receiver of its own (bench/webhook-receiver.ts) that verifies the
 *   signatures: its maximum and p99 against fleetgate's, events received against committed, the
 *   latency from commit to receiver at each load and at ~1,000 events/s (bench/webhook-report.ts);
 * - state-report ingestion (bench/ingest.ts): E broker → a counting subscriber, F floor E plus the
 *   store write, and fleetgate's own path; the maximum reports/s with none lost, report→stored
 *   latency, and the command p99 at 100/s with and without ingestion at 50 % of its maximum.
 * Writes tables to the terminal and bench/results/latest.json. `--scale` runs bench/scale.ts,
 * `--amqp` bench/amqp.ts (events over AMQP).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { INGEST_SCENARIOS, type IngestPlan, type IngestResult, runIngestion } from './ingest.js';
import { exitWithUsage, oneOf, parseCommandLine, wholeNumber, wholeNumbers } from './lib/args.js';
import { machineLoad, ROOT } from './lib/processes.js';
import { TOPOLOGIES, type Topology } from './lib/topology.js';
import { type Measured, type RunSettings, SCENARIO_LABELS, SCENARIOS, type ScenarioName, setUp } from './scenarios.js';
import {
  EVENTS_STEP_PER_S,
  eventsStepRate,
  type MaximaInTurn,
  webhookComparison,
  webhookLines,
} from './webhook-report.js';

const argv = process.argv.slice(2);
if (argv.includes('--scale')) {
  await import('./scale.js');
  process.exit(0);
}
if (argv.includes('--amqp')) {
  await import('./amqp.js');
  process.exit(0);
}

const USAGE =
  'npm run bench -- [--quick] [--interleave] [--topology embedded|production] [--units N] [--concurrency 32,128] [--only fleetgate,fleetgateWebhook,floorC] [--rates 400,2000] [--skip-ingest | --ingest-only [--ingest-scenarios floorF,fleetgate] [--ingest-rate R]] [--log-level warn] [--fleetgate-node-args "…"] | --scale …';
const { values: args } = parseCommandLine(
  USAGE,
  {
    options: {
      quick: { type: 'boolean' },
      interleave: { type: 'boolean' },
      topology: { type: 'string' },
      units: { type: 'string' },
      concurrency: { type: 'string' },
      only: { type: 'string' },
      rates: { type: 'string' },
      'skip-ingest': { type: 'boolean' },
      'ingest-only': { type: 'boolean' },
      'ingest-scenarios': { type: 'string' },
      'ingest-rate': { type: 'string' },
      'log-level': { type: 'string' },
      'fleetgate-node-args': { type: 'string' },
    },
  },
  argv,
  ['--fleetgate-node-args'],
);

const quick = args.quick === true;
const topologies: Topology[] = args.topology
  ? [oneOf(USAGE, 'topology', args.topology, TOPOLOGIES)]
  : ['embedded', 'production'];
// Quick runs leave out 90 %: the targets are at 10 % and 50 %, and floor D is in quick runs now.
const FRACTIONS = quick ? [0.1, 0.5] : [0.1, 0.5, 0.9];
const plan = quick
  ? { maxS: 3, rateS: 3, warmupS: 1, concurrencies: [128] }
  : { maxS: 15, rateS: 10, warmupS: 3, concurrencies: [16, 32, 64, 128, 256] };
// e.g. --concurrency 32,64: the closed-loop concurrencies tried for the maximum.
plan.concurrencies = wholeNumbers(USAGE, 'concurrency', args.concurrency) ?? plan.concurrencies;
const settings: RunSettings = {
  units: wholeNumber(USAGE, 'units', args.units, quick ? 300 : 1000),
  unitsPerProcess: 1000,
  logLevel: args['log-level'] ?? 'warn',
  // e.g. --fleetgate-node-args "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile fleetgate.
  nodeArgs: args['fleetgate-node-args']?.split(' ').filter(Boolean),
  eventsDrainLimitS: quick ? 60 : 300,
};
const only = args.only?.split(',').map((s) => oneOf(USAGE, 'only', s, SCENARIOS));
if (args['skip-ingest'] && args['ingest-only']) exitWithUsage(USAGE, '--skip-ingest or --ingest-only, not both');
const ingestOnly = args['ingest-only'] === true;
const ingestScenarios =
  args['ingest-scenarios']?.split(',').map((x) => oneOf(USAGE, 'ingest-scenarios', x, INGEST_SCENARIOS)) ??
  INGEST_SCENARIOS;
const ingest = ingestOnly || (!only && args['skip-ingest'] !== true);
const ingestRate =
  args['ingest-rate'] === undefined ? undefined : wholeNumber(USAGE, 'ingest-rate', args['ingest-rate'], 1);
const ingestPlan: IngestPlan = quick
  ? {
      units: 1000,
      unitsPerProcess: 1000,
      stepS: 1.5,
      graceS: 0.5,
      startRate: 2000,
      factor: 2,
      maxSteps: 5,
      refine: false,
      commandS: 3,
      warmupS: 1,
      logLevel: settings.logLevel,
      nodeArgs: settings.nodeArgs,
      fixedRate: ingestRate,
    }
  : {
      units: 2000,
      unitsPerProcess: 1000,
      stepS: 5,
      graceS: 2,
      startRate: 1000,
      factor: 1.5,
      maxSteps: 12,
      refine: true,
      commandS: 10,
      warmupS: 3,
      logLevel: settings.logLevel,
      nodeArgs: settings.nodeArgs,
      fixedRate: ingestRate,
    };

interface ScenarioResult {
  scenario: ScenarioName;
  label: string;
  topology: Topology;
  /** Best closed-loop run without errors (or the best one, flagged, when all had errors). */
  max: Measured;
  maxRuns: Measured[];
  /** Open-loop runs at FRACTIONS of floor C's maximum in this topology. */
  latency: Array<Measured & { fraction: number }>;
  /** fleetgate + webhook: an open-loop step at the command rate that commits ~1,000 events/s. */
  eventsStep?: Measured;
}

const log = (s: string) => process.stderr.write(`${s}\n`);
const started = Date.now();
const loadAtStart = machineLoad();
const results: ScenarioResult[] = [];

async function runScenario(scenario: ScenarioName, topology: Topology, rates: number[] | undefined) {
  log(`[${((Date.now() - started) / 1000).toFixed(0)} s] ${topology}: ${SCENARIO_LABELS[scenario]} — setting up`);
  const setup = await setUp(scenario, topology, settings);
  try {
    const maxRuns: Measured[] = [];
    for (const concurrency of plan.concurrencies) {
      const m = await setupMeasure(setup, { mode: 'max', durationS: plan.maxS, warmupS: plan.warmupS, concurrency });
      const bad = m.errors > 0 ? ` ${JSON.stringify(m.statuses)}` : '';
      log(`  max c=${concurrency}: ${m.rps}/s, errors ${m.errors}${bad}, p99 ${m.latencyMs.p99} ms, cpu ${fmtCpu(m)}`);
      maxRuns.push(m);
    }
    const clean = maxRuns.filter((m) => m.errors === 0);
    const max = (clean.length > 0 ? clean : maxRuns).reduce((a, b) => (b.rps > a.rps ? b : a));
    const latency: ScenarioResult['latency'] = [];
    for (const [i, rate] of (rates ?? FRACTIONS.map((f) => Math.round(max.rps * f))).entries()) {
      // Where the time goes, at the lowest load (10 % of floor C): the probe of floor D and fleetgate.
      const m = await setupMeasure(
        setup,
        { mode: 'rate', durationS: plan.rateS, warmupS: plan.warmupS, rate },
        { stages: i === 0 && setup.probe !== undefined },
      );
      log(
        `  ${rate}/s${m.saturated ? ' SATURATED' : ''}: p50 ${m.latencyMs.p50} p99 ${m.latencyMs.p99} ms, errors ${m.errors}, cpu ${fmtCpu(m)}`,
      );
      latency.push({ ...m, fraction: FRACTIONS[i]! });
    }
    let eventsStep: Measured | undefined;
    if (setup.events) {
      const rate = eventsStepRate(latency);
      eventsStep = await setupMeasure(setup, { mode: 'rate', durationS: plan.rateS, warmupS: plan.warmupS, rate });
      log(
        `  ${rate}/s (~${EVENTS_STEP_PER_S} events/s)${eventsStep.saturated ? ' SATURATED' : ''}: p99 ${eventsStep.latencyMs.p99} ms, cpu ${fmtCpu(eventsStep)}`,
      );
    }
    const r: ScenarioResult = {
      scenario,
      label: SCENARIO_LABELS[scenario],
      topology,
      max,
      maxRuns,
      latency,
      ...(eventsStep ? { eventsStep } : {}),
    };
    results.push(r);
    return r;
  } finally {
    await setup.close();
  }
}

const { measure: setupMeasure } = await import('./scenarios.js');

/** The probe's stages in the table of where a command's time goes, in order. */
const STAGE_ROWS: Array<[string, string]> = [
  ['http', 'HTTP request → response (server)'],
  ['auth', 'auth (token check)'],
  ['store.startCommand', 'store startCommand'],
  ['store.completeCommand', 'store completeCommand'],
  ['store.statement', 'PostgreSQL round trip'],
  ['store.commit', 'SQLite group commit'],
  ['adapter', 'adapter execute'],
  ['broker', 'broker + unit (publish → answer)'],
];

function fmtCpu(m: Measured): string {
  const cpu = Object.entries(m.cpuPercent)
    .map(([k, v]) => `${k} ${v}% (${m.cpuMsPerRequest[k]} ms/req)`)
    .join(', ');
  const e = m.events;
  return e
    ? `${cpu}; events ${e.events} (${e.eventsPerCommand}/command), delivered ${e.deliveredPerS}/s, p50 ${e.latencyMs.p50} p99 ${e.latencyMs.p99} max ${e.latencyMs.max} ms; ${e.received}/${e.committed} received${e.backlog ? `, ${e.backlog} not yet after ${e.drainS} s: subscription replaced` : ` after ${e.drainS} s`}${e.drainedPerS ? ` (${e.drainedPerS}/s)` : ''}`
    : cpu;
}

/**
 * Two scenarios' maxima once more, in turn (A, B, A, B, A, B, A, after a warm-up run of each) with
 * both set up at once, each at the concurrency of its best run: the machine's speed drifts by tens
 * of per cent within minutes (docs/performance.md), and in the scenarios above the two maxima are
 * measured minutes apart. Each B run is set against the mean of the A runs on either side. Pairs:
 * floor C and fleetgate; fleetgate and fleetgate + webhook.
 */
interface Interleaved {
  floor_c_rps: number[];
  fleetgate_rps: number[];
  errors: number;
  max_vs_floor_c: number[];
  median_max_vs_floor_c: number;
}
const INTERLEAVED_ROUNDS = 3;
const interleaved: Partial<Record<Topology, Interleaved>> = {};
const interleavedWebhook: Partial<Record<Topology, MaximaInTurn>> = {};

async function inTurn(topology: Topology, a: ScenarioName, b: ScenarioName): Promise<MaximaInTurn> {
  const best = (s: ScenarioName) => results.find((r) => r.scenario === s && r.topology === topology)!.max;
  log(
    `[${((Date.now() - started) / 1000).toFixed(0)} s] ${topology}: ${SCENARIO_LABELS[a]} and ${SCENARIO_LABELS[b]} in turn — setting up`,
  );
  const setupA = await setUp(a, topology, settings);
  try {
    const setupB = await setUp(b, topology, settings);
    try {
      const run = async (setup: typeof setupA, s: ScenarioName, warmUp = false) => {
        const m = await setupMeasure(setup, {
          mode: 'max',
          durationS: plan.maxS,
          warmupS: plan.warmupS,
          concurrency: best(s).concurrency,
        });
        log(
          `  ${s} c=${best(s).concurrency}${warmUp ? ' (warm-up, not counted)' : ''}: ${m.rps}/s, errors ${m.errors}`,
        );
        return m;
      };
      // A freshly started fleetgate is still compiling its hot paths: in quick runs without this
      // round its three maxima rose by about a third from the first to the third (21:25 UTC).
      await run(setupA, a, true);
      await run(setupB, b, true);
      const ra: Measured[] = [await run(setupA, a)];
      const rb: Measured[] = [];
      for (let i = 0; i < INTERLEAVED_ROUNDS; i++) {
        rb.push(await run(setupB, b));
        ra.push(await run(setupA, a));
      }
      const ratios = rb.map((m, i) => round2(m.rps / ((ra[i]!.rps + ra[i + 1]!.rps) / 2)));
      return {
        rps: { [a]: ra.map((m) => m.rps), [b]: rb.map((m) => m.rps) },
        errors: [...ra, ...rb].reduce((sum, m) => sum + m.errors, 0),
        ratios,
        median: [...ratios].sort((x, y) => x - y)[Math.floor(ratios.length / 2)]!,
      };
    } finally {
      await setupB.close();
    }
  } finally {
    await setupA.close();
  }
}

async function interleave(topology: Topology): Promise<Interleaved> {
  const r = await inTurn(topology, 'floorC', 'fleetgate');
  return {
    floor_c_rps: r.rps.floorC!,
    fleetgate_rps: r.rps.fleetgate!,
    errors: r.errors,
    max_vs_floor_c: r.ratios,
    median_max_vs_floor_c: r.median,
  };
}

let floorA: ScenarioResult | undefined;
const wanted = (s: ScenarioName) => !ingestOnly && (!only || only.includes(s));
const ingestion: IngestResult[] = [];
const fixedRates = wholeNumbers(USAGE, 'rates', args.rates);
for (const topology of topologies) {
  let rates = fixedRates;
  if (wanted('floorC')) {
    const c = await runScenario('floorC', topology, rates);
    rates ??= FRACTIONS.map((f) => Math.round(c.max.rps * f));
  }
  if (wanted('floorB')) await runScenario('floorB', topology, rates);
  // Floor A has no broker: the same in both topologies, measured once at the first one's loads.
  if (wanted('floorA')) {
    if (!floorA) floorA = await runScenario('floorA', topology, rates);
    else results.push({ ...floorA, topology });
  }
  // Floor D (floor C + the store's calls) splits fleetgate's cost into persistence and the rest.
  if (wanted('floorD')) await runScenario('floorD', topology, rates);
  if (wanted('fleetgate')) {
    const f = await runScenario('fleetgate', topology, rates);
    // Without floor C (a partial run): fleetgate + webhook at fleetgate's loads, to compare.
    rates ??= f.latency.map((l) => l.offered!);
  }
  if (wanted('fleetgateWebhook')) await runScenario('fleetgateWebhook', topology, rates);
  // Full runs; quick ones with --interleave (it adds about two minutes per topology). With --only,
  // the pair of maxima in turn whose two scenarios were run.
  if (!ingestOnly && (!quick || args.interleave)) {
    if (!only) interleaved[topology] = await interleave(topology);
    if (!only || (only.includes('fleetgate') && only.includes('fleetgateWebhook'))) {
      interleavedWebhook[topology] = await inTurn(topology, 'fleetgate', 'fleetgateWebhook');
    }
  }
  if (ingest) {
    for (const scenario of ingestScenarios) {
      log(`[${((Date.now() - started) / 1000).toFixed(0)} s] ${topology}: ingestion, ${scenario}`);
      ingestion.push(await runIngestion(scenario, topology, ingestPlan, log));
    }
  }
}
const findOptional = (s: ScenarioName, t: Topology) => results.find((r) => r.scenario === s && r.topology === t);
const find = (s: ScenarioName, t: Topology) => findOptional(s, t)!;
const pad = (s: string | number, n: number) => String(s).padStart(n);
const webhookVsFleetgate = (t: Topology) => {
  const f = findOptional('fleetgate', t);
  const w = findOptional('fleetgateWebhook', t);
  return f && w ? webhookComparison(f, w, interleavedWebhook[t]) : undefined;
};
if (only) {
  // A partial run (profiling, one scenario): its table on stderr, JSON on stdout; no latest.json.
  for (const t of topologies) {
    log(['', `${t}:`, ...tableLines(t)].join('\n'));
    const q = webhookVsFleetgate(t);
    if (q) log(webhookLines(q, settings.eventsDrainLimitS!).join('\n'));
  }
  process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  process.exit(0);
}

// ---------------------------------------------------------------------------------------------
// Ratios, targets, table, JSON

const commandTopologies = ingestOnly ? [] : topologies;
const ratios = Object.fromEntries(
  commandTopologies.map((t) => {
    const fg = find('fleetgate', t);
    const b = find('floorB', t);
    const c = find('floorC', t);
    const p99At = (r: ScenarioResult, f: number) => r.latency.find((l) => l.fraction === f)!.latencyMs.p99;
    const maxVsC = fg.max.rps / c.max.rps;
    const p99VsC = p99At(fg, 0.5) / p99At(c, 0.5);
    // Floor D (full runs): what persistence alone leaves of floor C, and fleetgate against it.
    const d = findOptional('floorD', t);
    const vsD = d && {
      floor_d_max_vs_floor_c: round2(d.max.rps / c.max.rps),
      floor_d_p99_at_50pct_vs_floor_c: round2(p99At(d, 0.5) / p99At(c, 0.5)),
      max_vs_floor_d: round2(fg.max.rps / d.max.rps),
      p99_at_50pct_vs_floor_d: round2(p99At(fg, 0.5) / p99At(d, 0.5)),
    };
    return [
      t,
      {
        max_vs_floor_c: round2(maxVsC),
        max_vs_floor_b: round2(fg.max.rps / b.max.rps),
        p99_at_50pct_vs_floor_c: round2(p99VsC),
        p99_at_50pct_vs_floor_b: round2(p99At(fg, 0.5) / p99At(b, 0.5)),
        p50_at_50pct_vs_floor_c: round2(fg.latency[1]!.latencyMs.p50 / c.latency[1]!.latencyMs.p50),
        ...vsD,
        ...(interleaved[t] ? { interleaved: interleaved[t] } : {}),
        ...(webhookVsFleetgate(t) ? { webhook: webhookVsFleetgate(t) } : {}),
        targets: {
          max_at_least_half_of_floor_c: maxVsC >= 0.5,
          ...(interleaved[t]
            ? { interleaved_max_at_least_half_of_floor_c: interleaved[t]!.median_max_vs_floor_c >= 0.5 }
            : {}),
          p99_at_50pct_at_most_twice_floor_c: p99VsC <= 2,
        },
      },
    ];
  }),
);

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}

/** The commands table of one topology: each scenario's maximum and latency at the offered loads. */
function tableLines(t: Topology): string[] {
  const present = SCENARIOS.flatMap((s) => findOptional(s, t) ?? []);
  if (present.length === 0) return [];
  // The loads: fractions of floor C's maximum, or (partial runs) of the first scenario's.
  const basis = findOptional('floorC', t) ?? present[0]!;
  const rates = basis.latency.map((l) => `${Math.round(l.fraction * 100)}% = ${l.offered}/s`);
  const out = [
    `${'scenario'.padEnd(24)}${pad('max/s', 8)}${pad('err', 5)}  latency p50 / p90 / p99 / max in ms at ${rates.join(', ')}${basis.scenario === 'floorC' ? '' : ` (of ${basis.label}'s max)`}`,
  ];
  for (const r of present) {
    const cells = r.latency.map((l) =>
      l.saturated
        ? `saturated: ${l.rps}/s answered`
        : `${l.latencyMs.p50}/${l.latencyMs.p90}/${l.latencyMs.p99}/${Math.round(l.latencyMs.max)}${l.errors ? ` (${l.errors} err)` : ''}`,
    );
    out.push(`${r.label.padEnd(24)}${pad(r.max.rps, 8)}${pad(r.max.errors, 5)}  ${cells.join('  |  ')}`);
  }
  return out;
}

const lines: string[] = [];
for (const t of commandTopologies) {
  lines.push('');
  lines.push(
    `${t === 'embedded' ? 'EMBEDDED (SQLite + in-process aedes)' : 'PRODUCTION (PostgreSQL + Mosquitto)'} — ${settings.units} units`,
  );
  lines.push(...tableLines(t));
  const q = ratios[t]!;
  lines.push(
    `fleetgate ÷ floor C: max ${q.max_vs_floor_c} (target ≥ 0.5 ${q.targets.max_at_least_half_of_floor_c ? 'met' : 'MISSED'}), p99 at 50% ${q.p99_at_50pct_vs_floor_c} (target ≤ 2 ${q.targets.p99_at_50pct_at_most_twice_floor_c ? 'met' : 'MISSED'}); ÷ floor B: max ${q.max_vs_floor_b}, p99 at 50% ${q.p99_at_50pct_vs_floor_b}`,
  );
  if (q.max_vs_floor_d !== undefined) {
    lines.push(
      `floor D ÷ floor C: max ${q.floor_d_max_vs_floor_c}, p99 at 50% ${q.floor_d_p99_at_50pct_vs_floor_c}; fleetgate ÷ floor D: max ${q.max_vs_floor_d}, p99 at 50% ${q.p99_at_50pct_vs_floor_d}`,
    );
  }
  const il = q.interleaved;
  if (il) {
    lines.push(
      `maxima in turn: ${il.floor_c_rps.map((c, i) => (i < il.fleetgate_rps.length ? `C ${c}, F ${il.fleetgate_rps[i]}` : `C ${c}`)).join(', ')}${il.errors ? ` (${il.errors} errors)` : ''}; fleetgate ÷ floor C ${il.max_vs_floor_c.join(', ')}, median ${il.median_max_vs_floor_c} (target ≥ 0.5 ${q.targets.interleaved_max_at_least_half_of_floor_c ? 'met' : 'MISSED'})`,
    );
  }
  if (q.webhook) lines.push(...webhookLines(q.webhook, settings.eventsDrainLimitS!));
  const fg = find('fleetgate', t);
  lines.push(`CPU at fleetgate's max (% of one core): ${fmtCpu(fg.max)}`);
  lines.push(...stageLines(t));
}
lines.push(...ingestLines());
const loadAtEnd = machineLoad();
lines.push('');
lines.push(
  `${quick ? 'quick' : 'full'} run, ${((Date.now() - started) / 1000).toFixed(0)} s; load average ${loadAtStart.loadavg1} at start, ${loadAtEnd.loadavg1} at end; ${loadAtStart.cores} cores shared by every process (no pinning)`,
);
process.stdout.write(`${lines.join('\n')}\n`);

const out = {
  schema: 'fleetgate-bench/1',
  generated_at: new Date().toISOString(),
  command: `npm run bench${argv.length ? ` -- ${argv.join(' ')}` : ''}`,
  mode: quick ? 'quick' : 'full',
  machine: {
    cpus: os.cpus().length,
    cpu_model: os.cpus()[0]?.model,
    memory_gb: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    load_average_at_start: loadAtStart.loadavg1,
    load_average_at_end: loadAtEnd.loadavg1,
  },
  settings: { ...settings, ...plan, fractions: FRACTIONS, ingest: ingest ? ingestPlan : undefined },
  results,
  ratios,
  stages: stagesSummary(),
  ingestion,
  ingestion_ratios: ingestRatios(),
};
mkdirSync(path.join(ROOT, 'bench/results'), { recursive: true });
writeFileSync(path.join(ROOT, 'bench/results/latest.json'), `${JSON.stringify(out, null, 2)}\n`);
log('wrote bench/results/latest.json');
process.exit(0);

// ---------------------------------------------------------------------------------------------
// Where a command's time goes (the probe at 10 % of floor C), and ingestion

function stagesOf(s: ScenarioName, t: Topology) {
  const r = results.find((x) => x.scenario === s && x.topology === t)?.latency[0];
  return r?.stages ? { run: r, stages: r.stages } : undefined;
}

function stagesSummary() {
  return Object.fromEntries(
    commandTopologies.map((t) => {
      const d = stagesOf('floorD', t);
      const f = stagesOf('fleetgate', t);
      const p99 = (x: typeof d) => x?.run.latencyMs.p99;
      return [
        t,
        {
          offered: f?.run.offered,
          floor_d: d && { latency_ms: d.run.latencyMs, stages: d.stages },
          fleetgate: f && { latency_ms: f.run.latencyMs, stages: f.stages },
          p99_within_floor_d_plus_1ms: d && f ? p99(f)! <= p99(d)! + 1 : undefined,
        },
      ];
    }),
  );
}

function stageLines(t: Topology): string[] {
  const d = stagesOf('floorD', t);
  const f = stagesOf('fleetgate', t);
  if (!d && !f) return [];
  const out: string[] = [];
  const rate = (f ?? d)!.run.offered;
  out.push(`where a command's time goes at 10% of floor C (${rate}/s), µs mean / p99 (calls per command):`);
  out.push(`${'stage'.padEnd(34)}${'floor D'.padStart(24)}${'fleetgate'.padStart(24)}`);
  const cell = (x: typeof d, stage: string) => {
    const st = x?.stages[stage];
    if (!st) return '—';
    const perCommand = st.calls / Math.max(1, x!.run.requests);
    return `${st.mean_us} / ${st.p99_us}${Math.abs(perCommand - 1) > 0.05 ? ` (${perCommand.toFixed(1)})` : ''}`;
  };
  out.push(
    `${'client-observed p50 / p99 (ms)'.padEnd(34)}${(d ? `${d.run.latencyMs.p50} / ${d.run.latencyMs.p99}` : '—').padStart(24)}${(f ? `${f.run.latencyMs.p50} / ${f.run.latencyMs.p99}` : '—').padStart(24)}`,
  );
  for (const [stage, label] of STAGE_ROWS) {
    if (!d?.stages[stage] && !f?.stages[stage]) continue;
    out.push(`${label.padEnd(34)}${cell(d, stage).padStart(24)}${cell(f, stage).padStart(24)}`);
  }
  // What the timed stages leave of the server's time: routing, validation, the service's own
  // work, serialisation, and waiting for the event loop between them.
  const rest = (x: typeof d) => {
    if (!x?.stages.http) return '—';
    const perCommand = (stage: string) => {
      const st = x.stages[stage];
      return st ? (st.mean_us * st.calls) / Math.max(1, x.stages.http!.calls) : 0;
    };
    const timed = ['auth', 'store.startCommand', 'store.completeCommand', 'adapter'].reduce(
      (sum, stage) => sum + perCommand(stage),
      0,
    );
    return `${Math.round(x.stages.http.mean_us - timed)} (mean)`;
  };
  out.push(`${'rest of the server (HTTP - above)'.padEnd(34)}${rest(d).padStart(24)}${rest(f).padStart(24)}`);
  out.push(
    "  (floor D's rest includes its bare MQTT request/reply; fleetgate's auth row appears only when a token is checked, not answered from its cache)",
  );
  if (d && f) {
    const ok = f.run.latencyMs.p99 <= d.run.latencyMs.p99 + 1;
    out.push(
      `fleetgate p99 at 10% ${f.run.latencyMs.p99} ms vs floor D's ${d.run.latencyMs.p99} + 1 ms (target ${ok ? 'met' : 'MISSED'})`,
    );
  }
  return out;
}

function ingestRatios() {
  return Object.fromEntries(
    topologies
      .filter((t) => ingestion.some((r) => r.topology === t))
      .map((t) => {
        const of = (s: string) => ingestion.find((r) => r.topology === t && r.scenario === s);
        const f = of('floorF');
        const fg = of('fleetgate');
        const maxVsF = f?.max && fg?.max !== undefined ? Math.round((fg.max / f.max) * 100) / 100 : undefined;
        const p99Ratio = fg?.commands?.p99Ratio;
        return [
          t,
          {
            max_vs_floor_f: maxVsF,
            floor_f_max_vs_floor_e:
              f?.max !== undefined && of('floorE')?.max
                ? Math.round((f.max / of('floorE')!.max!) * 100) / 100
                : undefined,
            command_p99_under_ingestion_vs_alone: p99Ratio,
            targets: {
              max_at_least_0_8_of_floor_f: maxVsF === undefined ? undefined : maxVsF >= 0.8,
              command_p99_under_ingestion_at_most_twice: p99Ratio === undefined ? undefined : p99Ratio <= 2,
            },
          },
        ];
      }),
  );
}

function ingestLines(): string[] {
  if (ingestion.length === 0) return [];
  const p = ingestPlan;
  const out: string[] = [
    '',
    `INGESTION — state reports (12 properties each, QoS 0) from ${p.units} units, ${p.unitsPerProcess} per process; steps of ${p.stepS} s, a step passes when every report sent is stored within ${p.graceS} s after it`,
  ];
  out.push(
    `${'topology'.padEnd(11)}${'scenario'.padEnd(22)}${'max/s'.padStart(8)}  ${'at 50%: rate, p50 / p99 ms'.padEnd(30)}CPU ms per report at 50% (machine; server, broker, postgres)`,
  );
  for (const r of ingestion) {
    const h = r.atHalf;
    const cpu = h?.cpuMsPerReport ?? {};
    const server = cpu.fleetgate ?? cpu.receiver;
    const parts = [`machine ${cpu.machine ?? '—'}`, `server ${server ?? '—'}`];
    if (cpu.mosquitto !== undefined) parts.push(`mosquitto ${cpu.mosquitto}`);
    if (cpu.postgres !== undefined) parts.push(`postgres ${cpu.postgres}`);
    out.push(
      `${r.topology.padEnd(11)}${r.label.padEnd(22)}${pad(r.max ?? '—', 8)}  ${(h ? `${h.offered}/s, ${h.latencyMs.p50} / ${h.latencyMs.p99}${h.lost ? ` (${h.lost} lost)` : ''}` : '—').padEnd(30)}${parts.join(', ')}`,
    );
  }
  for (const r of ingestion) {
    const st = r.atHalf?.stages;
    if (!st) continue;
    const per = (k: string) =>
      st[k] ? `${(st[k]!.calls / Math.max(1, r.atHalf!.stored)).toFixed(2)} × ${st[k]!.mean_us} µs` : '—';
    out.push(
      `${r.topology}: fleetgate's store calls per report at 50%: findVehicleByUnit ${per('store.findVehicleByUnit')}, mergeState ${per('store.mergeState')}; PostgreSQL round trips ${per('store.statement')}; SQLite commits ${per('store.commit')}`,
    );
  }
  const q = ingestRatios();
  for (const [t, v] of Object.entries(q)) {
    const fg = ingestion.find((r) => r.topology === t && r.scenario === 'fleetgate');
    const c = fg?.commands;
    out.push(
      `${t}: fleetgate ÷ floor F max ${v.max_vs_floor_f ?? '—'}${v.max_vs_floor_f === undefined ? '' : ` (target ≥ 0.8 ${v.targets.max_at_least_0_8_of_floor_f ? 'met' : 'MISSED'})`}; floor F ÷ floor E ${v.floor_f_max_vs_floor_e ?? '—'}${c ? `; commands at 100/s p99 ${c.alone.latencyMs.p99} ms alone, ${c.underIngestion.latencyMs.p99} ms under ${fg!.atHalf!.offered} reports/s: ${c.p99Ratio}× (target ≤ 2 ${c.p99Ratio <= 2 ? 'met' : 'MISSED'})` : ''}`,
    );
  }
  return out;
}
