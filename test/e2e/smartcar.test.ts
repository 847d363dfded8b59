import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROBLEMS, type ProblemKey } from '../../src/domain/problems.js';
import { type FakeSmartcar, startFakeSmartcar } from '../../src/sim/smartcar-fake/fake-smartcar.js';
import { Harness, type HttpResult } from '../helpers/harness.js';

// Issue 5: SMARTCAR vehicles through the HTTP API against the local fake of Smartcar API v2.0.
let fake: FakeSmartcar;
let h: Harness;
let token: string;
let credentialsId: string;
let vehicleId: string;
let smartcarId: string;
const CLIENT = { clientId: 'app-e2e', clientSecret: 'app-secret-e2e-0123456789' };
let refreshToken: string;

beforeAll(async () => {
  fake = await startFakeSmartcar();
  refreshToken = fake.addApplication(CLIENT);
  smartcarId = fake.addVehicle({ clientId: CLIENT.clientId, engine: 'ELECTRIC' }).id;
  h = await Harness.start({ smartcarApiUrl: fake.apiUrl, smartcarAuthUrl: fake.authUrl, commandTimeoutMs: 2000 });
  token = await h.token('fleet-sc');
});
afterAll(async () => {
  await h?.close();
  await fake?.close();
});

function expectProblem(res: HttpResult, key: ProblemKey): void {
  const def = PROBLEMS[key];
  expect(res.status, res.text).toBe(def.status);
  expect(res.headers.get('content-type')).toContain('application/problem+json');
  expect(res.body).toMatchObject({ type: `/problems/${key}`, title: def.title, status: def.status });
  expect(res.headers.get('x-flow-id')).toBe(res.body.flow_id);
}

const cmd = (command: string) => h.request('POST', `/vehicles/${vehicleId}/commands/${command}`, { token });

describe('SMARTCAR credentials and setup', () => {
  it('stores credentials without ever returning secrets; validates fields', async () => {
    const bad = await h.request('POST', '/credentials', {
      token,
      body: { telematics_brand: 'SMARTCAR', client_id: 'x' },
    });
    expectProblem(bad, 'validation-error');
    expect(bad.body.errors.map((e: { field: string }) => e.field)).toEqual(
      expect.arrayContaining(['client_secret', 'refresh_token']),
    );
    const res = await h.request('POST', '/credentials', {
      token,
      body: {
        telematics_brand: 'SMARTCAR',
        client_id: CLIENT.clientId,
        client_secret: CLIENT.clientSecret,
        refresh_token: refreshToken,
      },
    });
    expect(res.status, res.text).toBe(201);
    credentialsId = res.body.credentials_id;
    expect(res.text).not.toContain(CLIENT.clientSecret);
    expect(res.text).not.toContain(refreshToken);
    const list = await h.request('GET', '/credentials', { token });
    expect(list.body.items.map((c: { credentials_id: string }) => c.credentials_id)).toContain(credentialsId);
    expect(list.text).not.toContain(CLIENT.clientSecret);
    expectProblem(
      await h.request('GET', `/credentials/${credentialsId}`, { token: await h.token('fleet-other') }),
      'resource-not-found',
    );
  });

  it('adds a vehicle, verifies it with the provider and ends setup SUCCEEDED with derived capabilities', async () => {
    const missing = await h.request('POST', '/vehicles', {
      token,
      body: { telematics_brand: 'SMARTCAR', telematics_unit_id: smartcarId },
    });
    expectProblem(missing, 'validation-error');
    const unknown = await h.request('POST', '/vehicles', {
      token,
      body: { telematics_brand: 'SMARTCAR', telematics_unit_id: smartcarId, credentials_id: 'nope' },
    });
    expectProblem(unknown, 'referenced-resource-not-found');
    const res = await h.request('POST', '/vehicles', {
      token,
      body: { telematics_brand: 'SMARTCAR', telematics_unit_id: smartcarId, credentials_id: credentialsId },
    });
    expect(res.status, res.text).toBe(201);
    vehicleId = res.body.vehicle_id;
    await h.waitFor(async () => (await h.app.store.getVehicle(vehicleId))?.setup_status === 'SUCCEEDED');
    const got = await h.request('GET', `/vehicles/${vehicleId}`, { token });
    expect(got.body.capabilities.commands).toEqual(
      expect.arrayContaining(['LOCK_CENTRAL_LOCK', 'UNLOCK_CENTRAL_LOCK', 'REQUEST_VEHICLE_STATE']),
    );
    expectProblem(await h.request('DELETE', `/credentials/${credentialsId}`, { token }), 'conflicting-resource');
  });
});

describe('SMARTCAR commands through the API', () => {
  it('lock, unlock and request-vehicle-state answer 200 with state from the provider', async () => {
    let res = await cmd('unlock-central-lock');
    expect(res.status, res.text).toBe(200);
    expect(res.body.central_lock.value).toBe('UNLOCKED');
    res = await cmd('lock-central-lock');
    expect(res.status, res.text).toBe(200);
    expect(res.body.central_lock.value).toBe('LOCKED');
    res = await cmd('request-vehicle-state');
    expect(res.status, res.text).toBe(200);
    expect(res.body.position.value).toEqual({ lat: expect.any(Number), lon: expect.any(Number) });
    expect(typeof res.body.mileage_in_kilometers.value).toBe('number');
    expect(typeof res.body.state_of_charge_or_fuel_level_in_percent.value).toBe('number');
    expectProblem(await cmd('enable-driving'), 'vehicle/command-not-supported');
  });

  const cases: Array<[string, Parameters<FakeSmartcar['set']>[0], string, ProblemKey, Record<string, unknown>?]> = [
    ['provider 5xx', { fail5xx: true }, 'lock-central-lock', 'third-party/error', { provider: 'Smartcar' }],
    ['upstream error', { upstreamError: true }, 'lock-central-lock', 'third-party/error'],
    ['malformed body', { malformed: true }, 'request-vehicle-state', 'third-party/error'],
    ['vehicle asleep', { asleep: true }, 'unlock-central-lock', 'vehicle/no-connection', { delivery: 'NOT_DELIVERED' }],
    ['vehicle unreachable', { unreachable: true }, 'unlock-central-lock', 'vehicle/no-connection'],
    ['provider timeout', { slow: true }, 'request-vehicle-state', 'vehicle/no-connection'],
    ['door open', { doorOpen: true }, 'lock-central-lock', 'vehicle/conflicting-state'],
    ['vehicle failure', { vehicleFailure: true }, 'lock-central-lock', 'telematics-unit/error'],
    [
      'missing permission',
      { permissionMissing: ['control_security'] },
      'lock-central-lock',
      'vehicle/command-not-supported',
    ],
    ['incompatible vehicle', { incompatible: ['security'] }, 'unlock-central-lock', 'vehicle/command-not-supported'],
    [
      'rate limit beyond the budget',
      { rateLimit: { retryAfterS: 30 } },
      'lock-central-lock',
      'third-party/error',
      { retry_after_seconds: 30 },
    ],
  ];
  for (const [name, switches, command, key, extra] of cases) {
    it(`${name} → ${PROBLEMS[key].status} /problems/${key}`, async () => {
      fake.set(switches, smartcarId);
      try {
        const res = await cmd(command);
        expectProblem(res, key);
        if (extra) expect(res.body).toMatchObject(extra);
        if (key === 'third-party/error') expect(res.body.detail).toMatch(/Smartcar/);
        if (switches.rateLimit) expect(res.headers.get('retry-after')).toBe('30');
      } finally {
        fake.clear(smartcarId);
      }
    });
  }

  it('a rate limit whose retry hint fits the budget is waited out → 200', async () => {
    fake.set({ rateLimit: { retryAfterS: 1, times: 1 } }, smartcarId);
    const res = await cmd('unlock-central-lock');
    expect(res.status, res.text).toBe(200);
    fake.clear(smartcarId);
  });

  it('revoked authorization → 502 saying what to do; the vehicle is marked FAILED', async () => {
    fake.revokeAuthorization(CLIENT.clientId);
    fake.expireAccessTokens(CLIENT.clientId);
    const res = await cmd('lock-central-lock');
    expectProblem(res, 'third-party/error');
    expect(res.body.detail).toMatch(/credentials|reconnect|authoriz/i);
    await h.waitFor(async () => (await h.app.store.getVehicle(vehicleId))?.setup_status === 'FAILED');
    const v = await h.request('GET', `/vehicles/${vehicleId}`, { token });
    expect(v.body.setup_failure_reason).toBeTruthy();
    expectProblem(await cmd('lock-central-lock'), 'vehicle/conflicting-setup-status');
  });
});
