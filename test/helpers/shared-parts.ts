import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FleetgateProcess } from '../../scripts/lib/fleetgate-process.js';
import { type MosquittoServer, startMosquittoServer } from '../../scripts/lib/mosquitto-server.js';
import { createApiClient } from '../../src/services/auth-service.js';
import { createStore } from '../../src/store/registry.js';
import { createTestDatabase } from './postgres.js';

/** The shared parts of the production topology for multi-instance tests (SPEC §7). */
export interface SharedParts {
  databaseUrl: string;
  broker: MosquittoServer;
  dataDir: string;
  /** Settings every fleetgate process of the test gets (flags without dashes). */
  settings: Record<string, string | number>;
  /** Creates an API client of `fleetId` in the shared database and gets a token from `via`. */
  token(fleetId: string, via: FleetgateProcess, scopes?: string[]): Promise<string>;
  close(): Promise<void>;
}

/** A fresh PostgreSQL database, a Mosquitto with dynamic security, a temp dir and a shared secret key. */
export async function startSharedParts(options: { commandTimeoutMs: number }): Promise<SharedParts> {
  const database = await createTestDatabase();
  const broker = await startMosquittoServer().catch(async (e) => {
    await database.drop();
    throw e;
  });
  const dataDir = mkdtempSync(path.join(tmpdir(), 'fleetgate-mi-'));
  return {
    databaseUrl: database.url,
    broker,
    dataDir,
    settings: {
      'database-url': database.url,
      'mqtt-url': broker.url,
      'mqtt-username': broker.adminUsername,
      'mqtt-password': broker.adminPassword,
      'secret-key': randomBytes(32).toString('base64url'),
      'command-timeout-ms': options.commandTimeoutMs,
      'data-dir': dataDir,
      'log-level': 'warn',
    },
    async token(fleetId, via, scopes = ['vehicles', 'vehicle-commands']) {
      const store = await createStore({ databaseUrl: database.url, dataDir });
      try {
        const client = await createApiClient(store, { fleetId, scopes });
        const basic = Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64');
        const res = await fetch(`${via.url}/auth/oauth/token?grant_type=client_credentials`, {
          method: 'POST',
          headers: { authorization: `Basic ${basic}` },
        });
        return ((await res.json()) as { access_token: string }).access_token;
      } finally {
        await store.close();
      }
    },
    async close() {
      await broker.close();
      await database.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
