import { type ChildProcess, spawn } from 'node:child_process';
import { appendFileSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { SERVE_NODE_FLAGS } from '../../src/cli/node-flags.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLK_TCK = 100;

/** A child process the bench started, with the CPU time it used (from /proc) and its messages. */
export interface BenchProcess {
  name: string;
  child: ChildProcess;
  /** Resolves with the first stdout line that parses as JSON with `type === kind`. */
  message<T = Record<string, unknown>>(kind: string, timeoutMs?: number): Promise<T>;
  /** Sends one JSON line to its stdin. */
  send(message: unknown): void;
  /** Sends a signal (the probe's SIGUSR2). */
  signal(name: NodeJS.Signals): void;
  /** CPU seconds (user + system) used so far; includes reaped children (none here). */
  cpuSeconds(): number;
  /** Resident set size in bytes, from /proc. */
  rssBytes(): number;
  /** The last 50–100 KB of its output. */
  output(): string;
  /** How many characters it has output so far (a mark for outputSince). */
  outputLength(): number;
  /** What it output after `mark` (an earlier outputLength()), as far as output() still holds it. */
  outputSince(mark: number): string;
  stop(graceMs?: number): Promise<void>;
}

/**
 * Node's flags for every server the bench measures, fleetgate and the floors alike: the flags
 * fleetgate serve is run with (src/cli/node-flags.ts).
 */
export const SERVER_NODE_ARGS: string[] = [...SERVE_NODE_FLAGS];

/**
 * Spawns `node --import tsx <script> …args` (or any command with `raw`). Messages are JSON lines on
 * stdout; everything else is kept for error reports.
 */
export function startProcess(
  name: string,
  args: string[],
  options: { raw?: string; env?: NodeJS.ProcessEnv; nodeArgs?: string[]; preload?: string[] } = {},
): BenchProcess {
  const command = options.raw ?? process.execPath;
  // Preloads come after tsx's, so they may be TypeScript and import the product's modules.
  const preload = (options.preload ?? []).flatMap((file) => ['--import', file]);
  const argv = options.raw ? args : [...(options.nodeArgs ?? []), '--import', 'tsx', ...preload, ...args];
  const env =
    options.env ?? Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FLEETGATE_')));
  const child = spawn(command, argv, { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  let total = 0;
  // BENCH_LOG_DIR=<dir>: every process's whole output also goes to <dir>/<name>.log (diagnosis).
  const logFile = process.env.BENCH_LOG_DIR ? path.join(process.env.BENCH_LOG_DIR, `${name}.log`) : undefined;
  if (logFile) mkdirSync(path.dirname(logFile), { recursive: true });
  const keep = (s: string) => {
    if (logFile) appendFileSync(logFile, s);
    output += s;
    total += s.length;
    if (output.length > 100_000) output = output.slice(-50_000);
  };
  const messages: Array<Record<string, unknown>> = [];
  const waiters = new Set<() => void>();
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      exited = true;
      keep(`\n[${name} exited: ${code ?? signal}]\n`);
      for (const w of waiters) w();
      resolve();
    }),
  );
  createInterface({ input: child.stdout! }).on('line', (line) => {
    if (line.startsWith('{')) {
      try {
        const m = JSON.parse(line) as Record<string, unknown>;
        // Log records (pino's, with a level) stay in the output, for error reports.
        if (m.type === undefined && m.level !== undefined) {
          keep(`${line}\n`);
          return;
        }
        messages.push(m);
        for (const w of waiters) w();
        return;
      } catch {
        // not a message
      }
    }
    keep(`${line}\n`);
  });
  child.stderr!.on('data', (chunk: Buffer) => keep(chunk.toString()));
  child.stdin!.on('error', () => undefined);

  const proc: BenchProcess = {
    name,
    child,
    message<T>(kind: string, timeoutMs = 600_000): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        const check = () => {
          const i = messages.findIndex((m) => m.type === kind);
          if (i >= 0) {
            const [m] = messages.splice(i, 1);
            done();
            resolve(m as T);
          } else if (exited) {
            done();
            reject(new Error(`${name} exited before sending '${kind}':\n${output.slice(-4000)}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`${name}: no '${kind}' within ${timeoutMs} ms:\n${output.slice(-4000)}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    send(message: unknown) {
      child.stdin!.write(`${JSON.stringify(message)}\n`);
    },
    signal(name: NodeJS.Signals) {
      if (!exited) child.kill(name);
    },
    cpuSeconds() {
      return cpuSecondsOf(child.pid);
    },
    rssBytes() {
      return rssOf(child.pid);
    },
    output: () => output,
    outputLength: () => total,
    outputSince: (mark) => output.slice(Math.max(0, output.length - (total - mark))),
    async stop(graceMs = 10_000) {
      if (exited) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exit;
      clearTimeout(timer);
    },
  };
  return proc;
}

/**
 * The main thread of a process the bench started (the thread whose id is the process's): for
 * Node.js, the JavaScript event loop, which caps a server's rate when it reaches 100 %. The
 * process's own figure adds its other threads (fleetgate's broker and SQLite writer threads, GC,
 * libuv).
 */
export function mainThreadOf(proc: BenchProcess): Pick<BenchProcess, 'name' | 'cpuSeconds' | 'rssBytes'> {
  return {
    name: `${proc.name} main thread`,
    cpuSeconds: () => cpuSecondsOf(proc.child.pid, proc.child.pid),
    rssBytes: () => 0,
  };
}

/**
 * utime + stime of a process (or of one of its threads) in seconds; 0 once it is gone. With
 * `reaped`, plus the CPU of its children that exited (cutime + cstime).
 */
export function cpuSecondsOf(pid: number | undefined, threadId?: number, reaped = false): number {
  if (pid === undefined) return 0;
  try {
    const stat = readFileSync(
      threadId === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${threadId}/stat`,
      'utf8',
    );
    // Fields after the command name (which may contain spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const own = Number(fields[11]) + Number(fields[12]);
    return (reaped ? own + Number(fields[13]) + Number(fields[14]) : own) / CLK_TCK;
  } catch {
    return 0;
  }
}

/** CPU seconds of each of a process's threads, by thread id (`/proc/<pid>/task`). */
export function threadCpuOf(pid: number | undefined): Map<number, number> {
  const out = new Map<number, number>();
  if (pid === undefined) return out;
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) out.set(Number(tid), cpuSecondsOf(pid, Number(tid)));
  } catch {
    // gone
  }
  return out;
}

export function rssOf(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /VmRSS:\s+(\d+) kB/.exec(status);
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * A pseudo-process for the PostgreSQL server (not our child): the CPU time of every process named
 * `postgres`, so the report's breakdown includes the database.
 */
export function postgresServer(): Pick<BenchProcess, 'name' | 'cpuSeconds' | 'rssBytes'> {
  const pids = () =>
    readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .filter((d) => {
        try {
          return readFileSync(`/proc/${d}/comm`, 'utf8').trim() === 'postgres';
        } catch {
          return false;
        }
      })
      .map(Number);
  return {
    name: 'postgres',
    // Backends come and go: one that exits takes its CPU time along, and the postmaster, which
    // reaps it, adds that to its children's time. So the sum stays whole (and never falls).
    cpuSeconds: () => pids().reduce((sum, pid) => sum + cpuSecondsOf(pid, undefined, true), 0),
    rssBytes: () => pids().reduce((sum, pid) => sum + rssOf(pid), 0),
  };
}

/** The probe (bench/lib/probe.ts) as a preload of a process the bench starts. */
export const PROBE = './bench/lib/probe.ts';

/** What the probe saw between its switching on and off. */
export interface ProbeReport {
  stages: Record<string, { calls: number; mean_us: number; p50_us: number; p99_us: number }>;
  ingest: { stored: number; latency_ms: { p50: number; p99: number; max: number } };
  missing: string[];
}

/** Switches a process's probe on; resolves once it is. */
export async function probeOn(proc: BenchProcess): Promise<void> {
  const ack = proc.message('probe-on', 10_000);
  proc.signal('SIGUSR2');
  await ack;
}

/** Switches it off; resolves with what it saw. */
export async function probeOff(proc: BenchProcess): Promise<ProbeReport> {
  const report = proc.message<ProbeReport>('probe', 30_000);
  proc.signal('SIGUSR2');
  return report;
}

/** The 1-minute load average and the machine's core count, for the report. */
export function machineLoad(): { loadavg1: number; cores: number } {
  const [one] = readFileSync('/proc/loadavg', 'utf8').split(' ');
  const cores = readFileSync('/proc/cpuinfo', 'utf8').match(/^processor\s*:/gm)?.length ?? 0;
  return { loadavg1: Number(one), cores };
}

/**
 * The kernel's CPU pressure stall time (/proc/pressure/cpu, "some"): microseconds in which at least
 * one runnable thread waited for a core. Its growth over a run, divided by the run's length, is the
 * share of time work waited to be scheduled. undefined where the kernel has no PSI.
 */
export function cpuPressureMicros(): number | undefined {
  try {
    const some = readFileSync('/proc/pressure/cpu', 'utf8').split('\n')[0] ?? '';
    const total = /total=(\d+)/.exec(some)?.[1];
    return total === undefined ? undefined : Number(total);
  } catch {
    return undefined;
  }
}

/**
 * CPU seconds the whole machine has been busy (all cores, every process and the kernel's own
 * work: /proc/stat's user, nice, system, irq, softirq and steal), for what the report's processes
 * leave unaccounted.
 */
export function machineBusySeconds(): number {
  const [, ...ticks] = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/);
  const [user, nice, system, , , irq, softirq, steal] = ticks.map(Number);
  return ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0)) / CLK_TCK;
}
