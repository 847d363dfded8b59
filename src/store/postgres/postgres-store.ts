import { createHash, randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import pg from 'pg';
import type { Logger } from 'pino';
import {
  commandFinishedEvent,
  commandOutcomeResolvedEvent,
  vehicleAddedEvent,
  vehicleChangedEvent,
  vehicleRemovedEvent,
} from '../../domain/events.js';
import { parseTimestamp, supersedes, type VehicleState } from '../../domain/state-catalogue.js';
import type { Capabilities, LifeStatus, SetupStatus, Vehicle } from '../../domain/vehicle.js';
import { LruMap } from '../../lib/lru-map.js';
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
  type VehicleCount,
  type VehicleFilter,
  type VehiclePatch,
} from '../store.js';
import { Batcher } from './batcher.js';
import { POSTGRES_MIGRATIONS } from './migrations.js';
import { PostgresEventLog } from './postgres-event-log.js';
import { type Candidate, eventCtes, finishedCandidate, stateCandidates } from './state-events-sql.js';

export interface PostgresStoreOptions {
  /** postgres:// or postgresql:// connection URL. */
  url: string;
  /** Connections per instance (default 10). */
  poolSize?: number;
  /** How long to wait for a connection, new or from the pool, before answering 503 (default 5 s). */
  connectionTimeoutMs?: number;
  /** Server-side limit per statement; the client gives up shortly after (default 10 s). */
  statementTimeoutMs?: number;
  logger?: Logger;
  /** Overrides the migration list (tests). */
  migrations?: readonly Migration[];
}

/** Any stable 64-bit number: the advisory lock that serialises migrations across instances. */
const MIGRATION_LOCK = 7_310_455_118_224_911;

const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up, recovering)
  '53300', // too_many_connections
  '57014', // query_canceled: only statement_timeout cancels our queries
]);
/** admin_shutdown, crash_shutdown: the server ended the session; the statement did not run. */
const SESSION_ENDED_CODES = new Set(['57P01', '57P02']);
const UNAVAILABLE_MESSAGE =
  /timeout exceeded when trying to connect|connection terminated|connection timeout|query read timeout|not queryable|connection error/i;

function errorCode(err: unknown): string {
  return typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : '';
}

/** True for errors that mean "the database cannot be reached", as opposed to a bad query. */
export function isConnectionError(err: unknown): boolean {
  const code = errorCode(err);
  if (UNAVAILABLE_CODES.has(code) || code.startsWith('08')) return true;
  if (err instanceof AggregateError) return err.errors.some(isConnectionError);
  return err instanceof Error && !code && UNAVAILABLE_MESSAGE.test(err.message);
}

function constraintOf(err: unknown): string {
  return typeof err === 'object' && err !== null && 'constraint' in err ? String(err.constraint) : '';
}

const iso = (d: unknown): string => (d instanceof Date ? d : new Date(String(d))).toISOString();
const json = (value: unknown): string => JSON.stringify(value);
// pg hands back timestamptz as Date and jsonb already parsed.
const {
  client: clientFromRow,
  vehicle: vehicleFromRow,
  command: commandFromRow,
  credentials: credentialsFromRow,
  idempotency: idempotencyFromRow,
  user: userFromRow,
  session: sessionFromRow,
  signInFailures: signInFailuresFromRow,
} = rowMappers({ time: iso, json: <T>(v: unknown) => v as T });

type Queryable = Pick<pg.PoolClient, 'query'>;

/** timestamptz takes ISO strings as they are; JSON goes as text. */
const ENCODE: ColumnEncoder = { time: (iso) => iso, json };

/**
 * The records a completion may still write (Store.completeCommand): one in flight, or one a
 * deadline expiry ended as OUTCOME_UNKNOWN meanwhile — the real outcome wins over the expiry.
 */
const FINISHABLE_STATUSES = "('IN_FLIGHT', 'OUTCOME_UNKNOWN')";

/**
 * Upserts state rows from `source` (columns vehicle_id, property, ts, value) of the vehicles
 * `vehicleIds` (a text[] expression): newer-or-equal timestamps win (SPEC §3). The ids let the
 * planner read only those vehicles' rows through the primary key: it estimates 100 rows for any
 * JSON record set and would otherwise hash-join the whole table. Rows that would not change are
 * dropped by the join before the upsert, which would otherwise lock, and so WAL-log, each one;
 * ON CONFLICT still settles a row another instance inserted or changed meanwhile.
 */
const upsertState = (source: string, vehicleIds: string): string =>
  `INSERT INTO vehicle_state (vehicle_id, property, ts, value)
   SELECT s.vehicle_id, s.property, s.ts, s.value FROM ${source}
   LEFT JOIN vehicle_state cur ON cur.vehicle_id = s.vehicle_id AND cur.property = s.property
     AND cur.vehicle_id = ANY(${vehicleIds})
   WHERE cur.vehicle_id IS NULL OR s.ts > cur.ts OR (s.ts = cur.ts AND s.value IS DISTINCT FROM cur.value)
   ON CONFLICT (vehicle_id, property) DO UPDATE SET ts = excluded.ts, value = excluded.value
   WHERE excluded.ts > vehicle_state.ts
      OR (excluded.ts = vehicle_state.ts AND excluded.value IS DISTINCT FROM vehicle_state.value)
   RETURNING vehicle_state.vehicle_id, vehicle_state.property, vehicle_state.value`;

/** One vehicle's state (parameter `vehicle`) from a JSON object of {timestamp, value} (parameter `state`). */
const stateOf = (vehicle: string, state: string): string =>
  `(SELECT ${vehicle}::text AS vehicle_id, e.key AS property, (e.value->>'timestamp')::timestamptz AS ts,
     e.value->'value' AS value FROM jsonb_each(${state}::jsonb) AS e) AS s`;

/**
 * The command path's batched statements that join JSON record sets to tables (exported for the
 * plan test, test/integration/postgres-plans.test.ts). Every table is reached by key: the planner
 * estimates 100 rows for any record set, and joined without key filters it hash-joined whole
 * tables (a sequential scan of `commands` per completion batch).
 */
export const START_COMMANDS_SQL = `WITH r AS (
   SELECT * FROM jsonb_to_recordset($1::jsonb) AS r(flow_id text, fleet_id text, client_id text,
     vehicle_id text, command text, instance_id text, problem_type text, detail text, delivery text,
     steps jsonb, requested_at timestamptz, deadline_at timestamptz, user_id text, user_email text)),
 v AS MATERIALIZED (SELECT * FROM vehicles WHERE vehicle_id = ANY($2::text[])),
 begun AS (
   INSERT INTO commands (flow_id, fleet_id, client_id, vehicle_id, command, adapter, instance_id, status,
     problem_type, detail, delivery, steps, requested_at, deadline_at, user_id, user_email)
   SELECT r.flow_id, r.fleet_id, r.client_id, r.vehicle_id, r.command, v.telematics_brand, r.instance_id,
     'IN_FLIGHT', r.problem_type, r.detail, r.delivery, r.steps, r.requested_at, r.deadline_at, r.user_id, r.user_email
   FROM r JOIN v ON v.vehicle_id = r.vehicle_id
   WHERE v.fleet_id = r.fleet_id AND v.setup_status = 'SUCCEEDED'
     AND v.capabilities->'commands' ? r.command
   ON CONFLICT (vehicle_id) WHERE status = 'IN_FLIGHT' DO NOTHING
   RETURNING flow_id)
 SELECT r.flow_id AS start_flow_id, b.flow_id IS NOT NULL AS start_begun, v.*
 FROM r LEFT JOIN v ON v.vehicle_id = r.vehicle_id LEFT JOIN begun b ON b.flow_id = r.flow_id`;

/**
 * START_COMMANDS_SQL for one command, with a parameter per column instead of a JSON record set:
 * what runs when a command arrives alone (low and moderate load). PostgreSQL plans the batched
 * form anew on every execution (its generic plan never wins against the custom one, which knows
 * the record set), at about as much CPU as running it; this one settles on a generic plan
 * after five executions (docs/performance.md).
 */
export const START_COMMAND_SQL = `WITH v AS MATERIALIZED (SELECT * FROM vehicles WHERE vehicle_id = $4::text),
 begun AS (
   INSERT INTO commands (flow_id, fleet_id, client_id, vehicle_id, command, adapter, instance_id, status,
     problem_type, detail, delivery, steps, requested_at, deadline_at, user_id, user_email)
   SELECT $1::text, $2::text, $3::text, $4::text, $5::text, v.telematics_brand, $6::text, 'IN_FLIGHT',
     $7::text, $8::text, $9::text, $10::jsonb, $11::timestamptz, $12::timestamptz, $13::text, $14::text
   FROM v
   WHERE v.fleet_id = $2::text AND v.setup_status = 'SUCCEEDED' AND v.capabilities->'commands' ? $5::text
   ON CONFLICT (vehicle_id) WHERE status = 'IN_FLIGHT' DO NOTHING
   RETURNING flow_id)
 SELECT $1::text AS start_flow_id, EXISTS (SELECT 1 FROM begun) AS start_begun, v.*
 FROM (SELECT 1) AS one LEFT JOIN v ON true`;

/**
 * The state of the vehicles `vehicleIds` as the statement's snapshot holds it, one row per
 * property, and one row with a NULL property for a vehicle that exists (none for one deleted).
 * In a statement that also writes state, this is the state before those writes (sub-statements
 * of a WITH do not see each other's effects): the caller merges its report over it (mergeReport).
 */
const snapshotState = (vehicleIds: string): string =>
  `SELECT ve.vehicle_id, st.property, st.ts, st.value FROM vehicles ve
   LEFT JOIN vehicle_state st ON st.vehicle_id = ve.vehicle_id
   WHERE ve.vehicle_id = ANY(${vehicleIds})`;

export const COMPLETE_COMMANDS_SQL = `WITH done AS (
     SELECT * FROM jsonb_to_recordset($1::jsonb) AS d(flow_id text, status text, problem_type text, detail text,
       delivery text, steps jsonb, completed_at timestamptz, duration_ms integer)),
   finished AS (
     UPDATE commands c SET status = d.status, problem_type = d.problem_type, detail = d.detail,
       delivery = d.delivery, steps = d.steps, completed_at = d.completed_at, duration_ms = d.duration_ms
     FROM done d WHERE c.flow_id = d.flow_id AND c.flow_id = ANY($3::text[])
       AND c.status IN ${FINISHABLE_STATUSES} RETURNING c.*),
   merged AS (
   ${upsertState('jsonb_to_recordset($2::jsonb) AS s(vehicle_id text, property text, ts timestamptz, value jsonb)', '$4::text[]')}),
   ${eventCtes('$5', '$4::text[]', true)}
   none AS (SELECT 1)
   ${snapshotState('$4::text[]')}`;

/**
 * The production engine (SPEC §7): any number of instances share one database. Every guarantee
 * that must hold across instances (single flight, idempotency, unique units, credential CAS)
 * is a constraint or a single conditional statement, never a read-then-write in process memory.
 */
export class PostgresStore implements Store {
  readonly engine = 'postgres';
  private readonly pool: pg.Pool;
  private readonly options: PostgresStoreOptions;
  private readonly migrations: readonly Migration[];
  private closing: Promise<void> | undefined;
  /** The outbox's read side; the writes below insert each change's events in their own transaction. */
  readonly events: PostgresEventLog;

  constructor(options: PostgresStoreOptions) {
    this.options = options;
    this.migrations = options.migrations ?? POSTGRES_MIGRATIONS;
    const statementTimeout = options.statementTimeoutMs ?? 10_000;
    this.pool = new pg.Pool({
      connectionString: options.url,
      max: options.poolSize ?? 10,
      connectionTimeoutMillis: options.connectionTimeoutMs ?? 5_000,
      statement_timeout: statementTimeout,
      // The server enforces statement_timeout; this catches a server that stopped answering at all.
      query_timeout: statementTimeout + 2_000,
      idle_in_transaction_session_timeout: statementTimeout * 2,
      keepAlive: true,
      application_name: 'fleetgate',
      // timestamptz as text in UTC, for the state reads' direct conversion (isoFromPostgres).
      options: '-c TimeZone=UTC',
    });
    // A pooled idle connection that the server drops emits here; the pool discards it and opens a
    // fresh one on the next checkout, so logging is all that is needed (unhandled, it would crash).
    this.pool.on('error', (err) => {
      options.logger?.warn({ err }, 'postgres: idle connection lost');
    });
    this.events = new PostgresEventLog(
      (text, params, client) => this.q(text, params, client),
      (fn) => this.tx(fn),
    );
  }

  /** A transaction that writes events: wakes this instance's event readers once it committed. */
  private async txEvents<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const out = await this.tx(fn);
    this.events.committed();
    return out;
  }

  /**
   * After a server restart every idle pooled connection is dead, and each fails the next statement
   * sent on it with 57P01/57P02. The server ended the session without running that statement, so
   * it is safe to run again on another connection; anything else (a reset mid-statement may have
   * committed) is reported as is.
   */
  private async retryOnEndedSession<T>(fn: () => Promise<T>): Promise<T> {
    const attempts = (this.options.poolSize ?? 10) + 1;
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        const code = errorCode(err instanceof StoreUnavailableError ? err.cause : err);
        if (attempt >= attempts || !SESSION_ENDED_CODES.has(code)) throw err;
        this.options.logger?.debug({ code, attempt }, 'postgres: retrying on a fresh connection');
      }
    }
  }

  private async q(
    text: string,
    params: unknown[] = [],
    client?: Queryable,
    types?: pg.CustomTypesConfig,
  ): Promise<pg.QueryResult<Row>> {
    const name = params.length > 0 ? statementName(text) : undefined;
    const run = async () => {
      const on = client ?? this.pool;
      try {
        try {
          return await on.query<Row>({ name, text, values: params, types });
        } catch (err) {
          // A newer instance's migration changed a table under a statement this connection
          // prepared ("cached plan must not change result type"): nothing ran, so run it unnamed.
          if (name && errorCode(err) === '0A000') return await on.query<Row>({ text, values: params, types });
          throw err;
        }
      } catch (err) {
        if (isConnectionError(err)) throw new StoreUnavailableError(err);
        throw err;
      }
    };
    // Inside a transaction the whole transaction is retried instead (see tx).
    return client ? run() : this.retryOnEndedSession(run);
  }

  /** Runs fn in one transaction on one pooled connection. */
  private tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    return this.retryOnEndedSession(() => this.txOnce(fn));
  }

  private async txOnce<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw isConnectionError(err) ? new StoreUnavailableError(err) : err;
    }
    let broken = false;
    // A checked-out connection that the server ends (PostgreSQL stopping: 57P01) emits 'error';
    // unheard, it would crash the process. The statement in progress fails on its own.
    const onError = (): void => {
      broken = true;
    };
    client.on('error', onError);
    try {
      await this.q('BEGIN', [], client);
      const out = await fn(client);
      await this.q('COMMIT', [], client);
      return out;
    } catch (err) {
      broken = err instanceof StoreUnavailableError;
      if (!broken) await client.query('ROLLBACK').catch(() => (broken = true));
      throw err;
    } finally {
      client.off('error', onError);
      // `true` destroys the connection instead of returning a dead one to the pool.
      client.release(broken);
    }
  }

  async migrate(): Promise<void> {
    // A dedicated connection without statement limits: a migration may take long, and the other
    // instances wait on the advisory lock until the first one has applied everything.
    const client = new pg.Client({
      connectionString: this.options.url,
      connectionTimeoutMillis: this.options.connectionTimeoutMs ?? 5_000,
      application_name: 'fleetgate-migrate',
    });
    client.on('error', (err) => this.options.logger?.warn({ err }, 'postgres: migration connection lost'));
    try {
      await client.connect();
    } catch (err) {
      throw isConnectionError(err) ? new StoreUnavailableError(err) : err;
    }
    try {
      await this.q('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK], client);
      await this.q(
        `CREATE TABLE IF NOT EXISTS schema_migrations (
           version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
        [],
        client,
      );
      const { rows } = await this.q('SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations', [], client);
      const current = Number(rows[0]?.v ?? 0);
      const known = Math.max(0, ...this.migrations.map((m) => m.version));
      if (current > known) {
        throw new Error(
          `database schema version ${current} is newer than this fleetgate knows (${known}); upgrade fleetgate`,
        );
      }
      for (const m of this.migrations) {
        if (m.version <= current) continue;
        await this.q('BEGIN', [], client);
        try {
          await this.q(m.sql, [], client);
          await this.q('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name], client);
          await this.q('COMMIT', [], client);
        } catch (err) {
          await client.query('ROLLBACK').catch(() => undefined);
          throw err;
        }
        this.options.logger?.info({ version: m.version, name: m.name }, 'applied postgres migration');
      }
    } finally {
      // Closing the session releases the advisory lock even if the unlock cannot be sent.
      await client.end().catch(() => undefined);
    }
  }

  async ping(): Promise<void> {
    await this.q('SELECT 1');
  }

  close(): Promise<void> {
    this.closing ??= this.pool.end();
    return this.closing;
  }

  async createClient(c: ApiClient): Promise<void> {
    try {
      await this.q(
        `INSERT INTO api_clients (client_id, fleet_id, name, secret_hash, scopes, created_at)
         VALUES ($1, $2, $3, $4, $5::jsonb, $6)`,
        [c.client_id, c.fleet_id, c.name, c.secret_hash, json(c.scopes), c.created_at],
      );
    } catch (err) {
      if (errorCode(err) === '23505') throw new StoreConflictError('client_id');
      throw err;
    }
  }

  async getClient(clientId: string): Promise<ApiClient | undefined> {
    const { rows } = await this.q('SELECT * FROM api_clients WHERE client_id = $1', [clientId]);
    return rows[0] && clientFromRow(rows[0]);
  }

  async listClients(fleetId?: string): Promise<ApiClient[]> {
    const { rows } =
      fleetId === undefined
        ? await this.q('SELECT * FROM api_clients ORDER BY created_at, client_id', [])
        : await this.q('SELECT * FROM api_clients WHERE fleet_id = $1 ORDER BY created_at, client_id', [fleetId]);
    return rows.map(clientFromRow);
  }

  async deleteClient(clientId: string): Promise<boolean> {
    const { rowCount } = await this.q('DELETE FROM api_clients WHERE client_id = $1', [clientId]);
    return (rowCount ?? 0) > 0;
  }

  async createUser(u: ConsoleUser): Promise<void> {
    try {
      await this.q(
        `INSERT INTO console_users (user_id, fleet_id, email, role, password_hash, created_at, modified_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)`,
        [u.user_id, u.fleet_id, u.email, u.role, u.password_hash, u.created_at, u.modified_at],
      );
    } catch (err) {
      if (errorCode(err) === '23505') {
        throw new StoreConflictError(constraintOf(err).includes('email') ? 'email' : 'user_id');
      }
      throw err;
    }
  }

  async getUser(userId: string): Promise<ConsoleUser | undefined> {
    const { rows } = await this.q('SELECT * FROM console_users WHERE user_id = $1', [userId]);
    return rows[0] && userFromRow(rows[0]);
  }

  async getUserByEmail(email: string): Promise<ConsoleUser | undefined> {
    const { rows } = await this.q('SELECT * FROM console_users WHERE email = $1', [email]);
    return rows[0] && userFromRow(rows[0]);
  }

  async listUsers(fleetId?: string): Promise<ConsoleUser[]> {
    const { rows } =
      fleetId === undefined
        ? await this.q('SELECT * FROM console_users ORDER BY email', [])
        : await this.q('SELECT * FROM console_users WHERE fleet_id = $1 ORDER BY email', [fleetId]);
    return rows.map(userFromRow);
  }

  async updateUser(
    userId: string,
    patch: Partial<Pick<ConsoleUser, 'role' | 'password_hash'>>,
    modifiedAt: string,
  ): Promise<ConsoleUser | undefined> {
    const { rows } = await this.q(
      `UPDATE console_users SET role = COALESCE($1, role), password_hash = COALESCE($2, password_hash),
         modified_at = $3 WHERE user_id = $4 RETURNING *`,
      [patch.role ?? null, patch.password_hash ?? null, modifiedAt, userId],
    );
    return rows[0] && userFromRow(rows[0]);
  }

  async deleteUser(userId: string): Promise<boolean> {
    const { rowCount } = await this.q('DELETE FROM console_users WHERE user_id = $1', [userId]);
    return (rowCount ?? 0) > 0;
  }

  async createSession(session: ConsoleSession): Promise<void> {
    try {
      await this.q(
        'INSERT INTO console_sessions (session_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)',
        [session.session_hash, session.user_id, session.created_at, session.expires_at],
      );
    } catch (err) {
      if (errorCode(err) === '23503') throw new StoreConflictError('user');
      throw err;
    }
  }

  async getSession(sessionHash: string): Promise<{ session: ConsoleSession; user: ConsoleUser } | undefined> {
    const { rows } = await this.q(
      `SELECT u.*, s.session_hash, s.created_at AS session_created_at, s.expires_at
         FROM console_sessions s JOIN console_users u ON u.user_id = s.user_id WHERE s.session_hash = $1`,
      [sessionHash],
    );
    return rows[0] && { session: sessionFromRow(rows[0]), user: userFromRow(rows[0]) };
  }

  async deleteSession(sessionHash: string): Promise<void> {
    await this.q('DELETE FROM console_sessions WHERE session_hash = $1', [sessionHash]);
  }

  async deleteUserSessions(userId: string): Promise<void> {
    await this.q('DELETE FROM console_sessions WHERE user_id = $1', [userId]);
  }

  async purgeSessions(expiredBefore: string): Promise<number> {
    const { rowCount } = await this.q('DELETE FROM console_sessions WHERE expires_at < $1', [expiredBefore]);
    return rowCount ?? 0;
  }

  async noteSignInFailure(keys: readonly string[], at: string): Promise<SignInFailures[]> {
    const { rows } = await this.q(
      `INSERT INTO sign_in_failures (throttle_key, failures, last_failure_at)
       SELECT k, 1, $2 FROM unnest($1::text[]) AS k
       ON CONFLICT (throttle_key) DO UPDATE
         SET failures = sign_in_failures.failures + 1, last_failure_at = excluded.last_failure_at
       RETURNING *`,
      [keys, at],
    );
    const byKey = new Map(rows.map((r) => [String(r.throttle_key), signInFailuresFromRow(r)]));
    return keys.map((k) => byKey.get(k)!);
  }

  async getSignInFailures(keys: readonly string[]): Promise<SignInFailures[]> {
    const { rows } = await this.q('SELECT * FROM sign_in_failures WHERE throttle_key = ANY($1::text[])', [keys]);
    const byKey = new Map(rows.map((r) => [String(r.throttle_key), signInFailuresFromRow(r)]));
    return keys.flatMap((k) => (byKey.has(k) ? [byKey.get(k)!] : []));
  }

  async clearSignInFailures(keys: readonly string[], staleBefore: string): Promise<void> {
    await this.q('DELETE FROM sign_in_failures WHERE throttle_key = ANY($1::text[]) OR last_failure_at < $2', [
      keys,
      staleBefore,
    ]);
  }

  private async writeTags(c: Queryable, fleetId: string, vehicleId: string, tags: readonly string[]): Promise<void> {
    await this.q('DELETE FROM vehicle_tags WHERE vehicle_id = $1', [vehicleId], c);
    if (tags.length === 0) return;
    await this.q(
      `INSERT INTO vehicle_tags (fleet_id, tag, vehicle_id)
       SELECT $1, t, $2 FROM unnest($3::text[]) AS t ON CONFLICT DO NOTHING`,
      [fleetId, vehicleId, tags],
      c,
    );
  }

  async insertVehicle(v: Vehicle, cause?: ChangeCause): Promise<void> {
    try {
      await this.txEvents(async (c) => {
        await this.q(
          `INSERT INTO vehicles (vehicle_id, fleet_id, telematics_brand, telematics_unit_id, vehicle_model_id,
             unit_password_hash, credentials_id, capabilities, master_data, custom_fields, tags, operation_status,
             setup_status, setup_failure_reason, life_status, life_status_modified_at, version, created_at, modified_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb, $10::jsonb, $11::jsonb, $12, $13, $14, $15, $16,
             $17, $18, $19)`,
          vehicleInsertValues(v, ENCODE),
          c,
        );
        await this.writeTags(c, v.fleet_id, v.vehicle_id, v.tags);
        await this.events.insert(c, [vehicleAddedEvent(v, flowOf(cause))]);
      });
    } catch (err) {
      const code = errorCode(err);
      if (code === '23505' && constraintOf(err) === 'vehicles_telematics_unit_key') {
        throw new StoreConflictError('telematics_unit');
      }
      if (code === '23505') throw new StoreConflictError('vehicle_id');
      if (code === '23503') throw new StoreConflictError('credentials');
      throw err;
    }
  }

  // Reads and writes of the command path, coalesced across concurrent commands (batcher.ts).
  private readonly vehicleReads = new Batcher<string, Vehicle | undefined>(
    async (ids) => {
      const { rows } = await this.q('SELECT * FROM vehicles WHERE vehicle_id = ANY($1::text[])', [ids]);
      const byId = new Map(rows.map((r) => [String(r.vehicle_id), vehicleFromRow(r)]));
      return ids.map((id) => byId.get(id));
    },
    async (id) => {
      const { rows } = await this.q('SELECT * FROM vehicles WHERE vehicle_id = $1', [id]);
      return rows[0] && vehicleFromRow(rows[0]);
    },
  );

  private readonly stateReads = new Batcher<string, VehicleState>(
    async (ids) => {
      const { rows } = await this.q(
        'SELECT vehicle_id, property, ts, value FROM vehicle_state WHERE vehicle_id = ANY($1::text[]) ORDER BY vehicle_id, property',
        [ids],
        undefined,
        STATE_ROW_TYPES,
      );
      const byId = groupByVehicle(rows);
      return ids.map((id) => this.remember(id, stateFromRows(byId.get(id) ?? [])));
    },
    async (id) => {
      const { rows } = await this.q(
        'SELECT property, ts, value FROM vehicle_state WHERE vehicle_id = $1 ORDER BY property',
        [id],
        undefined,
        STATE_ROW_TYPES,
      );
      return this.remember(id, stateFromRows(rows));
    },
  );

  /**
   * Each vehicle's state as this instance last read it, to leave out of a write what cannot
   * change the stored state (docs/performance.md). A unit answers every command with its whole
   * state, and most of it is what fleetgate stored from its last answer: sent anyway, each such
   * property costs PostgreSQL a JSON record and an index lookup only to be dropped. Safe across
   * instances without invalidation: a stored property's timestamp never goes back (newer-or-equal
   * wins, SPEC §3). So a property older than the one this instance read would lose, and one whose
   * timestamp and value equal it is either still stored as read or superseded by a newer one: in
   * every case writing it would change nothing. (One exception, by design: if another writer
   * stored a different value with the very same timestamp since, that value stays, where a write
   * would have replaced it: two reports of one instant that disagree, and either may win.)
   */
  private readonly lastRead = new LruMap<string, VehicleState>(4096);

  private remember(vehicleId: string, state: VehicleState): VehicleState {
    this.lastRead.set(vehicleId, state);
    return state;
  }

  /** `state` (normalized) without the properties that cannot change what is stored (lastRead). */
  private unsent(vehicleId: string, state: VehicleState): VehicleState {
    const read = this.lastRead.get(vehicleId);
    if (read === undefined) return state;
    const out: VehicleState = {};
    for (const [name, v] of Object.entries(state)) {
      const stored = read[name];
      if (stored !== undefined) {
        if (!supersedes(v, stored) || (stored.timestamp === v.timestamp && isDeepStrictEqual(stored.value, v.value)))
          continue;
      }
      out[name] = v;
    }
    return out;
  }

  private readonly commandBegins = new Batcher<CommandRecord, boolean>(
    async (records) => {
      // Rows of one statement that conflict with each other on the single-flight index are
      // skipped like any other conflict (DO NOTHING), so two commands to one vehicle in one
      // batch still give exactly one winner.
      const { rows } = await this.q(
        `INSERT INTO commands (flow_id, fleet_id, client_id, vehicle_id, command, adapter, instance_id, status,
           problem_type, detail, delivery, steps, requested_at, deadline_at, user_id, user_email)
         SELECT r.flow_id, r.fleet_id, r.client_id, r.vehicle_id, r.command, r.adapter, r.instance_id, 'IN_FLIGHT',
           r.problem_type, r.detail, r.delivery, r.steps, r.requested_at, r.deadline_at, r.user_id, r.user_email
         FROM jsonb_to_recordset($1::jsonb) AS r(flow_id text, fleet_id text, client_id text, vehicle_id text,
           command text, adapter text, instance_id text, problem_type text, detail text, delivery text, steps jsonb,
           requested_at timestamptz, deadline_at timestamptz, user_id text, user_email text)
         ON CONFLICT (vehicle_id) WHERE status = 'IN_FLIGHT' DO NOTHING
         RETURNING flow_id`,
        [json(records)],
      );
      const inserted = new Set(rows.map((r) => String(r.flow_id)));
      return records.map((c) => inserted.has(c.flow_id));
    },
    (c) => this.beginCommandOne(c),
  );

  // startCommand: the vehicle read and the begin of the record in one statement. The insert
  // takes the vehicle's brand and requires its fleet, setup and capability, so it only begins a
  // command the service would have begun after reading the vehicle itself. The vehicles are read
  // by primary key first (MATERIALIZED): joined directly, the planner would pick the fleet/setup
  // index and walk every set-up vehicle of the fleet.
  private readonly commandStarts = new Batcher<
    Omit<CommandRecord, 'adapter'>,
    { vehicle: Vehicle | undefined; begun: boolean }
  >(
    async (records) => this.startCommands(records),
    async (record) => {
      try {
        return await this.startOneCommand(record);
      } catch (err) {
        // The vehicle was deleted between the statement's read and its insert.
        if (errorCode(err) === '23503') return { vehicle: undefined, begun: false };
        if (errorCode(err) === '23505') throw new StoreConflictError('flow_id');
        throw err;
      }
    },
  );

  private async startCommands(
    records: Array<Omit<CommandRecord, 'adapter'>>,
  ): Promise<Array<{ vehicle: Vehicle | undefined; begun: boolean }>> {
    const { rows } = await this.q(START_COMMANDS_SQL, [json(records), records.map((r) => r.vehicle_id)]);
    const byFlow = new Map(rows.map((row) => [String(row.start_flow_id), row]));
    return records.map((record) => startedFromRow(byFlow.get(record.flow_id)));
  }

  private async startOneCommand(
    record: Omit<CommandRecord, 'adapter'>,
  ): Promise<{ vehicle: Vehicle | undefined; begun: boolean }> {
    const [flowId, fleetId, clientId, vehicleId, command, , ...rest] = commandInsertValues(
      { ...record, adapter: '' },
      ENCODE,
    );
    const { rows } = await this.q(START_COMMAND_SQL, [flowId, fleetId, clientId, vehicleId, command, ...rest]);
    return startedFromRow(rows[0]);
  }

  private readonly commandCompletions = new Batcher<CompletionItem, VehicleState>(
    async (items) => {
      const states = items.flatMap((i) =>
        Object.entries(i.unsent).map(([property, v]) => ({
          vehicle_id: i.vehicleId,
          property,
          ts: v.timestamp,
          value: v.value,
        })),
      );
      const { rows } = await this.q(
        COMPLETE_COMMANDS_SQL,
        [
          json(items.map((i) => ({ flow_id: i.flowId, ...i.completion }))),
          json(states),
          items.map((i) => i.flowId),
          items.map((i) => i.vehicleId),
          json(items.flatMap((i) => i.candidates)),
        ],
        undefined,
        STATE_ROW_TYPES,
      );
      this.events.committed();
      const byId = groupByVehicle(rows);
      return items.map((i) => this.mergeReport(i, byId.get(i.vehicleId)));
    },
    (i) => this.completeCommandOne(i),
  );

  /**
   * The state a completion or a state report answers with: the report merged over the stored
   * state its statement read (newer-or-equal wins, SPEC §3, as in the write), so no second
   * statement reads it back. The snapshot is the statement's: it holds every write committed
   * before the statement began. A write another instance commits while the statement runs may
   * keep a property of the report from being stored; the answer then has the report's value,
   * which the unit sent, as if the report had come first. `undefined` rows: the vehicle was
   * deleted meanwhile.
   */
  private mergeReport(item: Pick<CompletionItem, 'vehicleId' | 'state'>, rows: Row[] | undefined): VehicleState {
    if (rows === undefined) return {};
    const merged = stateFromRows(rows);
    for (const [name, v] of Object.entries(item.state)) {
      if (supersedes(v, merged[name])) merged[name] = v;
    }
    return this.remember(item.vehicleId, merged);
  }

  async getVehicle(vehicleId: string): Promise<Vehicle | undefined> {
    return this.vehicleReads.submit(vehicleId);
  }

  async startCommand(
    record: Omit<CommandRecord, 'adapter'>,
  ): Promise<{ vehicle: Vehicle | undefined; begun: boolean }> {
    return this.commandStarts.submit(record);
  }

  async findVehicleByUnit(brand: string, unitId: string): Promise<Vehicle | undefined> {
    const { rows } = await this.q('SELECT * FROM vehicles WHERE telematics_brand = $1 AND telematics_unit_id = $2', [
      brand,
      unitId,
    ]);
    return rows[0] && vehicleFromRow(rows[0]);
  }

  async listVehicles(filter: VehicleFilter): Promise<Vehicle[]> {
    const params: unknown[] = [];
    const p = (value: unknown): string => {
      params.push(value);
      return `$${params.length}`;
    };
    const where: string[] = [];
    const [firstTag, ...otherTags] = [...new Set(filter.tags ?? [])];
    let from = 'vehicles v';
    let order = 'v.vehicle_id';
    if (firstTag === undefined) {
      where.push(`v.fleet_id = ${p(filter.fleet_id)}`);
      if (filter.after !== undefined) where.push(`v.vehicle_id > ${p(filter.after)}`);
    } else {
      // Walk the first tag's primary-key range in vehicle_id order: a page costs `limit` lookups.
      from = 'vehicle_tags t JOIN vehicles v ON v.vehicle_id = t.vehicle_id';
      order = 't.vehicle_id';
      where.push(`t.fleet_id = ${p(filter.fleet_id)}`, `t.tag = ${p(firstTag)}`);
      if (filter.after !== undefined) where.push(`t.vehicle_id > ${p(filter.after)}`);
      for (const tag of otherTags) {
        where.push(
          `EXISTS (SELECT 1 FROM vehicle_tags o WHERE o.fleet_id = t.fleet_id AND o.tag = ${p(tag)} AND o.vehicle_id = v.vehicle_id)`,
        );
      }
    }
    if (filter.telematics_brand !== undefined) where.push(`v.telematics_brand = ${p(filter.telematics_brand)}`);
    if (filter.setup_status !== undefined) where.push(`v.setup_status = ${p(filter.setup_status)}`);
    const sql = `SELECT v.* FROM ${from} WHERE ${where.join(' AND ')} ORDER BY ${order} LIMIT ${p(filter.limit)}`;
    const { rows } = await this.q(sql, params);
    return rows.map(vehicleFromRow);
  }

  async updateVehicle(
    vehicleId: string,
    patch: VehiclePatch,
    expectedVersion: number | undefined,
    modifiedAt: string,
    cause?: ChangeCause,
  ): Promise<Vehicle | 'version-mismatch' | undefined> {
    const params: unknown[] = [vehicleId, expectedVersion ?? null, modifiedAt];
    const sets = ['version = version + 1', 'modified_at = $3'];
    for (const key of ['master_data', 'custom_fields', 'tags'] as const) {
      if (patch[key] === undefined) continue;
      params.push(json(patch[key]));
      sets.push(`${key} = $${params.length}::jsonb`);
    }
    if (patch.operation_status !== undefined) {
      params.push(patch.operation_status);
      sets.push(`operation_status = $${params.length}`);
    }
    return this.txEvents(async (c) => {
      const before = await this.lockVehicle(c, vehicleId);
      const { rows } = await this.q(
        `UPDATE vehicles SET ${sets.join(', ')}
          WHERE vehicle_id = $1 AND ($2::integer IS NULL OR version = $2::integer) RETURNING *`,
        params,
        c,
      );
      const r = rows[0];
      if (!r) return (await this.exists(vehicleId, c)) ? 'version-mismatch' : undefined;
      const v = vehicleFromRow(r);
      if (patch.tags !== undefined) await this.writeTags(c, v.fleet_id, v.vehicle_id, v.tags);
      if (before) await this.events.insert(c, vehicleChangedEvent(before, v, flowOf(cause), modifiedAt));
      return v;
    });
  }

  /** The vehicle as it is before a change, locked until the transaction ends. */
  private async lockVehicle(c: Queryable, vehicleId: string): Promise<Vehicle | undefined> {
    const { rows } = await this.q('SELECT * FROM vehicles WHERE vehicle_id = $1 FOR UPDATE', [vehicleId], c);
    return rows[0] && vehicleFromRow(rows[0]);
  }

  private async exists(vehicleId: string, c?: Queryable): Promise<boolean> {
    const { rowCount } = await this.q('SELECT 1 FROM vehicles WHERE vehicle_id = $1', [vehicleId], c);
    return (rowCount ?? 0) > 0;
  }

  async deleteVehicle(
    vehicleId: string,
    expectedVersion?: number,
    cause?: ChangeCause,
  ): Promise<boolean | 'version-mismatch'> {
    // State, commands, tags and idempotency keys go with it through ON DELETE CASCADE, within
    // the DELETE statement; its event in the same transaction.
    this.lastRead.delete(vehicleId);
    const deleted = await this.txEvents(async (c) => {
      const { rows } = await this.q(
        'DELETE FROM vehicles WHERE vehicle_id = $1 AND ($2::integer IS NULL OR version = $2::integer) RETURNING *',
        [vehicleId, expectedVersion ?? null],
        c,
      );
      if (!rows[0]) return false;
      await this.events.insert(c, [
        vehicleRemovedEvent(vehicleFromRow(rows[0]), flowOf(cause), new Date().toISOString()),
      ]);
      return true;
    });
    if (deleted) return true;
    return (await this.exists(vehicleId)) ? 'version-mismatch' : false;
  }

  async setSetupStatus(
    vehicleId: string,
    update: { status: SetupStatus; reason: string | null; capabilities?: Capabilities; at: string },
    onlyFrom?: SetupStatus,
    cause?: ChangeCause,
  ): Promise<boolean> {
    return this.txEvents(async (c) => {
      const before = await this.lockVehicle(c, vehicleId);
      if (!before) return false;
      const { rows } = await this.q(
        `UPDATE vehicles
          SET setup_status = $2, setup_failure_reason = $3, capabilities = COALESCE($4::jsonb, capabilities),
              version = version + 1, modified_at = $5
        WHERE vehicle_id = $1
          AND ($6::text IS NULL OR setup_status = $6::text)
          AND (setup_status IS DISTINCT FROM $2 OR setup_failure_reason IS DISTINCT FROM $3
               OR ($4::jsonb IS NOT NULL AND capabilities IS DISTINCT FROM $4::jsonb))
        RETURNING *`,
        [
          vehicleId,
          update.status,
          update.reason,
          update.capabilities === undefined ? null : json(update.capabilities),
          update.at,
          onlyFrom ?? null,
        ],
        c,
      );
      if (!rows[0]) return false;
      await this.events.insert(c, vehicleChangedEvent(before, vehicleFromRow(rows[0]), flowOf(cause), update.at));
      return true;
    });
  }

  async setLifeStatus(vehicleId: string, status: LifeStatus, at: string, cause?: ChangeCause): Promise<boolean> {
    // Not an operator edit: the version (ETag) stays as it is.
    return this.txEvents(async (c) => {
      const before = await this.lockVehicle(c, vehicleId);
      if (!before || before.life_status === status) return false;
      const { rows } = await this.q(
        'UPDATE vehicles SET life_status = $2, life_status_modified_at = $3 WHERE vehicle_id = $1 RETURNING *',
        [vehicleId, status, at],
        c,
      );
      if (!rows[0]) return false;
      await this.events.insert(c, vehicleChangedEvent(before, vehicleFromRow(rows[0]), flowOf(cause), at));
      return true;
    });
  }

  async countVehicles(): Promise<VehicleCount[]> {
    const { rows } = await this.q(
      `SELECT telematics_brand, setup_status, life_status, COUNT(*)::int AS count FROM vehicles
        GROUP BY telematics_brand, setup_status, life_status`,
      [],
    );
    return rows as unknown as VehicleCount[];
  }

  async listStaleSetups(createdBefore: string, limit: number): Promise<Vehicle[]> {
    const { rows } = await this.q(
      `SELECT * FROM vehicles WHERE setup_status = 'IN_PROGRESS' AND created_at < $1
        ORDER BY created_at, vehicle_id LIMIT $2`,
      [createdBefore, limit],
    );
    return rows.map(vehicleFromRow);
  }

  async createCredentials(c: CredentialsRecord): Promise<void> {
    try {
      await this.q(
        `INSERT INTO credentials (credentials_id, fleet_id, telematics_brand, name, sealed_secret, sealed_state,
           version, created_at, modified_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
        [
          c.credentials_id,
          c.fleet_id,
          c.telematics_brand,
          c.name,
          c.sealed_secret,
          c.sealed_state,
          c.version,
          c.created_at,
          c.modified_at,
        ],
      );
    } catch (err) {
      if (errorCode(err) === '23505') throw new StoreConflictError('credentials_id');
      throw err;
    }
  }

  async getCredentials(credentialsId: string): Promise<CredentialsRecord | undefined> {
    const { rows } = await this.q('SELECT * FROM credentials WHERE credentials_id = $1', [credentialsId]);
    return rows[0] && credentialsFromRow(rows[0]);
  }

  async listCredentials(fleetId: string, limit: number, after?: string): Promise<CredentialsRecord[]> {
    const { rows } = await this.q(
      `SELECT * FROM credentials WHERE fleet_id = $1 AND ($2::text IS NULL OR credentials_id > $2::text)
        ORDER BY credentials_id LIMIT $3`,
      [fleetId, after ?? null, limit],
    );
    return rows.map(credentialsFromRow);
  }

  async deleteCredentials(credentialsId: string): Promise<'deleted' | 'in-use' | 'not-found'> {
    try {
      const { rowCount } = await this.q('DELETE FROM credentials WHERE credentials_id = $1', [credentialsId]);
      return (rowCount ?? 0) > 0 ? 'deleted' : 'not-found';
    } catch (err) {
      // The vehicles.credentials_id foreign key refuses while a vehicle references them.
      if (errorCode(err) === '23503') return 'in-use';
      throw err;
    }
  }

  async updateCredentialsState(
    credentialsId: string,
    expectedVersion: number,
    sealedState: string,
    at: string,
  ): Promise<boolean> {
    const { rowCount } = await this.q(
      `UPDATE credentials SET sealed_state = $3, version = version + 1, modified_at = $4
        WHERE credentials_id = $1 AND version = $2`,
      [credentialsId, expectedVersion, sealedState, at],
    );
    return (rowCount ?? 0) > 0;
  }

  async mergeState(vehicleId: string, reported: VehicleState, cause?: ChangeCause): Promise<VehicleState> {
    const normalized = normalizeState(reported);
    const unsent = this.unsent(vehicleId, normalized);
    // Nothing of the report can change what is stored: the stored state is the answer (and no
    // event: nothing was recorded).
    if (Object.keys(unsent).length === 0) return this.getState(vehicleId);
    const candidates = stateCandidates(vehicleId, flowOf(cause), normalized, new Date().toISOString());
    return this.writeOneState({ vehicleId, state: normalized, unsent, candidates });
  }

  /**
   * One vehicle's state write and the read of its stored state in one statement (upsertState,
   * snapshotState), answered by mergeReport. `before`: data-modifying CTEs that run in the same
   * statement (a completion's UPDATE of its record), with their parameters, which come first.
   */
  private async writeOneState(
    item: Pick<CompletionItem, 'vehicleId' | 'state' | 'unsent' | 'candidates'>,
    before: { ctes: string; params: unknown[] } = { ctes: '', params: [] },
  ): Promise<VehicleState> {
    const vehicle = `$${before.params.length + 1}`;
    const state = `$${before.params.length + 2}`;
    const candidates = `$${before.params.length + 3}`;
    const ids = `ARRAY[${vehicle}::text]`;
    try {
      const { rows } = await this.q(
        `WITH ${before.ctes}merged AS (${upsertState(stateOf(vehicle, state), ids)}),
         ${eventCtes(candidates, ids, before.ctes !== '')}
         none AS (SELECT 1)
         ${snapshotState(ids)}`,
        [...before.params, item.vehicleId, json(item.unsent), json(item.candidates)],
        undefined,
        STATE_ROW_TYPES,
      );
      this.events.committed();
      return this.mergeReport(item, rows.length > 0 ? rows : undefined);
    } catch (err) {
      // The vehicle was deleted meanwhile (a command's record went with it): nothing to keep.
      if (errorCode(err) === '23503') return {};
      throw err;
    }
  }

  async completeCommand(
    flowId: string,
    completion: CommandCompletion,
    vehicleId: string,
    state: VehicleState,
  ): Promise<VehicleState> {
    const normalized = normalizeState(state);
    return this.commandCompletions.submit({
      flowId,
      completion,
      vehicleId,
      state: normalized,
      unsent: this.unsent(vehicleId, normalized),
      candidates: [
        finishedCandidate(flowId, vehicleId, completion),
        ...stateCandidates(vehicleId, flowId, normalized, completion.completed_at),
      ],
    });
  }

  private async completeCommandOne(item: CompletionItem): Promise<VehicleState> {
    // One round trip: the record's UPDATE and the upsert are data-modifying CTEs (both run,
    // whatever the other does), and the statement reads the stored state for mergeReport.
    return this.writeOneState(item, {
      ctes: `finished AS (${FINISH_COMMAND_SQL} RETURNING *), `,
      params: finishCommandValues(item.flowId, item.completion),
    });
  }

  async getState(vehicleId: string): Promise<VehicleState> {
    return this.stateReads.submit(vehicleId);
  }

  async beginCommand(c: CommandRecord): Promise<boolean> {
    return this.commandBegins.submit(c);
  }

  private async beginCommandOne(c: CommandRecord): Promise<boolean> {
    try {
      const { rowCount } = await this.q(
        `INSERT INTO commands (flow_id, fleet_id, client_id, vehicle_id, command, adapter, instance_id, status,
           problem_type, detail, delivery, steps, requested_at, deadline_at, user_id, user_email)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'IN_FLIGHT', $8, $9, $10, $11::jsonb, $12, $13, $14, $15)
         ON CONFLICT (vehicle_id) WHERE status = 'IN_FLIGHT' DO NOTHING`,
        commandInsertValues(c, ENCODE),
      );
      return (rowCount ?? 0) > 0;
    } catch (err) {
      if (errorCode(err) === '23503') throw new StoreConflictError('vehicle');
      if (errorCode(err) === '23505') throw new StoreConflictError('flow_id');
      throw err;
    }
  }

  async finishCommand(flowId: string, c: CommandCompletion): Promise<void> {
    await this.txEvents(async (client) => {
      const { rows } = await this.q(`${FINISH_COMMAND_SQL} RETURNING *`, finishCommandValues(flowId, c), client);
      if (rows[0]) await this.events.insert(client, [commandFinishedEvent(commandFromRow(rows[0]))]);
    });
  }

  async resolveCommand(
    flowId: string,
    resolution: CommandResolution,
    vehicleId: string,
    state: VehicleState,
  ): Promise<void> {
    const normalized = normalizeState(state);
    // Stands in for the completion's `finished` CTE; its candidates hold no CommandFinished.
    const event = commandOutcomeResolvedEvent(
      { flow_id: flowId, fleet_id: '', vehicle_id: vehicleId, command: '', requested_at: '' },
      resolution,
    );
    await this.writeOneState(
      {
        vehicleId,
        state: normalized,
        unsent: normalized,
        candidates: stateCandidates(vehicleId, flowId, normalized, resolution.resolved_at),
      },
      {
        ctes: `finished AS (UPDATE commands SET status = $2, problem_type = $3, detail = $4, delivery = 'DELIVERED'
            WHERE flow_id = $1 AND status = 'OUTCOME_UNKNOWN' RETURNING *),
          resolved AS (INSERT INTO events (id, fleet_id, vehicle_id, type, envelope)
            SELECT $5::jsonb->'metadata'->>'id', f.fleet_id, f.vehicle_id, 'CommandOutcomeResolved',
              jsonb_build_object('metadata', ($5::jsonb->'metadata') || jsonb_build_object('fleet_id', f.fleet_id),
                'data', ($5::jsonb->'data') || jsonb_build_object('command', f.command,
                  'requested_at', to_jsonb(to_char(f.requested_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))))
            FROM finished f), `,
        params: [flowId, resolution.status, resolution.problem_type, resolution.detail, json(event)],
      },
    );
  }

  async getCommand(flowId: string): Promise<CommandRecord | undefined> {
    const { rows } = await this.q('SELECT * FROM commands WHERE flow_id = $1', [flowId]);
    return rows[0] && commandFromRow(rows[0]);
  }

  async listCommands(vehicleId: string, limit: number, before?: string): Promise<CommandRecord[]> {
    const { rows } =
      before === undefined
        ? await this.q(
            'SELECT * FROM commands WHERE vehicle_id = $1 ORDER BY requested_at DESC, flow_id DESC LIMIT $2',
            [vehicleId, limit],
          )
        : // A cursor that is not one of this vehicle's commands yields an empty page.
          await this.q(
            `SELECT c.* FROM commands c JOIN commands k ON k.flow_id = $2 AND k.vehicle_id = $1
              WHERE c.vehicle_id = $1 AND (c.requested_at, c.flow_id) < (k.requested_at, k.flow_id)
              ORDER BY c.requested_at DESC, c.flow_id DESC LIMIT $3`,
            [vehicleId, before, limit],
          );
    return rows.map(commandFromRow);
  }

  async expireCommands(now: string): Promise<number> {
    return this.txEvents(async (c) => {
      const { rows } = await this.q(
        `UPDATE commands
          SET status = 'OUTCOME_UNKNOWN', delivery = 'DELIVERED_OUTCOME_UNKNOWN',
              problem_type = COALESCE(problem_type, $2), detail = COALESCE(detail, $3),
              completed_at = $1,
              -- Capped: a record left in flight for weeks must not overflow the integer column.
              duration_ms = LEAST(2147483647, GREATEST(0, round(extract(epoch FROM ($1::timestamptz - requested_at)) * 1000)))::integer
        WHERE status = 'IN_FLIGHT' AND deadline_at < $1 RETURNING *`,
        [now, EXPIRED_COMMAND.problem_type, EXPIRED_COMMAND.detail],
        c,
      );
      await this.events.insert(
        c,
        rows.map((r) => commandFinishedEvent(commandFromRow(r))),
      );
      return rows.length;
    });
  }

  async claimIdempotencyKey(
    record: Omit<IdempotencyRecord, 'status_code' | 'response'>,
  ): Promise<{ claimed: true } | { claimed: false; existing: IdempotencyRecord }> {
    // ON CONFLICT waits for a concurrent claimer to commit, so the SELECT then sees its row; the
    // loop covers the rare purge between the two statements.
    for (let attempt = 0; attempt < 3; attempt++) {
      const { rowCount } = await this.q(
        `INSERT INTO idempotency_keys (fleet_id, key, vehicle_id, command, flow_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (fleet_id, key) DO NOTHING`,
        [record.fleet_id, record.key, record.vehicle_id, record.command, record.flow_id, record.created_at],
      ).catch((err: unknown) => {
        if (errorCode(err) === '23503') throw new StoreConflictError('vehicle');
        throw err;
      });
      if ((rowCount ?? 0) > 0) return { claimed: true };
      const { rows } = await this.q('SELECT * FROM idempotency_keys WHERE fleet_id = $1 AND key = $2', [
        record.fleet_id,
        record.key,
      ]);
      if (rows[0]) return { claimed: false, existing: idempotencyFromRow(rows[0]) };
    }
    throw new Error(`idempotency key ${record.key} could neither be claimed nor read`);
  }

  async completeIdempotencyKey(fleetId: string, key: string, statusCode: number, response: unknown): Promise<void> {
    await this.q(
      'UPDATE idempotency_keys SET status_code = $3, response = $4::jsonb WHERE fleet_id = $1 AND key = $2',
      [fleetId, key, statusCode, json(response ?? null)],
    );
  }

  async releaseIdempotencyKey(fleetId: string, key: string, flowId: string): Promise<void> {
    await this.q(
      'DELETE FROM idempotency_keys WHERE fleet_id = $1 AND key = $2 AND flow_id = $3 AND status_code IS NULL',
      [fleetId, key, flowId],
    );
  }

  async purgeIdempotencyKeys(createdBefore: string): Promise<number> {
    const { rowCount } = await this.q('DELETE FROM idempotency_keys WHERE created_at < $1', [createdBefore]);
    return rowCount ?? 0;
  }
}

/** State rows, read with STATE_ROW_TYPES: `ts` is PostgreSQL's text for a timestamptz. */
function stateFromRows(rows: Row[]): VehicleState {
  const out: VehicleState = {};
  for (const r of rows) {
    // snapshotState's row for a vehicle without state has no property.
    if (r.property !== null) out[String(r.property)] = { timestamp: isoFromPostgres(String(r.ts)), value: r.value };
  }
  return out;
}

/** Finishes one command's record: parameters from finishCommandValues. */
const FINISH_COMMAND_SQL = `UPDATE commands SET status = $2, problem_type = $3, detail = $4, delivery = $5,
  steps = $6::jsonb, completed_at = $7, duration_ms = $8 WHERE flow_id = $1 AND status IN ${FINISHABLE_STATUSES}`;

function finishCommandValues(flowId: string, c: CommandCompletion): unknown[] {
  return [
    flowId,
    c.status,
    c.problem_type,
    c.detail,
    c.delivery,
    c.steps === null ? null : json(c.steps),
    c.completed_at,
    c.duration_ms,
  ];
}

/** A start statement's row for one record (START_COMMANDS_SQL, START_COMMAND_SQL). */
function startedFromRow(row: Row | undefined): { vehicle: Vehicle | undefined; begun: boolean } {
  return { vehicle: row?.vehicle_id == null ? undefined : vehicleFromRow(row), begun: row?.start_begun === true };
}

function groupByVehicle(rows: Row[]): Map<string, Row[]> {
  const byId = new Map<string, Row[]>();
  for (const r of rows) {
    const id = String(r.vehicle_id);
    const list = byId.get(id);
    if (list) list.push(r);
    else byId.set(id, [r]);
  }
  return byId;
}

/** A command's completion on its way to the batched statement. */
interface CompletionItem {
  flowId: string;
  completion: CommandCompletion;
  vehicleId: string;
  /** The unit's report, normalized: what the answer merges over the stored state. */
  state: VehicleState;
  /** What of it can change the stored state (unsent): what the statement writes. */
  unsent: VehicleState;
  /** The events the statement may write (state-events-sql.ts). */
  candidates: Candidate[];
}

/** The flow id a change's events carry: the request's, or a new one (SPEC §2). */
function flowOf(cause: ChangeCause | undefined): string {
  return cause?.flow_id ?? randomUUID();
}

/**
 * Type parsers for state reads: timestamptz stays text, which isoFromPostgres turns into the ISO
 * form directly, instead of pg building a Date for each row only to format it again (a unit's
 * state has a dozen rows, read after every command).
 */
const STATE_ROW_TYPES = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === pg.types.builtins.TIMESTAMPTZ
      ? (text: string) => text
      : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};
const parseTimestamptz = pg.types.getTypeParser(pg.types.builtins.TIMESTAMPTZ);
/**
 * A timestamptz's text as toISOString would write it (milliseconds, truncated as a Date would).
 * In the pool's sessions (TimeZone UTC) PostgreSQL writes `2026-11-26 16:22:19.123+00`, with
 * 0-6 fraction digits: rebuilt by position, without a regex match or a Date per row. Any
 * other form goes through pg's own parser.
 */
export function isoFromPostgres(text: string): string {
  const n = text.length;
  const fraction = n - 23; // digits between "…:SS." and "+00"
  if (
    text.charCodeAt(10) === 32 && // ' '
    text.endsWith('+00') &&
    text.charCodeAt(4) === 45 && // '-'
    text.charCodeAt(13) === 58 && // ':'
    (n === 22 || (fraction >= 1 && fraction <= 6 && text.charCodeAt(19) === 46)) // '.'
  ) {
    const ms = n === 22 ? '000' : text.slice(20, 20 + Math.min(3, fraction)).padEnd(3, '0');
    return `${text.slice(0, 10)}T${text.slice(11, 19)}.${ms}Z`;
  }
  return iso(parseTimestamptz(text));
}

/** Timestamps go to the database as parsed instants, so a malformed one fails here, not in SQL. */
function normalizeState(state: VehicleState): VehicleState {
  const out: VehicleState = {};
  for (const [name, v] of Object.entries(state)) {
    // Canonical ISO UTC (what the state catalogue passes on) from its cache; anything else parsed.
    let timestamp = parseTimestamp(v.timestamp)?.iso;
    if (timestamp === undefined) {
      const ms = Date.parse(v.timestamp);
      if (!Number.isFinite(ms)) throw new TypeError(`invalid timestamp: ${v.timestamp}`);
      timestamp = new Date(ms).toISOString();
    }
    out[name] = { timestamp, value: v.value ?? null };
  }
  return out;
}

const statementNames = new Map<string, string>();

/**
 * A name per SQL text, so each pooled connection parses and plans a statement once (server-side
 * prepared statements) instead of on every call: PostgreSQL spent 1.25 ms of CPU per command in
 * the bench before. Bounded: listings build their SQL from filters, a few dozen variants.
 */
function statementName(text: string): string {
  let name = statementNames.get(text);
  if (name === undefined) {
    if (statementNames.size >= 1000) statementNames.clear();
    name = `fg_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`;
    statementNames.set(text, name);
  }
  return name;
}
