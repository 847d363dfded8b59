import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MosquittoServer, startMosquittoServer } from '../../scripts/lib/mosquitto-server.js';
import { MosquittoDynsecProvisioner } from '../../src/broker/mosquitto-dynsec.js';
import { connectServiceClient } from '../../src/broker/mqtt-connection.js';

// A real Mosquitto 2.0 with the shipped configuration and the dynamic security plugin.
let broker: MosquittoServer;
let service: MqttClient;
let provisioner: MosquittoDynsecProvisioner;
const opened: MqttClient[] = [];

const prefix = (unit: string) => `fleetgate/v1/units/${unit}/`;

beforeAll(async () => {
  broker = await startMosquittoServer();
  service = await connectServiceClient(broker.url, {
    username: broker.adminUsername,
    password: broker.adminPassword,
  });
  provisioner = await MosquittoDynsecProvisioner.start(service, { timeoutMs: 2000 });
  await service.subscribeAsync('fleetgate/v1/units/+/state', { qos: 1 });
});

afterAll(async () => {
  await Promise.allSettled(opened.map((c) => c.endAsync(true)));
  provisioner?.close();
  await service?.endAsync(true).catch(() => undefined);
  await broker?.close();
});

function connectUnit(unit: string, password: string, clientId = unit): Promise<MqttClient> {
  const p = mqtt.connectAsync(broker.url, {
    clientId,
    username: unit,
    password,
    reconnectPeriod: 0,
    connectTimeout: 3000,
  });
  return p.then((c) => {
    opened.push(c);
    return c;
  });
}

/** The next message the service client receives on `topic`. */
function nextMessage(client: MqttClient, topic: string): Promise<string> {
  return new Promise((resolve) => {
    const on = (t: string, payload: Buffer) => {
      if (t !== topic) return;
      client.off('message', on);
      resolve(payload.toString());
    };
    client.on('message', on);
  });
}

describe('Mosquitto dynamic security provisioning (SPEC §5 on an external broker)', () => {
  it('a provisioned unit connects, publishes its own topics and receives its own commands', async () => {
    await provisioner.provisionUnit('unit-a', 'password-a-0123', prefix('unit-a'));
    const unit = await connectUnit('unit-a', 'password-a-0123');
    const granted = await unit.subscribeAsync(`${prefix('unit-a')}commands`, { qos: 1 });
    expect(granted[0]?.qos).toBe(1);

    const state = nextMessage(service, `${prefix('unit-a')}state`);
    await unit.publishAsync(`${prefix('unit-a')}state`, 'report-1', { qos: 1 });
    expect(await state).toBe('report-1');

    const command = nextMessage(unit, `${prefix('unit-a')}commands`);
    await service.publishAsync(`${prefix('unit-a')}commands`, 'cmd-1', { qos: 1 });
    expect(await command).toBe('cmd-1');
  });

  it('wrong password, unknown user and a foreign client id are refused', async () => {
    await provisioner.provisionUnit('unit-b', 'password-b-0123', prefix('unit-b'));
    await expect(connectUnit('unit-b', 'wrong-password')).rejects.toThrow();
    await expect(connectUnit('unit-nobody', 'password-b-0123')).rejects.toThrow();
    // A unit's client id is its unit id (docs/mqtt-protocol.md §6).
    await expect(connectUnit('unit-b', 'password-b-0123', 'someone-else')).rejects.toThrow();
    await expect(
      mqtt.connectAsync(broker.url, { reconnectPeriod: 0, connectTimeout: 3000 }).then((c) => opened.push(c)),
    ).rejects.toThrow();
  });

  it("a unit cannot subscribe to another unit's commands, nor to wildcards, nor publish as another", async () => {
    await provisioner.provisionUnit('unit-c', 'password-c-0123', prefix('unit-c'));
    await provisioner.provisionUnit('unit-d', 'password-d-0123', prefix('unit-d'));
    const c = await connectUnit('unit-c', 'password-c-0123');
    for (const topic of [`${prefix('unit-d')}commands`, 'fleetgate/v1/units/+/commands', '#', `${prefix('unit-c')}#`]) {
      // SUBACK 0x80, which mqtt.js turns into a rejection.
      await expect(c.subscribeAsync(topic, { qos: 1 }), topic).rejects.toThrow(/Subscribe error/);
    }
    // Mosquitto drops an unauthorized publish; messages of one connection keep their order, so the
    // legitimate report arriving first proves the forged one was dropped.
    const received: string[] = [];
    const collect = (t: string, payload: Buffer) => received.push(`${t} ${payload}`);
    service.on('message', collect);
    try {
      const own = nextMessage(service, `${prefix('unit-c')}state`);
      await c.publishAsync(`${prefix('unit-d')}state`, 'forged', { qos: 1 });
      await c.publishAsync(`${prefix('unit-c')}state`, 'genuine', { qos: 1 });
      await own;
      expect(received).toEqual([`${prefix('unit-c')}state genuine`]);
    } finally {
      service.off('message', collect);
    }
  });

  it('provisioning again is idempotent and replaces the password', async () => {
    await provisioner.provisionUnit('unit-e', 'first-password-0', prefix('unit-e'));
    await provisioner.provisionUnit('unit-e', 'second-password-0', prefix('unit-e'));
    await expect(connectUnit('unit-e', 'first-password-0')).rejects.toThrow();
    const e = await connectUnit('unit-e', 'second-password-0');
    expect((await e.subscribeAsync(`${prefix('unit-e')}commands`, { qos: 1 }))[0]?.qos).toBe(1);
  });

  it('two instances provisioning the same unit at once both succeed', async () => {
    const other = await connectServiceClient(broker.url, {
      username: broker.adminUsername,
      password: broker.adminPassword,
    });
    const second = await MosquittoDynsecProvisioner.start(other, { timeoutMs: 2000 });
    try {
      await Promise.all([
        provisioner.provisionUnit('unit-f', 'password-f-0123', prefix('unit-f')),
        second.provisionUnit('unit-f', 'password-f-0123', prefix('unit-f')),
      ]);
      await connectUnit('unit-f', 'password-f-0123');
    } finally {
      second.close();
      await other.endAsync(true);
    }
  });

  it('removeUnit disconnects the unit, which cannot log in again; removing twice is fine', async () => {
    await provisioner.provisionUnit('unit-g', 'password-g-0123', prefix('unit-g'));
    const g = await connectUnit('unit-g', 'password-g-0123');
    const closed = new Promise<void>((resolve) => g.once('close', () => resolve()));
    await provisioner.removeUnit('unit-g');
    await closed;
    await expect(connectUnit('unit-g', 'password-g-0123')).rejects.toThrow();
    await provisioner.removeUnit('unit-g');
    // Re-adding the unit later works again.
    await provisioner.provisionUnit('unit-g', 'password-g-4567', prefix('unit-g'));
    await connectUnit('unit-g', 'password-g-4567');
  });

  it('an account that is not a dynsec admin cannot start a provisioner', async () => {
    await provisioner.provisionUnit('unit-h', 'password-h-0123', prefix('unit-h'));
    const h = await connectUnit('unit-h', 'password-h-0123');
    await expect(MosquittoDynsecProvisioner.start(h, { timeoutMs: 500 })).rejects.toThrow(/dynamic security/);
  });

  it('fails fast, without waiting for the timeout, while the broker connection is down', async () => {
    const lone = await connectServiceClient(broker.url, {
      username: broker.adminUsername,
      password: broker.adminPassword,
    });
    const p = await MosquittoDynsecProvisioner.start(lone, { timeoutMs: 2000 });
    await lone.endAsync(true);
    await expect(p.provisionUnit('unit-i', 'password-i-0123', prefix('unit-i'))).rejects.toThrow(/not connected/);
    p.close();
  });
});
