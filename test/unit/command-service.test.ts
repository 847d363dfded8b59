import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { CommandName } from '../../src/domain/commands.js';
import { ProblemError } from '../../src/domain/problems.js';
import type { Vehicle } from '../../src/domain/vehicle.js';
import type { Principal } from '../../src/services/auth-service.js';
import { CommandService } from '../../src/services/command-service.js';
import { EventBus } from '../../src/services/event-bus.js';
import { VehicleService } from '../../src/services/vehicle-service.js';
import { createStore } from '../../src/store/registry.js';
import { type Store, StoreUnavailableError } from '../../src/store/store.js';
import type { CommandOutcome, CommandRequest, TelematicsAdapter } from '../../src/telematics/adapter.js';
import { makeVehicle } from '../contract/adapter.contract.js';

// CommandService on the real SQLite store with a scripted adapter: the rules written once for
// every adapter (SPEC §1), without HTTP or a broker in between.

const TIMEOUT_MS = 400;
const FLEET = 'fleet-cs';
const principal: Principal = { fleetId: FLEET, clientId: 'fgc_test', scopes: ['vehicle-commands'] };
const logger = pino({ level: 'silent' });

type Script = (request: CommandRequest) => Promise<CommandOutcome> | CommandOutcome;

/** An adapter whose answers the test scripts; it records every request it gets. */
class ScriptedAdapter implements TelematicsAdapter {
  readonly brand = 'SCRIPTED';
  readonly displayName = 'Scripted';
  readonly requiresUnitPassword = false;
  readonly models = [
    {
      id: 'scripted-car',
      brand: 'SCRIPTED',
      model: 'Car',
      vehicle_type: 'CAR' as const,
      capabilities: {
        commands: ['LOCK_CENTRAL_LOCK', 'UNLOCK_CENTRAL_LOCK', 'ENABLE_DRIVING', 'UNLOCK_AND_ENABLE_DRIVING'],
        vehicle_state: ['CENTRAL_LOCK', 'DRIVING_ENABLED'],
      },
    },
  ] as TelematicsAdapter['models'];
  readonly requests: CommandRequest[] = [];
  script: Script = () => ({ kind: 'succeeded', state: {} });

  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  async onVehicleAdded(): Promise<void> {}
  async onVehicleRemoved(): Promise<void> {}
  async execute(request: CommandRequest): Promise<CommandOutcome> {
    this.requests.push(request);
    return this.script(request);
  }
}

let store: Store;
let dataDir: string;
const adapter = new ScriptedAdapter();
let service: CommandService;

beforeAll(async () => {
  dataDir = mkdtempSync(path.join(tmpdir(), 'fleetgate-cs-'));
  store = await createStore({ dataDir, logger });
  await store.migrate();
  const events = new EventBus();
  const vehicles = new VehicleService(store, new Map([[adapter.brand, adapter]]), events, logger, Buffer.alloc(32));
  service = new CommandService(store, vehicles, events, { timeoutMs: TIMEOUT_MS, instanceId: 'test' });
});

afterAll(async () => {
  await store.close();
  rmSync(dataDir, { recursive: true, force: true });
});

afterEach(() => {
  adapter.script = () => ({ kind: 'succeeded', state: {} });
  adapter.requests.length = 0;
});

async function addVehicle(overrides: Partial<Vehicle> = {}): Promise<Vehicle> {
  const vehicle = makeVehicle(adapter.models[0]!, randomUUID(), { fleet_id: FLEET, ...overrides });
  await store.insertVehicle(vehicle);
  return vehicle;
}

/** An adapter answer held back until `release()`: the command stays in flight meanwhile. */
function holdAnswers(): () => void {
  let release!: () => void;
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  adapter.script = async () => {
    await held;
    return { kind: 'succeeded', state: {} };
  };
  return release;
}

function run(vehicleId: string, command: CommandName, idempotencyKey?: string) {
  return service.execute(principal, vehicleId, command, { flowId: randomUUID(), idempotencyKey, logger });
}

async function problemOf(work: Promise<unknown>): Promise<ProblemError> {
  const error = await work.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ProblemError);
  return error as ProblemError;
}

const lockedAt = (timestamp: string) => ({ central_lock: { timestamp, value: 'LOCKED' } });

describe.each([
  ['without an Idempotency-Key', () => undefined],
  ['with an Idempotency-Key', () => randomUUID()],
])('CommandService %s', (_name, newKey) => {
  it('answers with the state the unit reported, filtered by capability, and records the command', async () => {
    const v = await addVehicle();
    const ts = new Date().toISOString();
    adapter.script = () => ({
      kind: 'succeeded',
      state: { ...lockedAt(ts), ignition: { timestamp: ts, value: 'OFF' } },
    });
    const result = await run(v.vehicle_id, 'LOCK_CENTRAL_LOCK', newKey());
    expect(result).toEqual({ kind: 'state', state: lockedAt(ts) });
    const [record] = await store.listCommands(v.vehicle_id, 1);
    expect(record).toMatchObject({ status: 'SUCCEEDED', delivery: 'DELIVERED', adapter: 'SCRIPTED' });
  });

  it('refuses an unknown or foreign vehicle with 404 before the adapter is called', async () => {
    const foreign = await addVehicle({ fleet_id: 'other-fleet' });
    for (const id of ['V-missing', foreign.vehicle_id]) {
      expect((await problemOf(run(id, 'LOCK_CENTRAL_LOCK', newKey()))).key).toBe('resource-not-found');
    }
    expect(adapter.requests).toHaveLength(0);
  });

  it('refuses a command the vehicle lacks, and a vehicle whose setup has not succeeded, without a record (SPEC §1)', async () => {
    const v = await addVehicle();
    expect((await problemOf(run(v.vehicle_id, 'DRAW_ATTENTION', newKey()))).key).toBe('vehicle/command-not-supported');
    const pending = await addVehicle({ setup_status: 'IN_PROGRESS' });
    const setup = await problemOf(run(pending.vehicle_id, 'LOCK_CENTRAL_LOCK', newKey()));
    expect(setup.key).toBe('vehicle/conflicting-setup-status');
    expect(setup.extensions).toEqual({ setup_status: 'IN_PROGRESS' });
    expect(adapter.requests).toHaveLength(0);
    // Nothing holds the vehicle afterwards: the next command runs.
    expect((await run(v.vehicle_id, 'LOCK_CENTRAL_LOCK', newKey())).kind).toBe('state');
  });

  it('runs one command per vehicle at a time (SPEC §1 single flight)', async () => {
    const v = await addVehicle();
    const release = holdAnswers();
    const first = run(v.vehicle_id, 'LOCK_CENTRAL_LOCK', newKey());
    await expect.poll(() => adapter.requests.length).toBe(1);
    const second = await problemOf(run(v.vehicle_id, 'UNLOCK_CENTRAL_LOCK', newKey()));
    expect(second.key).toBe('vehicle/conflicting-command');
    release();
    expect((await first).kind).toBe('state');
    expect(adapter.requests).toHaveLength(1);
  });

  it('ends a command the adapter never answers within the one time budget, as outcome unknown', async () => {
    const v = await addVehicle();
    let aborted = false;
    adapter.script = (request) =>
      new Promise<CommandOutcome>((resolve) => {
        request.signal.addEventListener('abort', () => {
          aborted = true;
          resolve({ kind: 'no-answer', delivered: true });
        });
      });
    const started = Date.now();
    const result = await run(v.vehicle_id, 'LOCK_CENTRAL_LOCK', newKey());
    expect(Date.now() - started).toBeGreaterThanOrEqual(TIMEOUT_MS - 5);
    expect(aborted).toBe(true);
    expect(result).toMatchObject({
      kind: 'problem',
      key: 'vehicle/no-connection',
      extensions: { delivery: 'DELIVERED_OUTCOME_UNKNOWN' },
    });
    const request = adapter.requests[0]!;
    expect(request.deadline.getTime() - started).toBeLessThanOrEqual(TIMEOUT_MS + 50);
    const [record] = await store.listCommands(v.vehicle_id, 1);
    expect(record?.status).toBe('OUTCOME_UNKNOWN');
  });

  it('runs a combined command as ordered steps and reports each step when one fails (SPEC §1)', async () => {
    const v = await addVehicle();
    const ts = new Date().toISOString();
    adapter.script = (request) =>
      request.command === 'UNLOCK_CENTRAL_LOCK'
        ? { kind: 'succeeded', state: { central_lock: { timestamp: ts, value: 'UNLOCKED' } } }
        : { kind: 'refused', reason: 'ignition is on' };
    const result = await run(v.vehicle_id, 'UNLOCK_AND_ENABLE_DRIVING', newKey());
    expect(adapter.requests.map((r) => r.command)).toEqual(['UNLOCK_CENTRAL_LOCK', 'ENABLE_DRIVING']);
    expect(result).toMatchObject({
      kind: 'problem',
      key: 'vehicle/conflicting-state',
      detail: expect.stringMatching(/^Step 'enable-driving' of 'unlock-and-enable-driving' failed: /),
      extensions: {
        steps: [
          { command: 'UNLOCK_CENTRAL_LOCK', outcome: 'SUCCEEDED' },
          { command: 'ENABLE_DRIVING', outcome: 'FAILED', problem_type: 'vehicle/conflicting-state' },
        ],
        vehicle_state: { central_lock: { timestamp: ts, value: 'UNLOCKED' } },
      },
    });
  });

  it('answers an adapter that throws as a telematics-unit error, and frees the vehicle', async () => {
    const v = await addVehicle();
    adapter.script = () => {
      throw new Error('bug in adapter');
    };
    const result = await run(v.vehicle_id, 'LOCK_CENTRAL_LOCK', newKey());
    expect(result).toMatchObject({ kind: 'problem', key: 'telematics-unit/error' });
    adapter.script = () => ({ kind: 'succeeded', state: {} });
    expect((await run(v.vehicle_id, 'LOCK_CENTRAL_LOCK', newKey())).kind).toBe('state');
  });
});

describe('CommandService with an Idempotency-Key', () => {
  it('replays the stored result and never executes twice', async () => {
    const v = await addVehicle();
    const key = randomUUID();
    adapter.script = () => ({ kind: 'refused', reason: 'moving' });
    const first = await run(v.vehicle_id, 'LOCK_CENTRAL_LOCK', key);
    adapter.script = () => ({ kind: 'succeeded', state: {} });
    const again = await run(v.vehicle_id, 'LOCK_CENTRAL_LOCK', key);
    expect(again).toEqual(first);
    expect(adapter.requests).toHaveLength(1);
  });

  it('refuses the same key for another command', async () => {
    const v = await addVehicle();
    const key = randomUUID();
    await run(v.vehicle_id, 'LOCK_CENTRAL_LOCK', key);
    const reuse = await problemOf(run(v.vehicle_id, 'UNLOCK_CENTRAL_LOCK', key));
    expect(reuse.key).toBe('validation-error');
  });

  it('releases the key when the command never began, so a retry with it runs', async () => {
    const v = await addVehicle();
    const release = holdAnswers();
    const first = run(v.vehicle_id, 'LOCK_CENTRAL_LOCK');
    await expect.poll(() => adapter.requests.length).toBe(1);
    const key = randomUUID();
    expect((await problemOf(run(v.vehicle_id, 'UNLOCK_CENTRAL_LOCK', key))).key).toBe('vehicle/conflicting-command');
    release();
    await first;
    adapter.script = () => ({ kind: 'succeeded', state: {} });
    expect((await run(v.vehicle_id, 'UNLOCK_CENTRAL_LOCK', key)).kind).toBe('state');
    expect(adapter.requests).toHaveLength(2);
  });

  it('stores third-party waits as a problem member; the HTTP header is the API layer’s', async () => {
    const v = await addVehicle();
    adapter.script = () => ({
      kind: 'third-party-error',
      provider: 'Acme',
      reason: 'rate limited',
      retry_after_s: 2.5,
    });
    const result = await run(v.vehicle_id, 'LOCK_CENTRAL_LOCK', randomUUID());
    expect(result).toEqual({
      kind: 'problem',
      key: 'third-party/error',
      detail: 'An error occurred at the Acme API: rate limited',
      extensions: { provider: 'Acme', retry_after_seconds: 2.5 },
    });
  });
});

describe('VehicleService connection changes', () => {
  /** A VehicleService of this file's adapter over `over` (the store with some calls replaced). */
  const serviceOver = (over: Store) =>
    new VehicleService(over, new Map([[adapter.brand, adapter]]), new EventBus(), logger, Buffer.alloc(32));

  /**
   * The store, but its `method` fails its first two calls as a pool with no free connection does
   * in a reconnect storm. `refusals()` counts down per call: -1 after two refusals and one success.
   */
  function refusingTwice<K extends 'mergeState' | 'setLifeStatus'>(method: K) {
    let refusals = 2;
    const original = (store[method] as (...args: unknown[]) => Promise<unknown>).bind(store);
    const busyStore = Object.create(store) as Store;
    busyStore[method] = (async (...args: unknown[]) => {
      if (refusals-- > 0) throw new StoreUnavailableError(new Error('timeout exceeded when trying to connect'));
      return original(...args);
    }) as Store[K];
    return { store: busyStore, refusals: () => refusals };
  }

  it("writes a unit's connection changes in the order it reported them, even when the first is slow", async () => {
    const vehicle = makeVehicle(adapter.models[0]!, randomUUID(), { fleet_id: FLEET });
    await store.insertVehicle(vehicle);
    // The OFFLINE write waits until the ONLINE reported after it was handed over: without the
    // per-unit order, ONLINE would land first and the older OFFLINE would overwrite it.
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    const original = store.setLifeStatus.bind(store);
    const slowStore = Object.create(store) as Store;
    slowStore.setLifeStatus = async (id, status, at, cause) => {
      if (status === 'OFFLINE') await held;
      return original(id, status, at, cause);
    };
    const service = serviceOver(slowStore);
    const unit = vehicle.telematics_unit_id;
    const offline = service.onConnectionChange(adapter.brand, unit, false, new Date());
    const online = service.onConnectionChange(adapter.brand, unit, true, new Date());
    // Give the ONLINE write every chance to overtake (it must not), then let OFFLINE through.
    await new Promise((resolve) => setImmediate(resolve));
    release();
    await Promise.all([offline, online]);
    expect((await service.units.find(adapter.brand, unit))?.vehicle_id).toBe(vehicle.vehicle_id);
    expect((await store.getVehicle(vehicle.vehicle_id))?.life_status).toBe('ONLINE');
  });

  it('stores a state report the database could not take once it can', async () => {
    const vehicle = makeVehicle(adapter.models[0]!, randomUUID(), { fleet_id: FLEET });
    await store.insertVehicle(vehicle);
    const busy = refusingTwice('mergeState');
    const service = serviceOver(busy.store);
    const at = new Date().toISOString();
    await service.onStateReport(adapter.brand, vehicle.telematics_unit_id, {
      central_lock: { timestamp: at, value: 'UNLOCKED' },
    });
    expect(busy.refusals()).toBe(-1);
    expect((await store.getState(vehicle.vehicle_id)).central_lock).toEqual({ timestamp: at, value: 'UNLOCKED' });
  });

  it('writes a connection change the database could not take once it can (adapters report a change once)', async () => {
    const vehicle = makeVehicle(adapter.models[0]!, randomUUID(), { fleet_id: FLEET, life_status: 'OFFLINE' });
    await store.insertVehicle(vehicle);
    const busy = refusingTwice('setLifeStatus');
    const service = serviceOver(busy.store);
    await service.onConnectionChange(adapter.brand, vehicle.telematics_unit_id, true, new Date());
    expect(busy.refusals()).toBe(-1);
    expect((await store.getVehicle(vehicle.vehicle_id))?.life_status).toBe('ONLINE');
  });
});
