import { createInterface, type Interface } from 'node:readline';
import type { Logger } from 'pino';
import { emptyStats, FleetgateUnit, type UnitBehaviour, type UnitStats } from './fleetgate-unit.js';

export interface SimulationOptions {
  mqttUrl: string;
  units: Array<{ unitId: string; password: string; model: string }>;
  reportIntervalMs?: number;
  /** Fixed delay before the final answer; default a realistic 300–800 ms. */
  answerDelayMs?: number;
  /** Vehicles take trips on their own while driving is enabled. */
  drive?: boolean;
  /** Progress and the summary go here; default nowhere. */
  out?: NodeJS.WritableStream;
  /** Ends the simulation: every unit says `offline` and disconnects. */
  signal?: AbortSignal;
  /** Ends the simulation after this long, if the signal has not ended it before. */
  durationMs?: number;
  /** How often progress is printed; default 5 s. */
  progressIntervalMs?: number;
  logger?: Logger;
  /**
   * Runtime control, one line each: a behaviour (`online`, `offline`, `silent`, `accept-only`,
   * `refuse`, `fail`), `normal` (back to connected and answering, like `online`) or `drive` /
   * `park`, optionally followed by a unit id (default: every unit). Any stream: a terminal or a pipe.
   */
  input?: NodeJS.ReadableStream;
}

export interface SimulationSummary extends UnitStats {
  units: number;
  /** Units that connected at least once. */
  connected: number;
  /** Units whose credentials the broker refused, with the reason. */
  refusedLogins: Array<{ unitId: string; reason: string }>;
  durationMs: number;
}

const BEHAVIOURS: readonly UnitBehaviour[] = ['online', 'offline', 'silent', 'accept-only', 'refuse', 'fail'];

/** Reads control lines (see SimulationOptions.input) and applies them to the units. */
function controlFrom(input: NodeJS.ReadableStream, units: FleetgateUnit[], print: (line: string) => void): Interface {
  const rl = createInterface({ input, terminal: false });
  print(`control: type ${BEHAVIOURS.join(' | ')} | normal | drive | park [unit id], then Enter`);
  rl.on('line', (line) => {
    const [given, unitId] = line.trim().split(/\s+/);
    if (!given) return;
    // `normal` undoes any behaviour set before (`fail`, `silent`, `offline`…): connected, answering.
    const word = given === 'normal' ? 'online' : given;
    const targets = unitId ? units.filter((u) => u.unitId === unitId) : units;
    if (targets.length === 0) return print(`control: no unit '${unitId}'`);
    if (word === 'drive' || word === 'park') {
      for (const u of targets) u.setMoving(word === 'drive');
    } else if ((BEHAVIOURS as readonly string[]).includes(word)) {
      for (const u of targets) void u.setBehaviour(word as UnitBehaviour).catch(() => undefined);
    } else {
      return print(`control: unknown '${word}'`);
    }
    print(`control: ${given} → ${targets.length} unit(s)`);
  });
  return rl;
}

// Connecting thousands of units at once makes the broker check thousands of scrypt hashes at once.
const START_CONCURRENCY = 32;

/**
 * Runs many simulated fleetgate/v1 units against a broker until `signal` aborts (or `durationMs`
 * passes), printing progress and a summary to `out`. Used by `fleetgate simulate`; takes no
 * process arguments itself.
 */
export async function runSimulation(options: SimulationOptions): Promise<SimulationSummary> {
  const started = Date.now();
  const out = options.out;
  const print = (line: string) => out?.write(`${line}\n`);
  const units = options.units.map(
    (u) =>
      new FleetgateUnit({
        mqttUrl: options.mqttUrl,
        unitId: u.unitId,
        password: u.password,
        model: u.model,
        reportIntervalMs: options.reportIntervalMs,
        answerDelayMs: options.answerDelayMs,
        drive: options.drive,
        logger: options.logger,
      }),
  );
  const refusedLogins: SimulationSummary['refusedLogins'] = [];
  const stopping = new AbortController();
  const stop = () => stopping.abort();
  options.signal?.addEventListener('abort', stop, { once: true });
  if (options.signal?.aborted) stop();
  const durationTimer = options.durationMs !== undefined ? setTimeout(stop, options.durationMs) : undefined;

  print(`simulating ${units.length} unit(s) against ${options.mqttUrl}`);
  const progress = setInterval(() => print(progressLine(units)), options.progressIntervalMs ?? 5_000);
  progress.unref();

  const aborted = new Promise<void>((resolve) => {
    if (stopping.signal.aborted) resolve();
    stopping.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  let next = 0;
  const starter = async () => {
    while (next < units.length && !stopping.signal.aborted) {
      const unit = units[next++]!;
      try {
        const started = unit.start();
        started.catch(() => undefined);
        await Promise.race([started, aborted]);
      } catch (e) {
        const reason = e instanceof Error ? e.message : String(e);
        refusedLogins.push({ unitId: unit.unitId, reason });
        print(`unit ${unit.unitId}: ${reason}`);
      }
    }
  };
  const control = options.input ? controlFrom(options.input, units, print) : undefined;
  await Promise.all(Array.from({ length: Math.min(START_CONCURRENCY, units.length) }, starter));
  if (!stopping.signal.aborted) print(progressLine(units));

  await aborted;
  control?.close();
  clearInterval(progress);
  clearTimeout(durationTimer);
  options.signal?.removeEventListener('abort', stop);
  await Promise.all(units.map((u) => u.stop()));

  const summary = summarize(units, refusedLogins, Date.now() - started);
  print(
    `summary: ${summary.connected}/${summary.units} units connected, ${summary.commands} commands ` +
      `(${summary.succeeded} succeeded, ${summary.refused} refused, ${summary.failed} failed, ` +
      `${summary.unsupported} unsupported, ${summary.expired} expired), ${summary.stateReports} state reports ` +
      `in ${(summary.durationMs / 1000).toFixed(1)} s`,
  );
  return summary;
}

function progressLine(units: readonly FleetgateUnit[]): string {
  let online = 0;
  let commands = 0;
  let reports = 0;
  for (const u of units) {
    if (u.connected) online++;
    commands += u.stats.commands;
    reports += u.stats.stateReports;
  }
  return `${online}/${units.length} online, ${commands} commands, ${reports} state reports`;
}

function summarize(
  units: readonly FleetgateUnit[],
  refusedLogins: SimulationSummary['refusedLogins'],
  durationMs: number,
): SimulationSummary {
  const totals = emptyStats();
  let connected = 0;
  for (const u of units) {
    if (u.stats.connects > 0) connected++;
    for (const key of Object.keys(totals) as Array<keyof UnitStats>) totals[key] += u.stats[key];
  }
  return { units: units.length, connected, refusedLogins, durationMs, ...totals };
}
