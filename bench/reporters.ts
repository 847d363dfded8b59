/**
 * A process of units that report state for the ingestion bench:
 * `node --import tsx bench/reporters.ts '<json>'` with { mqttUrl, prefix, from, count, password }.
 * Each unit logs in as a fleetgate/v1 unit (its own credentials, a last will, a retained
 * `online`), answers commands at once (SUCCEEDED with its state, docs/mqtt-protocol.md §5) and, when
 * told, publishes state reports. A report is the simulator's periodic one (src/sim/fleetgate-unit.ts:
 * every property of a fleetgate-car-v1, each with a fresh capture time, QoS 0), with the mileage
 * counting up and the send time, to the microsecond, as every capture time: the receiver's
 * report→stored latency is measured from it.
 *
 * stdin, one JSON line each: {"type":"report","rate":R,"seconds":S} publishes R reports/s in all
 * (round robin over the units, evenly spaced) for S seconds, then prints
 * {"type":"reported","sent":N,"due":M} (M the reports the schedule called for: fewer sent = this
 * process fell behind). Prints {"type":"ready",…} once every unit is online.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { enableNoDelay } from '../src/broker/mqtt-connection.js';
import { encodeStatus, QOS_STATE, QOS_STATUS, unitTopic } from '../src/telematics/fleetgate-mqtt/protocol.js';

interface ReportersSpec {
  mqttUrl: string;
  prefix: string;
  from: number;
  count: number;
  password: string;
  /** Logins in flight at once. */
  parallel?: number;
}

const spec = JSON.parse(process.argv[2] ?? '{}') as ReportersSpec;

interface Unit {
  id: string;
  client: MqttClient;
  stateTopic: string;
  mileage: number;
}

const units: Unit[] = [];

function isoMicros(epochMs: number): string {
  const whole = Math.floor(epochMs);
  const micros = Math.floor((epochMs - whole) * 1000);
  return `${new Date(whole).toISOString().slice(0, -1)}${String(micros).padStart(3, '0')}Z`;
}

function nowEpochMs(): number {
  return performance.timeOrigin + performance.now();
}

/** The simulator's full report, every capture time `at`. */
function report(unit: Unit, at: string): string {
  unit.mileage += 0.1;
  const p = (value: unknown) => `{"timestamp":"${at}","value":${JSON.stringify(value)}}`;
  return (
    `{"v":1,"state":{"mileage_in_kilometers":${p(Math.round(unit.mileage * 10) / 10)}` +
    `,"state_of_charge_or_fuel_level_in_percent":${p(80)},"remaining_range_in_kilometers":${p(280)}` +
    `,"position":${p({ lat: 52.52, lon: 13.405 })},"cellular_signal_quality":${p(4)}` +
    `,"driving_enabled":${p(false)},"central_lock":${p('LOCKED')},"ignition":${p('OFF')}` +
    `,"speed_in_kilometers_per_hour":${p(0)},"top_case_lock":${p('LOCKED')},"top_case_lid":${p('CLOSED')}` +
    `,"battery_compartment_lock":${p('LOCKED')}}}`
  );
}

function connect(id: string): Promise<Unit> {
  const statusTopic = unitTopic(id, 'status');
  const client = mqtt.connect(spec.mqttUrl, {
    clientId: id,
    username: id,
    password: spec.password,
    clean: true,
    protocolVersion: 4,
    keepalive: 30,
    reconnectPeriod: 1_000 + Math.floor(Math.random() * 1_000),
    connectTimeout: 30_000,
    resubscribe: false,
    will: { topic: statusTopic, payload: Buffer.from(encodeStatus('offline')), qos: QOS_STATUS, retain: true },
  });
  const unit: Unit = { id, client, stateTopic: unitTopic(id, 'state'), mileage: 10_000 };
  const responses = unitTopic(id, 'responses');
  client.on('message', (_topic, payload) => {
    // Answer every command at once; the id is all that is needed from it.
    const cmd = JSON.parse(payload.toString()) as { id: string };
    const at = new Date().toISOString();
    const state = JSON.parse(report(unit, at)).state as unknown;
    client.publish(responses, JSON.stringify({ v: 1, id: cmd.id, status: 'SUCCEEDED', timestamp: at, state }), {
      qos: 1,
    });
  });
  client.on('error', () => undefined);
  return new Promise<Unit>((resolve) => {
    client.on('connect', () => {
      enableNoDelay(client);
      void client
        .subscribeAsync(unitTopic(id, 'commands'), { qos: 1 })
        .then(() => client.publishAsync(statusTopic, encodeStatus('online'), { qos: QOS_STATUS, retain: true }))
        .then(
          () => resolve(unit),
          () => undefined,
        );
    });
  });
}

const started = Date.now();
let next = spec.from;
const end = spec.from + spec.count;
await Promise.all(
  Array.from({ length: spec.parallel ?? 50 }, async () => {
    while (next < end) units.push(await connect(`${spec.prefix}${next++}`));
  }),
);
process.stdout.write(
  `${JSON.stringify({ type: 'ready', connected: units.length, ms: Date.now() - started, rss: process.memoryUsage().rss })}\n`,
);

/** Open loop: reports evenly spaced at `rate`/s for `seconds`; late ticks catch up, counted. */
async function reportFor(rate: number, seconds: number): Promise<{ sent: number; due: number }> {
  const total = Math.round(rate * seconds);
  const interval = 1000 / rate;
  const t0 = performance.now();
  let issued = 0;
  let sent = 0;
  let k = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      const due = Math.min(total, Math.floor((now - t0) / interval) + 1);
      // A stamp per tick: the reports of one tick leave together.
      const at = isoMicros(nowEpochMs());
      while (issued < due) {
        const unit = units[k++ % units.length]!;
        issued++;
        if (!unit.client.connected) continue;
        unit.client.publish(unit.stateTopic, report(unit, at), { qos: QOS_STATE });
        sent++;
      }
      if (issued >= total || now - t0 > seconds * 1000 + 1_000) return resolve();
      setTimeout(tick, Math.max(1, Math.min(20, t0 + issued * interval - performance.now())));
    };
    tick();
  });
  return { sent, due: total };
}

process.stdin.on('data', (chunk) => {
  for (const text of chunk.toString().split('\n')) {
    if (!text.trim()) continue;
    const msg = JSON.parse(text) as { type: string; rate?: number; seconds?: number };
    if (msg.type === 'report') {
      void reportFor(msg.rate!, msg.seconds!).then((r) =>
        process.stdout.write(`${JSON.stringify({ type: 'reported', ...r })}\n`),
      );
    }
  }
});
// A lost link, not a clean goodbye: the broker publishes the last wills.
process.on('SIGTERM', () => process.exit(0));
