import type { CommandName } from '../domain/commands.js';
import type { StoredEvent } from '../domain/events.js';
import type { VehicleState } from '../domain/state-catalogue.js';
import type { Capabilities, LifeStatus, SetupStatus, Vehicle } from '../domain/vehicle.js';

/** An API client of a fleet (SPEC §5). The secret is stored as a scrypt hash only. */
/** One group of `Store.countVehicles`. */
export interface VehicleCount {
  telematics_brand: string;
  setup_status: SetupStatus;
  life_status: LifeStatus;
  count: number;
}

export interface ApiClient {
  client_id: string;
  fleet_id: string;
  name: string;
  secret_hash: string;
  scopes: string[];
  created_at: string;
}

/** Console roles (SPEC §9): viewer sees, operator also commands, admin also manages. */
export const USER_ROLES = ['viewer', 'operator', 'admin'] as const;
export type UserRole = (typeof USER_ROLES)[number];

/** A person who signs in to the console; belongs to one fleet. The password is a scrypt hash. */
export interface ConsoleUser {
  user_id: string;
  fleet_id: string;
  /** Lower-case; unique across fleets, as people sign in with it alone. */
  email: string;
  role: UserRole;
  password_hash: string;
  created_at: string;
  modified_at: string;
}

/** A console sign-in. Only a hash of the cookie's session id is stored. */
export interface ConsoleSession {
  session_hash: string;
  user_id: string;
  created_at: string;
  expires_at: string;
}

/** Consecutive failed sign-ins counted under one key (an account, or an account and a source). */
export interface SignInFailures {
  throttle_key: string;
  failures: number;
  last_failure_at: string;
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
  /** The console user who sent the command; null for API clients. */
  user_id: string | null;
  user_email: string | null;
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
 * What a command expired by `expireCommands` records: it says only what is known. Its instance may
 * have stopped, or could not write the outcome yet (the database was unreachable); a completion
 * written later replaces it (the precedence rule at Store.completeCommand). Written here once,
 * passed to each engine's statement.
 */
export const EXPIRED_COMMAND = {
  problem_type: 'vehicle/no-connection',
  detail:
    'No outcome was recorded for this command by its deadline (the instance executing it stopped, or could not reach the database); the command may have reached the vehicle. Request the vehicle state before retrying.',
} as const;

export interface CommandCompletion {
  status: Exclude<CommandStatus, 'IN_FLIGHT'>;
  problem_type: string | null;
  detail: string | null;
  delivery: Delivery | null;
  steps: CommandStep[] | null;
  completed_at: string;
  duration_ms: number;
}

/** The real outcome of a command that had ended OUTCOME_UNKNOWN (Store.resolveCommand). */
export interface CommandResolution {
  status: 'SUCCEEDED' | 'FAILED';
  problem_type: string | null;
  detail: string | null;
  resolved_at: string;
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
/** A vehicle that setBrandOffline recorded OFFLINE. */
export interface UnitOffline {
  vehicle_id: string;
  telematics_unit_id: string;
}

export interface Store {
  readonly engine: string;
  /**
   * The outbox's read side and channels' durable state. Every write below that changes a vehicle,
   * its state or a command record writes its events (domain/events.ts) in the same transaction.
   */
  readonly events: EventLog;

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

  /** Throws StoreConflictError('email') when a user with the email exists (in any fleet). */
  createUser(user: ConsoleUser): Promise<void>;
  getUser(userId: string): Promise<ConsoleUser | undefined>;
  getUserByEmail(email: string): Promise<ConsoleUser | undefined>;
  /** The users of one fleet (every fleet when undefined), by email. */
  listUsers(fleetId?: string): Promise<ConsoleUser[]>;
  /** Changes role and/or password hash; returns the user, or undefined when it does not exist. */
  updateUser(
    userId: string,
    patch: Partial<Pick<ConsoleUser, 'role' | 'password_hash'>>,
    modifiedAt: string,
  ): Promise<ConsoleUser | undefined>;
  /** Deletes a user and its sessions. Returns whether it existed. */
  deleteUser(userId: string): Promise<boolean>;

  createSession(session: ConsoleSession): Promise<void>;
  /** The session with its user, expired or not (the caller checks expires_at). */
  getSession(sessionHash: string): Promise<{ session: ConsoleSession; user: ConsoleUser } | undefined>;
  deleteSession(sessionHash: string): Promise<void>;
  /** Ends every session of a user (e.g. after a password change). */
  deleteUserSessions(userId: string): Promise<void>;
  /** Deletes sessions that expired before `expiredBefore`; returns how many. */
  purgeSessions(expiredBefore: string): Promise<number>;

  /** Counts one more failed sign-in under each key (atomically); returns the new counts, in order. */
  noteSignInFailure(keys: readonly string[], at: string): Promise<SignInFailures[]>;
  getSignInFailures(keys: readonly string[]): Promise<SignInFailures[]>;
  /** Forgets the keys' failures (after a successful sign-in), and every count older than `staleBefore`. */
  clearSignInFailures(keys: readonly string[], staleBefore: string): Promise<void>;

  /** Throws StoreConflictError('telematics_unit') when the brand/unit pair already exists. */
  insertVehicle(vehicle: Vehicle, cause?: ChangeCause): Promise<void>;
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
    cause?: ChangeCause,
  ): Promise<Vehicle | 'version-mismatch' | undefined>;
  /** Deletes the vehicle with its state, commands and idempotency records. */
  deleteVehicle(
    vehicleId: string,
    expectedVersion?: number,
    cause?: ChangeCause,
  ): Promise<boolean | 'version-mismatch'>;
  /**
   * Sets the setup status (and reason, null to clear) when the current one is `onlyFrom` (any,
   * when undefined); optionally replaces the vehicle's capabilities. Bumps the version when it
   * changes anything; returns whether it did.
   */
  setSetupStatus(
    vehicleId: string,
    update: { status: SetupStatus; reason: string | null; capabilities?: Capabilities; at: string },
    onlyFrom?: SetupStatus,
    cause?: ChangeCause,
  ): Promise<boolean>;
  /** Sets life status when it differs; returns whether it changed anything. */
  setLifeStatus(vehicleId: string, status: LifeStatus, at: string, cause?: ChangeCause): Promise<boolean>;
  /** How many vehicles there are per brand, setup status and life status (for metrics). */
  countVehicles(): Promise<VehicleCount[]>;
  /** Vehicles still IN_PROGRESS that were created before `createdBefore`. */
  listStaleSetups(createdBefore: string, limit: number): Promise<Vehicle[]>;
  /**
   * Records up to `limit` of a brand's ONLINE vehicles OFFLINE at `at`, each with its
   * VehicleChanged event, in one transaction, in unit id order after `afterUnit`: for units whose
   * connections ended with the process that held them. Returns those changed (fewer than `limit`:
   * none are left).
   */
  setBrandOffline(brand: string, at: string, limit: number, afterUnit?: string): Promise<UnitOffline[]>;

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

  /**
   * Merges per property, newer timestamp wins; returns the full merged state. Writes the state
   * events (VehicleStateRecorded, the …Changed events, Trip: domain/events.ts stateEvents) in the
   * same transaction, only when the write stored something.
   */
  mergeState(vehicleId: string, state: VehicleState, cause?: ChangeCause): Promise<VehicleState>;
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
  /**
   * A unit's late answer to a command that ended OUTCOME_UNKNOWN, in one transaction: when the
   * record is still OUTCOME_UNKNOWN it takes the real outcome (delivery DELIVERED) and a
   * CommandOutcomeResolved event is written; the answer's state is merged as mergeState does,
   * with its events under the command's flow id.
   */
  resolveCommand(flowId: string, resolution: CommandResolution, vehicleId: string, state: VehicleState): Promise<void>;
  getCommand(flowId: string): Promise<CommandRecord | undefined>;
  /** Newest first; `before` is a flow_id cursor from the previous page. */
  listCommands(vehicleId: string, limit: number, before?: string): Promise<CommandRecord[]>;
  /**
   * Marks IN_FLIGHT records whose deadline passed before `now` as OUTCOME_UNKNOWN with
   * EXPIRED_COMMAND.detail; never touches a finished record.
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

/** What caused a change: its events carry this flow id (SPEC §2; a new one when absent). */
export interface ChangeCause {
  flow_id?: string;
}

/** Raised by EventLog.read for a cursor whose events were pruned (older than retention). */
export class CursorExpiredError extends Error {
  constructor(readonly cursor: string) {
    super(`cursor ${cursor} is older than the retained events`);
    this.name = 'CursorExpiredError';
  }
}

/** Raised for a cursor string this engine never handed out. */
export class InvalidCursorError extends Error {
  constructor(readonly cursor: string) {
    super(`cursor ${cursor} is not a cursor of this event feed`);
    this.name = 'InvalidCursorError';
  }
}

export interface EventQuery {
  /** Only this fleet's events (every channel is fleet-scoped); undefined: every fleet (channels that fan out). */
  fleet_id?: string;
  /** Exclusive; undefined: from the oldest retained event. */
  after?: string;
  types?: readonly string[];
  vehicle_id?: string;
  limit: number;
}

export interface EventPage {
  items: StoredEvent[];
  /** The cursor to continue from: the last item's, or `after` (or the feed's start) when empty. */
  next_cursor: string;
}

/** A durable named cursor with its lease (EventLog.acquireCursor). */
export interface CursorLease {
  /** The position after which the holder continues; null: the feed's start. */
  position: string | null;
}

/**
 * The outbox's read side and what delivery channels keep, per engine. Events are written by the
 * Store's own writes, in the same transaction as the change they describe; this interface only
 * reads, prunes, and keeps channels' durable state. Safe across instances sharing one database.
 */
export interface EventLog {
  /**
   * Events after `query.after` in feed order: the order they committed in (per vehicle the order
   * they happened). A reader never skips an event that commits later with an earlier position.
   * Throws CursorExpiredError when `after` was pruned, InvalidCursorError when it is not a cursor.
   */
  read(query: EventQuery): Promise<EventPage>;
  /** The cursor of the newest committed event (null when there is none): "from now on". */
  head(): Promise<string | null>;
  /**
   * Deletes at most `batch` of the oldest events, those written before `before`; returns how
   * many. Reads from a cursor before the deleted ones then throw CursorExpiredError.
   */
  prune(before: string, batch: number): Promise<number>;
  /**
   * Calls `listener` after this instance committed a write with events (other instances' commits
   * are found by reading). Returns the function that removes it.
   */
  onCommit(listener: () => void): () => void;

  /**
   * Takes or renews the lease on the durable cursor `name` for `owner` until now + `leaseMs`,
   * creating it at `initial` when it does not exist. Returns undefined while another owner holds
   * an unexpired lease: one instance at a time delivers for a cursor.
   */
  acquireCursor(name: string, owner: string, leaseMs: number, initial: string | null): Promise<CursorLease | undefined>;
  /**
   * Moves the cursor to `position` if `owner` still holds the lease; false when it lost it. With
   * `renewMs`, also renews the lease until now + `renewMs` (one write instead of two).
   */
  advanceCursor(name: string, owner: string, position: string, renewMs?: number): Promise<boolean>;
  /** Gives the lease up (a stopping instance), so another instance takes over at once. */
  releaseCursor(name: string, owner: string): Promise<void>;
  deleteCursor(name: string): Promise<void>;
  /** The cursor's position, or undefined when it does not exist. */
  getCursor(name: string): Promise<CursorLease | undefined>;

  /**
   * Documents a channel keeps (webhook subscriptions, AMQP consumers…), by kind and id, scoped to
   * a fleet. `put` with `expectedVersion` replaces only that version (compare-and-swap) and
   * returns the new version, or undefined when the version differed or (with 0) the id exists.
   */
  putRecord(
    kind: string,
    record: { id: string; fleet_id: string; doc: unknown },
    expectedVersion?: number,
  ): Promise<number | undefined>;
  getRecord(kind: string, id: string): Promise<ChannelRecord | undefined>;
  /** Ordered by id; every fleet when fleetId is undefined. */
  listRecords(kind: string, fleetId: string | undefined, limit: number, after?: string): Promise<ChannelRecord[]>;
  deleteRecord(kind: string, id: string): Promise<boolean>;

  /** Appends an entry to a record's log (delivery attempts); entries get increasing ids. */
  appendLog(kind: string, recordId: string, entry: unknown): Promise<number>;
  /** Appends entries in order in one write (a page of deliveries); their ids, in that order. */
  appendLogs(kind: string, recordId: string, entries: readonly unknown[]): Promise<number[]>;
  /** Newest first; `before` an entry id from the previous page. */
  listLog(
    kind: string,
    recordId: string,
    limit: number,
    before?: number,
  ): Promise<Array<{ id: number; entry: unknown }>>;
  getLog(kind: string, recordId: string, id: number): Promise<unknown | undefined>;
  /** Deletes at most `batch` log entries written before `before`. */
  pruneLog(before: string, batch: number): Promise<number>;
}

export interface ChannelRecord {
  id: string;
  fleet_id: string;
  doc: unknown;
  version: number;
}
