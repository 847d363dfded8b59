import pg from 'pg';
import { type Migration, StoreUnavailableError } from '../store.js';
import { isConnectionError, type PostgresConnection, type PostgresConnectionOptions } from './connection.js';

/** Any stable 64-bit number: the advisory lock that serialises migrations across instances. */
const MIGRATION_LOCK = 7_310_455_118_224_911;

/**
 * Applies the migrations (migrations.ts) the database has not recorded yet, each in a
 * transaction of its own, and refuses a database whose schema is newer than this fleetgate knows.
 */
export async function migrate(
  db: PostgresConnection,
  options: PostgresConnectionOptions,
  migrations: readonly Migration[],
): Promise<void> {
  // A dedicated connection without statement limits: a migration may take long, and the other
  // instances wait on the advisory lock until the first one has applied everything.
  const client = new pg.Client({
    connectionString: options.url,
    connectionTimeoutMillis: options.connectionTimeoutMs ?? 5_000,
    application_name: 'fleetgate-migrate',
  });
  client.on('error', (err) => options.logger?.warn({ err }, 'postgres: migration connection lost'));
  try {
    await client.connect();
  } catch (err) {
    throw isConnectionError(err) ? new StoreUnavailableError(err) : err;
  }
  try {
    await db.q('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK], client);
    await db.q(
      `CREATE TABLE IF NOT EXISTS schema_migrations (
         version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
      [],
      client,
    );
    const { rows } = await db.q('SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations', [], client);
    const current = Number(rows[0]?.v ?? 0);
    const known = Math.max(0, ...migrations.map((m) => m.version));
    if (current > known) {
      throw new Error(
        `database schema version ${current} is newer than this fleetgate knows (${known}); upgrade fleetgate`,
      );
    }
    for (const m of migrations) {
      if (m.version <= current) continue;
      await db.q('BEGIN', [], client);
      try {
        await db.q(m.sql, [], client);
        await db.q('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name], client);
        await db.q('COMMIT', [], client);
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
      options.logger?.info({ version: m.version, name: m.name }, 'applied postgres migration');
    }
  } finally {
    // Closing the session releases the advisory lock even if the unlock cannot be sent.
    await client.end().catch(() => undefined);
  }
}
