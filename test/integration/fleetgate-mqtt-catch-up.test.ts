import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedBroker, startEmbeddedBroker } from '../../src/broker/embedded-broker.js';
import { FleetgateMqttAdapter } from '../../src/telematics/fleetgate-mqtt/fleetgate-mqtt-adapter.js';
import {
  decodeCommand,
  encodeResponse,
  encodeState,
  encodeStatus,
  unitTopic,
} from '../../src/telematics/fleetgate-mqtt/protocol.js';
import { AdapterEventRecorder } from '../contract/adapter.contract.js';
import { type StartedAdapter, startAdapter } from '../helpers/adapter-context.js';

// A broker restart: units come back before fleetgate's own connection and send their first state
// report to no one (QoS 0 without a subscriber is dropped; the storm bench lost 17 of 1,000).
// Once fleetgate is back, it asks each unit that came online meanwhile for its state.
describe('FLEETGATE adapter after its broker connection comes back', () => {
  let broker: EmbeddedBroker;
  let service: MqttClient;
  let started: StartedAdapter<FleetgateMqttAdapter>;
  const recorder = new AdapterEventRecorder(10_000);
  const units: MqttClient[] = [];

  beforeAll(async () => {
    broker = await startEmbeddedBroker({
      host: '127.0.0.1',
      port: 0,
      logger: pino({ level: 'silent' }),
      authenticateUnit: async (username, password) => password === `pw-${username}`,
    });
    // fleetgate's client, with a reconnect the test triggers itself (reconnectPeriod > 0 keeps
    // mqtt.js's resubscription; the period is longer than the test).
    service = await mqtt.connectAsync(broker.url, {
      ...broker.serviceCredentials,
      clean: true,
      protocolVersion: 4,
      reconnectPeriod: 600_000,
      resubscribe: true,
    });
    started = await startAdapter(new FleetgateMqttAdapter(), { mqtt: service, recorder });
  });
  afterAll(async () => {
    await Promise.all(units.map((u) => u.endAsync(true)));
    await started?.close();
    await service?.endAsync(true);
    await broker?.close();
  });

  async function unit(id: string): Promise<MqttClient> {
    const client = await mqtt.connectAsync(broker.url, {
      clientId: id,
      username: id,
      password: `pw-${id}`,
      clean: true,
      protocolVersion: 4,
      reconnectPeriod: 0,
    });
    units.push(client);
    return client;
  }

  /** A unit as docs/mqtt-protocol.md has it: after CONNECT, subscribe, `online`, its full state. */
  async function connectAndReport(
    id: string,
    locked: 'LOCKED' | 'UNLOCKED',
    onlineSince = new Date(),
  ): Promise<{ requests: string[] }> {
    const client = await unit(id);
    const requests: string[] = [];
    const state = { central_lock: { timestamp: new Date().toISOString(), value: locked } };
    client.on('message', (topic, payload) => {
      const command = decodeCommand(payload);
      if (topic !== unitTopic(id, 'commands') || !command.ok) return;
      requests.push(command.value.command);
      client.publish(unitTopic(id, 'responses'), encodeResponse({ id: command.value.id, status: 'SUCCEEDED', state }), {
        qos: 1,
      });
    });
    await client.subscribeAsync(unitTopic(id, 'commands'), { qos: 1 });
    await client.publishAsync(unitTopic(id, 'status'), encodeStatus('online', onlineSince), {
      qos: 1,
      retain: true,
    });
    await client.publishAsync(unitTopic(id, 'state'), encodeState(state), { qos: 1 });
    return { requests };
  }

  it('asks a unit that came online while it was away for its state, and stores the answer', async () => {
    // A unit that connects while fleetgate is there: its report arrives, no request follows.
    const before = recorder.markStateReports();
    const present = await connectAndReport('unit-present', 'LOCKED', new Date(Date.now() - 60_000));
    await recorder.waitForStateReport('unit-present', before);

    // fleetgate's connection drops (as in a broker restart); a unit comes back meanwhile.
    const closed = new Promise<void>((resolve) => service.once('close', () => resolve()));
    (service as unknown as { stream: { destroy(): void } }).stream.destroy();
    await closed;
    const during = await connectAndReport('unit-during', 'UNLOCKED');
    expect(recorder.stateReports.filter((r) => r.unitId === 'unit-during')).toEqual([]);

    service.reconnect();
    await recorder.waitForStateReport('unit-during');
    expect(during.requests).toEqual(['REQUEST_VEHICLE_STATE']);
    expect(recorder.stateReports.find((r) => r.unitId === 'unit-during')?.state).toMatchObject({
      central_lock: { value: 'UNLOCKED' },
    });
    // A unit online since long before the gap is not asked (its retained status is older).
    expect(present.requests).toEqual([]);
  });

  it('reads the status again of a unit that reports while its last `online` was lost', async () => {
    const id = 'unit-lost-online';
    const client = await unit(id);
    await client.publishAsync(unitTopic(id, 'status'), encodeStatus('offline', new Date()), { qos: 1, retain: true });
    await recorder.waitForConnection(id, false);

    // The broker drops the `online` on its way to fleetgate (as Mosquitto does to a subscriber that
    // lags in a storm): fleetgate's message listeners are swapped for one that drops it.
    const listeners = service.listeners('message') as Array<(...args: unknown[]) => void>;
    service.removeAllListeners('message');
    const dropped = new Promise<void>((resolve) => {
      const filter = (topic: string, payload: Buffer, packet: unknown) => {
        if (topic === unitTopic(id, 'status') && payload.toString().includes('"online"')) {
          service.off('message', filter);
          for (const listener of listeners) service.on('message', listener);
          resolve();
          return;
        }
        for (const listener of listeners) listener(topic, payload, packet);
      };
      service.on('message', filter);
    });
    await client.publishAsync(unitTopic(id, 'status'), encodeStatus('online', new Date()), { qos: 1, retain: true });
    await dropped;
    expect(recorder.connectionChanges.filter((c) => c.unitId === id).map((c) => c.online)).toEqual([false]);

    // Its next report: fleetgate reads the retained status again and the unit is online.
    await client.publishAsync(
      unitTopic(id, 'state'),
      encodeState({ central_lock: { timestamp: new Date().toISOString(), value: 'LOCKED' } }),
      { qos: 1 },
    );
    await recorder.waitForConnection(id, true);
    expect(started.adapter.isOnline(id)).toBe(true);
  });
});
