import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type MosquittoServer, startMosquittoServer } from '../../scripts/lib/mosquitto-server.js';
import { connectServiceClient } from '../../src/broker/mqtt-connection.js';
import { serverSubscriptions } from '../../src/telematics/fleetgate-mqtt/protocol.js';

// Issue 3: with N instances on one broker, a state report is stored once, not N times.
let broker: MosquittoServer;
const clients: MqttClient[] = [];

beforeAll(async () => {
  broker = await startMosquittoServer();
});
afterAll(async () => {
  await Promise.allSettled(clients.map((c) => c.endAsync(true)));
  await broker?.close();
});

it('state goes to one instance of the group; responses and status reach every instance', async () => {
  const admin = { username: broker.adminUsername, password: broker.adminPassword };
  const instances = await Promise.all([0, 1, 2].map(() => connectServiceClient(broker.url, admin)));
  clients.push(...instances);
  const received = instances.map(() => ({ state: 0, status: 0 }));
  // Resolves per instance when its status message arrived (published last, so state is in).
  const statusSeen = instances.map(
    (c, i) =>
      new Promise<void>((resolve) => {
        c.on('message', (topic) => {
          if (topic.endsWith('/state')) received[i]!.state++;
          if (topic.endsWith('/status')) {
            received[i]!.status++;
            resolve();
          }
        });
      }),
  );
  for (const c of instances) await c.subscribeAsync(serverSubscriptions(true), { qos: 0 });
  const publisher = await connectServiceClient(broker.url, admin);
  clients.push(publisher);
  for (let i = 0; i < 30; i++) await publisher.publishAsync(`fleetgate/v1/units/u${i}/state`, '{}', { qos: 1 });
  await publisher.publishAsync('fleetgate/v1/units/u1/status', '{}', { qos: 1 });
  await Promise.all(statusSeen);
  const totalState = received.reduce((n, r) => n + r.state, 0);
  expect(totalState).toBe(30);
  expect(received.every((r) => r.status === 1)).toBe(true);
});

// A connect storm of thousands of units sends fleetgate a burst of status, state and response
// messages. While fleetgate's service client lags behind, Mosquitto holds them for it; with the
// shipped max_queued_messages at 10 it dropped QoS 0 messages beyond that many waiting packets
// (6,955 of 20,000 arrived here), so a unit's `online` could be lost for good and its commands
// answered 504 (seen in a 15,000-unit scale run). Here the service client stops reading while 20,000 messages of 512
// bytes (10 MB, more than the loopback socket buffers hold) are published, then reads on.
it('a service client that lags behind a burst gets every message once it reads again', async () => {
  const admin = { username: broker.adminUsername, password: broker.adminPassword };
  const lagging = await connectServiceClient(broker.url, admin);
  const publisher = await connectServiceClient(broker.url, admin);
  clients.push(lagging, publisher);
  const total = 20_000;
  let received = 0;
  const marker = new Promise<void>((resolve) => {
    lagging.on('message', (topic) => {
      if (topic === 'fleetgate/v1/units/marker/status') resolve();
      else received++;
    });
  });
  await lagging.subscribeAsync('fleetgate/v1/units/+/status', { qos: 0 });
  lagging.stream.pause();
  const payload = 'x'.repeat(512);
  const sends: Array<Promise<unknown>> = [];
  for (let i = 0; i < total; i++)
    sends.push(publisher.publishAsync(`fleetgate/v1/units/u${i}/status`, payload, { qos: 1 }));
  // Every PUBACK: the broker has routed every message to the lagging client (queued or dropped).
  await Promise.all(sends);
  lagging.stream.resume();
  // Published after the burst, so it arrives after everything the broker kept for the client.
  await publisher.publishAsync('fleetgate/v1/units/marker/status', 'end', { qos: 1 });
  await marker;
  expect(received).toBe(total);
}, 30_000);

// What the FLEETGATE adapter's readStatusAgain relies on: subscribing to a unit's status topic
// replays its retained status, and it arrives before the answer to an unsubscribe sent next.
it('replays a retained status on subscribe, before the answer to the next unsubscribe', async () => {
  const admin = { username: broker.adminUsername, password: broker.adminPassword };
  const reader = await connectServiceClient(broker.url, admin);
  const publisher = await connectServiceClient(broker.url, admin);
  clients.push(reader, publisher);
  const topic = 'fleetgate/v1/units/replayed-unit/status';
  await publisher.publishAsync(topic, '{"v":1,"status":"online"}', { qos: 1, retain: true });
  // Already subscribed to every unit's status, as the adapter is.
  await reader.subscribeAsync('fleetgate/v1/units/+/status', { qos: 0 });
  const seen: string[] = [];
  reader.on('message', (t, payload, packet) => {
    if (t === topic && packet.retain) seen.push(payload.toString());
  });
  // The wildcard's own replay, if it came after the listener: a status is there by now.
  await reader.subscribeAsync(topic, { qos: 0 });
  await reader.unsubscribeAsync(topic);
  for (let round = 0; round < 3; round++) {
    const before = seen.length;
    await reader.subscribeAsync(topic, { qos: 0 });
    await reader.unsubscribeAsync(topic);
    expect(seen.length).toBe(before + 1);
  }
  expect(seen.at(-1)).toBe('{"v":1,"status":"online"}');
});
