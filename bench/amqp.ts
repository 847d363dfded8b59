/**
 * `npm run bench -- --amqp [--events N] [--rate R] [--seconds S]`: events over AMQP (issue 17 §5).
 *
 * 1. Publishing with confirms: the AMQP channel's publisher sends N events in its batches of 500
 *    to fleetgate's exchange, one durable queue bound to it (so each confirm waits for RabbitMQ
 *    to persist), and waits for every confirm: events/s.
 * 2. Commit → consumer: an embedded fleetgate (SQLite) publishing to RabbitMQ, one event consumer
 *    created through the API and reading with amqplib; state writes go through the store at R per
 *    second for S seconds (each commits VehicleStateRecorded and CentralLockStatusChanged); the
 *    latency of each VehicleStateRecorded is its arrival minus its `occurred_at` (stamped in the
 *    writing transaction): p50, p99, max.
 *
 * Uses the RabbitMQ at FLEETGATE_BENCH_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672, its
 * management plugin on port 15672) in a virtual host of its own, deleted afterwards.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import amqplib from 'amqplib';
import { pino } from 'pino';
import { createApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { newEvent } from '../src/domain/events.js';
import { AmqpPublisher } from '../src/events/channels/amqp/amqp-publisher.js';
import { seg } from '../src/events/channels/amqp/rabbitmq-management.js';
import { EVENTS_EXCHANGE } from '../src/events/channels/amqp/routing.js';
import { createApiClient } from '../src/services/auth-service.js';
import { createTestVhost } from '../test/helpers/rabbitmq.js';
import { parseCommandLine, wholeNumber } from './lib/args.js';

const USAGE = 'npm run bench -- --amqp [--events 20000] [--rate 500] [--seconds 10]';
const { values } = parseCommandLine(USAGE, {
  options: {
    amqp: { type: 'boolean' },
    events: { type: 'string' },
    rate: { type: 'string' },
    seconds: { type: 'string' },
  },
});
const EVENTS = wholeNumber(USAGE, 'events', values.events, 20_000);
const RATE = wholeNumber(USAGE, 'rate', values.rate, 500);
const SECONDS = wholeNumber(USAGE, 'seconds', values.seconds, 10);
const BATCH = 500;
const log = (line: string) => process.stdout.write(`${line}\n`);

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;

async function publishing(amqpUrl: string): Promise<void> {
  const connection = await amqplib.connect(amqpUrl);
  const channel = await connection.createChannel();
  await channel.assertExchange(EVENTS_EXCHANGE, 'topic', { durable: true });
  await channel.assertQueue('bench.all', { durable: true });
  await channel.bindQueue('bench.all', EVENTS_EXCHANGE, '#');
  const publisher = new AmqpPublisher({ url: amqpUrl, logger: pino({ level: 'silent' }), connectionName: 'bench' });
  await publisher.start();
  const subject = { fleet_id: 'bench', vehicle_id: 'BENCHVEHICLE', flow_id: '5e77e3e3-48ab-4955-8ab3-1c62339096ab' };
  const events = Array.from({ length: EVENTS }, (_, i) =>
    newEvent('CentralLockStatusChanged', subject, { property: 'central_lock', value: i % 2 ? 'LOCKED' : 'UNLOCKED' }),
  );
  const started = performance.now();
  for (let i = 0; i < events.length; i += BATCH) await publisher.publish(events.slice(i, i + BATCH));
  const seconds = (performance.now() - started) / 1000;
  const queued = (await channel.checkQueue('bench.all')).messageCount;
  log(
    `publishing with confirms: ${EVENTS} events in ${seconds.toFixed(2)} s = ${Math.round(EVENTS / seconds)} events/s (batches of ${BATCH}, persistent, 1 durable queue; ${queued} queued)`,
  );
  await channel.deleteQueue('bench.all');
  await publisher.close();
  await connection.close();
}

async function endToEnd(amqpUrl: string): Promise<void> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'fleetgate-bench-amqp-'));
  const config = loadConfig(
    {
      port: 0,
      mqttPort: 0,
      teltonikaPort: 0,
      host: '127.0.0.1',
      mqttHost: '127.0.0.1',
      logLevel: 'warn',
      dataDir,
      amqpUrl,
    },
    {},
  );
  const app = await createApp(config);
  try {
    const client = await createApiClient(app.store, { fleetId: 'bench', scopes: ['events', 'vehicles'] });
    const basic = Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64');
    const token = (await (
      await fetch(`${app.url}/auth/oauth/token?grant_type=client_credentials`, {
        method: 'POST',
        headers: { authorization: `Basic ${basic}` },
      })
    ).json()) as { access_token: string };
    const api = async (method: string, url: string, body: unknown) =>
      (await fetch(`${app.url}${url}`, {
        method,
        headers: { authorization: `Bearer ${token.access_token}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      }).then((r) => r.json())) as Record<string, any>;
    const vehicle = await api('POST', '/vehicles', {
      telematics_brand: 'FLEETGATE',
      telematics_unit_id: 'bench-unit',
      vehicle_model_id: 'fleetgate-car-v1',
      password: 'bench-unit-password-0123',
    });
    const consumer = await api('POST', '/event-consumers', { topics: ['vehicle-state'] });
    const connection = await amqplib.connect(consumer.amqp_url);
    const channel = await connection.createChannel();
    await channel.prefetch(1000);
    const latencies: number[] = [];
    await channel.consume(consumer.queues[0].queue, (m) => {
      if (!m) return;
      if (m.properties.type === 'VehicleStateRecorded') {
        const { metadata } = JSON.parse(m.content.toString('utf8'));
        latencies.push(Date.now() - Date.parse(metadata.occurred_at));
      }
      channel.ack(m);
    });
    const writes = RATE * SECONDS;
    let sent = 0;
    const tick = 10;
    const started = Date.now();
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        const due = Math.min(writes, Math.round(((Date.now() - started) / 1000) * RATE));
        for (; sent < due; sent++) {
          const at = new Date().toISOString();
          void app.store.mergeState(vehicle.vehicle_id, {
            central_lock: { timestamp: at, value: sent % 2 ? 'LOCKED' : 'UNLOCKED' },
          });
        }
        if (sent >= writes) {
          clearInterval(timer);
          resolve();
        }
      }, tick);
    });
    const until = Date.now() + 30_000;
    while (latencies.length < writes && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    const sorted = [...latencies].sort((a, b) => a - b);
    log(
      `commit -> consumer at ${RATE} state writes/s (${RATE * 2} events/s) for ${SECONDS} s: ${latencies.length}/${writes} received; p50 ${percentile(sorted, 50)} ms, p99 ${percentile(sorted, 99)} ms, max ${sorted[sorted.length - 1]} ms`,
    );
    await connection.close();
    await api('DELETE', `/event-consumers/${consumer.event_consumer_id}`, undefined).catch(() => undefined);
  } finally {
    await app.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const vhost = await createTestVhost();
try {
  log(`AMQP bench, RabbitMQ vhost ${seg(vhost.vhost)}; load average ${loadavg()[0]!.toFixed(2)} at start`);
  await publishing(vhost.amqpUrl);
  await endToEnd(vhost.amqpUrl);
  log(`load average ${loadavg()[0]!.toFixed(2)} at end (cores shared by every process on the machine)`);
} finally {
  await vhost.remove();
}
