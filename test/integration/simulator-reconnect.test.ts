import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedBroker, startEmbeddedBroker } from '../../src/broker/embedded-broker.js';
import { FleetgateUnit } from '../../src/sim/fleetgate-unit.js';
import { eventually } from '../helpers/eventually.js';

// The simulator behaves as docs/mqtt-protocol.md §2 asks of a unit: a login refused with "server
// unavailable" (CONNACK 3, a broker busy with a reconnect storm) is tried again, as a lost link
// is; mqtt.js on its own gives up for good after any refusal, which left units of the bench's
// 15,000-unit storm disconnected for the rest of the run.
describe('simulated unit reconnecting', () => {
  const logger = pino({ level: 'silent' });
  let broker: EmbeddedBroker;
  /** What the next logins get: 'unavailable' (the check fails → CONNACK 3); then accepted. */
  const answers: Array<'unavailable'> = [];
  let logins = 0;
  let unit: FleetgateUnit;

  beforeAll(async () => {
    broker = await startEmbeddedBroker({
      host: '127.0.0.1',
      port: 0,
      logger,
      authenticateUnit: async () => {
        logins++;
        if (answers.shift() === 'unavailable') throw new Error('database unavailable');
        return true;
      },
    });
  });
  afterAll(async () => {
    await unit?.stop();
    await broker.close();
  });

  it('logs in again after "server unavailable" refusals', async () => {
    unit = new FleetgateUnit({
      mqttUrl: broker.url,
      unitId: 'sim-reconnect-1',
      password: 'sim-reconnect-password-0123',
      model: 'fleetgate-car-v1',
      reportIntervalMs: 600_000,
      drive: false,
    });
    await unit.start();
    expect(unit.connected).toBe(true);

    // The broker drops the unit and forgets its login; the next two logins are refused with 3.
    answers.push('unavailable', 'unavailable');
    const before = logins;
    await broker.provisioner.removeUnit('sim-reconnect-1');
    await eventually(() => unit.connected && logins >= before + 3, 15_000, 'back after two refusals');
    expect(unit.stats.connects).toBe(2);
  }, 40_000);
});
