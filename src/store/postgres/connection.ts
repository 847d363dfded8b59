import { createHash } from 'node:crypto';
import pg from 'pg';
import type { Logger } from 'pino';
import type { Row } from '../row-mapping.js';
import { StoreUnavailableError } from '../store.js';

export interface PostgresConnectionOptions {
  /** postgres:// or postgresql:// connection URL. */
  url: string;
  /** Connections per instance (default 10). */
  poolSize?: number;
  /** How long to wait for a connection, new or from the pool, before answering 503 (default 5 s). */
  connectionTimeoutMs?: number;
  /** Server-side limit per statement; the client gives up shortly after (default 10 s). */
  statementTimeoutMs?: number;
  logger?: Logger;
}

/** A pooled connection inside a transaction, or a dedicated client. */
export type Queryable = Pick<pg.PoolClient, 'query'>;

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
/**
 * deadlock_detected and serialization_failure: the server rolled the statement (or transaction)
 * back whole, and running it again is what PostgreSQL's documentation asks of the client.
 */
const ROLLED_BACK_CODES = new Set(['40P01', '40001']);
const UNAVAILABLE_MESSAGE =
  /timeout exceeded when trying to connect|connection terminated|connection timeout|query read timeout|not queryable|connection error/i;

/** PostgreSQL's SQLSTATE (or Node's errno code) of a driver error; '' for anything else. */
export function errorCode(err: unknown): string {
  return typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : '';
}

/** The constraint a unique or foreign key violation names; '' when none. */
export function constraintOf(err: unknown): string {
  return typeof err === 'object' && err !== null && 'constraint' in err ? String(err.constraint) : '';
}

/** True for errors that mean "the database cannot be reached", as opposed to a bad query. */
export function isConnectionError(err: unknown): boolean {
  const code = errorCode(err);
  if (UNAVAILABLE_CODES.has(code) || code.startsWith('08')) return true;
  if (err instanceof AggregateError) return err.errors.some(isConnectionError);
  return err instanceof Error && !code && UNAVAILABLE_MESSAGE.test(err.message);
}

/**
 * The pool every part of the store sends its statements through: named (prepared) statements,
 * transactions on one pooled connection, driver errors that mean "unreachable" turned into
 * StoreUnavailableError (503), and a statement (or transaction) the server did not run, because it
 * ended the session or rolled it back as a deadlock victim, run again.
 */
export class PostgresConnection {
  readonly pool: pg.Pool;
  private closing: Promise<void> | undefined;

  constructor(private readonly options: PostgresConnectionOptions) {
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
  }

  /**
   * After a server restart every idle pooled connection is dead, and each fails the next statement
   * sent on it with 57P01/57P02. The server ended the session without running that statement, so
   * it is safe to run again on another connection. A statement or transaction the server chose as
   * a deadlock's victim (40P01) or failed to serialize (40001) was rolled back whole: it runs
   * again too (a state report's and a command completion's statement can lock the same vehicle's
   * rows). Anything else (a reset mid-statement may have committed) is reported as is.
   */
  private async runAgainWhatDidNotRun<T>(fn: () => Promise<T>): Promise<T> {
    const attempts = (this.options.poolSize ?? 10) + 1;
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        const code = errorCode(err instanceof StoreUnavailableError ? err.cause : err);
        if (attempt >= attempts || !(SESSION_ENDED_CODES.has(code) || ROLLED_BACK_CODES.has(code))) throw err;
        this.options.logger?.debug({ code, attempt }, 'postgres: running again what the server did not run');
      }
    }
  }

  /** Runs one statement: on `client` (a transaction's connection) if given, else on the pool. */
  async q(
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
    return client ? run() : this.runAgainWhatDidNotRun(run);
  }

  /** Runs fn in one transaction on one pooled connection. */
  tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    return this.runAgainWhatDidNotRun(() => this.txOnce(fn));
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

  close(): Promise<void> {
    this.closing ??= this.pool.end();
    return this.closing;
  }
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
