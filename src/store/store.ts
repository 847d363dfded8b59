import type { CommandName } from '../domain/commands.js';
import type { VehicleState } from '../domain/state-catalogue.js';
import type { Capabilities, LifeStatus, SetupStatus, Vehicle } from '../domain/vehicle.js';

/** An API client of a fleet (SPEC §5). The secret is stored as a scrypt hash only. */
export interface ApiClient {
  client_id: string;
  fleet_id: string;
  name: string;
  secret_hash: string;
  scopes: string[];
  created_at: string;
}

export const COMMAND_STATUSES = ['IN_FLIGHT', 'SUCCEEDED', 'FAILED', 'OUTCOME_UNKNOWN'] as const;
export type CommandStatus = (typeof COMMAND_STATUSES)[number];

/** How far a command that did not succeed got (SPEC §1, 504 delivered vs. not). */
export type Delivery = 'NOT_DELIVERED' | 'DELIVERED' | 'DELIVERED_OUTCOME_UNKNOWN';

export interface CommandStep {
  command: CommandName;
  outcome: 'SUCCEEDED' | 'FAILED' | 'NOT_EXECUTED';
  problem_type?: string;
  detail?: string;
}

/** The record of one command (SPEC §1: every command is recorded). */
export interface CommandRecord {
  flow_id: string;
  fleet_id: string;
  client_id: string;
  vehicle_id: string;
  command: CommandName;
  adapter: string;
  instance_id: string;
  status: CommandStatus;
  /** The problem type key when the command did not succeed, e.g. `vehicle/no-connection`. */
  problem_type: string | null;
  detail: string | null;
  delivery: Delivery | null;
  steps: CommandStep[] | null;
  requested_at: string;
  /** Past this moment an IN_FLIGHT record belongs to a dead instance and may be expired. */
  deadline_at: string;
  completed_at: string | null;
  duration_ms: number | null;
}

/**
 * The detail of a record that expireCommands ended: it says only what is known. Its instance may
 * have stopped, or could not write the outcome yet (the database was unreachable); a completion
 * written later replaces it (the precedence rule at Store.completeCommand).
 */
export const EXPIRED_COMMAND_DETAIL =
  'No outcome was recorded for this command by its deadline (the instance executing it stopped, or could not reach the database); the command may have reached the vehicle. Request the vehicle state before retrying.';

export interface CommandCompletion {
  status: Exclude<CommandStatus, 'IN_FLIGHT'>;
  problem_type: string | null;
  detail: string | null;
  delivery: Delivery | null;
  steps: CommandStep[] | null;
  completed_at: string;
  duration_ms: number;
}

export interface IdempotencyRecord {
  fleet_id: string;
  key: string;
  vehicle_id: string;
  command: CommandName;
  flow_id: string;
  /** null while the first request is still executing. */
  status_code: number | null;
  response: unknown;
  created_at: string;
}

/**
 * Third-party credentials of a fleet (e.g. a Smartcar application and account). `sealed_secret`
 * and `sealed_state` are SecretBox ciphertexts; the store never sees plaintext.
 */
export interface CredentialsRecord {
  credentials_id: string;
  fleet_id: string;
  telematics_brand: string;
  name: string | null;
  /** The secrets given at creation (client secret, refresh token…), sealed. */
  sealed_secret: string;
  /** Mutable token state (access token, rotated refresh token, leases), sealed; null before first use. */
  sealed_state: string | null;
  /** Incremented by every state update; compare-and-swap target for token rotation. */
  version: number;
  created_at: string;
  modified_at: string;
}

export interface VehicleFilter {
  fleet_id: string;
  telematics_brand?: string;
  setup_status?: SetupStatus;
  /** Vehicles that carry every one of these tags. */
  tags?: string[];
  /** Keyset cursor: only vehicles whose id sorts after this one. */
  after?: string;
  limit: number;
}

export type VehiclePatch = Partial<Pick<Vehicle, 'master_data' | 'custom_fields' | 'tags' | 'operation_status'>>;

/** One numbered schema step of an engine (store/<engine>/migrations.ts); never edited once released. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export class StoreConflictError extends Error {
  constructor(readonly constraint: string) {
    super(`unique constraint ${constraint} violated`);
    this.name = 'StoreConflictError';
  }
}

/** Raised by an engine when its database cannot be reached; answered with 503. */
export class StoreUnavailableError extends Error {
  constructor(cause: unknown) {
    super(`database unavailable: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'StoreUnavailableError';
  }
}

/**
 * The persistence port. Every engine (store/<engine>/) implements it and passes the shared
 * contract suite in test/contract/store.contract.ts. All methods are safe to call from several
 * fleetgate instances sharing one database: the single-flight and idempotency guarantees rest on
 * the database's unique constraints, never on process memory.
 */
export interface Store {
  readonly engine: string;

  /** Applies pending migrations; safe when several instances start at once. */
  migrate(): Promise<void>;
  /** Resolves when the database answers; rejects otherwise (readiness probe). */
  ping(): Promise<void>;
  close(): Promise<void>;

  createClient(client: ApiClient): Promise<void>;
  getClient(clientId: string): Promise<ApiClient | undefined>;
  /** The clients of one fleet (every fleet when undefined), oldest first. */
  listClients(fleetId?: string): Promise<ApiClient[]>;
  /** Deletes a client; its tokens are refused from then on. Returns whether it existed. */
  deleteClient(clientId: string): Promise<boolean>;

  /** Throws StoreConflictError('telematics_unit') when the brand/unit pair already exists. */
  insertVehicle(vehicle: Vehicle): Promise<void>;
  getVehicle(vehicleId: string): Promise<Vehicle | undefined>;
  findVehicleByUnit(brand: string, unitId: string): Promise<Vehicle | undefined>;
  /** Ordered by vehicle_id ascending; returns at most `limit` vehicles. */
  listVehicles(filter: VehicleFilter): Promise<Vehicle[]>;
  /**
   * Applies the patch when the stored version equals `expectedVersion` (or always when it is
   * undefined), increments the version and sets modified_at. Returns the new vehicle,
   * 'version-mismatch', or undefined when it does not exist.
   */
  updateVehicle(
    vehicleId: string,
    patch: VehiclePatch,
    expectedVersion: number | undefined,
    modifiedAt: string,
  ): Promise<Vehicle | 'version-mismatch' | undefined>;
  /** Deletes the vehicle with its state, commands and idempotency records. */
  deleteVehicle(vehicleId: string, expectedVersion?: number): Promise<boolean | 'version-mismatch'>;
  /**
   * Sets the setup status (and reason, null to clear) when the current one is `onlyFrom` (any,
   * when undefined); optionally replaces the vehicle's capabilities. Bumps the version when it
   * changes anything; returns whether it did.
   */
  setSetupStatus(
    vehicleId: string,
    update: { status: SetupStatus; reason: string | null; capabilities?: Capabilities; at: string },
    onlyFrom?: SetupStatus,
  ): Promise<boolean>;
  /** Sets life status when it differs; returns whether it changed anything. */
  setLifeStatus(vehicleId: string, status: LifeStatus, at: string): Promise<boolean>;
  /** Vehicles still IN_PROGRESS that were created before `createdBefore`. */
  listStaleSetups(createdBefore: string, limit: number): Promise<Vehicle[]>;

  createCredentials(record: CredentialsRecord): Promise<void>;
  getCredentials(credentialsId: string): Promise<CredentialsRecord | undefined>;
  /** Ordered by credentials_id ascending, keyset cursor `after`. */
  listCredentials(fleetId: string, limit: number, after?: string): Promise<CredentialsRecord[]>;
  /** Refuses with 'in-use' while any vehicle references the credentials. */
  deleteCredentials(credentialsId: string): Promise<'deleted' | 'in-use' | 'not-found'>;
  /**
   * Replaces sealed_state when the stored version equals expectedVersion, incrementing it;
   * returns false (changing nothing) when another writer got there first.
   */
  updateCredentialsState(
    credentialsId: string,
    expectedVersion: number,
    sealedState: string,
    at: string,
  ): Promise<boolean>;

  /** Merges per property, newer timestamp wins; returns the full merged state. */
  mergeState(vehicleId: string, state: VehicleState): Promise<VehicleState>;
  getState(vehicleId: string): Promise<VehicleState>;

  /**
   * Inserts an IN_FLIGHT record. Returns false, inserting nothing, when the vehicle already has
   * an IN_FLIGHT command (single flight rests on a unique index, so it holds across instances).
   */
  beginCommand(record: CommandRecord): Promise<boolean>;
  /**
   * A command's first step in one store call (on PostgreSQL one round trip): reads the vehicle
   * and, only when it is in `record.fleet_id`, its setup SUCCEEDED and `record.command` is among
   * its capabilities, begins the record as beginCommand does, with `adapter` set to the vehicle's
   * telematics brand. `vehicle` is undefined when no vehicle has the id; `begun` is false when a
   * condition failed or another command is in flight.
   */
  startCommand(record: Omit<CommandRecord, 'adapter'>): Promise<{ vehicle: Vehicle | undefined; begun: boolean }>;
  /**
   * Finishes a record. Precedence: a completion writes a record that is IN_FLIGHT or that
   * expireCommands ended as OUTCOME_UNKNOWN meanwhile (the real outcome, written late because
   * the database was unreachable, wins over the expiry); a record already finished by a
   * completion is never changed again.
   */
  finishCommand(flowId: string, completion: CommandCompletion): Promise<void>;
  /**
   * Finishes the record (with finishCommand's precedence) and merges the state the unit answered
   * with, in one step (one commit; on PostgreSQL one round trip), then returns the vehicle's full
   * merged state. The command path's last write: fewer round trips per command
   * (docs/performance.md).
   */
  completeCommand(
    flowId: string,
    completion: CommandCompletion,
    vehicleId: string,
    state: VehicleState,
  ): Promise<VehicleState>;
  getCommand(flowId: string): Promise<CommandRecord | undefined>;
  /** Newest first; `before` is a flow_id cursor from the previous page. */
  listCommands(vehicleId: string, limit: number, before?: string): Promise<CommandRecord[]>;
  /**
   * Marks IN_FLIGHT records whose deadline passed before `now` as OUTCOME_UNKNOWN with
   * EXPIRED_COMMAND_DETAIL; never touches a finished record.
   */
  expireCommands(now: string): Promise<number>;

  /** Claims the key; when it exists already, returns the existing record instead. */
  claimIdempotencyKey(
    record: Omit<IdempotencyRecord, 'status_code' | 'response'>,
  ): Promise<{ claimed: true } | { claimed: false; existing: IdempotencyRecord }>;
  completeIdempotencyKey(fleetId: string, key: string, statusCode: number, response: unknown): Promise<void>;
  /**
   * Deletes a still-pending key claimed by `flowId` (status_code null), so a request that never
   * started executing (e.g. it met another command in flight) leaves no stored result behind.
   */
  releaseIdempotencyKey(fleetId: string, key: string, flowId: string): Promise<void>;
  /** Deletes keys created before `createdBefore`; returns how many. */
  purgeIdempotencyKeys(createdBefore: string): Promise<number>;
}
