import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

describe('config (validated once, all errors together, then frozen)', () => {
  it('has the documented defaults', () => {
    const c = loadConfig({}, {});
    expect(c).toMatchObject({
      port: 3000,
      mqttPort: 1883,
      commandTimeoutMs: 15000,
      tokenTtlSeconds: 900,
      databaseUrl: undefined,
      mqttUrl: undefined,
    });
    expect(c.dataDir).toMatch(/data$/);
    expect(c.defaulted).toContain('port');
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('flags win over the environment, which wins over defaults', () => {
    const c = loadConfig({ port: 4000 }, { FLEETGATE_PORT: '5000', FLEETGATE_MQTT_PORT: '2883' });
    expect(c.port).toBe(4000);
    expect(c.mqttPort).toBe(2883);
    expect(c.defaulted).not.toContain('port');
    expect(c.defaulted).not.toContain('mqttPort');
  });

  it('reports every invalid setting at once, naming where it came from', () => {
    let error: unknown;
    try {
      loadConfig(
        { port: 'abc' },
        {
          FLEETGATE_MQTT_PORT: '70000',
          FLEETGATE_DATABASE_URL: 'mysql://x',
          FLEETGATE_SECRET_KEY: 'short',
          FLEETGATE_LOG_LEVEL: 'loud',
          FLEETGATE_MQTT_USERNAME: 'only-user',
        },
      );
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const errors = (error as ConfigError).errors.join('\n');
    expect((error as ConfigError).errors.length).toBeGreaterThanOrEqual(6);
    for (const word of [
      '--port',
      'FLEETGATE_MQTT_PORT',
      'FLEETGATE_DATABASE_URL',
      'secret key',
      'log level',
      'username and password',
    ]) {
      expect(errors).toContain(word);
    }
  });

  it('never echoes a database password in an error', () => {
    expect(() => loadConfig({}, { FLEETGATE_DATABASE_URL: 'mysql://u:hunter2@db/x' })).toThrow(/u:\*\*\*@/);
  });
});
