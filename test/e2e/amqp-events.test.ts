import amqplib, { type ChannelModel, type ConsumeMessage } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../helpers/eventually.js';
import { Harness } from '../helpers/harness.js';
import { createTestVhost, type TestVhost } from '../helpers/rabbitmq.js';

// Issue 17, "Done when": a consumer created through the API, connected with amqplib using only
// what the API returned, sees the commands and state reports of its own fleet's simulated
// vehicles as enveloped events with the right AMQP properties, and nothing of another fleet.

interface Received {
  queue: string;
  message: ConsumeMessage;
  body: { metadata: Record<string, any>; data: Record<string, any> };
}

describe('events over AMQP, end to end', () => {
  let vh: TestVhost;
  let h: Harness;
  const connections: ChannelModel[] = [];

  beforeAll(async () => {
    vh = await createTestVhost();
    h = await Harness.start({ amqpUrl: vh.amqpUrl });
  });
  afterAll(async () => {
    for (const c of connections) await c.close().catch(() => undefined);
    await h?.close();
    await vh?.remove();
  });

  /** Creates a consumer through the API and consumes its queues with nothing but the answer. */
  async function consumer(token: string, topics: string[]): Promise<Received[]> {
    const res = await h.request('POST', '/event-consumers', { token, body: { topics } });
    expect(res.status).toBe(201);
    const connection = await amqplib.connect(res.body.amqp_url);
    connections.push(connection);
    const channel = await connection.createChannel();
    const received: Received[] = [];
    for (const { queue } of res.body.queues as Array<{ queue: string }>) {
      await channel.consume(queue, (message) => {
        if (!message) return;
        received.push({ queue, message, body: JSON.parse(message.content.toString('utf8')) });
        channel.ack(message);
      });
    }
    return received;
  }

  it("delivers its own fleet's command and state events, with the metadata in the message properties", async () => {
    const tokenA = await h.token('fleet-a', ['events', 'vehicles', 'vehicle-commands']);
    const tokenB = await h.token('fleet-b', ['events', 'vehicles', 'vehicle-commands']);
    const a = await consumer(tokenA, ['commands', 'vehicle-state']);
    const b = await consumer(tokenB, ['commands']);

    const va = await h.vehicle(tokenA);
    const vb = await h.vehicle(tokenB);
    const flows: string[] = [];
    for (const command of ['unlock-central-lock', 'lock-central-lock']) {
      const res = await h.request('POST', `/vehicles/${va.vehicleId}/commands/${command}`, { token: tokenA });
      expect(res.status).toBe(200);
      flows.push(res.headers.get('x-flow-id')!);
    }
    const resB = await h.request('POST', `/vehicles/${vb.vehicleId}/commands/unlock-central-lock`, { token: tokenB });
    expect(resB.status).toBe(200);
    // A state report the unit sends on its own.
    va.unit.reportState(true);

    const finishedFor = (received: Received[], flow: string) =>
      received.find((r) => r.body.metadata.type === 'CommandFinished' && r.body.metadata.flow_id === flow);
    await eventually(() => flows.every((f) => finishedFor(a, f)), 15_000, "fleet A's CommandFinished events");
    await eventually(
      () => b.some((r) => r.body.metadata.flow_id === resB.headers.get('x-flow-id')),
      15_000,
      "fleet B's CommandFinished",
    );
    await eventually(
      () =>
        a.some(
          (r) =>
            r.body.metadata.type === 'VehicleStateRecorded' &&
            !flows.includes(r.body.metadata.flow_id) &&
            r.body.metadata.vehicle_id === va.vehicleId,
        ),
      15_000,
      "the unit's own state report",
    );

    const finished = finishedFor(a, flows[1]!)!;
    expect(finished.queue).toMatch(/\.commands$/);
    expect(finished.body.data).toMatchObject({ command: 'LOCK_CENTRAL_LOCK' });
    const m = finished.body.metadata;
    expect(Object.keys(m).sort()).toEqual(
      ['flow_id', 'fleet_id', 'id', 'occurred_at', 'schema_major_version', 'type', 'vehicle_id'].sort(),
    );
    expect(m).toMatchObject({ fleet_id: 'fleet-a', vehicle_id: va.vehicleId, flow_id: flows[1] });
    const p = finished.message.properties;
    expect(p.messageId).toBe(m.id);
    expect(p.type).toBe('CommandFinished');
    expect(p.correlationId).toBe(flows[1]);
    expect(p.timestamp).toBe(Math.floor(Date.parse(m.occurred_at) / 1000));
    expect(p.headers?.schema_major_version).toBe(m.schema_major_version);
    expect(p.contentType).toBe('application/json');
    expect(p.deliveryMode).toBe(2);
    expect(finished.message.fields.routingKey).toBe(`fleet-a.CommandFinished.${va.vehicleId}`);

    // Every message's properties repeat its envelope, in both topics' queues.
    const stateEvents = a.filter((r) => r.queue.endsWith('.vehicle-state'));
    expect(stateEvents.map((r) => r.body.metadata.type)).toContain('CentralLockStatusChanged');
    for (const r of a) {
      expect(r.message.properties.messageId).toBe(r.body.metadata.id);
      expect(r.message.properties.type).toBe(r.body.metadata.type);
      expect(r.message.properties.correlationId).toBe(r.body.metadata.flow_id);
    }
    // Nothing of fleet B reached fleet A's consumer, and the reverse.
    expect(a.filter((r) => r.body.metadata.fleet_id !== 'fleet-a')).toEqual([]);
    expect(b.filter((r) => r.body.metadata.fleet_id !== 'fleet-b')).toEqual([]);
    expect(b.every((r) => r.body.metadata.type.startsWith('Command'))).toBe(true);
    // At least once, and here exactly once: no event id twice in one queue.
    const ids = a.map((r) => `${r.queue} ${r.body.metadata.id}`);
    expect(new Set(ids).size).toBe(ids.length);

    // /health/ready names the part and it is fine.
    const ready = await h.request('GET', '/health/ready');
    expect(ready.body.checks.amqp).toBe('ok');
  });
});
