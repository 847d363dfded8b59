import { once } from 'node:events';
import type { Worker } from 'node:worker_threads';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedBroker, startEmbeddedBroker } from '../../src/broker/embedded-broker.js';
import { eventually } from '../helpers/eventually.js';

/**
 * A broker closed to units that records whom it asks about; `check` says which passwords are
 * right (by default `pw-<unit id>`), and `login` connects a unit with that default password.
 */
async function closedBroker(check = (username: string, password: string) => password === `pw-${username}`) {
  const asking: string[] = [];
  const broker = await startEmbeddedBroker({
    host: '127.0.0.1',
    port: 0,
    logger: pino({ level: 'silent' }),
    closedToUnits: true,
    authenticateUnit: async (username, password) => {
      asking.push(username);
      return check(username, password);
    },
  });
  const host = (broker as unknown as { host: { held: unknown[]; worker?: Worker } }).host;
  const login = (id: string) =>
    mqtt.connectAsync(
      broker.url,
      { clientId: id, username: id, password: `pw-${id}`, clean: true, reconnectPeriod: 0, protocolVersion: 4 },
      false,
    );
  return { broker, asking, host, login };
}

// A reconnect storm after a restart: units that logged in before the adapters subscribed published
// their first state report to no one (QoS 0 without a subscriber is dropped). The server's broker
// holds units' logins until its adapters are subscribed.
describe('embedded MQTT broker at start', () => {
  let broker: EmbeddedBroker;
  let asked: string[] = [];

  beforeAll(async () => {
    ({ broker, asking: asked } = await closedBroker((_, password) => password === 'right'));
  });
  afterAll(() => broker?.close());

  const login = (password = 'right') =>
    mqtt.connectAsync(
      broker.url,
      { clientId: 'unit-1', username: 'unit-1', password, clean: true, reconnectPeriod: 0, protocolVersion: 4 },
      false,
    );

  it("holds a unit's login until it is opened, without asking the store, then lets it in", async () => {
    let settled = false;
    const held = login().finally(() => {
      settled = true;
    });
    // fleetgate's own account is let in meanwhile (the adapters subscribe through it); its CONNACK
    // comes after the broker has read the unit's CONNECT, sent first.
    const service = await mqtt.connectAsync(
      broker.url,
      { ...broker.serviceCredentials, reconnectPeriod: 0, protocolVersion: 4 },
      false,
    );
    await service.endAsync();
    expect([settled, asked]).toEqual([false, []]);
    broker.openToUnits();
    const unit = await held;
    expect(unit.connected).toBe(true);
    expect(asked).toEqual(['unit-1']);
    await unit.endAsync();
  });

  it('once opened, checks every login at once and still refuses a wrong password', async () => {
    const unit = await login();
    expect(unit.connected).toBe(true);
    await unit.endAsync();
    await expect(login('wrong')).rejects.toThrow(/Bad username or password/i);
    // The right password again comes from the broker's login cache; the wrong one is checked.
    expect(asked).toEqual(['unit-1', 'unit-1']);
  });

  it('lets held logins in 200 per event-loop turn, every one of them', async () => {
    const { broker: held, asking, host, login } = await closedBroker();
    const units: MqttClient[] = [];
    try {
      const ids = Array.from({ length: 450 }, (_, i) => `held-${i}`);
      const logins = ids.map((id) =>
        login(id).then((unit) => {
          units.push(unit);
          return unit;
        }),
      );
      await eventually(() => host.held.length === ids.length, 10_000, 'every login held');
      held.openToUnits();
      // The first batch is asked for at once; the rest in the turns after.
      expect(asking).toHaveLength(200);
      await Promise.all(logins);
      expect(units.filter((u) => u.connected)).toHaveLength(ids.length);
      expect(new Set(asking).size).toBe(ids.length);
    } finally {
      await Promise.all(units.map((u) => u.endAsync(true)));
      await held.close();
    }
  });

  it("drops a dead thread's held logins: their units lost their connections with it", async () => {
    const { broker: dying, asking, host, login } = await closedBroker();
    try {
      const logins = ['gone-1', 'gone-2'].map((id) => login(id).catch((e: unknown) => e));
      await eventually(() => host.held.length === 2, 10_000, 'both logins held');
      const worker = host.worker!;
      const exited = once(worker, 'exit');
      await worker.terminate();
      await exited;
      expect(host.held).toHaveLength(0);
      dying.openToUnits();
      expect(asking).toEqual([]);
      // Their connections ended with the thread.
      for (const result of await Promise.all(logins)) expect(result).toBeInstanceOf(Error);
    } finally {
      await dying.close();
    }
  });
});
