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
