import mqtt from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedBroker, startEmbeddedBroker } from '../../src/broker/embedded-broker.js';

// A reconnect storm after a restart: units that logged in before the adapters subscribed published
// their first state report to no one (QoS 0 without a subscriber is dropped). The server's broker
// holds units' logins until its adapters are subscribed.
describe('embedded MQTT broker at start', () => {
  let broker: EmbeddedBroker;
  const asked: string[] = [];

  beforeAll(async () => {
    broker = await startEmbeddedBroker({
      host: '127.0.0.1',
      port: 0,
      logger: pino({ level: 'silent' }),
      closedToUnits: true,
      authenticateUnit: async (username, password) => {
        asked.push(username);
        return password === 'right';
      },
    });
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

  it('lets in more held logins than one turn takes (200), every one of them', async () => {
    const held = await startEmbeddedBroker({
      host: '127.0.0.1',
      port: 0,
      logger: pino({ level: 'silent' }),
      closedToUnits: true,
      authenticateUnit: async (username, password) => password === `pw-${username}`,
    });
    try {
      const ids = Array.from({ length: 450 }, (_, i) => `held-${i}`);
      const logins = ids.map((id) =>
        mqtt.connectAsync(
          held.url,
          { clientId: id, username: id, password: `pw-${id}`, clean: true, reconnectPeriod: 0, protocolVersion: 4 },
          false,
        ),
      );
      // Sent last, fleetgate's own login is answered while the units' wait (most reached the broker).
      const service = await mqtt.connectAsync(held.url, { ...held.serviceCredentials, reconnectPeriod: 0 }, false);
      await service.endAsync();
      held.openToUnits();
      const units = await Promise.all(logins);
      expect(units.filter((u) => u.connected)).toHaveLength(ids.length);
      await Promise.all(units.map((u) => u.endAsync(true)));
    } finally {
      await held.close();
    }
  });
});
