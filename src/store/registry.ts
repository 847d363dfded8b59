import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Store } from './store.js';

export interface StoreOptions {
  /** postgres:// or postgresql:// selects PostgreSQL; anything else (or nothing) SQLite. */
  databaseUrl?: string;
  /** Where the SQLite file `fleetgate.db` lives (created with mode 0700). */
  dataDir: string;
  logger?: Logger;
  /** PostgreSQL connections per instance (default 10); ignored by SQLite. */
  poolSize?: number;
  /** SQLite's write-ahead log is kept near this size (MB, default 64); ignored by PostgreSQL. */
  sqliteWalLimitMb?: number;
}

interface Engine {
  matches(options: StoreOptions): boolean;
  create(options: StoreOptions): Promise<Store>;
}

/**
 * The store engines, first match wins. Adding an engine is one line here plus its folder; each
 * is imported lazily so a deployment loads only the driver it uses.
 */
const ENGINES: readonly Engine[] = [
  { matches: (o) => /^postgres(ql)?:\/\//i.test(o.databaseUrl ?? ''), create: createPostgres },
  { matches: () => true, create: createSqlite },
];

async function createPostgres(o: StoreOptions): Promise<Store> {
  const { PostgresStore } = await import('./postgres/postgres-store.js');
  return new PostgresStore({ url: o.databaseUrl!, logger: o.logger, poolSize: o.poolSize });
}

async function createSqlite(o: StoreOptions): Promise<Store> {
  const { SqliteStore } = await import('./sqlite/sqlite-store.js');
  mkdirSync(o.dataDir, { recursive: true, mode: 0o700 });
  return new SqliteStore({
    file: path.join(o.dataDir, 'fleetgate.db'),
    logger: o.logger,
    walLimitMb: o.sqliteWalLimitMb,
  });
}

/** Opens the store the options select. Does not migrate: the caller runs `store.migrate()`. */
export async function createStore(options: StoreOptions): Promise<Store> {
  const engine = ENGINES.find((e) => e.matches(options))!;
  return engine.create(options);
}
