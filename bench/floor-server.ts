/**
 * The floors' servers: `node --import tsx bench/floor-server.ts '<json>'` with
 * - { mode: 'http' }: floor A, Fastify answering an empty POST /ping;
 * - { mode: 'pipeline', mqttUrl? }: floor C, Fastify POST /units/:unit/command → MQTT command to
 *   the unit → its answer → HTTP 200 with it; no auth, database or state. Without mqttUrl it runs
 *   fleetgate's embedded broker (aedes) in process, as fleetgate does;
 * - { mode: 'broker' }: the embedded broker alone, for floor B;
 * - { mode: 'pipeline', store: { dataDir, databaseUrl? } }: floor D, floor C plus the store calls
 *   every recorded command needs (SPEC §1): POST /vehicles/:vehicle/units/:unit/command begins the
 *   command's record (startCommand: the vehicle read and the single-flight insert), sends, and
 *   completes it with the state the unit answered (completeCommand). No auth, validation, adapter
 *   or state catalogue: what persistence alone costs on top of floor C.
 * Prints {"type":"ready","url":…,"mqttUrl":…,"credentials":…} once listening.
 */
import { randomUUID } from 'node:crypto';
import Fastify from 'fastify';
import type { MqttClient } from 'mqtt';
import { pino } from 'pino';
import { startEmbeddedBroker } from '../src/broker/embedded-broker.js';
import { connectServiceClient } from '../src/broker/mqtt-connection.js';
import type { VehicleState } from '../src/domain/state-catalogue.js';
import { createStore } from '../src/store/registry.js';
import type { Store } from '../src/store/store.js';
import { MqttRequester } from './lib/mqtt-requester.js';

interface FloorSpec {
  mode: 'http' | 'pipeline' | 'broker';
  mqttUrl?: string;
  store?: { dataDir: string; databaseUrl?: string };
}

const spec = JSON.parse(process.argv[2] ?? '{}') as FloorSpec;
const logger = pino({ level: 'warn' });
const out: Record<string, unknown> = { type: 'ready' };

let mqttUrl = spec.mqttUrl;
let credentials: { username: string; password: string } | undefined;
if (spec.mode !== 'http' && !mqttUrl) {
  const broker = await startEmbeddedBroker({
    host: '127.0.0.1',
    port: 0,
    logger,
    // No auth on the floor: every unit may log in (the ACL per unit still applies, as in fleetgate).
    authenticateUnit: async () => true,
  });
  mqttUrl = broker.url;
  credentials = broker.serviceCredentials;
}
out.mqttUrl = mqttUrl;
out.credentials = credentials;

if (spec.mode !== 'broker') {
  const app = Fastify({ logger: false });
  if (spec.mode === 'http') {
    app.post('/ping', async () => ({}));
  } else {
    const client: MqttClient = await connectServiceClient(mqttUrl!, credentials, logger);
    const requester = await MqttRequester.start(client);
    app.post<{ Params: { unit: string } }>('/units/:unit/command', async (request, reply) => {
      const answer = await requester.request(request.params.unit);
      return reply.type('application/json').send(answer);
    });
    if (spec.store) {
      const store: Store = await createStore({ ...spec.store, logger });
      await store.migrate();
      app.post<{ Params: { vehicle: string; unit: string } }>(
        '/vehicles/:vehicle/units/:unit/command',
        async (request, reply) => {
          const started = Date.now();
          const flowId = randomUUID();
          const { begun } = await store.startCommand({
            flow_id: flowId,
            fleet_id: 'bench',
            client_id: 'floor-d',
            user_id: null,
            user_email: null,
            vehicle_id: request.params.vehicle,
            command: 'UNLOCK_CENTRAL_LOCK',
            instance_id: 'floor-d',
            status: 'IN_FLIGHT',
            problem_type: null,
            detail: null,
            delivery: null,
            steps: null,
            requested_at: new Date(started).toISOString(),
            deadline_at: new Date(started + 20_000).toISOString(),
            completed_at: null,
            duration_ms: null,
          });
          if (!begun) return reply.code(409).send({});
          const answer = await requester.request(request.params.unit);
          const reported = (JSON.parse(answer.toString()) as { state?: VehicleState }).state ?? {};
          const state = await store.completeCommand(
            flowId,
            {
              status: 'SUCCEEDED',
              problem_type: null,
              detail: null,
              delivery: null,
              steps: null,
              completed_at: new Date().toISOString(),
              duration_ms: Date.now() - started,
            },
            request.params.vehicle,
            reported,
          );
          return reply.type('application/json').send(state);
        },
      );
    }
  }
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  out.url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
}
process.stdout.write(`${JSON.stringify(out)}\n`);
process.on('SIGTERM', () => process.exit(0));
