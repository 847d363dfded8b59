import type { ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AMQP_CURSOR } from '../../src/events/channels/amqp/amqp-channel.js';
import { consumeTap, declareTap, duplicates, outboxIds } from '../helpers/amqp-tap.js';
import { eventually } from '../helpers/eventually.js';
import { Harness } from '../helpers/harness.js';
import { createTestDatabase } from '../helpers/postgres.js';
import { createTestVhost, type TestVhost } from '../helpers/rabbitmq.js';

// Issue 17 §3: several instances publish without duplicates in normal operation (one holds the
// `amqp` cursor's lease at a time), and a stopping instance hands over without loss.
describe('AMQP publishing with two instances on one PostgreSQL', () => {
  let vh: TestVhost;
  let db: { url: string; drop: () => Promise<void> };
  let one: Harness;
  let two: Harness;
  let tapConnection: ChannelModel;
  const received: string[] = [];

  beforeAll(async () => {
    vh = await createTestVhost();
    db = await createTestDatabase();
    await declareTap(vh.amqpUrl, 'tap');
    tapConnection = await consumeTap(vh.amqpUrl, 'tap', received);
    one = await Harness.start({ databaseUrl: db.url, amqpUrl: vh.amqpUrl, instanceId: 'fg-one' });
    two = await Harness.start({ databaseUrl: db.url, amqpUrl: vh.amqpUrl, instanceId: 'fg-two' });
  });
  afterAll(async () => {
    await tapConnection?.close().catch(() => undefined);
    await one?.close();
    await two?.close();
    await db?.drop();
    await vh?.remove();
  }, 120_000);

  it('publishes every event once, and the other instance takes over when the publisher stops', async () => {
    const token = await one.token('fleet-m', ['vehicles', 'vehicle-commands']);
    // Events written through both instances: commands on one (its units), vehicles added on two.
    const v = await one.vehicle(token);
    for (let i = 0; i < 5; i++) {
      const command = i % 2 === 0 ? 'unlock-central-lock' : 'lock-central-lock';
      expect((await one.request('POST', `/vehicles/${v.vehicleId}/commands/${command}`, { token })).status).toBe(200);
      const added = await two.request('POST', '/vehicles', {
        token,
        body: {
          telematics_brand: 'FLEETGATE',
          telematics_unit_id: `multi-${i}-${Date.now()}`,
          vehicle_model_id: 'fleetgate-car-v1',
          password: 'multi-instance-pw-0123',
        },
      });
      expect(added.status).toBe(201);
    }
    let expected = await outboxIds(one.app.store);
    await eventually(() => received.length >= expected.length, 20_000, 'every event published');
    expect(duplicates(received)).toEqual([]);
    expect([...received].sort()).toEqual([...expected].sort());

    // The first instance took the lease at its start (the second found it held); it stops,
    // releasing it, and the second continues from the durable cursor.
    expect(await two.app.store.events.getCursor(AMQP_CURSOR)).toBeDefined();
    const stayer = two;
    await one.close();
    for (let i = 0; i < 3; i++) {
      const added = await stayer.request('POST', '/vehicles', {
        token,
        body: {
          telematics_brand: 'FLEETGATE',
          telematics_unit_id: `after-${i}-${Date.now()}`,
          vehicle_model_id: 'fleetgate-car-v1',
          password: 'multi-instance-pw-0123',
        },
      });
      expect(added.status).toBe(201);
    }
    expected = await outboxIds(stayer.app.store);
    await eventually(() => received.length >= expected.length, 30_000, 'events after the hand-over');
    expect(duplicates(received)).toEqual([]);
    expect([...received].sort()).toEqual([...expected].sort());
  }, 120_000);
});
