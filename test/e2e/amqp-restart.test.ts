import type { ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RabbitmqServer, startRabbitmqServer } from '../../scripts/lib/rabbitmq-server.js';
import { consumeTap, declareTap, duplicates, outboxIds } from '../helpers/amqp-tap.js';
import { eventually } from '../helpers/eventually.js';
import { Harness } from '../helpers/harness.js';

// Issue 17 §3: RabbitMQ restarted while events flow → none lost, publishing resumes by itself,
// /health/ready names `amqp` while it is down, and commands keep working meanwhile. The test
// runs a RabbitMQ node of its own (own node name, data dir and free ports), so restarting it
// disturbs no other test using the machine's shared RabbitMQ. It boots in 5–60 s.
describe('RabbitMQ restarted while events flow', () => {
  let rabbit: RabbitmqServer;
  let h: Harness;
  let tap: ChannelModel | undefined;
  const received: string[] = [];

  beforeAll(async () => {
    rabbit = await startRabbitmqServer();
    await declareTap(rabbit.url, 'tap');
    // No management plugin on this node: consumers cannot be made here, publishing is tested.
    h = await Harness.start({ amqpUrl: rabbit.url });
  }, 240_000);
  afterAll(async () => {
    await tap?.close().catch(() => undefined);
    await h?.close();
    await rabbit?.close();
  }, 120_000);

  it('loses no event, keeps commands working and resumes by itself', async () => {
    const token = await h.token('fleet-r', ['vehicles', 'vehicle-commands']);
    const v = await h.vehicle(token);
    let n = 0;
    const command = async () => {
      const name = n++ % 2 === 0 ? 'unlock-central-lock' : 'lock-central-lock';
      const res = await h.request('POST', `/vehicles/${v.vehicleId}/commands/${name}`, { token });
      expect(res.status).toBe(200);
    };
    for (let i = 0; i < 5; i++) await command();
    // Events flow: some published before the restart.
    await eventually(async () => (await h.request('GET', '/health/ready')).body.checks.amqp === 'ok', 10_000);

    const stopping = rabbit.stop();
    // Commands go on while RabbitMQ goes down and stays down.
    let last: Promise<void> = Promise.resolve();
    for (;;) {
      last = command();
      if (await Promise.race([stopping.then(() => true), last.then(() => false)])) break;
    }
    // The round the stop ended may still be running: the next command to this vehicle would meet
    // it (409 conflicting-command, CI 19:44).
    await last;
    await eventually(
      async () => (await h.request('GET', '/health/ready')).body.checks.amqp !== 'ok',
      15_000,
      'readiness names amqp',
    );
    const ready = await h.request('GET', '/health/ready');
    expect(ready.status).toBe(200);
    expect(ready.body.status).toBe('degraded');
    expect(ready.body.checks.amqp).toMatch(/not connected/);
    for (let i = 0; i < 5; i++) await command();

    await rabbit.start();
    tap = await consumeTap(rabbit.url, 'tap', received);
    for (let i = 0; i < 3; i++) await command();
    const expected = await outboxIds(h.app.store);
    await eventually(() => new Set(received).size >= new Set(expected).size, 60_000, 'every event after the restart');
    expect([...new Set(received)].sort()).toEqual([...new Set(expected)].sort());
    // At least once: a batch RabbitMQ took but whose confirm the restart cut off comes again.
    expect(duplicates(received).length).toBeLessThan(expected.length);
    expect((await h.request('GET', '/health/ready')).body.checks.amqp).toBe('ok');
  }, 240_000);
});
