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
      sqliteWalLimitMb: 64,
    });
    expect(c.dataDir).toMatch(/data$/);
    expect(c.defaulted).toContain('port');
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('flags win over the environment, which wins over defaults', () => {
    const c = loadConfig(
      { port: 4000 },
      { FLEETGATE_PORT: '5000', FLEETGATE_MQTT_PORT: '2883', FLEETGATE_SQLITE_WAL_LIMIT_MB: '256' },
    );
    expect(c.port).toBe(4000);
    expect(c.mqttPort).toBe(2883);
    expect(c.sqliteWalLimitMb).toBe(256);
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

  // Issue 17 §3: malformed AMQP settings give a clear start error, without echoing the password.
  it('refuses malformed AMQP settings, all at once', () => {
    expect(loadConfig({}, {}).amqpUrl).toBeUndefined();
    const ok = loadConfig({}, { FLEETGATE_AMQP_URL: 'amqp://fleetgate:s3cret@rabbit:5672/fleetgate' });
    expect(ok.amqpUrl).toBe('amqp://fleetgate:s3cret@rabbit:5672/fleetgate');
    let error: unknown;
    try {
      loadConfig(
        { amqpPublicUrl: 'amqp://user:pw@events.example.com/other' },
        { FLEETGATE_AMQP_URL: 'amqp://fleetgate:s3cret@rabbit:5672/a/b', FLEETGATE_AMQP_MANAGEMENT_URL: 'ftp://x' },
      );
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as Error).message;
    expect(message).toContain('virtual host must be one path segment');
    expect(message).toContain('--amqp-public-url: give only scheme, host and port');
    expect(message).toContain('FLEETGATE_AMQP_MANAGEMENT_URL');
    expect(message).not.toContain('s3cret');
    expect(() => loadConfig({}, { FLEETGATE_AMQP_URL: 'http://rabbit:5672' })).toThrow(
      /FLEETGATE_AMQP_URL: 'http:\/\/rabbit:5672' is not a URL starting with amqp:\/\/ or amqps:\/\//,
    );
    expect(() => loadConfig({}, { FLEETGATE_AMQP_PUBLIC_URL: 'amqp://x:5672' })).toThrow(/need --amqp-url/);
  });

  // Issue 16 §4: a webhook lease shorter than a whole delivery would let a second instance send
  // the same subscription's event while the first still waits for its answer.
  it('keeps the webhook lease longer than a delivery can take', () => {
    expect(loadConfig({}, {}).webhooksLeaseMs).toBe(15_000);
    expect(loadConfig({ webhooksTimeoutMs: 30_000 }, {}).webhooksLeaseMs).toBe(35_000);
    expect(loadConfig({ webhooksLeaseMs: 2500, webhooksTimeoutMs: 1500 }, {}).webhooksLeaseMs).toBe(2500);
    expect(() => loadConfig({ webhooksTimeoutMs: 30_000 }, { FLEETGATE_WEBHOOKS_LEASE_MS: '20000' })).toThrow(
      /webhooks lease: 20000 ms must exceed the webhooks timeout \(30000 ms\) by at least 1000 ms/,
    );
  });
});
