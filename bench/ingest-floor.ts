/**
 * The ingestion floors' receiver: `node --import tsx bench/ingest-floor.ts '<json>'` with
 * - { mode: 'count', mqttUrl? }: floor E, one subscriber to every unit's state topic that only
 *   counts the reports (and reads the send time from the first capture time, for the latency);
 * - { mode: 'store', mqttUrl?, store: { dataDir, databaseUrl? }, prefix }: floor F, floor E plus
 *   the store write a report needs (the latest-state merge, `store.mergeState`, on the real store
 *   seeded as fleetgate's; with events, the store writes the event's outbox row in the same
 *   transaction), counted once the write resolved. No authentication check, ACL, state catalogue
 *   or vehicle lookup (units map to vehicles by their number).
 * Without mqttUrl it runs fleetgate's embedded broker (aedes, in a thread, every unit let in), as
 * fleetgate does. Prints {"type":"ready","mqttUrl":…}; on stdin {"type":"stats"} prints
 * {"type":"stats","stored":N,"latency_ms":{p50,p99,max}} for what arrived since the last one.
 */
import { pino } from 'pino';
import { startEmbeddedBroker } from '../src/broker/embedded-broker.js';
import { connectServiceClient } from '../src/broker/mqtt-connection.js';
import type { VehicleState } from '../src/domain/state-catalogue.js';
import { createStore } from '../src/store/registry.js';
import type { Store } from '../src/store/store.js';
import { TOPIC_ROOT } from '../src/telematics/fleetgate-mqtt/protocol.js';
import { vehicleId } from './lib/topology.js';

interface IngestSpec {
  mode: 'count' | 'store';
  mqttUrl?: string;
  store?: { dataDir: string; databaseUrl?: string };
  prefix?: string;
}

const spec = JSON.parse(process.argv[2] ?? '{}') as IngestSpec;
const logger = pino({ level: 'warn' });

let mqttUrl = spec.mqttUrl;
let credentials: { username: string; password: string } | undefined;
if (!mqttUrl) {
  const broker = await startEmbeddedBroker({ host: '127.0.0.1', port: 0, logger, authenticateUnit: async () => true });
  mqttUrl = broker.url;
  credentials = broker.serviceCredentials;
}
const store: Store | undefined = spec.store ? await createStore({ ...spec.store, logger }) : undefined;
await store?.migrate();

let stored = 0;
let latencies: number[] = [];
const now = () => performance.timeOrigin + performance.now();

/** `…T04:00:00.123456Z` → epoch ms with the microseconds. */
function sentAt(iso: string): number {
  const dot = iso.indexOf('.');
  return Date.parse(`${iso.slice(0, dot)}Z`) + Number(`0.${iso.slice(dot + 1, -1)}`) * 1000;
}

function count(sent: number): void {
  stored++;
  if (latencies.length < 2_000_000) latencies.push(now() - sent);
}

const client = await connectServiceClient(mqttUrl, credentials, logger);
const prefixLength = TOPIC_ROOT.length + (spec.prefix ?? '').length;
client.on('message', (topic, payload) => {
  if (!store) {
    // Floor E: the first capture time is the send time; no parse beyond finding it.
    const text = payload.toString();
    const at = text.indexOf('"timestamp":"') + 13;
    count(sentAt(text.slice(at, text.indexOf('"', at))));
    return;
  }
  const { state } = JSON.parse(payload.toString()) as { state: VehicleState };
  const sent = sentAt(state.mileage_in_kilometers!.timestamp);
  // As the state catalogue leaves them: millisecond capture times.
  for (const name of Object.keys(state)) {
    const p = state[name]!;
    state[name] = { timestamp: new Date(Date.parse(p.timestamp)).toISOString(), value: p.value };
  }
  const unit = Number(topic.slice(prefixLength, topic.lastIndexOf('/')));
  store.mergeState(vehicleId(unit), state).then(
    () => count(sent),
    (err: unknown) => logger.error({ err }, 'mergeState failed'),
  );
});
await client.subscribeAsync(`${TOPIC_ROOT}+/state`, { qos: 0 });

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return 0;
  return Math.round(sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]! * 100) / 100;
}

process.stdin.on('data', (chunk) => {
  for (const text of chunk.toString().split('\n')) {
    if (!text.trim()) continue;
    if ((JSON.parse(text) as { type: string }).type !== 'stats') continue;
    const sorted = Float64Array.from(latencies).sort();
    const out = {
      type: 'stats',
      stored,
      latency_ms: { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), max: percentile(sorted, 1) },
    };
    stored = 0;
    latencies = [];
    process.stdout.write(`${JSON.stringify(out)}\n`);
  }
});
process.stdout.write(`${JSON.stringify({ type: 'ready', mqttUrl, credentials })}\n`);
process.on('SIGTERM', () => process.exit(0));
