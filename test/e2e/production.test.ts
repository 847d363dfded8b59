import { afterAll, beforeAll } from 'vitest';
import { type MosquittoServer, startMosquittoServer } from '../../scripts/lib/mosquitto-server.js';
import { Harness } from '../helpers/harness.js';
import { createTestDatabase } from '../helpers/postgres.js';
import { apiScenarios } from './api.scenarios.js';

// SPEC §7 production topology: the core end-to-end scenarios on PostgreSQL and an external
// Mosquitto (shipped configuration, dynamic security), with units provisioned per vehicle.
let database: { url: string; drop: () => Promise<void> } | undefined;
let broker: MosquittoServer | undefined;

beforeAll(async () => {
  database = await createTestDatabase();
  broker = await startMosquittoServer();
});
afterAll(async () => {
  await broker?.close();
  await database?.drop();
});

apiScenarios('production topology (PostgreSQL + Mosquitto with dynamic security)', (overrides) =>
  Harness.start({
    databaseUrl: database!.url,
    mqttUrl: broker!.url,
    mqttUsername: broker!.adminUsername,
    mqttPassword: broker!.adminPassword,
    ...overrides,
  }),
);
