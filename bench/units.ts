/**
 * A process of simulated fleetgate/v1 units for the bench: `node --import tsx bench/units.ts '<json>'`
 * with { mqttUrl, prefix, from, count, password, model }. Units answer at once (no ACCEPTED,
 * docs/mqtt-protocol.md §5). Prints {"type":"ready"} once every unit is online, then stays until
 * SIGTERM; the broker publishes their last wills.
 */
import { FleetgateUnit } from '../src/sim/fleetgate-unit.js';

interface UnitsSpec {
  mqttUrl: string;
  prefix: string;
  from: number;
  count: number;
  password: string;
  model: string;
  /** Connections opened at once. */
  parallel?: number;
}

const spec = JSON.parse(process.argv[2] ?? '{}') as UnitsSpec;
const units: FleetgateUnit[] = [];
const started = Date.now();
let next = spec.from;
const end = spec.from + spec.count;
const failures: string[] = [];

async function worker(): Promise<void> {
  while (next < end) {
    const i = next++;
    const unit = new FleetgateUnit({
      mqttUrl: spec.mqttUrl,
      unitId: `${spec.prefix}${i}`,
      password: spec.password,
      model: spec.model,
      answerDelayMs: 0,
      reportIntervalMs: 24 * 3600_000,
      drive: false,
    });
    units.push(unit);
    await unit.start().catch((e: unknown) => {
      if (failures.length < 5) failures.push(String(e));
    });
  }
}

await Promise.all(Array.from({ length: spec.parallel ?? 50 }, worker));
// Units whose first login timed out (a broker busy with thousands of logins) try again, fewer at
// a time, as real units would after their reconnect delay.
let retried = 0;
for (let round = 0; round < 3; round++) {
  const failed = units.filter((u) => !u.connected);
  if (failed.length === 0) break;
  retried += failed.length;
  let k = 0;
  const retry = async () => {
    while (k < failed.length) await failed[k++]!.start().catch(() => undefined);
  };
  await Promise.all(Array.from({ length: 10 }, retry));
}
const connected = units.filter((u) => u.connected).length;
const line = {
  type: 'ready',
  connected,
  failed: spec.count - connected,
  failures,
  retried,
  ms: Date.now() - started,
  rss: process.memoryUsage().rss,
};
process.stdout.write(`${JSON.stringify(line)}\n`);

process.stdin.resume();
process.stdin.on('data', (chunk) => {
  for (const text of chunk.toString().split('\n')) {
    if (!text.trim()) continue;
    const msg = JSON.parse(text) as { type: string };
    if (msg.type === 'stats') {
      const answered = units.reduce((n, u) => n + u.stats.succeeded, 0);
      const connects = units.reduce((n, u) => n + u.stats.connects, 0);
      const reports = units.reduce((n, u) => n + u.stats.stateReports, 0);
      const down = units.filter((u) => !u.connected);
      const connected = units.length - down.length;
      // Which units are not connected (the first 50): a storm that leaves vehicles OFFLINE says why.
      const notConnected = down.slice(0, 50).map((u) => u.unitId);
      process.stdout.write(
        `${JSON.stringify({ type: 'stats', answered, connects, reports, connected, notConnected, rss: process.memoryUsage().rss })}\n`,
      );
    }
  }
});
// A lost link, not a clean goodbye: quicker for thousands of units, and the broker's last wills
// still mark them offline.
process.on('SIGTERM', () => process.exit(0));
