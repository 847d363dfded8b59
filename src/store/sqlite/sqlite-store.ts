import { randomUUID } from 'node:crypto';
import Database from 'better-sqlite3';
import type { Logger } from 'pino';
import {
  commandFinishedEvent,
  commandOutcomeResolvedEvent,
  type EventEnvelope,
  stateEvents,
  type TripStart,
  tripStartOf,
  vehicleAddedEvent,
  vehicleChangedEvent,
  vehicleRemovedEvent,
} from '../../domain/events.js';
import { supersedes, type VehicleState } from '../../domain/state-catalogue.js';
import type { Capabilities, LifeStatus, SetupStatus, Vehicle } from '../../domain/vehicle.js';
import { type ColumnEncoder, commandInsertValues, type Row, rowMappers, vehicleInsertValues } from '../row-mapping.js';
import {
  type ApiClient,
  type ChangeCause,
  type CommandCompletion,
  type CommandRecord,
  type CommandResolution,
  type ConsoleSession,
  type ConsoleUser,
  type CredentialsRecord,
  EXPIRED_COMMAND,
  type IdempotencyRecord,
  type Migration,
  type SignInFailures,
  type Store,
  StoreConflictError,
  StoreUnavailableError,
  type UnitOffline,
  type VehicleCount,
  type VehicleFilter,
  type VehiclePatch,
} from '../store.js';
import { Checkpointer, DEFAULT_WAL_LIMIT_MB } from './checkpointer.js';
import { GroupCommit } from './group-commit.js';
import { SQLITE_MIGRATIONS } from './migrations.js';
import { deepFreeze, ReadCache, type StoredProperty, type StoredState, storedProperty } from './read-cache.js';
import { SqliteEventLog } from './sqlite-event-log.js';

export interface SqliteStoreOptions {
  /** Database file path. */
  file: string;
  /** How long a writer waits for another process's lock before giving up (ms). */
  busyTimeoutMs?: number;
  logger?: Logger;
  /** Overrides the migration list (tests). */
  migrations?: readonly Migration[];
  /** The write-ahead log's file is kept near this size under load, and emptied when idle (MB). */
  walLimitMb?: number;
}

/** How far the tag-selectivity probe counts; beyond it, tags count as equally common. */
const TAG_PROBE_CAP = 10_000;

const toMs = (iso: string): number => {
  const ms = Date.parse(iso);
  if (!Number.isFinite(ms)) throw new TypeError(`invalid timestamp: ${iso}`);
  return ms;
};
const toIso = (ms: unknown): string => new Date(Number(ms)).toISOString();
const json = (value: unknown): string => JSON.stringify(value);
const parse = <T>(text: unknown): T => JSON.parse(String(text)) as T;
/** Times as epoch milliseconds, JSON as text. */
const ENCODE: ColumnEncoder = { time: toMs, json };
const {
  client: clientFromRow,
  vehicle: vehicleFromRow,
  command: commandFromRow,
  credentials: credentialsFromRow,
  idempotency: idempotencyFromRow,
  user: userFromRow,
  session: sessionFromRow,
  signInFailures: signInFailuresFromRow,
} = rowMappers({ time: toIso, json: parse });

function sqliteCode(err: unknown): string {
  return typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : '';
}

/** ON DELETE RESTRICT reports SQLITE_CONSTRAINT_TRIGGER, a deferred or insert check FOREIGNKEY. */
const isForeignKeyViolation = (err: unknown): boolean =>
  sqliteCode(err).startsWith('SQLITE_CONSTRAINT') && String(err).includes('FOREIGN KEY constraint failed');

/** A primary key or unique index refused the row (which one fires first is SQLite's choice). */
const isUniqueViolation = (err: unknown): boolean =>
  sqliteCode(err) === 'SQLITE_CONSTRAINT_PRIMARYKEY' || sqliteCode(err) === 'SQLITE_CONSTRAINT_UNIQUE';

/**
 * Maps driver errors to the port's errors: a lock held past busy_timeout means the database is
 * unavailable (503); a foreign key violation names the missing referent.
 */
function toStoreError(err: unknown, foreignKey: string): unknown {
  const code = sqliteCode(err);
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED' || code === 'SQLITE_CANTOPEN' || code === 'SQLITE_IOERR') {
    return new StoreUnavailableError(err);
  }
  if (isForeignKeyViolation(err)) return new StoreConflictError(foreignKey);
  return err;
}

const MAX_CACHED_STATEMENTS = 500;

/**
 * The embedded engine (SPEC §7): one SQLite file in WAL mode. better-sqlite3 is synchronous;
 * every method runs its statements to completion before yielding, and cross-process safety rests
 * on SQLite's single-writer lock plus the same unique indexes the PostgreSQL engine uses.
 */
export class SqliteStore implements Store {
  readonly engine = 'sqlite';
  private readonly db: Database.Database;
  private readonly migrations: readonly Migration[];
  private readonly logger: Logger | undefined;
  private closed = false;
  private readonly statements = new Map<string, Database.Statement>();
  /** The command path's writes: begins, completions and state reports (group-commit.ts). */
  private readonly writes: GroupCommit;
  /** Recently commanded vehicles and their stored state (read-cache.ts). */
  private readonly vehicleCache: ReadCache<Vehicle>;
  private readonly stateCache: ReadCache<StoredState>;
  /** Checkpoints on a thread of their own (checkpointer.ts). */
  readonly checkpoints: Checkpointer;
  /** The outbox's read side; the writes below insert each change's events through it. */
  readonly events: SqliteEventLog;

  constructor(options: SqliteStoreOptions) {
    this.migrations = options.migrations ?? SQLITE_MIGRATIONS;
    this.logger = options.logger;
    try {
      this.db = new Database(options.file);
    } catch (err) {
      throw new StoreUnavailableError(err);
    }
    this.db.pragma('journal_mode = WAL');
    this.db.pragma(`busy_timeout = ${Math.trunc(options.busyTimeoutMs ?? 5000)}`);
    this.db.pragma('foreign_keys = ON');
    // NORMAL is durable across application crashes in WAL mode; only an OS crash can lose the
    // last transactions, which fsync on every commit would cost far more than it saves here.
    this.db.pragma('synchronous = NORMAL');
    this.checkpoints = new Checkpointer(this.db, options.file, this.logger, {
      walLimitBytes: Math.trunc((options.walLimitMb ?? DEFAULT_WAL_LIMIT_MB) * 2 ** 20),
    });
    const dataVersion = this.db.prepare('PRAGMA data_version').pluck();
    this.vehicleCache = new ReadCache(() => dataVersion.get() as number);
    this.stateCache = new ReadCache(() => dataVersion.get() as number);
    this.events = new SqliteEventLog(this.db, (sql) => this.prepare(sql));
    this.writes = new GroupCommit(
      this.db,
      (err) => toStoreError(err, 'reference'),
      // What the failed writes cached was never committed.
      () => this.stateCache.clear(),
    );
  }

  /**
   * Prepared statements, cached by their SQL text: preparing one cost more than running it (5 % of
   * fleetgate's CPU per command in the bench profile). Bounded, as listings build their SQL.
   */
  private prepare(sql: string): Database.Statement {
    let statement = this.statements.get(sql);
    if (statement === undefined) {
      if (this.statements.size >= MAX_CACHED_STATEMENTS) this.statements.clear();
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  /**
   * A command-path write, in the next group commit (`background`: a state report's, after the
   * commands'); the first one starts the checkpoint thread.
   */
  private write<T>(work: () => T, background = false): Promise<T> {
    this.checkpoints.start();
    return this.writes.submit(work, background).then((value) => {
      this.events.committed();
      this.checkpoints.afterCommit();
      return value;
    });
  }

  /** A transaction outside the group commit (IMMEDIATE: takes the write lock first), then wakes event readers. */
  private transact<T>(work: () => T): T {
    const value = this.db.transaction(work).immediate();
    this.events.committed();
    this.checkpoints.afterCommit();
    return value;
  }

  private run<T>(fn: () => T, foreignKey = 'reference'): T {
    try {
      return fn();
    } catch (err) {
      throw toStoreError(err, foreignKey);
    }
  }

  async migrate(): Promise<void> {
    this.db.exec(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)',
    );
    const known = Math.max(0, ...this.migrations.map((m) => m.version));
    // IMMEDIATE takes the write lock first, so two processes starting at once apply each step once.
    const apply = this.db.transaction(() => {
      const row = this.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as { v: number | null };
      const current = row.v ?? 0;
      if (current > known) {
        throw new Error(
          `database schema version ${current} is newer than this fleetgate knows (${known}); upgrade fleetgate`,
        );
      }
      for (const m of this.migrations) {
        if (m.version <= current) continue;
        this.db.exec(m.sql);
        this.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(
          m.version,
          m.name,
          new Date().toISOString(),
        );
        this.logger?.info({ version: m.version, name: m.name }, 'applied sqlite migration');
      }
    });
    this.run(() => apply.immediate());
  }

  async ping(): Promise<void> {
    this.run(() => this.prepare('SELECT 1').get());
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.writes.flushNow();
    await this.checkpoints.close();
    this.db.close();
  }

  async createClient(client: ApiClient): Promise<void> {
    this.run(() => {
      try {
        this.prepare(
          'INSERT INTO api_clients (client_id, fleet_id, name, secret_hash, scopes, created_at) VALUES (?, ?, ?, ?, ?, ?)',
        ).run(
          client.client_id,
          client.fleet_id,
          client.name,
          client.secret_hash,
          json(client.scopes),
          toMs(client.created_at),
        );
      } catch (err) {
        if (isUniqueViolation(err)) throw new StoreConflictError('client_id');
        throw err;
      }
    });
  }

  async getClient(clientId: string): Promise<ApiClient | undefined> {
    const r = this.run(() => this.prepare('SELECT * FROM api_clients WHERE client_id = ?').get(clientId)) as
      | Row
      | undefined;
    return r && clientFromRow(r);
  }

  async listClients(fleetId?: string): Promise<ApiClient[]> {
    const rows = this.run(() =>
      fleetId === undefined
        ? this.prepare('SELECT * FROM api_clients ORDER BY created_at, client_id').all()
        : this.prepare('SELECT * FROM api_clients WHERE fleet_id = ? ORDER BY created_at, client_id').all(fleetId),
    ) as Row[];
    return rows.map(clientFromRow);
  }

  async deleteClient(clientId: string): Promise<boolean> {
    return this.run(() => this.prepare('DELETE FROM api_clients WHERE client_id = ?').run(clientId)).changes > 0;
  }

  async createUser(u: ConsoleUser): Promise<void> {
    this.run(() => {
      try {
        this.prepare(
          `INSERT INTO console_users (user_id, fleet_id, email, role, password_hash, created_at, modified_at)
           VALUES (?, ?, ?, ?, ?, ?, ?)`,
        ).run(u.user_id, u.fleet_id, u.email, u.role, u.password_hash, toMs(u.created_at), toMs(u.modified_at));
      } catch (err) {
        if (isUniqueViolation(err) && String(err).includes('email')) throw new StoreConflictError('email');
        if (isUniqueViolation(err)) throw new StoreConflictError('user_id');
        throw err;
      }
    });
  }

  async getUser(userId: string): Promise<ConsoleUser | undefined> {
    const r = this.run(() => this.prepare('SELECT * FROM console_users WHERE user_id = ?').get(userId)) as
      | Row
      | undefined;
    return r && userFromRow(r);
  }

  async getUserByEmail(email: string): Promise<ConsoleUser | undefined> {
    const r = this.run(() => this.prepare('SELECT * FROM console_users WHERE email = ?').get(email)) as Row | undefined;
    return r && userFromRow(r);
  }

  async listUsers(fleetId?: string): Promise<ConsoleUser[]> {
    const rows = this.run(() =>
      fleetId === undefined
        ? this.prepare('SELECT * FROM console_users ORDER BY email').all()
        : this.prepare('SELECT * FROM console_users WHERE fleet_id = ? ORDER BY email').all(fleetId),
    ) as Row[];
    return rows.map(userFromRow);
  }

  async updateUser(
    userId: string,
    patch: Partial<Pick<ConsoleUser, 'role' | 'password_hash'>>,
    modifiedAt: string,
  ): Promise<ConsoleUser | undefined> {
    const r = this.run(() =>
      this.prepare(
        `UPDATE console_users SET role = COALESCE(?, role), password_hash = COALESCE(?, password_hash),
           modified_at = ? WHERE user_id = ? RETURNING *`,
      ).get(patch.role ?? null, patch.password_hash ?? null, toMs(modifiedAt), userId),
    ) as Row | undefined;
    return r && userFromRow(r);
  }

  async deleteUser(userId: string): Promise<boolean> {
    return this.run(() => this.prepare('DELETE FROM console_users WHERE user_id = ?').run(userId)).changes > 0;
  }

  async createSession(session: ConsoleSession): Promise<void> {
    this.run(
      () =>
        this.prepare(
          'INSERT INTO console_sessions (session_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)',
        ).run(session.session_hash, session.user_id, toMs(session.created_at), toMs(session.expires_at)),
      'user',
    );
  }

  async getSession(sessionHash: string): Promise<{ session: ConsoleSession; user: ConsoleUser } | undefined> {
    const r = this.run(() =>
      this.prepare(
        `SELECT u.*, s.session_hash, s.created_at AS session_created_at, s.expires_at
           FROM console_sessions s JOIN console_users u ON u.user_id = s.user_id WHERE s.session_hash = ?`,
      ).get(sessionHash),
    ) as Row | undefined;
    return r && { session: sessionFromRow(r), user: userFromRow(r) };
  }

  async deleteSession(sessionHash: string): Promise<void> {
    this.run(() => this.prepare('DELETE FROM console_sessions WHERE session_hash = ?').run(sessionHash));
  }

  async deleteUserSessions(userId: string): Promise<void> {
    this.run(() => this.prepare('DELETE FROM console_sessions WHERE user_id = ?').run(userId));
  }

  async purgeSessions(expiredBefore: string): Promise<number> {
    return this.run(() => this.prepare('DELETE FROM console_sessions WHERE expires_at < ?').run(toMs(expiredBefore)))
      .changes;
  }

  async noteSignInFailure(keys: readonly string[], at: string): Promise<SignInFailures[]> {
    const upsert = this.prepare(
      `INSERT INTO sign_in_failures (throttle_key, failures, last_failure_at) VALUES (?, 1, ?)
       ON CONFLICT (throttle_key) DO UPDATE SET failures = failures + 1, last_failure_at = excluded.last_failure_at
       RETURNING *`,
    );
    const tx = this.db.transaction(() => keys.map((k) => signInFailuresFromRow(upsert.get(k, toMs(at)) as Row)));
    return this.run(() => tx.immediate());
  }

  async getSignInFailures(keys: readonly string[]): Promise<SignInFailures[]> {
    const get = this.prepare('SELECT * FROM sign_in_failures WHERE throttle_key = ?');
    return this.run(() =>
      keys.flatMap((k) => {
        const r = get.get(k) as Row | undefined;
        return r ? [signInFailuresFromRow(r)] : [];
      }),
    );
  }

  async clearSignInFailures(keys: readonly string[], staleBefore: string): Promise<void> {
    const del = this.prepare('DELETE FROM sign_in_failures WHERE throttle_key = ?');
    const tx = this.db.transaction(() => {
      for (const k of keys) del.run(k);
      this.prepare('DELETE FROM sign_in_failures WHERE last_failure_at < ?').run(toMs(staleBefore));
    });
    this.run(() => tx.immediate());
  }

  private writeTags(fleetId: string, vehicleId: string, tags: readonly string[]): void {
    this.prepare('DELETE FROM vehicle_tags WHERE vehicle_id = ?').run(vehicleId);
    const insert = this.prepare('INSERT OR IGNORE INTO vehicle_tags (fleet_id, tag, vehicle_id) VALUES (?, ?, ?)');
    for (const tag of tags) insert.run(fleetId, tag, vehicleId);
  }

  async insertVehicle(v: Vehicle, cause?: ChangeCause): Promise<void> {
    this.forgetVehicle(v.vehicle_id);
    const tx = this.db.transaction(() => {
      this.prepare(
        `INSERT INTO vehicles (vehicle_id, fleet_id, telematics_brand, telematics_unit_id, vehicle_model_id,
             unit_password_hash, credentials_id, capabilities, master_data, custom_fields, tags, operation_status,
             setup_status, setup_failure_reason, life_status, life_status_modified_at, version, created_at, modified_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(...vehicleInsertValues(v, ENCODE));
      this.writeTags(v.fleet_id, v.vehicle_id, v.tags);
      this.events.insert([vehicleAddedEvent(v, flowOf(cause))]);
    });
    this.run(() => {
      try {
        tx.immediate();
        this.events.committed();
      } catch (err) {
        if (isUniqueViolation(err) && String(err).includes('telematics_unit_id')) {
          throw new StoreConflictError('telematics_unit');
        }
        if (isUniqueViolation(err)) throw new StoreConflictError('vehicle_id');
        throw err;
      }
    }, 'credentials');
  }

  async getVehicle(vehicleId: string): Promise<Vehicle | undefined> {
    return this.run(() => this.readVehicle(vehicleId));
  }

  private readVehicle(vehicleId: string): Vehicle | undefined {
    const cached = this.vehicleCache.get(vehicleId);
    if (cached) return cached;
    const r = this.prepare('SELECT * FROM vehicles WHERE vehicle_id = ?').get(vehicleId) as Row | undefined;
    if (r === undefined) return undefined;
    const vehicle = deepFreeze(vehicleFromRow(r));
    this.vehicleCache.set(vehicleId, vehicle);
    return vehicle;
  }

  /** Before this connection writes a vehicle's row (a delete takes its state along). */
  private forgetVehicle(vehicleId: string): void {
    this.vehicleCache.delete(vehicleId);
    this.stateCache.delete(vehicleId);
  }

  async findVehicleByUnit(brand: string, unitId: string): Promise<Vehicle | undefined> {
    const r = this.run(() =>
      this.prepare('SELECT * FROM vehicles WHERE telematics_brand = ? AND telematics_unit_id = ?').get(brand, unitId),
    ) as Row | undefined;
    return r && vehicleFromRow(r);
  }

  async listVehicles(filter: VehicleFilter): Promise<Vehicle[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    const [firstTag, ...otherTags] = this.rarestFirst(filter.fleet_id, [...new Set(filter.tags ?? [])], filter.after);
    let from = 'vehicles v';
    if (firstTag === undefined) {
      where.push('v.fleet_id = ?');
      params.push(filter.fleet_id);
      if (filter.after !== undefined) {
        where.push('v.vehicle_id > ?');
        params.push(filter.after);
      }
    } else {
      // Walk the first tag's index range in vehicle_id order (CROSS JOIN fixes the join order in
      // SQLite), so the page costs `limit` lookups however large the fleet is.
      from = 'vehicle_tags t CROSS JOIN vehicles v ON v.vehicle_id = t.vehicle_id';
      where.push('t.fleet_id = ? AND t.tag = ?');
      params.push(filter.fleet_id, firstTag);
      if (filter.after !== undefined) {
        where.push('t.vehicle_id > ?');
        params.push(filter.after);
      }
      for (const tag of otherTags) {
        where.push(
          'EXISTS (SELECT 1 FROM vehicle_tags o WHERE o.fleet_id = ? AND o.tag = ? AND o.vehicle_id = v.vehicle_id)',
        );
        params.push(filter.fleet_id, tag);
      }
    }
    if (filter.telematics_brand !== undefined) {
      where.push('v.telematics_brand = ?');
      params.push(filter.telematics_brand);
    }
    if (filter.setup_status !== undefined) {
      where.push('v.setup_status = ?');
      params.push(filter.setup_status);
    }
    params.push(filter.limit);
    const order = firstTag === undefined ? 'v.vehicle_id' : 't.vehicle_id';
    const sql = `SELECT v.* FROM ${from} WHERE ${where.join(' AND ')} ORDER BY ${order} LIMIT ?`;
    const rows = this.run(() => this.prepare(sql).all(...params)) as Row[];
    return rows.map(vehicleFromRow);
  }

  /**
   * Orders tags by how many of the fleet's vehicles carry them (counted up to a cap, so the probe
   * stays cheap): driving the page from the rarest tag keeps `berlin AND rare-tag` from walking
   * every Berlin vehicle.
   */
  private rarestFirst(fleetId: string, tags: string[], after: string | undefined): string[] {
    if (tags.length < 2) return tags;
    const probe = this.prepare(
      `SELECT COUNT(*) AS n FROM (SELECT 1 FROM vehicle_tags
        WHERE fleet_id = ? AND tag = ? AND (? IS NULL OR vehicle_id > ?) LIMIT ${TAG_PROBE_CAP})`,
    );
    const count = new Map(
      tags.map((t) => [t, (probe.get(fleetId, t, after ?? null, after ?? null) as { n: number }).n]),
    );
    return tags.sort((a, b) => count.get(a)! - count.get(b)!);
  }

  async updateVehicle(
    vehicleId: string,
    patch: VehiclePatch,
    expectedVersion: number | undefined,
    modifiedAt: string,
    cause?: ChangeCause,
  ): Promise<Vehicle | 'version-mismatch' | undefined> {
    this.forgetVehicle(vehicleId);
    const sets = ['version = version + 1', 'modified_at = ?'];
    const params: unknown[] = [toMs(modifiedAt)];
    for (const key of ['master_data', 'custom_fields', 'tags'] as const) {
      if (patch[key] !== undefined) {
        sets.push(`${key} = ?`);
        params.push(json(patch[key]));
      }
    }
    if (patch.operation_status !== undefined) {
      sets.push('operation_status = ?');
      params.push(patch.operation_status);
    }
    params.push(vehicleId, expectedVersion ?? null, expectedVersion ?? null);
    return this.run(() =>
      this.transact((): Vehicle | 'version-mismatch' | undefined => {
        const before = this.readRow(vehicleId);
        const r = this.prepare(
          `UPDATE vehicles SET ${sets.join(', ')} WHERE vehicle_id = ? AND (? IS NULL OR version = ?) RETURNING *`,
        ).get(...params) as Row | undefined;
        if (!r) return this.exists(vehicleId) ? 'version-mismatch' : undefined;
        const v = vehicleFromRow(r);
        if (patch.tags !== undefined) this.writeTags(v.fleet_id, v.vehicle_id, v.tags);
        if (before) this.events.insert(vehicleChangedEvent(before, v, flowOf(cause), modifiedAt));
        return v;
      }),
    );
  }

  private readRow(vehicleId: string): Vehicle | undefined {
    const r = this.prepare('SELECT * FROM vehicles WHERE vehicle_id = ?').get(vehicleId) as Row | undefined;
    return r && vehicleFromRow(r);
  }

  private exists(vehicleId: string): boolean {
    return this.prepare('SELECT 1 FROM vehicles WHERE vehicle_id = ?').get(vehicleId) !== undefined;
  }

  async deleteVehicle(
    vehicleId: string,
    expectedVersion?: number,
    cause?: ChangeCause,
  ): Promise<boolean | 'version-mismatch'> {
    this.forgetVehicle(vehicleId);
    // State, commands, tags and idempotency keys go with it through ON DELETE CASCADE, in the
    // same statement and so the same transaction.
    return this.run(() =>
      this.transact((): boolean | 'version-mismatch' => {
        const r = this.prepare(
          'DELETE FROM vehicles WHERE vehicle_id = ? AND (? IS NULL OR version = ?) RETURNING *',
        ).get(vehicleId, expectedVersion ?? null, expectedVersion ?? null) as Row | undefined;
        if (r) {
          this.events.insert([vehicleRemovedEvent(vehicleFromRow(r), flowOf(cause), new Date().toISOString())]);
          return true;
        }
        return this.exists(vehicleId) ? 'version-mismatch' : false;
      }),
    );
  }

  async setSetupStatus(
    vehicleId: string,
    update: { status: SetupStatus; reason: string | null; capabilities?: Capabilities; at: string },
    onlyFrom?: SetupStatus,
    cause?: ChangeCause,
  ): Promise<boolean> {
    this.forgetVehicle(vehicleId);
    const caps = update.capabilities === undefined ? null : json(update.capabilities);
    return this.run(() =>
      this.transact((): boolean => {
        const before = this.readRow(vehicleId);
        const r = this.prepare(
          `UPDATE vehicles
              SET setup_status = @status, setup_failure_reason = @reason,
                  capabilities = COALESCE(@caps, capabilities), version = version + 1, modified_at = @at
            WHERE vehicle_id = @id
              AND (@from IS NULL OR setup_status = @from)
              AND (setup_status IS NOT @status OR setup_failure_reason IS NOT @reason
                   OR (@caps IS NOT NULL AND capabilities IS NOT @caps))
          RETURNING *`,
        ).get({
          id: vehicleId,
          status: update.status,
          reason: update.reason,
          caps,
          at: toMs(update.at),
          from: onlyFrom ?? null,
        }) as Row | undefined;
        if (!r || !before) return false;
        this.events.insert(vehicleChangedEvent(before, vehicleFromRow(r), flowOf(cause), update.at));
        return true;
      }),
    );
  }

  async setLifeStatus(vehicleId: string, status: LifeStatus, at: string, cause?: ChangeCause): Promise<boolean> {
    this.forgetVehicle(vehicleId);
    // Not an operator edit: the version (ETag) stays as it is.
    return this.run(() =>
      this.transact((): boolean => {
        const before = this.readRow(vehicleId);
        const r = this.prepare(
          'UPDATE vehicles SET life_status = ?, life_status_modified_at = ? WHERE vehicle_id = ? AND life_status <> ? RETURNING *',
        ).get(status, toMs(at), vehicleId, status) as Row | undefined;
        if (!r || !before) return false;
        this.events.insert(vehicleChangedEvent(before, vehicleFromRow(r), flowOf(cause), at));
        return true;
      }),
    );
  }

  async countVehicles(): Promise<VehicleCount[]> {
    return this.run(() =>
      this.prepare(
        `SELECT telematics_brand, setup_status, life_status, COUNT(*) AS count FROM vehicles
          GROUP BY telematics_brand, setup_status, life_status`,
      ).all(),
    ) as VehicleCount[];
  }

  async listStaleSetups(createdBefore: string, limit: number): Promise<Vehicle[]> {
    const rows = this.run(() =>
      this.prepare(
        `SELECT * FROM vehicles WHERE setup_status = 'IN_PROGRESS' AND created_at < ? ORDER BY created_at, vehicle_id LIMIT ?`,
      ).all(toMs(createdBefore), limit),
    ) as Row[];
    return rows.map(vehicleFromRow);
  }

  async setBrandOffline(brand: string, at: string, limit: number, afterUnit = ''): Promise<UnitOffline[]> {
    const modifiedAt = new Date(at).toISOString();
    return this.run(() =>
      this.transact((): UnitOffline[] => {
        const rows = this.prepare(
          `SELECT * FROM vehicles WHERE telematics_brand = ? AND telematics_unit_id > ? AND life_status = 'ONLINE'
            ORDER BY telematics_unit_id LIMIT ?`,
        ).all(brand, afterUnit, limit) as Row[];
        const update = this.prepare(
          "UPDATE vehicles SET life_status = 'OFFLINE', life_status_modified_at = ? WHERE vehicle_id = ?",
        );
        const events: EventEnvelope[] = [];
        const changed = rows.map((r) => {
          const before = vehicleFromRow(r);
          this.forgetVehicle(before.vehicle_id);
          update.run(toMs(modifiedAt), before.vehicle_id);
          const after: Vehicle = { ...before, life_status: 'OFFLINE', life_status_modified_at: modifiedAt };
          events.push(...vehicleChangedEvent(before, after, flowOf(undefined), modifiedAt));
          return { vehicle_id: before.vehicle_id, telematics_unit_id: before.telematics_unit_id };
        });
        this.events.insert(events);
        return changed;
      }),
    );
  }

  async createCredentials(c: CredentialsRecord): Promise<void> {
    this.run(() => {
      try {
        this.prepare(
          `INSERT INTO credentials (credentials_id, fleet_id, telematics_brand, name, sealed_secret, sealed_state,
               version, created_at, modified_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        ).run(
          c.credentials_id,
          c.fleet_id,
          c.telematics_brand,
          c.name,
          c.sealed_secret,
          c.sealed_state,
          c.version,
          toMs(c.created_at),
          toMs(c.modified_at),
        );
      } catch (err) {
        if (isUniqueViolation(err)) throw new StoreConflictError('credentials_id');
        throw err;
      }
    });
  }

  async getCredentials(credentialsId: string): Promise<CredentialsRecord | undefined> {
    const r = this.run(() => this.prepare('SELECT * FROM credentials WHERE credentials_id = ?').get(credentialsId)) as
      | Row
      | undefined;
    return r && credentialsFromRow(r);
  }

  async listCredentials(fleetId: string, limit: number, after?: string): Promise<CredentialsRecord[]> {
    const rows = this.run(() =>
      this.prepare(
        'SELECT * FROM credentials WHERE fleet_id = ? AND (? IS NULL OR credentials_id > ?) ORDER BY credentials_id LIMIT ?',
      ).all(fleetId, after ?? null, after ?? null, limit),
    ) as Row[];
    return rows.map(credentialsFromRow);
  }

  async deleteCredentials(credentialsId: string): Promise<'deleted' | 'in-use' | 'not-found'> {
    return this.run(() => {
      try {
        const info = this.prepare('DELETE FROM credentials WHERE credentials_id = ?').run(credentialsId);
        return info.changes > 0 ? 'deleted' : 'not-found';
      } catch (err) {
        // The vehicles.credentials_id foreign key refuses while a vehicle references them.
        if (isForeignKeyViolation(err)) return 'in-use';
        throw err;
      }
    });
  }

  async updateCredentialsState(
    credentialsId: string,
    expectedVersion: number,
    sealedState: string,
    at: string,
  ): Promise<boolean> {
    const info = this.run(() =>
      this.prepare(
        'UPDATE credentials SET sealed_state = ?, version = version + 1, modified_at = ? WHERE credentials_id = ? AND version = ?',
      ).run(sealedState, toMs(at), credentialsId, expectedVersion),
    );
    return info.changes > 0;
  }

  async mergeState(vehicleId: string, state: VehicleState, cause?: ChangeCause): Promise<VehicleState> {
    try {
      return await this.write(() => this.run(() => this.mergeInto(vehicleId, state, flowOf(cause)), 'vehicle'), true);
    } catch (err) {
      // A report for a vehicle deleted meanwhile: nothing to keep.
      if (err instanceof StoreConflictError) return {};
      throw err;
    }
  }

  async completeCommand(
    flowId: string,
    completion: CommandCompletion,
    vehicleId: string,
    state: VehicleState,
  ): Promise<VehicleState> {
    try {
      return await this.write(() =>
        this.run(() => {
          const finished = this.updateCommand(flowId, completion);
          const merged = this.mergeInto(vehicleId, state, flowId);
          // After the state's events, as the PostgreSQL statement writes them.
          this.events.insert(finished);
          return merged;
        }, 'vehicle'),
      );
    } catch (err) {
      if (err instanceof StoreConflictError) return {};
      throw err;
    }
  }

  /**
   * Merges reported state into the stored state and returns the result, inside the caller's
   * write transaction (so nothing changes in between): newer-or-equal timestamps win (SPEC §3).
   * Reads the vehicle's rows once and writes only the properties that change, so an answer
   * repeating the known state costs one read and no writes.
   */
  private mergeInto(vehicleId: string, state: VehicleState, flowId: string): VehicleState {
    const stored = this.stateCache.get(vehicleId) ?? this.readStoredState(vehicleId);
    let merged: Map<string, StoredProperty> | undefined;
    let upsert: Database.Statement | undefined;
    const written: VehicleState = {};
    for (const [property, v] of Object.entries(state)) {
      const ts = toMs(v.timestamp);
      const value = json(v.value);
      const current = stored.get(property);
      // Nothing to write when the stored value wins (SPEC §3) or the report repeats it.
      if (current && (!supersedes(v, current) || (ts === current.ts && value === current.json))) continue;
      upsert ??= this.prepare(
        `INSERT INTO vehicle_state (vehicle_id, property, ts, value) VALUES (?, ?, ?, ?)
         ON CONFLICT (vehicle_id, property) DO UPDATE SET ts = excluded.ts, value = excluded.value`,
      );
      upsert.run(vehicleId, property, ts, value);
      merged ??= new Map(stored);
      const written_ = storedProperty(ts, value, toIso(ts), parse(value));
      merged.set(property, written_);
      written[property] = { timestamp: written_.timestamp, value: written_.value };
    }
    if (merged !== undefined) this.writeStateEvents(vehicleId, stored, written, state, flowId);
    const result = merged ?? stored;
    // Cached only now that every row is written; a failing transaction drops the cache.
    this.stateCache.set(vehicleId, result);
    const out: VehicleState = {};
    for (const property of [...result.keys()].sort()) {
      const r = result.get(property)!;
      out[property] = { timestamp: r.timestamp, value: r.value };
    }
    return out;
  }

  /** The events of a state write (domain/events.ts stateEvents), in the write's transaction. */
  private writeStateEvents(
    vehicleId: string,
    stored: StoredState,
    written: VehicleState,
    reported: VehicleState,
    flowId: string,
  ): void {
    const vehicle = this.readVehicle(vehicleId);
    if (vehicle === undefined) return;
    const before: VehicleState = {};
    for (const [name, p] of stored) before[name] = { timestamp: p.timestamp, value: p.value };
    let tripStart: TripStart | undefined;
    if (written.ignition !== undefined) {
      const start = tripStartOf(before, written);
      if (start !== undefined) {
        this.prepare(
          'INSERT INTO vehicle_trips (vehicle_id, start) VALUES (?, ?) ON CONFLICT (vehicle_id) DO UPDATE SET start = excluded.start',
        ).run(vehicleId, json(start));
      } else if (written.ignition.value === 'OFF') {
        const row = this.prepare('DELETE FROM vehicle_trips WHERE vehicle_id = ? RETURNING start').get(vehicleId) as
          | { start: string }
          | undefined;
        tripStart = row && parse<TripStart>(row.start);
      }
    }
    const subject = { fleet_id: vehicle.fleet_id, vehicle_id: vehicleId, flow_id: flowId };
    this.events.insert(stateEvents(subject, before, written, reported, new Date().toISOString(), tripStart));
  }

  private readStoredState(vehicleId: string): StoredState {
    const rows = this.prepare('SELECT property, ts, value FROM vehicle_state WHERE vehicle_id = ?').all(
      vehicleId,
    ) as Array<{ property: string; ts: number; value: string }>;
    return new Map(rows.map((r) => [r.property, storedProperty(r.ts, r.value, toIso(r.ts), parse(r.value))]));
  }

  private readState(vehicleId: string): VehicleState {
    const rows = this.prepare(
      'SELECT property, ts, value FROM vehicle_state WHERE vehicle_id = ? ORDER BY property',
    ).all(vehicleId) as Row[];
    const out: VehicleState = {};
    for (const r of rows) out[String(r.property)] = { timestamp: toIso(r.ts), value: parse(r.value) };
    return out;
  }

  async getState(vehicleId: string): Promise<VehicleState> {
    return this.run(() => this.readState(vehicleId));
  }

  async beginCommand(c: CommandRecord): Promise<boolean> {
    return this.write(() => this.run(() => this.insertCommand(c), 'vehicle'));
  }

  async startCommand(
    record: Omit<CommandRecord, 'adapter'>,
  ): Promise<{ vehicle: Vehicle | undefined; begun: boolean }> {
    return this.write(() =>
      this.run(() => {
        const vehicle = this.readVehicle(record.vehicle_id);
        const ready =
          vehicle !== undefined &&
          vehicle.fleet_id === record.fleet_id &&
          vehicle.setup_status === 'SUCCEEDED' &&
          vehicle.capabilities.commands.includes(record.command);
        return {
          vehicle,
          begun: ready && this.insertCommand({ ...record, adapter: vehicle.telematics_brand }),
        };
      }, 'vehicle'),
    );
  }

  /** Inserts an IN_FLIGHT record unless the vehicle has one (the single-flight index). */
  private insertCommand(c: CommandRecord): boolean {
    const info = this.prepare(
      `INSERT INTO commands (flow_id, fleet_id, client_id, vehicle_id, command, adapter, instance_id, status,
           problem_type, detail, delivery, steps, requested_at, deadline_at, user_id, user_email)
         VALUES (?, ?, ?, ?, ?, ?, ?, 'IN_FLIGHT', ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (vehicle_id) WHERE status = 'IN_FLIGHT' DO NOTHING`,
    ).run(...commandInsertValues(c, ENCODE));
    return info.changes > 0;
  }

  async finishCommand(flowId: string, c: CommandCompletion): Promise<void> {
    await this.write(() => this.run(() => this.events.insert(this.updateCommand(flowId, c))));
  }

  /** Finishes the record; returns its CommandFinished event for the caller to write. */
  private updateCommand(flowId: string, c: CommandCompletion): EventEnvelope[] {
    const r = this.prepare(
      `UPDATE commands SET status = ?, problem_type = ?, detail = ?, delivery = ?, steps = ?, completed_at = ?,
             duration_ms = ? WHERE flow_id = ? AND status IN ('IN_FLIGHT', 'OUTCOME_UNKNOWN') RETURNING *`,
    ).get(
      c.status,
      c.problem_type,
      c.detail,
      c.delivery,
      c.steps === null ? null : json(c.steps),
      toMs(c.completed_at),
      c.duration_ms,
      flowId,
    ) as Row | undefined;
    return r ? [commandFinishedEvent(commandFromRow(r))] : [];
  }

  async resolveCommand(
    flowId: string,
    resolution: CommandResolution,
    vehicleId: string,
    state: VehicleState,
  ): Promise<void> {
    try {
      await this.write(() =>
        this.run(() => {
          const r = this.prepare(
            `UPDATE commands SET status = ?, problem_type = ?, detail = ?, delivery = 'DELIVERED'
              WHERE flow_id = ? AND status = 'OUTCOME_UNKNOWN' RETURNING *`,
          ).get(resolution.status, resolution.problem_type, resolution.detail, flowId) as Row | undefined;
          this.mergeInto(vehicleId, state, flowId);
          if (r) this.events.insert([commandOutcomeResolvedEvent(commandFromRow(r), resolution)]);
        }, 'vehicle'),
      );
    } catch (err) {
      // The vehicle was deleted meanwhile: nothing to settle.
      if (!(err instanceof StoreConflictError)) throw err;
    }
  }

  async getCommand(flowId: string): Promise<CommandRecord | undefined> {
    const r = this.run(() => this.prepare('SELECT * FROM commands WHERE flow_id = ?').get(flowId)) as Row | undefined;
    return r && commandFromRow(r);
  }

  async listCommands(vehicleId: string, limit: number, before?: string): Promise<CommandRecord[]> {
    const rows = this.run(() =>
      before === undefined
        ? this.prepare(
            'SELECT * FROM commands WHERE vehicle_id = ? ORDER BY requested_at DESC, flow_id DESC LIMIT ?',
          ).all(vehicleId, limit)
        : // A cursor that is not one of this vehicle's commands yields an empty page.
          this.prepare(
            `SELECT c.* FROM commands c, commands k
                WHERE k.flow_id = ? AND k.vehicle_id = ? AND c.vehicle_id = k.vehicle_id
                  AND (c.requested_at, c.flow_id) < (k.requested_at, k.flow_id)
                ORDER BY c.requested_at DESC, c.flow_id DESC LIMIT ?`,
          ).all(before, vehicleId, limit),
    ) as Row[];
    return rows.map(commandFromRow);
  }

  async expireCommands(now: string): Promise<number> {
    const ms = toMs(now);
    const rows = this.run(() =>
      this.transact(() => {
        const expired = this.prepare(
          `UPDATE commands
              SET status = 'OUTCOME_UNKNOWN', delivery = 'DELIVERED_OUTCOME_UNKNOWN',
                  problem_type = COALESCE(problem_type, ?), detail = COALESCE(detail, ?),
                  completed_at = ?, duration_ms = MAX(0, ? - requested_at)
            WHERE status = 'IN_FLIGHT' AND deadline_at < ? RETURNING *`,
        ).all(EXPIRED_COMMAND.problem_type, EXPIRED_COMMAND.detail, ms, ms, ms) as Row[];
        this.events.insert(expired.map((r) => commandFinishedEvent(commandFromRow(r))));
        return expired;
      }),
    );
    return rows.length;
  }

  async claimIdempotencyKey(
    record: Omit<IdempotencyRecord, 'status_code' | 'response'>,
  ): Promise<{ claimed: true } | { claimed: false; existing: IdempotencyRecord }> {
    const tx = this.db.transaction((): { claimed: true } | { claimed: false; existing: IdempotencyRecord } => {
      const info = this.prepare(
        `INSERT INTO idempotency_keys (fleet_id, key, vehicle_id, command, flow_id, status_code, response, created_at)
           VALUES (?, ?, ?, ?, ?, NULL, NULL, ?) ON CONFLICT (fleet_id, key) DO NOTHING`,
      ).run(record.fleet_id, record.key, record.vehicle_id, record.command, record.flow_id, toMs(record.created_at));
      if (info.changes > 0) return { claimed: true };
      const r = this.prepare('SELECT * FROM idempotency_keys WHERE fleet_id = ? AND key = ?').get(
        record.fleet_id,
        record.key,
      ) as Row;
      return { claimed: false, existing: idempotencyFromRow(r) };
    });
    return this.run(() => tx.immediate(), 'vehicle');
  }

  async completeIdempotencyKey(fleetId: string, key: string, statusCode: number, response: unknown): Promise<void> {
    this.run(() =>
      this.prepare('UPDATE idempotency_keys SET status_code = ?, response = ? WHERE fleet_id = ? AND key = ?').run(
        statusCode,
        json(response ?? null),
        fleetId,
        key,
      ),
    );
  }

  async releaseIdempotencyKey(fleetId: string, key: string, flowId: string): Promise<void> {
    this.run(() =>
      this.prepare(
        'DELETE FROM idempotency_keys WHERE fleet_id = ? AND key = ? AND flow_id = ? AND status_code IS NULL',
      ).run(fleetId, key, flowId),
    );
  }

  async purgeIdempotencyKeys(createdBefore: string): Promise<number> {
    const info = this.run(() =>
      this.prepare('DELETE FROM idempotency_keys WHERE created_at < ?').run(toMs(createdBefore)),
    );
    return info.changes;
  }
}

/** The flow id a change's events carry: the request's, or a new one (SPEC §2). */
function flowOf(cause: ChangeCause | undefined): string {
  return cause?.flow_id ?? randomUUID();
}
