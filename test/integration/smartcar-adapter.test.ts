import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { freePort } from '../../scripts/lib/free-port.js';
import type { CommandName } from '../../src/domain/commands.js';
import type { Vehicle } from '../../src/domain/vehicle.js';
import { SecretBox } from '../../src/lib/secrets.js';
import { CredentialsService } from '../../src/services/credentials-service.js';
import { type FakeSmartcar, startFakeSmartcar } from '../../src/sim/smartcar-fake/fake-smartcar.js';
import { createStore } from '../../src/store/registry.js';
import type { Store } from '../../src/store/store.js';
import type { AdapterContext, CommandOutcome } from '../../src/telematics/adapter.js';
import { SMARTCAR_CONNECTED_CAR } from '../../src/telematics/smartcar/models.js';
import { SmartcarAdapter, type SmartcarAdapterOptions } from '../../src/telematics/smartcar/smartcar-adapter.js';
import { makeVehicle } from '../contract/adapter.contract.js';
import { startAdapter } from '../helpers/adapter-context.js';

const CLIENT_ID = 'fake-app-client-id';
const CLIENT_SECRET = `cs_${randomBytes(16).toString('hex')}`;
const FLEET = 'fleet-smartcar';

/** Everything the log lines of all adapters wrote; secrets must never appear in it. */
let logText = '';
const logger = pino(
  { level: 'debug' },
  new Writable({
    write(chunk, _enc, cb) {
      logText += chunk.toString();
      cb();
    },
  }),
);

let dataDir: string;
let fake: FakeSmartcar;
let store: Store;
let secrets: SecretBox;
let credentialsId: string;
let initialRefreshToken: string;
const cleanups: Array<() => Promise<unknown> | unknown> = [];
/** What adapters reported through their context. */
const reports: { unitId: string; state: unknown }[] = [];
const connectivity: { unitId: string; online: boolean }[] = [];

interface Instance {
  adapter: SmartcarAdapter;
  ctx: AdapterContext;
}

async function startInstance(
  options: SmartcarAdapterOptions = {},
  s: Store = store,
  instanceId = 'A',
  apiUrl = fake.apiUrl,
): Promise<Instance> {
  const started = await startAdapter(new SmartcarAdapter({ setupTimeoutMs: 5000, ...options }), {
    store: s,
    secrets,
    instanceId,
    logger,
    flags: { smartcarApiUrl: apiUrl, smartcarAuthUrl: fake.authUrl },
    recorder: {
      onStateReport: async (unitId, state) => void reports.push({ unitId, state }),
      onConnectionChange: async (unitId, online) => void connectivity.push({ unitId, online }),
    },
  });
  cleanups.push(() => started.close());
  return { adapter: started.adapter, ctx: started.ctx };
}

async function addVehicle(unitId: string, overrides: Partial<Vehicle> = {}): Promise<Vehicle> {
  const v = makeVehicle(SMARTCAR_CONNECTED_CAR, unitId, {
    vehicle_id: `V${randomBytes(6).toString('hex').toUpperCase()}`,
    fleet_id: FLEET,
    credentials_id: credentialsId,
    master_data: {},
    ...overrides,
  });
  await store.insertVehicle(v);
  return v;
}

/** A Smartcar application with its own account and fleetgate credentials. */
async function newAccount(
  clientId: string,
  app: { accessTokenTtlS?: number } = {},
): Promise<{ clientId: string; credentialsId: string }> {
  const clientSecret = `${clientId}-secret`;
  const refreshToken = fake.addApplication({ clientId, clientSecret, ...app });
  const service = new CredentialsService(store, secrets, new Map([['SMARTCAR', new SmartcarAdapter()]]));
  const view = await service.create(FLEET, {
    telematics_brand: 'SMARTCAR',
    client_id: clientId,
    client_secret: clientSecret,
    refresh_token: refreshToken,
  });
  return { clientId, credentialsId: view.credentials_id };
}

function run(instance: Instance, vehicle: Vehicle, command: CommandName, budgetMs = 3000): Promise<CommandOutcome> {
  return instance.adapter.execute({
    vehicle,
    command,
    flowId: crypto.randomUUID(),
    deadline: new Date(Date.now() + budgetMs),
    signal: AbortSignal.timeout(budgetMs),
  });
}

beforeAll(async () => {
  dataDir = mkdtempSync(path.join(tmpdir(), 'fleetgate-smartcar-'));
  fake = await startFakeSmartcar();
  store = await createStore({ dataDir });
  await store.migrate();
  secrets = new SecretBox(randomBytes(32));
  initialRefreshToken = fake.addApplication({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET });
  const probe = new SmartcarAdapter();
  const service = new CredentialsService(store, secrets, new Map([['SMARTCAR', probe]]));
  const view = await service.create(FLEET, {
    telematics_brand: 'SMARTCAR',
    name: 'Smartcar account',
    client_id: CLIENT_ID,
    client_secret: CLIENT_SECRET,
    refresh_token: initialRefreshToken,
  });
  credentialsId = view.credentials_id;
});

afterAll(async () => {
  await fake.close();
  await store.close();
  rmSync(dataDir, { recursive: true, force: true });
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  fake.clear();
});

describe('setup', () => {
  it('SUCCEEDS with the capabilities Smartcar grants and supports (SPEC §4)', async () => {
    const car = fake.addVehicle({ clientId: CLIENT_ID, engine: 'ELECTRIC' });
    const inst = await startInstance();
    const v = await addVehicle(car.id, { setup_status: 'IN_PROGRESS' });
    await inst.adapter.onVehicleAdded(v);
    await inst.adapter.idle();
    const stored = await store.getVehicle(v.vehicle_id);
    expect(stored?.setup_status).toBe('SUCCEEDED');
    expect(stored?.capabilities).toEqual(SMARTCAR_CONNECTED_CAR.capabilities);
    // The readings of the verification become the first state; the vehicle counts as online.
    expect(reports.find((r) => r.unitId === car.id)?.state).toMatchObject({
      position: { value: { lat: car.latitude, lon: car.longitude } },
      central_lock: { value: 'LOCKED' },
    });
    expect(connectivity.filter((c) => c.unitId === car.id)).toEqual([{ unitId: car.id, online: true }]);
  });

  it('narrows capabilities to granted permissions and compatible endpoints', async () => {
    const car = fake.addVehicle({
      clientId: CLIENT_ID,
      engine: 'GASOLINE',
      permissions: ['read_vehicle_info', 'read_fuel', 'read_odometer', 'read_security'],
    });
    fake.set({ incompatible: ['odometer'] }, car.id);
    const inst = await startInstance();
    const v = await addVehicle(car.id, { setup_status: 'IN_PROGRESS' });
    await inst.adapter.onVehicleAdded(v);
    await inst.adapter.idle();
    const stored = await store.getVehicle(v.vehicle_id);
    expect(stored?.setup_status).toBe('SUCCEEDED');
    expect(stored?.capabilities).toEqual({
      commands: ['REQUEST_VEHICLE_STATE'],
      vehicle_state: ['STATE_OF_CHARGE_OR_FUEL_LEVEL_IN_PERCENT', 'REMAINING_RANGE_IN_KILOMETERS', 'CENTRAL_LOCK'],
    });
  });

  it('FAILS with the reason when Smartcar does not know the vehicle', async () => {
    const inst = await startInstance();
    const v = await addVehicle('no-such-smartcar-vehicle', { setup_status: 'IN_PROGRESS' });
    await inst.adapter.onVehicleAdded(v);
    await inst.adapter.idle();
    const stored = await store.getVehicle(v.vehicle_id);
    expect(stored?.setup_status).toBe('FAILED');
    expect(stored?.setup_failure_reason).toMatch(/knows no vehicle 'no-such-smartcar-vehicle'.*request id/);
  });

  it('FAILS when nothing usable was granted', async () => {
    const car = fake.addVehicle({ clientId: CLIENT_ID, permissions: ['read_vin'] });
    const inst = await startInstance();
    const v = await addVehicle(car.id, { setup_status: 'IN_PROGRESS' });
    await inst.adapter.onVehicleAdded(v);
    await inst.adapter.idle();
    const stored = await store.getVehicle(v.vehicle_id);
    expect(stored?.setup_status).toBe('FAILED');
    expect(stored?.setup_failure_reason).toMatch(/grants no permission fleetgate can use.*granted: read_vin/);
  });
});

describe('commands', () => {
  it('locks and unlocks through POST /security', async () => {
    const car = fake.addVehicle({ clientId: CLIENT_ID, locked: true });
    const inst = await startInstance();
    const v = await addVehicle(car.id);
    const unlocked = await run(inst, v, 'UNLOCK_CENTRAL_LOCK');
    expect(unlocked).toMatchObject({ kind: 'succeeded', state: { central_lock: { value: 'UNLOCKED' } } });
    expect(fake.vehicle(car.id).locked).toBe(false);
    const locked = await run(inst, v, 'LOCK_CENTRAL_LOCK');
    expect(locked).toMatchObject({ kind: 'succeeded', state: { central_lock: { value: 'LOCKED' } } });
    expect(fake.vehicle(car.id).locked).toBe(true);
  });

  it('reads the state of an EV in one batch, with the provider timestamps', async () => {
    const dataAt = new Date('2025-03-01T10:20:30.400Z');
    const car = fake.addVehicle({
      clientId: CLIENT_ID,
      engine: 'ELECTRIC',
      locked: false,
      latitude: 48.137154,
      longitude: 11.576124,
      odometerKm: 20_500.5,
      batteryPercentRemaining: 0.42,
      batteryRangeKm: 180,
      dataAt,
    });
    const inst = await startInstance();
    const v = await addVehicle(car.id);
    const before = { ...fake.counters.requests };
    const outcome = await run(inst, v, 'REQUEST_VEHICLE_STATE');
    const ts = dataAt.toISOString();
    expect(outcome).toEqual({
      kind: 'succeeded',
      state: {
        position: { timestamp: ts, value: { lat: 48.137154, lon: 11.576124 } },
        mileage_in_kilometers: { timestamp: ts, value: 20_500.5 },
        state_of_charge_or_fuel_level_in_percent: { timestamp: ts, value: 42 },
        remaining_range_in_kilometers: { timestamp: ts, value: 180 },
        central_lock: { timestamp: ts, value: 'UNLOCKED' },
      },
    });
    const batches =
      (fake.counters.requests['POST /vehicles/{id}/batch'] ?? 0) - (before['POST /vehicles/{id}/batch'] ?? 0);
    expect(batches).toBe(1);
    expect(fake.counters.requests['GET /vehicles/{id}/odometer']).toBeUndefined();
  });

  it('reads fuel level and range of a combustion car', async () => {
    const car = fake.addVehicle({
      clientId: CLIENT_ID,
      engine: 'GASOLINE',
      fuelPercentRemaining: 0.25,
      fuelRangeKm: 210,
    });
    const inst = await startInstance();
    const v = await addVehicle(car.id);
    const outcome = await run(inst, v, 'REQUEST_VEHICLE_STATE');
    expect(outcome).toMatchObject({
      kind: 'succeeded',
      state: {
        state_of_charge_or_fuel_level_in_percent: { value: 25 },
        remaining_range_in_kilometers: { value: 210 },
      },
    });
  });
});

describe('error mapping (issue item 4)', () => {
  let car: string;
  let v: Vehicle;
  let inst: Instance;
  beforeEach(async () => {
    car = fake.addVehicle({ clientId: CLIENT_ID }).id;
    v = await addVehicle(car);
    inst = await startInstance();
    // A first command caches a token, so each case below exercises the vehicle call itself.
    expect((await run(inst, v, 'REQUEST_VEHICLE_STATE')).kind).toBe('succeeded');
  });

  // SPEC §2 third-party/error 502: the detail names the provider and its request id.
  it('provider 5xx → third-party-error with the request id', async () => {
    fake.set({ fail5xx: true }, car);
    const o = await run(inst, v, 'LOCK_CENTRAL_LOCK');
    expect(o).toMatchObject({
      kind: 'third-party-error',
      provider: 'Smartcar',
      reason: expect.stringMatching(/SERVER:INTERNAL/),
    });
    expect(o.kind === 'third-party-error' && o.request_id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('upstream error type → third-party-error', async () => {
    fake.set({ upstreamError: true }, car);
    expect(await run(inst, v, 'REQUEST_VEHICLE_STATE')).toMatchObject({
      kind: 'third-party-error',
      reason: expect.stringMatching(/UPSTREAM:UNKNOWN_ISSUE/),
      request_id: expect.any(String),
    });
  });

  it('malformed body → third-party-error', async () => {
    fake.set({ malformed: true }, car);
    expect(await run(inst, v, 'UNLOCK_CENTRAL_LOCK')).toMatchObject({
      kind: 'third-party-error',
      provider: 'Smartcar',
      reason: expect.stringMatching(/not JSON/),
    });
    expect(await run(inst, v, 'REQUEST_VEHICLE_STATE')).toMatchObject({ kind: 'third-party-error' });
  });

  // SPEC §1: slow or unreachable third party → 504.
  it('provider timeout → no-answer (outcome unknown for an action, not delivered for a read)', async () => {
    fake.set({ slow: true }, car);
    const started = Date.now();
    expect(await run(inst, v, 'LOCK_CENTRAL_LOCK', 300)).toEqual({ kind: 'no-answer', delivered: true });
    expect(await run(inst, v, 'REQUEST_VEHICLE_STATE', 300)).toEqual({ kind: 'no-answer', delivered: false });
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('connection closed by the provider → not-connected', async () => {
    fake.refuseConnections(true);
    expect(await run(inst, v, 'LOCK_CENTRAL_LOCK')).toMatchObject({
      kind: 'not-connected',
      reason: expect.stringMatching(/Smartcar API cannot be reached/),
    });
  });

  it('connection refused (nothing listening) → not-connected', async () => {
    const port = await freePort();
    const other = await startInstance({}, store, 'A', `http://127.0.0.1:${port}/v2.0`);
    expect(await run(other, v, 'REQUEST_VEHICLE_STATE')).toMatchObject({
      kind: 'not-connected',
      reason: expect.stringMatching(/ECONNREFUSED/),
    });
  });

  it('vehicle asleep or unreachable → not-connected', async () => {
    fake.set({ asleep: true }, car);
    expect(await run(inst, v, 'UNLOCK_CENTRAL_LOCK')).toMatchObject({
      kind: 'not-connected',
      reason: expect.stringMatching(/ASLEEP/),
    });
    expect(await run(inst, v, 'REQUEST_VEHICLE_STATE')).toMatchObject({
      kind: 'not-connected',
      reason: expect.stringMatching(/ASLEEP/),
    });
    fake.clear(car);
    fake.set({ unreachable: true }, car);
    expect(await run(inst, v, 'LOCK_CENTRAL_LOCK')).toMatchObject({
      kind: 'not-connected',
      reason: expect.stringMatching(/UNREACHABLE/),
    });
  });

  it('asleep answers mark the vehicle offline, the next answer online again (life_status)', async () => {
    fake.set({ asleep: true }, car);
    await run(inst, v, 'REQUEST_VEHICLE_STATE');
    fake.clear(car);
    await run(inst, v, 'LOCK_CENTRAL_LOCK');
    expect(connectivity.filter((c) => c.unitId === car).map((c) => c.online)).toEqual([true, false, true]);
  });

  it('the vehicle failing for an unknown reason → failed (telematics-unit/error)', async () => {
    fake.set({ vehicleFailure: true }, car);
    expect(await run(inst, v, 'LOCK_CENTRAL_LOCK')).toMatchObject({
      kind: 'failed',
      reason: expect.stringMatching(/UNKNOWN.*request id/),
    });
  });

  it('door open → refused (conflicting-state)', async () => {
    fake.set({ doorOpen: true }, car);
    expect(await run(inst, v, 'LOCK_CENTRAL_LOCK')).toMatchObject({
      kind: 'refused',
      reason: expect.stringMatching(/DOOR_OPEN/),
    });
    expect(fake.vehicle(car).locked).toBe(true);
    expect((await run(inst, v, 'UNLOCK_CENTRAL_LOCK')).kind).toBe('succeeded');
  });

  it('missing permission → not-supported, saying what the owner must grant', async () => {
    fake.set({ permissionMissing: ['control_security'] }, car);
    expect(await run(inst, v, 'LOCK_CENTRAL_LOCK')).toMatchObject({
      kind: 'not-supported',
      reason: expect.stringMatching(/control_security.*reconnect the vehicle in Smartcar Connect/),
    });
  });

  it('incompatible vehicle → not-supported', async () => {
    fake.set({ incompatible: ['security'] }, car);
    expect(await run(inst, v, 'UNLOCK_CENTRAL_LOCK')).toMatchObject({
      kind: 'not-supported',
      reason: expect.stringMatching(/VEHICLE_NOT_CAPABLE/),
    });
  });

  it('rate limit whose Retry-After fits the budget → waits and retries', async () => {
    fake.set({ rateLimit: { retryAfterS: 1, times: 1 } }, car);
    const started = Date.now();
    expect((await run(inst, v, 'LOCK_CENTRAL_LOCK', 3000)).kind).toBe('succeeded');
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect(fake.vehicle(car).locked).toBe(true);
  });

  it('rate limit beyond the budget → third-party-error with the retry time, at once', async () => {
    fake.set({ rateLimit: { retryAfterS: 30 } }, car);
    const started = Date.now();
    expect(await run(inst, v, 'UNLOCK_CENTRAL_LOCK', 3000)).toMatchObject({
      kind: 'third-party-error',
      retry_after_s: 30,
      request_id: expect.any(String),
    });
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('an access token Smartcar stops accepting is refreshed once and the call repeated', async () => {
    const refreshes = fake.counters.tokenRefreshes;
    fake.expireAccessTokens(CLIENT_ID);
    expect((await run(inst, v, 'LOCK_CENTRAL_LOCK')).kind).toBe('succeeded');
    expect(fake.counters.tokenRefreshes).toBe(refreshes + 1);
  });

  it('token endpoint failing → third-party-error; token endpoint slow → no-answer', async () => {
    // Own account: the slow refresh below keeps its lease until its own timeout runs out.
    const acct = await newAccount('token-endpoint-app');
    const w = await addVehicle(fake.addVehicle({ clientId: acct.clientId }).id, { credentials_id: acct.credentialsId });
    fake.setAuth({ fail5xx: true });
    expect(await run(inst, w, 'LOCK_CENTRAL_LOCK')).toMatchObject({
      kind: 'third-party-error',
      reason: expect.stringMatching(/server_error/),
    });
    fake.clear();
    fake.setAuth({ slow: true });
    expect(await run(inst, w, 'LOCK_CENTRAL_LOCK', 300)).toEqual({ kind: 'no-answer', delivered: false });
  });
});

describe('revoked authorization', () => {
  it('marks every vehicle of the credentials FAILED and tells the operator what to do', async () => {
    // Own application and credentials: revocation is final.
    const { clientId, credentialsId } = await newAccount('revoked-app');
    const a = await addVehicle(fake.addVehicle({ clientId }).id, { credentials_id: credentialsId });
    const b = await addVehicle(fake.addVehicle({ clientId }).id, { credentials_id: credentialsId });
    const bystander = await addVehicle(fake.addVehicle({ clientId: CLIENT_ID }).id);
    const inst = await startInstance();
    expect((await run(inst, a, 'LOCK_CENTRAL_LOCK')).kind).toBe('succeeded');

    fake.revokeAuthorization(clientId);
    const o = await run(inst, a, 'UNLOCK_CENTRAL_LOCK');
    expect(o).toMatchObject({
      kind: 'third-party-error',
      provider: 'Smartcar',
      reason: expect.stringMatching(/Reconnect the account in Smartcar Connect.*POST \/credentials/),
    });
    for (const id of [a.vehicle_id, b.vehicle_id]) {
      const stored = await store.getVehicle(id);
      expect(stored?.setup_status).toBe('FAILED');
      expect(stored?.setup_failure_reason).toMatch(/revoked the authorization/);
    }
    expect((await store.getVehicle(bystander.vehicle_id))?.setup_status).toBe('SUCCEEDED');

    // The refusal is remembered: no more token exchanges for these credentials.
    const rejections = fake.counters.tokenRejections;
    expect((await run(inst, b, 'REQUEST_VEHICLE_STATE')).kind).toBe('third-party-error');
    expect(fake.counters.tokenRejections).toBe(rejections);
  });
});

describe('tokens', () => {
  it('refreshes the access token before it expires and persists the rotated refresh token', async () => {
    const { clientId, credentialsId } = await newAccount('short-lived-app', { accessTokenTtlS: 600 });
    const v = await addVehicle(fake.addVehicle({ clientId }).id, { credentials_id: credentialsId });
    let clock = Date.now();
    const inst = await startInstance({ now: () => clock, refreshBeforeExpiryMs: 60_000 });

    const base = fake.counters.tokenRefreshes;
    const rejections = fake.counters.tokenRejections;
    expect((await run(inst, v, 'REQUEST_VEHICLE_STATE')).kind).toBe('succeeded');
    expect((await run(inst, v, 'LOCK_CENTRAL_LOCK')).kind).toBe('succeeded');
    expect(fake.counters.tokenRefreshes).toBe(base + 1);

    // 9 min 1 s later the token has 59 s left (< 60 s margin): refreshed before Smartcar expires it.
    clock += 541_000;
    expect((await run(inst, v, 'UNLOCK_CENTRAL_LOCK')).kind).toBe('succeeded');
    expect(fake.counters.tokenRefreshes).toBe(base + 2);
    expect(fake.counters.tokenRejections).toBe(rejections);

    const rec = await store.getCredentials(credentialsId);
    const state = JSON.parse(secrets.open(rec!.sealed_state!, credentialsId)) as {
      refresh_token: string;
      lease?: unknown;
    };
    expect(state.refresh_token).toBe(fake.currentRefreshToken(clientId));
    expect(state.lease).toBeUndefined();
  });

  it('two instances sharing one SQLite store refresh exactly once, with no revoked token', async () => {
    const { clientId, credentialsId } = await newAccount('shared-app');
    const vehicles = await Promise.all(
      Array.from({ length: 6 }, () => addVehicle(fake.addVehicle({ clientId }).id, { credentials_id: credentialsId })),
    );
    // A second store on the same database file: another fleetgate process as far as SQLite knows.
    const otherStore = await createStore({ dataDir });
    cleanups.push(() => otherStore.close());
    const a = await startInstance({ pollMs: 5 }, store, 'instance-a');
    const b = await startInstance({ pollMs: 5 }, otherStore, 'instance-b');

    const base = { refreshes: fake.counters.tokenRefreshes, rejections: fake.counters.tokenRejections };
    const outcomes = await Promise.all(
      vehicles.flatMap((v) => [run(a, v, 'REQUEST_VEHICLE_STATE'), run(b, v, 'LOCK_CENTRAL_LOCK')]),
    );
    expect(outcomes.map((o) => o.kind)).toEqual(Array(12).fill('succeeded'));
    expect(fake.counters.tokenRefreshes).toBe(base.refreshes + 1);
    expect(fake.counters.tokenRejections).toBe(base.rejections);
    for (const v of vehicles) expect((await store.getVehicle(v.vehicle_id))?.setup_status).toBe('SUCCEEDED');
  });

  it('keeps every secret out of the database files and the logs', async () => {
    const car = fake.addVehicle({ clientId: CLIENT_ID });
    const inst = await startInstance();
    const v = await addVehicle(car.id);
    expect((await run(inst, v, 'LOCK_CENTRAL_LOCK')).kind).toBe('succeeded');
    const rec = await store.getCredentials(credentialsId);
    const state = JSON.parse(secrets.open(rec!.sealed_state!, credentialsId)) as {
      access_token: string;
      refresh_token: string;
    };
    const secretsInPlay = [CLIENT_SECRET, initialRefreshToken, state.refresh_token, state.access_token];
    expect(state.refresh_token).not.toBe(initialRefreshToken);

    const dbBytes = readdirSync(dataDir)
      .filter((f) => f.startsWith('fleetgate.db'))
      .map((f) => readFileSync(path.join(dataDir, f)).toString('latin1'))
      .join('\n');
    expect(dbBytes.length).toBeGreaterThan(0);
    for (const s of secretsInPlay) {
      expect(dbBytes.includes(s)).toBe(false);
      expect(logText.includes(s)).toBe(false);
    }
    // The sealed rows are bound to their credentials id.
    expect(() => secrets.open(rec!.sealed_secret, 'another-credentials-id')).toThrow();
  });
});
