import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMANDS, type CommandName, isCombined } from '../../src/domain/commands.js';
import {
  isValidStateValue,
  STATE_CAPABILITIES,
  sanitizeState,
  stateProperty,
  type VehicleState,
} from '../../src/domain/state-catalogue.js';
import type { Vehicle } from '../../src/domain/vehicle.js';
import type { AdapterVehicleModel, CommandOutcome, TelematicsAdapter } from '../../src/telematics/adapter.js';
import { EXPECTED_STATE } from '../helpers/expected-state.js';

/**
 * The shared telematics adapter contract (STYLE.md: one suite per port, run against every
 * implementation). Each adapter's test file calls `adapterContract(name, harness)` with a harness
 * that runs the adapter over real infrastructure (broker, sockets, HTTP fake) and a device
 * simulator or third-party fake.
 */

/** What a simulated unit (or third-party fake) is told to do. */
export type HarnessBehaviour =
  /** Connected and answering every command normally. */
  | 'online'
  /** Not connected: the adapter must answer not-connected without waiting for the budget. */
  | 'offline'
  /** Connected but takes no notice of commands: nothing is delivered, nothing answered. */
  | 'silent'
  /** Receives commands (the adapter can tell: delivered) but never reports an outcome. */
  | 'accept-only'
  /** Refuses every command because of the vehicle's state. */
  | 'refuse'
  /** Reports a failure for every command. */
  | 'fail';

/**
 * Runs one adapter for the contract suite. Build it over real infrastructure: the adapter gets a
 * real AdapterContext whose `onStateReport` / `onConnectionChange` also feed `recorder`.
 */
export interface AdapterHarness {
  /** The adapter, already started with its context. */
  adapter: TelematicsAdapter;
  /** Receives everything the adapter reports through its context. */
  recorder: AdapterEventRecorder;
  /** Models to run the suite over; default every model of the adapter. */
  modelIds?: readonly string[];
  /**
   * The protocol has no delivery acknowledgement (Teltonika Codec 12 over TCP): a command written
   * to the connection counts as delivered, so a silent unit yields `delivered: true`.
   */
  deliveryUnobservable?: boolean;
  /** Longest time the simulated unit may take for one answer; default 5 s. */
  answerTimeoutMs?: number;
  /**
   * Adds a vehicle of the model with a fresh simulated unit, tells the adapter (onVehicleAdded)
   * and resolves once the vehicle can take commands (for device units: the adapter saw it online).
   * Every call makes a new vehicle with its own unit.
   */
  createVehicle(modelId: string): Promise<Vehicle>;
  /** Sets the unit's behaviour; resolves once the adapter can observe it (e.g. offline seen). */
  setBehaviour(vehicle: Vehicle, behaviour: HarnessBehaviour): Promise<void>;
  /** Makes the unit (or fake) report its state now, through whatever path the brand uses. */
  triggerStateReport(vehicle: Vehicle): Promise<void>;
  /** Stops the adapter, the units and the infrastructure. */
  close(): Promise<void>;
}

interface RecordedState {
  unitId: string;
  state: unknown;
}

interface RecordedConnection {
  unitId: string;
  online: boolean;
  at: Date;
}

/**
 * Records the adapter's context callbacks and lets tests await them (no sleeping). Pass
 * `recorder.onStateReport` and `recorder.onConnectionChange` into the AdapterContext, or call
 * them from the real service callbacks.
 */
export class AdapterEventRecorder {
  readonly stateReports: RecordedState[] = [];
  readonly connectionChanges: RecordedConnection[] = [];
  private readonly waiters = new Set<() => void>();

  constructor(private readonly defaultTimeoutMs = 5_000) {}

  readonly onStateReport = async (unitId: string, state: unknown): Promise<void> => {
    this.stateReports.push({ unitId, state });
    this.wake();
  };

  readonly onConnectionChange = async (unitId: string, online: boolean, at: Date): Promise<void> => {
    this.connectionChanges.push({ unitId, online, at });
    this.wake();
  };

  /** The number of state reports so far: pass it as `since` to wait for a later one. */
  markStateReports(): number {
    return this.stateReports.length;
  }

  /** The latest connection status the adapter reported for the unit, if any. */
  lastConnection(unitId: string): boolean | undefined {
    for (let i = this.connectionChanges.length - 1; i >= 0; i--) {
      const c = this.connectionChanges[i]!;
      if (c.unitId === unitId) return c.online;
    }
    return undefined;
  }

  /** Resolves with the first state report of the unit at index `since` or later. */
  waitForStateReport(unitId: string, since = 0, timeoutMs = this.defaultTimeoutMs): Promise<unknown> {
    return this.waitFor(`a state report of ${unitId}`, timeoutMs, () => {
      for (let i = since; i < this.stateReports.length; i++) {
        const r = this.stateReports[i]!;
        if (r.unitId === unitId) return { found: true, value: r.state };
      }
      return { found: false };
    });
  }

  /** Resolves once the latest connection change reported for the unit is `online`. */
  waitForConnection(unitId: string, online: boolean, timeoutMs = this.defaultTimeoutMs): Promise<void> {
    return this.waitFor(`${unitId} ${online ? 'online' : 'offline'}`, timeoutMs, () =>
      this.lastConnection(unitId) === online ? { found: true, value: undefined } : { found: false },
    );
  }

  private waitFor<T>(what: string, timeoutMs: number, check: () => { found: boolean; value?: T }): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const first = check();
      if (first.found) return resolve(first.value as T);
      const waiter = () => {
        const r = check();
        if (!r.found) return;
        this.waiters.delete(waiter);
        clearTimeout(timer);
        resolve(r.value as T);
      };
      // A guard against hanging, not a wait: the event normally arrives in milliseconds.
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }
}

/** A complete domain Vehicle of the model with the unit id, as the vehicle service stores it. */
export function makeVehicle(model: AdapterVehicleModel, unitId: string, overrides: Partial<Vehicle> = {}): Vehicle {
  const now = new Date().toISOString();
  return {
    vehicle_id: `V${unitId
      .replace(/[^A-Za-z0-9]/g, '')
      .slice(-11)
      .toUpperCase()}`,
    fleet_id: 'contract-fleet',
    telematics_brand: model.brand,
    telematics_unit_id: unitId,
    vehicle_model_id: model.id,
    unit_password_hash: null,
    credentials_id: null,
    capabilities: {
      commands: [...model.capabilities.commands],
      vehicle_state: [...model.capabilities.vehicle_state],
    },
    master_data: { vehicle_type: model.vehicle_type },
    custom_fields: {},
    tags: [],
    operation_status: 'OPERATING',
    setup_status: 'SUCCEEDED',
    setup_failure_reason: null,
    life_status: 'ONLINE',
    life_status_modified_at: now,
    version: 1,
    created_at: now,
    modified_at: now,
    ...overrides,
  };
}

/** Commands an adapter executes itself: single ones, and combined ones the unit runs natively. */
function directCommands(model: AdapterVehicleModel): CommandName[] {
  return model.capabilities.commands.filter((c) => !isCombined(c) || (model.native_combined ?? []).includes(c));
}

/** A command that changes something, for the failure-path tests. */
function probeCommand(model: AdapterVehicleModel): CommandName {
  const preferred: CommandName[] = ['LOCK_CENTRAL_LOCK', 'LOCK_TOP_CASE', 'DISABLE_DRIVING'];
  const direct = directCommands(model);
  return preferred.find((c) => direct.includes(c)) ?? direct[0]!;
}

/** Checks a state against SPEC §3: catalogue properties the vehicle has, valid values and times. */
function expectValidState(state: VehicleState, vehicle: Vehicle, label: string): void {
  const allowed = new Set(vehicle.capabilities.vehicle_state.map((c) => c.toLowerCase()));
  for (const [name, entry] of Object.entries(state)) {
    const def = stateProperty(name);
    expect(def, `${label}: '${name}' is not a catalogue property`).toBeDefined();
    expect(allowed.has(name), `${label}: '${name}' is not a state capability of the vehicle`).toBe(true);
    if (def) expect(isValidStateValue(def, entry.value), `${label}: invalid value of '${name}'`).toBe(true);
    expect(Number.isFinite(Date.parse(entry.timestamp)), `${label}: timestamp of '${name}'`).toBe(true);
  }
}

/**
 * The adapter contract. Every adapter must: execute each command of each of its models and return
 * a state that reflects it (SPEC §1, §3); pass state reports and connection changes to its
 * context; answer not-connected at once for an offline unit; report no-answer (delivered or
 * not) when the budget runs out; map refusals and failures.
 */
export function adapterContract(name: string, harness: () => Promise<AdapterHarness>): void {
  describe(`telematics adapter contract: ${name}`, () => {
    let h: AdapterHarness;
    let budgetMs: number;

    beforeAll(async () => {
      h = await harness();
      budgetMs = h.answerTimeoutMs ?? 5_000;
    });
    afterAll(async () => {
      await h?.close();
    });

    const models = (): AdapterVehicleModel[] => {
      const ids = h.modelIds ?? h.adapter.models.map((m) => m.id);
      return ids.map((id) => {
        const model = h.adapter.models.find((m) => m.id === id);
        if (!model) throw new Error(`harness names unknown model ${id}`);
        return model;
      });
    };

    const execute = (
      vehicle: Vehicle,
      command: CommandName,
      signal: AbortSignal = AbortSignal.timeout(budgetMs),
    ): Promise<CommandOutcome> =>
      h.adapter.execute({
        vehicle,
        command,
        flowId: randomUUID(),
        deadline: new Date(Date.now() + budgetMs),
        signal,
      });

    it('declares a brand and models whose capabilities come from the catalogues (SPEC §4)', () => {
      expect(h.adapter.brand).toMatch(/^[A-Z][A-Z0-9_]*$/);
      expect(h.adapter.models.length).toBeGreaterThan(0);
      for (const model of h.adapter.models) {
        expect(model.id).toBeTruthy();
        for (const c of model.capabilities.commands) expect(COMMANDS).toContain(c);
        for (const s of model.capabilities.vehicle_state) expect(STATE_CAPABILITIES).toContain(s);
        for (const c of model.native_combined ?? []) {
          expect(isCombined(c)).toBe(true);
          expect(model.capabilities.commands).toContain(c);
        }
      }
    });

    // SPEC §1 success answer, §3 state
    it('executes every command of every model and returns a state that reflects it', async () => {
      for (const model of models()) {
        const vehicle = await h.createVehicle(model.id);
        for (const command of directCommands(model)) {
          const label = `${model.id} ${command}`;
          const outcome = await execute(vehicle, command);
          expect(outcome, label).toMatchObject({ kind: 'succeeded' });
          if (outcome.kind !== 'succeeded') continue;
          expectValidState(outcome.state, vehicle, label);
          if (command === 'REQUEST_VEHICLE_STATE') {
            expect(Object.keys(outcome.state).length, `${label}: empty state`).toBeGreaterThan(0);
          }
          for (const [property, value] of Object.entries(EXPECTED_STATE[command] ?? {})) {
            if (!vehicle.capabilities.vehicle_state.includes(property.toUpperCase())) continue;
            expect(outcome.state[property]?.value, `${label}: ${property}`).toEqual(value);
          }
        }
      }
    });

    // SPEC §3: state reports reach the service through onStateReport
    it('passes state reports to onStateReport', async () => {
      for (const model of models()) {
        const vehicle = await h.createVehicle(model.id);
        const since = h.recorder.markStateReports();
        await h.triggerStateReport(vehicle);
        const report = await h.recorder.waitForStateReport(vehicle.telematics_unit_id, since);
        const { state, rejected } = sanitizeState(report);
        expect(rejected, `${model.id}: rejected properties`).toEqual([]);
        expect(Object.keys(state).length).toBeGreaterThan(0);
        expectValidState(state, vehicle, `${model.id} report`);
      }
    });

    // SPEC §4 life_status
    it('passes connection changes to onConnectionChange', async () => {
      const vehicle = await h.createVehicle(models()[0]!.id);
      const unitId = vehicle.telematics_unit_id;
      await h.setBehaviour(vehicle, 'offline');
      await h.recorder.waitForConnection(unitId, false);
      await h.setBehaviour(vehicle, 'online');
      await h.recorder.waitForConnection(unitId, true);
      const changes = h.recorder.connectionChanges.filter((c) => c.unitId === unitId);
      for (const c of changes) expect(Number.isFinite(c.at.getTime())).toBe(true);
      expect(await execute(vehicle, 'REQUEST_VEHICLE_STATE')).toMatchObject({ kind: 'succeeded' });
    });

    // SPEC §1: unit not connected → 504, never delivered, without waiting for the budget
    it('answers not-connected at once when the unit is offline', async () => {
      const model = models()[0]!;
      const vehicle = await h.createVehicle(model.id);
      await h.setBehaviour(vehicle, 'offline');
      const started = Date.now();
      const outcome = await execute(vehicle, probeCommand(model), AbortSignal.timeout(budgetMs * 4));
      expect(outcome.kind).toBe('not-connected');
      expect(Date.now() - started).toBeLessThan(budgetMs);
    });

    // SPEC §1: no answer within the budget → 504, not delivered
    it('reports no-answer, not delivered, when a silent unit lets the budget run out', async () => {
      const model = models()[0]!;
      const vehicle = await h.createVehicle(model.id);
      await h.setBehaviour(vehicle, 'silent');
      const outcome = await execute(vehicle, probeCommand(model), AbortSignal.timeout(300));
      expect(outcome).toEqual({ kind: 'no-answer', delivered: h.deliveryUnobservable === true });
    });

    // SPEC §1: delivered with the outcome unknown
    it('reports no-answer, delivered, when the unit received the command but never finished', async () => {
      const model = models()[0]!;
      const vehicle = await h.createVehicle(model.id);
      await h.setBehaviour(vehicle, 'accept-only');
      const outcome = await execute(vehicle, probeCommand(model), AbortSignal.timeout(300));
      expect(outcome).toEqual({ kind: 'no-answer', delivered: true });
    });

    // SPEC §1: refusal because of the vehicle's state → 409 vehicle/conflicting-state
    it('maps a refusal to refused with a reason', async () => {
      const model = models()[0]!;
      const vehicle = await h.createVehicle(model.id);
      await h.setBehaviour(vehicle, 'refuse');
      const outcome = await execute(vehicle, probeCommand(model));
      expect(outcome.kind).toBe('refused');
      expect(outcome.kind === 'refused' && outcome.reason.length).toBeGreaterThan(0);
    });

    // SPEC §1: the unit reports a failure → 500 telematics-unit/error
    it('maps a unit failure to failed with a reason', async () => {
      const model = models()[0]!;
      const vehicle = await h.createVehicle(model.id);
      await h.setBehaviour(vehicle, 'fail');
      const outcome = await execute(vehicle, probeCommand(model));
      expect(outcome.kind).toBe('failed');
      expect(outcome.kind === 'failed' && outcome.reason.length).toBeGreaterThan(0);
    });
  });
}
