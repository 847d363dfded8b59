import mqtt from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedBroker, startEmbeddedBroker } from '../../src/broker/embedded-broker.js';

// A reconnect storm after a restart: units that logged in before the adapters subscribed published
// their first state report to no one (QoS 0 without a subscriber is dropped). The server's broker
// starts closed to units and opens once its adapters are subscribed.
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

  it('answers units "server unavailable" until it is opened, without asking the store', async () => {
    await expect(login()).rejects.toThrow(/Server unavailable/i);
    expect(asked).toEqual([]);
    // fleetgate's own account is let in meanwhile: the adapters subscribe through it.
    const service = await mqtt.connectAsync(
      broker.url,
      { ...broker.serviceCredentials, reconnectPeriod: 0, protocolVersion: 4 },
      false,
    );
    await service.endAsync();
  });

  it('lets units in once opened, and still refuses a wrong password', async () => {
    broker.openToUnits();
    const unit = await login();
    expect(unit.connected).toBe(true);
    await unit.endAsync();
    await expect(login('wrong')).rejects.toThrow(/Bad username or password/i);
    expect(asked).toEqual(['unit-1', 'unit-1']);
  });
});
