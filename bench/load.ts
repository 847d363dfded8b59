/**
 * The load generator, a process of its own: `node --import tsx bench/load.ts '<json>'`.
 * - `max`: closed loop, `concurrency` requests outstanding for `durationS` (HTTP: autocannon);
 *   each slot owns its own targets, so no two requests ever go to one vehicle at once.
 * - `rate`: open loop at `rate` requests/s, evenly spaced; latency counts from the scheduled
 *   moment, so queueing in the generator or the server is included (no coordinated omission).
 *   A target is used by one request at a time; a request waits for a free one.
 * Transport: `http` (targets are paths) or `mqtt` (targets are unit ids; floor B).
 * Prints {"type":"result", …}.
 * Each run is a process of its own, and each mode needs one of three libraries (autocannon, the
 * raw HTTP connections, mqtt.js): each sender imports its own, so the others are not loaded (each
 * costs the process 0.3-0.6 s of start-up, times 28 runs in a quick run).
 */
import { readFileSync } from 'node:fs';

export interface LoadSpec {
  mode: 'max' | 'rate';
  transport: 'http' | 'mqtt';
  /** http: base URL; mqtt: broker URL. */
  url: string;
  credentials?: { username: string; password: string };
  headers?: Record<string, string>;
  targets: string[];
  durationS: number;
  warmupS: number;
  concurrency?: number;
  rate?: number;
}

export interface LoadResult {
  type: 'result';
  requests: number;
  errors: number;
  statuses: Record<string, number>;
  /** Completed requests per second over the measured period. */
  rps: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  offered?: number;
  /** The open-loop run fell more than a second behind and stopped sending. */
  saturated?: boolean;
}

// The spec comes as JSON, or as `@<file>` when it is too long for a command line (15,000 targets).
const arg = process.argv[2] ?? '{}';
const spec = JSON.parse(arg.startsWith('@') ? readFileSync(arg.slice(1), 'utf8') : arg) as LoadSpec;

function percentiles(samples: Float64Array, n: number): LoadResult['latencyMs'] {
  const s = samples.subarray(0, n).sort();
  const at = (q: number) => (n === 0 ? 0 : round(s[Math.min(n - 1, Math.ceil(q * n) - 1)]!));
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: n === 0 ? 0 : round(s[n - 1]!) };
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

type Send = (target: string) => Promise<number>;

async function httpSenders(count: number): Promise<{ sends: Send[]; close: () => void }> {
  const u = new URL(spec.url);
  const headers = `host: ${u.host}\r\n${Object.entries(spec.headers ?? {})
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}`;
  const { RawHttpConnection } = await import('./lib/raw-http.js');
  const conns = Array.from({ length: count }, () => new RawHttpConnection(u.hostname, Number(u.port), headers));
  await Promise.all(conns.map((c) => c.ready));
  return {
    sends: conns.map((c) => (t: string) => c.post(t)),
    close: () => {
      for (const c of conns) c.close();
    },
  };
}

async function mqttSenders(): Promise<{ send: Send; close: () => Promise<void> }> {
  const [{ connectServiceClient }, { MqttRequester }] = await Promise.all([
    import('../src/broker/mqtt-connection.js'),
    import('./lib/mqtt-requester.js'),
  ]);
  const client = await connectServiceClient(spec.url, spec.credentials);
  const requester = await MqttRequester.start(client);
  return {
    send: (unit) => requester.request(unit).then(() => 200),
    close: () => client.endAsync(true),
  };
}

/** Closed loop with our own senders (MQTT); HTTP uses autocannon. */
async function closedLoop(send: (slot: number, target: string) => Promise<number>, seconds: number) {
  const c = spec.concurrency ?? 32;
  const samples = new Float64Array(4_000_000);
  let n = 0;
  let errors = 0;
  const statuses: Record<string, number> = {};
  const until = performance.now() + seconds * 1000;
  const slots = Array.from({ length: c }, async (_, slot) => {
    const mine = spec.targets.filter((_, i) => i % c === slot);
    let k = 0;
    while (performance.now() < until) {
      const target = mine[k++ % mine.length]!;
      const t0 = performance.now();
      const status = await send(slot, target).catch(() => 0);
      statuses[status] = (statuses[status] ?? 0) + 1;
      if (status < 200 || status >= 300) errors++;
      if (n < samples.length) samples[n++] = performance.now() - t0;
    }
  });
  const t0 = performance.now();
  await Promise.all(slots);
  const elapsed = (performance.now() - t0) / 1000;
  return { requests: n, errors, statuses, rps: Math.round(n / elapsed), latencyMs: percentiles(samples, n) };
}

// An open-loop run that falls this far behind (requests sent but unanswered, or waiting for a
// target) is saturated: it stops sending, and what is still outstanding after GRACE_MS counts as
// errors with the time waited so far, so an overloaded run ends instead of draining for minutes.
const BACKLOG_SECONDS = 1;
const GRACE_MS = 2_000;

async function openLoop(sendOn: (target: string) => Promise<number>, seconds: number, rate: number) {
  const total = Math.round(rate * seconds);
  const samples = new Float64Array(total);
  let n = 0;
  let errors = 0;
  let done = 0;
  const statuses: Record<string, number> = {};
  const free = [...spec.targets];
  const waitingForTarget: Array<() => void> = [];
  const outstanding = new Map<number, { t0: number; target: string }>();
  let nextId = 0;
  const interval = 1000 / rate;
  const start = performance.now();
  let finished!: () => void;
  const allDone = new Promise<void>((r) => {
    finished = r;
  });
  let cut = false;
  const fire = async () => {
    // From the moment the generator sends (timer lateness is the generator's, not the server's),
    // including any wait for a free target or socket (that is queueing behind the server).
    const t0 = performance.now();
    const id = nextId++;
    outstanding.set(id, { t0, target: '(waiting for a target)' });
    while (free.length === 0) await new Promise<void>((r) => waitingForTarget.push(r));
    const target = free.shift()!;
    outstanding.set(id, { t0, target });
    const status = await sendOn(target).catch((err: Error) => {
      process.stderr.write(`request failed: ${target}: ${err.message}\n`);
      return 0;
    });
    free.push(target);
    waitingForTarget.shift()?.();
    if (cut) return;
    outstanding.delete(id);
    samples[n++] = performance.now() - t0;
    statuses[status] = (statuses[status] ?? 0) + 1;
    if (status < 200 || status >= 300) errors++;
    if (++done === issued && stopped) finished();
  };
  let issued = 0;
  let stopped = false;
  let saturated = false;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      while (issued < total && start + issued * interval <= now) {
        if (outstanding.size > Math.max(1_000, rate * BACKLOG_SECONDS)) {
          saturated = true;
          break;
        }
        void fire();
        issued++;
      }
      if (issued >= total || saturated) return resolve();
      // A 1 ms timer, not setImmediate: a busy loop would take a core from the servers measured.
      setTimeout(tick, Math.max(1, Math.min(50, start + issued * interval - now)));
    };
    tick();
  });
  stopped = true;
  if (done === issued) finished();
  await Promise.race([allDone, new Promise((r) => setTimeout(r, GRACE_MS))]);
  cut = true;
  const now = performance.now();
  for (const { t0, target } of outstanding.values()) {
    samples[n++] = now - t0;
    errors++;
    process.stderr.write(`unanswered after ${Math.round(now - t0)} ms: ${target}\n`);
  }
  if (outstanding.size > 0) statuses.unanswered = outstanding.size;
  const elapsed = (now - start) / 1000;
  return {
    requests: n,
    errors,
    statuses,
    rps: Math.round(done / elapsed),
    latencyMs: percentiles(samples, n),
    offered: rate,
    ...(saturated ? { saturated: true } : {}),
  };
}

async function autocannonMax(seconds: number) {
  const { default: autocannon } = await import('autocannon');
  const c = spec.concurrency ?? 32;
  const statuses: Record<string, number> = {};
  const free = [...spec.targets];
  const result = await autocannon({
    url: spec.url,
    connections: c,
    pipelining: 1,
    duration: seconds,
    method: 'POST',
    headers: spec.headers ?? {},
    initialContext: {},
    requests: [
      {
        method: 'POST',
        // A free target per request, back in the queue once answered: no two requests ever go
        // to one vehicle at once. (autocannon resets each connection's context per request, so
        // connections cannot own fixed slices.)
        setupRequest: (req: Record<string, unknown>, context: Record<string, unknown>) => {
          const target = free.shift() ?? spec.targets[0]!;
          context.target = target;
          req.path = target;
          return req;
        },
        onResponse: (status: number, _body: unknown, context: Record<string, unknown>) => {
          statuses[status] = (statuses[status] ?? 0) + 1;
          if (typeof context.target === 'string') free.push(context.target);
        },
      },
    ],
  });
  const requests = result.requests.total;
  const errors = result.errors + result.timeouts + result.non2xx;
  return {
    requests,
    errors,
    statuses: { ...statuses, errors: result.errors, timeouts: result.timeouts },
    rps: Math.round(requests / (result.duration || seconds)),
    latencyMs: {
      p50: result.latency.p50,
      p90: result.latency.p90,
      p99: result.latency.p99,
      max: result.latency.max,
    },
  };
}

/** Tells the bench the measured period starts now (it samples every process's CPU time). */
function measuring(): void {
  process.stdout.write('{"type":"measuring"}\n');
}

async function main(): Promise<LoadResult> {
  if (spec.transport === 'http') {
    if (spec.mode === 'max') {
      if (spec.warmupS > 0) await autocannonMax(spec.warmupS);
      // autocannon leaves its last requests running when time is up: let them end first, or
      // their vehicles would answer the next run with 409 (one command at a time per vehicle).
      await new Promise((r) => setTimeout(r, 500));
      measuring();
      return { type: 'result', ...(await autocannonMax(spec.durationS)) };
    }
    const rate = spec.rate!;
    // Enough sockets for the rate at a 20 ms latency, at least 16; open loop needs idle ones.
    const { sends, close } = await httpSenders(Math.min(512, Math.max(16, Math.ceil(rate / 50))));
    const idle = [...sends];
    const waiting: Array<() => void> = [];
    const send = async (target: string) => {
      while (idle.length === 0) await new Promise<void>((r) => waiting.push(r));
      // In turn (oldest idle first): a socket left unused for fleetgate's header timeout (10 s)
      // is closed by it with a 408, as one that sends nothing should be; taken last-in-first-out,
      // the sockets below the few in use sat idle that long at 100/s, and a request sent on one
      // of them later was never answered (the embedded scale runs' one "unanswered" command).
      const s = idle.shift()!;
      try {
        return await s(target);
      } finally {
        idle.push(s);
        waiting.shift()?.();
      }
    };
    if (spec.warmupS > 0) await openLoop(send, spec.warmupS, rate);
    measuring();
    const r = await openLoop(send, spec.durationS, rate);
    close();
    return { type: 'result', ...r };
  }
  const { send, close } = await mqttSenders();
  let r: Omit<LoadResult, 'type'>;
  if (spec.mode === 'max') {
    if (spec.warmupS > 0) await closedLoop((_, t) => send(t), spec.warmupS);
    measuring();
    r = await closedLoop((_, t) => send(t), spec.durationS);
  } else {
    if (spec.warmupS > 0) await openLoop(send, spec.warmupS, spec.rate!);
    measuring();
    r = await openLoop(send, spec.durationS, spec.rate!);
  }
  await close();
  return { type: 'result', ...r };
}

const result = await main();
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
