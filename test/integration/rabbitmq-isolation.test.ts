import amqplib, { type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveAmqpUrls } from '../../src/events/channels/amqp/amqp-channel.js';
import { AmqpPublisher, type PublishableEvent } from '../../src/events/channels/amqp/amqp-publisher.js';
import { seg } from '../../src/events/channels/amqp/rabbitmq-management.js';
import { RabbitmqProvisioner } from '../../src/events/channels/amqp/rabbitmq-provisioner.js';
import { EVENTS_EXCHANGE, QUEUE_POLICY } from '../../src/events/channels/amqp/routing.js';
import { newEventConsumerId } from '../../src/services/event-consumer-service.js';
import { eventually } from '../helpers/eventually.js';
import { createTestVhost, type TestVhost } from '../helpers/rabbitmq.js';

// Issue 17 §2/§3: each consumer reads only its own fleet's events, enforced by RabbitMQ's users,
// permissions and topic permissions; deleting a consumer removes its access and its queues.

const RETENTION_MS = 120_000;
const logger = pino({ level: 'silent' });

function event(fleetId: string, type: string, vehicleId: string, n: number): PublishableEvent {
  return {
    metadata: {
      id: `01JEV${String(n).padStart(21, '0')}`,
      type,
      schema_major_version: 1,
      occurred_at: new Date().toISOString(),
      flow_id: '5e77e3e3-48ab-4955-8ab3-1c62339096ab',
      fleet_id: fleetId,
      vehicle_id: vehicleId,
    },
    data: { n },
  };
}

/** Runs `fn` on a fresh channel and returns how the broker refused it (it closes the channel). */
async function refusal(connection: ChannelModel, fn: (ch: Channel) => Promise<unknown>): Promise<string> {
  const ch = await connection.createChannel();
  ch.on('error', () => undefined);
  try {
    await fn(ch);
  } catch (err) {
    return String((err as Error).message);
  }
  await ch.close().catch(() => undefined);
  return 'allowed';
}

describe('RabbitMQ event consumers', () => {
  let vh: TestVhost;
  let provisioner: RabbitmqProvisioner;
  let publisher: AmqpPublisher;
  const connections: ChannelModel[] = [];

  beforeAll(async () => {
    vh = await createTestVhost();
    const urls = resolveAmqpUrls({ amqpUrl: vh.amqpUrl, amqpPublicUrl: undefined, amqpManagementUrl: undefined });
    provisioner = new RabbitmqProvisioner({
      ...urls,
      managementUrl: vh.managementUrl,
      retentionMs: RETENTION_MS,
      logger,
    });
    await provisioner.ensureTopology();
    publisher = new AmqpPublisher({ url: vh.amqpUrl, logger, connectionName: 'isolation test' });
    await publisher.start();
    expect(publisher.connected).toBe(true);
  });

  afterAll(async () => {
    for (const c of connections) await c.close().catch(() => undefined);
    await publisher?.close();
    await vh?.remove();
  });

  async function connect(url: string): Promise<ChannelModel> {
    const c = await amqplib.connect(url);
    c.on('error', () => undefined);
    connections.push(c);
    return c;
  }

  it("gives a consumer only its fleet's events, and refuses it every way to another fleet's", async () => {
    const a = await provisioner.createConsumer({
      event_consumer_id: newEventConsumerId(),
      fleet_id: 'fleet.a',
      topics: ['commands', 'vehicle-state'],
    });
    const bId = newEventConsumerId();
    const b = await provisioner.createConsumer({ event_consumer_id: bId, fleet_id: 'fleet-b', topics: ['commands'] });
    expect(b.amqp_url).toMatch(new RegExp(`^amqp://${bId}:[A-Za-z0-9_-]{32}@127\\.0\\.0\\.1:5672/${seg(vh.vhost)}$`));
    expect(b.queues).toEqual([{ topic: 'commands', queue: `fleetgate.consumer.${bId}.commands` }]);
    const aQueue = a.queues.find((q) => q.topic === 'commands')!.queue;
    const bQueue = b.queues[0]!.queue;

    await publisher.publish([
      event('fleet.a', 'CommandFinished', 'VA1', 1),
      event('fleet-b', 'CommandFinished', 'VB1', 2),
      event('fleet.a', 'VehicleStateRecorded', 'VA1', 3),
      event('fleet-b', 'VehicleStateRecorded', 'VB1', 4),
      event('fleet-b', 'CommandFinished', 'VB2', 5),
    ]);

    const bConn = await connect(b.amqp_url);
    const bCh = await bConn.createChannel();
    const got: ConsumeMessage[] = [];
    await bCh.consume(bQueue, (m) => m && got.push(m), { noAck: true });
    await eventually(() => got.length >= 2, 5000, "fleet B's two commands");
    expect(got.map((m) => JSON.parse(m.content.toString()).data.n)).toEqual([2, 5]);
    expect(got[0]!.fields.routingKey).toBe('fleet-b.CommandFinished.VB1');

    // Consumer A got its fleet's events in both its queues (`.` in a fleet id is %2E in keys).
    const aCh = await (await connect(a.amqp_url)).createChannel();
    const aMsg = await aCh.get(aQueue, { noAck: true });
    expect(aMsg ? aMsg.fields.routingKey : undefined).toBe('fleet%2Ea.CommandFinished.VA1');

    // Read: another consumer's queue, by consume, get or passive declare.
    expect(await refusal(bConn, (ch) => ch.consume(aQueue, () => undefined))).toMatch(/ACCESS_REFUSED/);
    expect(await refusal(bConn, (ch) => ch.get(aQueue))).toMatch(/ACCESS_REFUSED/);
    // Declare: a queue outside its own prefix, or one in another consumer's.
    expect(await refusal(bConn, (ch) => ch.assertQueue('peek'))).toMatch(/ACCESS_REFUSED/);
    expect(await refusal(bConn, (ch) => ch.assertQueue(`${aQueue}.copy`))).toMatch(/ACCESS_REFUSED/);
    // Bind: its own new queue to fleet A's events, or to everything; topic permissions refuse.
    const own = `fleetgate.consumer.${bId}.mine`;
    for (const key of ['fleet%2Ea.#', '#', '*.CommandFinished.*', 'fleet%2Ea.CommandFinished.VA1', '*.*.VA1']) {
      expect(
        await refusal(bConn, async (ch) => {
          await ch.assertQueue(own, { durable: false });
          await ch.bindQueue(own, EVENTS_EXCHANGE, key);
        }),
        key,
      ).toMatch(/ACCESS_REFUSED/);
    }
    // ... nor through an exchange of its own bound to the events exchange.
    expect(
      await refusal(bConn, async (ch) => {
        await ch.assertExchange(`${own}.x`, 'topic', { durable: false });
        await ch.bindExchange(`${own}.x`, EVENTS_EXCHANGE, '#');
      }),
    ).toMatch(/ACCESS_REFUSED/);
    // Another consumer's queue to anything, and publishing into the events exchange.
    expect(await refusal(bConn, (ch) => ch.bindQueue(aQueue, EVENTS_EXCHANGE, 'fleet-b.#'))).toMatch(/ACCESS_REFUSED/);
    const pubCh = await bConn.createConfirmChannel();
    pubCh.on('error', () => undefined);
    const published = new Promise<string>((resolve) => {
      pubCh.publish(EVENTS_EXCHANGE, 'fleet%2Ea.CommandFinished.VA1', Buffer.from('{}'), {}, (err) =>
        resolve(err ? 'refused' : 'confirmed'),
      );
      pubCh.once('close', () => resolve('refused'));
    });
    expect(await published).toBe('refused');

    // What it may do: bind a queue of its own to its own fleet's keys, as docs/events.md shows.
    expect(
      await refusal(bConn, async (ch) => {
        await ch.assertQueue(own, { durable: false });
        await ch.bindQueue(own, EVENTS_EXCHANGE, 'fleet-b.Trip.*');
      }),
    ).toBe('allowed');
  });

  it('makes queues that expire after the retention, and deleting a consumer removes its user and queues', async () => {
    const id = newEventConsumerId();
    const c = await provisioner.createConsumer({ event_consumer_id: id, fleet_id: 'fleet-c', topics: ['trips'] });
    const queue = (await vh.management.get(`/queues/${seg(vh.vhost)}/${seg(c.queues[0]!.queue)}`)) as {
      arguments: Record<string, unknown>;
      durable: boolean;
    };
    expect(queue.durable).toBe(true);
    expect(queue.arguments['x-expires']).toBe(RETENTION_MS);
    const policy = (await vh.management.get(`/policies/${seg(vh.vhost)}/${seg(QUEUE_POLICY)}`)) as {
      definition: Record<string, unknown>;
    };
    expect(policy.definition.expires).toBe(RETENTION_MS);

    const conn = await connect(c.amqp_url);
    const ch = await conn.createChannel();
    // A queue the consumer declared itself goes with it too.
    await ch.assertQueue(`fleetgate.consumer.${id}.extra`, { durable: true });
    const closed = new Promise<void>((resolve) => conn.once('close', () => resolve()));

    await provisioner.deleteConsumer({ event_consumer_id: id });
    await closed;
    await expect(amqplib.connect(c.amqp_url)).rejects.toThrow(/ACCESS_REFUSED|403/);
    const left = (await vh.management.get(`/queues/${seg(vh.vhost)}?columns=name`)) as Array<{ name: string }>;
    expect(left.filter((q) => q.name.includes(id))).toEqual([]);
    // Deleting again is not an error (a retried DELETE).
    await provisioner.deleteConsumer({ event_consumer_id: id });
  });
});
