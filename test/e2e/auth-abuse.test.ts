import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type App, createApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createApiClient } from '../../src/services/auth-service.js';

// Issue 21 item 4 (OWASP API2): forwarding headers only from configured proxies, failed
// attempts throttled per client id too, credentials never in logged URLs nor echoed back.
const KEY = 'auth-abuse-test-secret-key-long-enough-0123456789';
const logLines: string[] = [];

async function start(trustedProxies?: string): Promise<{ app: App; dir: string }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'fleetgate-auth-'));
  const config = loadConfig(
    {
      port: 0,
      mqttPort: 0,
      teltonikaPort: 0,
      host: '127.0.0.1',
      mqttHost: '127.0.0.1',
      logLevel: 'info',
      secretKey: KEY,
      dataDir: dir,
      ...(trustedProxies ? { trustedProxies } : {}),
    },
    {},
  );
  const sink = new Writable({
    write(chunk, _encoding, callback) {
      logLines.push(String(chunk));
      callback();
    },
  });
  return { app: await createApp(config, { logger: pino({ level: 'info' }, sink) }), dir };
}

let plain: { app: App; dir: string };
let proxied: { app: App; dir: string };

beforeAll(async () => {
  [plain, proxied] = await Promise.all([start(), start('127.0.0.1')]);
});

afterAll(async () => {
  for (const s of [plain, proxied]) {
    await s?.app.stop();
    if (s) rmSync(s.dir, { recursive: true, force: true });
  }
});

const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;

function tokenRequest(app: App, id: string, secret: string, forwardedFor?: string) {
  return fetch(`${app.url}/auth/oauth/token?grant_type=client_credentials`, {
    method: 'POST',
    headers: { authorization: basic(id, secret), ...(forwardedFor ? { 'x-forwarded-for': forwardedFor } : {}) },
  });
}

describe('token endpoint throttling', () => {
  it('ignores X-Forwarded-For unless the peer is a trusted proxy, and throttles guesses per client id', async () => {
    const c = await createApiClient(plain.app.store, { fleetId: 'fleet-a', scopes: ['vehicles'] });
    const statuses: number[] = [];
    for (let i = 0; i < 40; i++) {
      statuses.push((await tokenRequest(plain.app, c.client_id, `wrong-${i}`, `203.0.113.${i}`)).status);
    }
    // 10 wrong secrets from one address, then refused unchecked, whatever X-Forwarded-For says.
    expect(statuses.filter((s) => s === 401).length).toBe(10);
    expect(statuses.slice(10).every((s) => s === 429)).toBe(true);
  });

  it("behind a trusted proxy: a distributed guess is throttled per client id, the client's own address is not", async () => {
    const c = await createApiClient(proxied.app.store, { fleetId: 'fleet-b', scopes: ['vehicles'] });
    // The backend got a token from its address before.
    expect((await tokenRequest(proxied.app, c.client_id, c.client_secret, '10.9.9.9')).status).toBe(200);
    const statuses: number[] = [];
    for (let i = 0; i < 60; i++) {
      statuses.push((await tokenRequest(proxied.app, c.client_id, `wrong-${i}`, `198.51.100.${i}`)).status);
    }
    // Each address is believed (the peer is the trusted proxy): after 50 failures the client id is throttled.
    expect(statuses.slice(0, 50).every((s) => s === 401)).toBe(true);
    expect(statuses.slice(50).every((s) => s === 429)).toBe(true);
    // The right secret from a new address is refused unchecked too; from the backend's own, it works.
    expect((await tokenRequest(proxied.app, c.client_id, c.client_secret, '198.51.100.200')).status).toBe(429);
    expect((await tokenRequest(proxied.app, c.client_id, c.client_secret, '10.9.9.9')).status).toBe(200);
  });
});

describe('credentials in URLs and bodies', () => {
  it('answers a secret in the query string with a problem saying where it goes, and never logs it', async () => {
    const secret = 'QuerySecret-5f2a9c';
    const res = await fetch(
      `${plain.app.url}/auth/oauth/token?grant_type=client_credentials&client_id=x&client_secret=${secret}`,
      { method: 'POST' },
    );
    const text = await res.text();
    expect(res.status).toBe(400);
    expect(text).toMatch(/Authorization header/);
    expect(text).not.toContain(secret);
    const other = await fetch(`${plain.app.url}/vehicles?access_token=${secret}`);
    expect(other.status).toBe(400);
    expect(await other.text()).not.toContain(secret);
    const logged = logLines.join('');
    expect(logged).toContain('client_secret=[REDACTED]');
    expect(logged).not.toContain(secret);
  });

  it('never echoes a secret of a JSON body sent as a form', async () => {
    const secret = 'BodySecret-77e1d0';
    const res = await fetch(`${plain.app.url}/auth/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: JSON.stringify({ grant_type: 'client_credentials', client_id: 'x', client_secret: secret }),
    });
    const text = await res.text();
    expect(res.status).toBe(400);
    expect(text).not.toContain(secret);
    expect(text).toMatch(/application\/json/);
    // Any other key that is not a field name is not echoed either.
    const odd = await fetch(`${plain.app.url}/auth/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `grant_type=client_credentials&password%20${secret}=1`,
    });
    expect(await odd.text()).not.toContain(secret);
  });

  it("never echoes a unit's password sent as a form to POST /vehicles or PATCH /vehicles/{id}", async () => {
    const c = await createApiClient(plain.app.store, { fleetId: 'fleet-echo', scopes: ['vehicles'] });
    const granted = (await (await tokenRequest(plain.app, c.client_id, c.client_secret)).json()) as {
      access_token: string;
    };
    const token = granted.access_token;
    const secret = 'UnitPassword-5c1e93aa';
    const send = (method: string, url: string, body: string) =>
      fetch(`${plain.app.url}${url}`, {
        method,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-www-form-urlencoded' },
        body,
      });
    const json = JSON.stringify({
      telematics_brand: 'FLEETGATE',
      telematics_unit_id: 'echo-unit-1',
      vehicle_model_id: 'fleetgate-car-v1',
      password: secret,
    });
    const added = await send('POST', '/vehicles', json);
    expect(added.status).toBeGreaterThanOrEqual(400);
    expect(await added.text()).not.toContain(secret);
    const oddKey = await send('POST', '/vehicles', `telematics_brand=FLEETGATE&password%20${secret}=1`);
    expect(oddKey.status).toBeGreaterThanOrEqual(400);
    expect(await oddKey.text()).not.toContain(secret);
    const patched = await send('PATCH', '/vehicles/V00000000000000000001', json);
    expect(patched.status).toBeGreaterThanOrEqual(400);
    expect(await patched.text()).not.toContain(secret);
    expect(logLines.join('')).not.toContain(secret);
  });
});
