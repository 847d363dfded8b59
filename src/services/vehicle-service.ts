import pRetry from 'p-retry';
import type { Logger } from 'pino';
import { problems } from '../domain/problems.js';
import { acceptState, filterState, type VehicleState } from '../domain/state-catalogue.js';
import type { Capabilities, MasterData, OperationStatus, Vehicle } from '../domain/vehicle.js';
import { newVehicleId } from '../lib/ids.js';
import { decodePageToken, encodePageToken, type Page } from '../lib/pagination.js';
import { keyedHash, verifyKeyedHash, verifySecret } from '../lib/secrets.js';
import { type Store, StoreConflictError, StoreUnavailableError, type VehiclePatch } from '../store/store.js';
import type { AdapterVehicleModel, SetupResult, TelematicsAdapter } from '../telematics/adapter.js';
import type { Principal } from './auth-service.js';
import type { EventBus } from './event-bus.js';
import { RejectedStateLog } from './rejected-state.js';
import { UnitDirectory } from './unit-directory.js';

export interface AddVehicleInput {
  telematics_brand: string;
  telematics_unit_id: string;
  vehicle_model_id?: string;
  password?: string;
  credentials_id?: string;
  master_data?: MasterData;
  custom_fields?: Record<string, string>;
  tags?: string[];
  operation_status?: OperationStatus;
}

/**
 * Retries of a unit's report the database could not take (a reconnect storm queues thousands of
 * writes behind the pool): every 0.2–5 s, for up to 10 minutes (a connection change) or 2 (state).
 */
const REPORT_WRITE_RETRY = {
  retries: 1_000,
  minTimeout: 200,
  maxTimeout: 5_000,
  randomize: true,
  unref: true,
} as const;
const CONNECTION_WRITE_RETRY_MS = 10 * 60_000;
/** Vehicles recorded OFFLINE per transaction at an embedded start (recordAllOffline). */
const OFFLINE_PAGE = 1_000;
const STATE_WRITE_RETRY_MS = 2 * 60_000;

/** The public representation of a vehicle (SPEC §4); secrets never appear here. */
export interface VehicleView {
  vehicle_id: string;
  vehicle_model_id: string;
  telematics_unit: { id: string; brand: string; model: string };
  capabilities: Capabilities;
  setup_status: Vehicle['setup_status'];
  setup_failure_reason?: string;
  life_status: { value: Vehicle['life_status']; modified_at: string };
  operation_status: OperationStatus;
  credentials_id?: string;
  master_data: MasterData;
  custom_fields: Record<string, string>;
  tags: string[];
  created_at: string;
  modified_at: string;
}

/** The request a change comes from: its flow id tags the events and log lines it causes (SPEC §2). */
export interface RequestContext {
  flowId: string;
  logger: Logger;
}

export interface ListVehiclesQuery {
  limit: number;
  page_token?: string;
  telematics_brand?: string;
  setup_status?: Vehicle['setup_status'];
  tags?: string[];
}

/**
 * Vehicle lifecycle (SPEC §4): add, read, list, change, delete, and the reports adapters make
 * about units (state, connection, setup). Everything is scoped to the caller's fleet: another
 * fleet's vehicle is indistinguishable from one that does not exist.
 */
export class VehicleService {
  /** The vehicle behind a unit for adapters (AdapterContext.vehicles); dropped here on every change. */
  readonly units: UnitDirectory;
  /** Per unit (brand/unit id), the last connection change being written (onConnectionChange). */
  private readonly connectionWrites = new Map<string, Promise<void>>();

  constructor(
    private readonly store: Store,
    private readonly adapters: ReadonlyMap<string, TelematicsAdapter>,
    private readonly events: EventBus,
    private readonly logger: Logger,
    /** Key of the unit password hashes (lib/secrets keyedHash), derived from the master secret. */
    private readonly unitPasswordKey: Buffer,
  ) {
    this.rejectedState = new RejectedStateLog(events, logger);
    this.units = new UnitDirectory(store);
  }

  /** Refused state values, counted and logged at a bounded rate (also for command answers). */
  readonly rejectedState: RejectedStateLog;

  /** The adapter and model of a vehicle; a model missing from the catalogue is a bug. */
  modelOf(vehicle: Pick<Vehicle, 'telematics_brand' | 'vehicle_model_id'>): {
    adapter: TelematicsAdapter;
    model: AdapterVehicleModel;
  } {
    const adapter = this.adapters.get(vehicle.telematics_brand);
    const model = this.findModel(vehicle);
    if (!adapter || !model) {
      throw new Error(`vehicle model ${vehicle.telematics_brand}/${vehicle.vehicle_model_id} is not in the catalogue`);
    }
    return { adapter, model };
  }

  private findModel(vehicle: Pick<Vehicle, 'telematics_brand' | 'vehicle_model_id'>): AdapterVehicleModel | undefined {
    return this.adapters.get(vehicle.telematics_brand)?.models.find((m) => m.id === vehicle.vehicle_model_id);
  }

  view(vehicle: Vehicle): VehicleView {
    const model = this.findModel(vehicle);
    return {
      vehicle_id: vehicle.vehicle_id,
      vehicle_model_id: vehicle.vehicle_model_id,
      telematics_unit: {
        id: vehicle.telematics_unit_id,
        brand: vehicle.telematics_brand,
        model: model?.model ?? vehicle.vehicle_model_id,
      },
      capabilities: vehicle.capabilities,
      setup_status: vehicle.setup_status,
      ...(vehicle.setup_failure_reason ? { setup_failure_reason: vehicle.setup_failure_reason } : {}),
      life_status: { value: vehicle.life_status, modified_at: vehicle.life_status_modified_at },
      operation_status: vehicle.operation_status,
      ...(vehicle.credentials_id ? { credentials_id: vehicle.credentials_id } : {}),
      master_data: vehicle.master_data,
      custom_fields: vehicle.custom_fields,
      tags: vehicle.tags,
      created_at: vehicle.created_at,
      modified_at: vehicle.modified_at,
    };
  }

  async add(principal: Principal, input: AddVehicleInput, ctx?: RequestContext): Promise<Vehicle> {
    const log = ctx?.logger ?? this.logger;
    const adapter = this.adapters.get(input.telematics_brand);
    if (!adapter) {
      throw validation(
        'telematics_brand',
        `unknown telematics brand '${input.telematics_brand}'; known: ${[...this.adapters.keys()].join(', ')}`,
      );
    }
    const model = this.resolveModel(adapter, input.vehicle_model_id);
    if (adapter.requiresUnitPassword && !input.password) {
      throw validation('password', `telematics brand ${adapter.brand} needs the unit's password`);
    }
    if (!adapter.requiresUnitPassword && input.password !== undefined) {
      throw validation('password', `telematics brand ${adapter.brand} takes no unit password`);
    }
    if (input.credentials_id !== undefined) {
      const creds = await this.store.getCredentials(input.credentials_id);
      if (!creds || creds.fleet_id !== principal.fleetId || creds.telematics_brand !== adapter.brand) {
        throw problems.referencedCredentialsNotFound(input.credentials_id, adapter.brand);
      }
    } else if (adapter.requiresCredentials) {
      throw validation('credentials_id', `telematics brand ${adapter.brand} needs credentials_id`);
    }
    const now = new Date().toISOString();
    const vehicle: Vehicle = {
      vehicle_id: newVehicleId(),
      fleet_id: principal.fleetId,
      telematics_brand: adapter.brand,
      telematics_unit_id: input.telematics_unit_id,
      vehicle_model_id: model.id,
      unit_password_hash: input.password ? keyedHash(input.password, this.unitPasswordKey) : null,
      credentials_id: input.credentials_id ?? null,
      capabilities: structuredClone(model.capabilities),
      master_data: { vehicle_type: model.vehicle_type, ...(input.master_data ?? {}) },
      custom_fields: input.custom_fields ?? {},
      tags: [...new Set(input.tags ?? [])],
      operation_status: input.operation_status ?? 'OPERATING',
      setup_status: 'IN_PROGRESS',
      setup_failure_reason: null,
      life_status: 'OFFLINE',
      life_status_modified_at: now,
      version: 1,
      created_at: now,
      modified_at: now,
    };
    try {
      await this.store.insertVehicle(vehicle, { flow_id: ctx?.flowId });
    } catch (e) {
      if (e instanceof StoreConflictError) {
        throw problems.unitAlreadyUsed(input.telematics_unit_id, adapter.brand);
      }
      throw e;
    }
    // A unit that knocked before its vehicle existed is let in at its next attempt.
    this.units.forget(vehicle.telematics_brand, vehicle.telematics_unit_id);
    try {
      await adapter.onVehicleAdded(vehicle, { password: input.password });
    } catch (e) {
      // Nothing half-done: a vehicle whose unit cannot be provisioned is not kept.
      await this.store.deleteVehicle(vehicle.vehicle_id, undefined, { flow_id: ctx?.flowId });
      this.units.forget(vehicle.telematics_brand, vehicle.telematics_unit_id);
      log.error({ err: e, vehicle_id: vehicle.vehicle_id }, 'provisioning the unit failed');
      throw problems.unitNotProvisioned();
    }
    this.events.emit({
      type: 'vehicle.added',
      vehicle_id: vehicle.vehicle_id,
      fleet_id: vehicle.fleet_id,
      flow_id: ctx?.flowId,
    });
    return vehicle;
  }

  private resolveModel(adapter: TelematicsAdapter, modelId: string | undefined): AdapterVehicleModel {
    if (modelId === undefined) {
      // SPEC §4: vehicle_model_id is needed only when the brand cannot derive it.
      if (adapter.models.length === 1) return adapter.models[0]!;
      throw validation(
        'vehicle_model_id',
        `telematics brand ${adapter.brand} needs vehicle_model_id; see GET /telematics-brands/${adapter.brand}/available-vehicle-models`,
      );
    }
    const model = adapter.models.find((m) => m.id === modelId);
    if (!model) {
      throw problems.vehicleModelNotFound(modelId, adapter.brand);
    }
    return model;
  }

  /** The caller's vehicle, or 404 — also for vehicles of other fleets (SPEC §1). */
  async get(principal: Principal, vehicleId: string): Promise<Vehicle> {
    return this.ownVehicle(principal, vehicleId, await this.store.getVehicle(vehicleId));
  }

  /** The vehicle read for `vehicleId`, if the principal's fleet owns it; else 404 (never 403). */
  ownVehicle(principal: Principal, vehicleId: string, vehicle: Vehicle | undefined): Vehicle {
    if (!vehicle || vehicle.fleet_id !== principal.fleetId) {
      throw problems.vehicleNotFound(vehicleId);
    }
    return vehicle;
  }

  async list(principal: Principal, query: ListVehiclesQuery): Promise<Page<Vehicle>> {
    const after = query.page_token === undefined ? undefined : decodePageToken(query.page_token, 'v');
    const rows = await this.store.listVehicles({
      fleet_id: principal.fleetId,
      limit: query.limit + 1,
      after,
      telematics_brand: query.telematics_brand,
      setup_status: query.setup_status,
      tags: query.tags,
    });
    const items = rows.slice(0, query.limit);
    const last = items.at(-1);
    return {
      items,
      next_page_token: rows.length > query.limit && last ? encodePageToken('v', last.vehicle_id) : null,
    };
  }

  async update(
    principal: Principal,
    vehicleId: string,
    patch: VehiclePatch,
    ifMatch?: number,
    ctx?: RequestContext,
  ): Promise<Vehicle> {
    const current = await this.get(principal, vehicleId);
    const merged: VehiclePatch = { ...patch };
    // PATCH merges objects member by member (RFC 7396 style): null removes a member.
    if (patch.master_data) merged.master_data = mergeObject(current.master_data, patch.master_data) as MasterData;
    if (patch.custom_fields)
      merged.custom_fields = mergeObject(current.custom_fields, patch.custom_fields) as Record<string, string>;
    if (patch.tags) merged.tags = [...new Set(patch.tags)];
    const result = await this.store.updateVehicle(vehicleId, merged, ifMatch, new Date().toISOString(), {
      flow_id: ctx?.flowId,
    });
    if (result === 'version-mismatch') throw modified(vehicleId);
    if (!result) throw problems.vehicleNotFound(vehicleId);
    this.units.forget(result.telematics_brand, result.telematics_unit_id);
    this.events.emit({
      type: 'vehicle.modified',
      vehicle_id: vehicleId,
      fleet_id: principal.fleetId,
      flow_id: ctx?.flowId,
    });
    return result;
  }

  async remove(principal: Principal, vehicleId: string, ifMatch?: number, ctx?: RequestContext): Promise<void> {
    const vehicle = await this.get(principal, vehicleId);
    const result = await this.store.deleteVehicle(vehicleId, ifMatch, { flow_id: ctx?.flowId });
    if (result === 'version-mismatch') throw modified(vehicleId);
    if (!result) throw problems.vehicleNotFound(vehicleId);
    this.units.forget(vehicle.telematics_brand, vehicle.telematics_unit_id);
    try {
      await this.adapters.get(vehicle.telematics_brand)?.onVehicleRemoved(vehicle);
    } catch (e) {
      (ctx?.logger ?? this.logger).error({ err: e, vehicle_id: vehicleId }, 'removing the unit from the broker failed');
    }
    this.events.emit({
      type: 'vehicle.deleted',
      vehicle_id: vehicleId,
      fleet_id: principal.fleetId,
      flow_id: ctx?.flowId,
    });
  }

  /** The newest capture time in a unit's vehicle's stored state (the unit's clock), if any. */
  async lastReportedAt(brand: string, unitId: string): Promise<string | undefined> {
    const vehicle = await this.units.find(brand, unitId);
    if (!vehicle) return undefined;
    let newest: string | undefined;
    for (const { timestamp } of Object.values(await this.store.getState(vehicle.vehicle_id))) {
      if (newest === undefined || Date.parse(timestamp) > Date.parse(newest)) newest = timestamp;
    }
    return newest;
  }

  /** SPEC §3: the latest known state, filtered by the vehicle's state capabilities. */
  async state(principal: Principal, vehicleId: string): Promise<VehicleState> {
    const vehicle = await this.get(principal, vehicleId);
    return filterState(await this.store.getState(vehicleId), vehicle.capabilities.vehicle_state);
  }

  /** Device authentication for the embedded broker: unit id and password of a FLEETGATE vehicle. */
  async authenticateUnit(brand: string, unitId: string, password: string): Promise<boolean> {
    // The unit directory: the unit's status and first report, right after its login, find the
    // vehicle there instead of reading it again (a reconnect storm's 15,000 logins).
    const vehicle = await this.units.find(brand, unitId);
    if (!vehicle?.unit_password_hash) return false;
    const stored = vehicle.unit_password_hash;
    // Vehicles added before keyed hashes carry scrypt hashes; both stay valid.
    return stored.startsWith('scrypt$')
      ? verifySecret(password, stored)
      : verifyKeyedHash(password, stored, this.unitPasswordKey);
  }

  /** An adapter's state report: validated against the catalogue, merged, never trusted blindly. */
  async onStateReport(brand: string, unitId: string, raw: unknown): Promise<VehicleState | undefined> {
    // The unit directory, not the store: one database round trip fewer per report (the bench's
    // ingestion measured it). A report for a vehicle deleted on another instance within the
    // directory's memory finds no row to merge into, and is dropped by the store.
    // The lookup is retried as the write is: after a reconnect storm every unit's entry has
    // expired, and thousands of lookups at once wait for the pool as long as the writes.
    const vehicle = await this.untilStored('a state report', { unit: unitId }, STATE_WRITE_RETRY_MS, () =>
      this.units.find(brand, unitId),
    );
    if (!vehicle) return undefined;
    const { state: allowed, rejected } = acceptState(raw, vehicle.capabilities.vehicle_state);
    this.rejectedState.report(vehicle.vehicle_id, rejected, 'a unit report');
    if (Object.keys(allowed).length === 0) return undefined;
    const merged = await this.untilStored('a state report', { unit: unitId }, STATE_WRITE_RETRY_MS, () =>
      this.store.mergeState(vehicle.vehicle_id, allowed),
    );
    this.events.emit({ type: 'vehicle.state', vehicle_id: vehicle.vehicle_id, fleet_id: vehicle.fleet_id });
    return merged;
  }

  /**
   * Records every unit of `brand` that the database holds ONLINE as OFFLINE at `at`: for units
   * whose connections ended with the process that held them (the embedded broker starts empty),
   * before they may log in again (so a unit's `online` after logging in lands last). A thousand
   * vehicles per transaction, each with its event: one per unit would make a large fleet's start
   * (and the reconnect storm right after it) wait on 15,000 transactions (docs/performance.md).
   */
  async recordAllOffline(brand: string, at: Date): Promise<number> {
    let units = 0;
    let after: string | undefined;
    for (;;) {
      const page = await this.untilStored('units offline', { brand }, CONNECTION_WRITE_RETRY_MS, () =>
        this.store.setBrandOffline(brand, at.toISOString(), OFFLINE_PAGE, after),
      );
      for (const v of page) this.events.emit({ type: 'vehicle.life', vehicle_id: v.vehicle_id, online: false });
      units += page.length;
      if (page.length < OFFLINE_PAGE) return units;
      after = page[page.length - 1]!.telematics_unit_id;
    }
  }

  /**
   * A write (a unit's report or connection change, a page of units recorded offline) tried again
   * while the database cannot take it (StoreUnavailableError), so a burst does not lose the ones
   * that waited too long for a connection. Merging keeps the newer timestamp, so a report written
   * late never overwrites a newer one.
   */
  private async untilStored<T>(
    what: string,
    /** Names what is written in the log (its unit, or its brand). */
    subject: Record<string, string>,
    maxRetryTime: number,
    write: () => Promise<T>,
  ): Promise<T> {
    // The first try outside p-retry: this is every report's path, and nearly every write lands.
    try {
      return await write();
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      this.logger.debug({ err, ...subject }, `writing ${what} failed; trying again`);
    }
    return pRetry(write, {
      ...REPORT_WRITE_RETRY,
      maxRetryTime,
      shouldRetry: ({ error }) => error instanceof StoreUnavailableError,
      onFailedAttempt: ({ error, attemptNumber }) => {
        const level = attemptNumber % 20 === 0 ? 'warn' : 'debug';
        this.logger[level]({ err: error, ...subject, attempt: attemptNumber }, `writing ${what} failed; trying again`);
      },
    });
  }

  /**
   * A unit's connection change, written after the ones it reported before: an `offline` and the
   * `online` right after it would otherwise race for the vehicle's row, and the older could land
   * last. A write the database could not take (a reconnect storm queues thousands of them behind
   * the pool) is tried again until it lands: adapters report a change once, so a lost write would
   * leave the vehicle OFFLINE while its unit is connected (the 15,000-unit Mosquitto restart left
   * 3,298 so, each with its retained status `online`).
   */
  onConnectionChange(brand: string, unitId: string, online: boolean, at: Date): Promise<void> {
    const key = `${brand}/${unitId}`;
    const write = (this.connectionWrites.get(key) ?? Promise.resolve())
      .catch(() => undefined)
      .then(() =>
        this.untilStored('a connection change', { unit: unitId }, CONNECTION_WRITE_RETRY_MS, () =>
          this.writeConnectionChange(brand, unitId, online, at),
        ),
      );
    this.connectionWrites.set(key, write);
    const forget = () => {
      if (this.connectionWrites.get(key) === write) this.connectionWrites.delete(key);
    };
    write.then(forget, forget);
    return write;
  }

  private async writeConnectionChange(brand: string, unitId: string, online: boolean, at: Date): Promise<void> {
    // Setup is ended by a compare-and-set on IN_PROGRESS, so a remembered vehicle is safe here.
    const vehicle = await this.units.find(brand, unitId);
    if (!vehicle) return;
    const changed = await this.store.setLifeStatus(vehicle.vehicle_id, online ? 'ONLINE' : 'OFFLINE', at.toISOString());
    if (changed) {
      this.logger.info({ vehicle_id: vehicle.vehicle_id, online }, 'unit connection changed');
      this.events.emit({ type: 'vehicle.life', vehicle_id: vehicle.vehicle_id, online });
    }
    // SPEC §4: setup succeeds once the unit is verified, i.e. it connected with its credentials.
    if (online && vehicle.setup_status === 'IN_PROGRESS') {
      await this.setSetupResult(vehicle.vehicle_id, { ok: true });
    }
  }

  async setSetupResult(vehicleId: string, result: SetupResult, force = false): Promise<void> {
    const changed = await this.store.setSetupStatus(
      vehicleId,
      result.ok
        ? { status: 'SUCCEEDED', reason: null, capabilities: result.capabilities, at: new Date().toISOString() }
        : { status: 'FAILED', reason: result.reason, at: new Date().toISOString() },
      force ? undefined : 'IN_PROGRESS',
    );
    if (changed) {
      const vehicle = await this.store.getVehicle(vehicleId);
      if (vehicle) this.units.forget(vehicle.telematics_brand, vehicle.telematics_unit_id);
      this.logger.info({ vehicle_id: vehicleId, setup: result }, 'vehicle setup ended');
      this.events.emit({ type: 'vehicle.setup', vehicle_id: vehicleId });
    }
  }

  /**
   * Hands vehicles whose setup was still IN_PROGRESS (e.g. cut short by a shutdown) back to their
   * adapter, for adapters that verify setups themselves; any instance may do it, and a result is
   * only written while the vehicle is still IN_PROGRESS.
   */
  async resumeSetups(adapter: TelematicsAdapter): Promise<void> {
    if (!adapter.resumeSetup) return;
    try {
      const pending = await this.store.listStaleSetups(new Date().toISOString(), 1000);
      for (const v of pending) if (v.telematics_brand === adapter.brand) adapter.resumeSetup(v);
    } catch (e) {
      this.logger.warn({ err: e, adapter: adapter.brand }, 'could not resume pending setups');
    }
  }

  /** Revoked credentials: every vehicle using them ends FAILED with what the operator must do. */
  async failCredentialsVehicles(credentialsId: string, reason: string): Promise<void> {
    const creds = await this.store.getCredentials(credentialsId);
    if (!creds) return;
    const page = 200;
    let after: string | undefined;
    for (;;) {
      const vehicles = await this.store.listVehicles({
        fleet_id: creds.fleet_id,
        telematics_brand: creds.telematics_brand,
        limit: page,
        ...(after ? { after } : {}),
      });
      for (const v of vehicles) {
        if (v.credentials_id === credentialsId) await this.setSetupResult(v.vehicle_id, { ok: false, reason }, true);
      }
      if (vehicles.length < page) return;
      after = vehicles[vehicles.length - 1]?.vehicle_id;
    }
  }

  /** Ends setups whose unit never connected within the configured time. */
  async failStaleSetups(olderThanSeconds: number): Promise<number> {
    const before = new Date(Date.now() - olderThanSeconds * 1000).toISOString();
    const stale = await this.store.listStaleSetups(before, 500);
    for (const v of stale) {
      await this.setSetupResult(v.vehicle_id, {
        ok: false,
        reason: `The telematics unit did not connect within ${olderThanSeconds} s of the vehicle being added.`,
      });
    }
    return stale.length;
  }
}

const validation = problems.field;
const modified = problems.vehicleModified;

function mergeObject(base: object, patch: object): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = v;
  }
  return out;
}
