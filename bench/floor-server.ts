/**
 * The floors' servers: `node --import tsx bench/floor-server.ts '<json>'` with
 * - { mode: 'http' }: floor A, Fastify answering an empty POST /ping;
 * - { mode: 'pipeline', mqttUrl? }: floor C, Fastify POST /units/:unit/command → MQTT command to
 *   the unit → its answer → HTTP 200 with it; no auth, database or state. Without mqttUrl it runs
 *   fleetgate's embedded broker (aedes) in process, as fleetgate does;
 * - { mode: 'broker' }: the embedded broker alone, for floor B.
 * Prints {"type":"ready","url":…,"mqttUrl":…,"credentials":…} once listening.
 */
import Fastify from 'fastify';
import type { MqttClient } from 'mqtt';
import { pino } from 'pino';
import { startEmbeddedBroker } from '../src/broker/embedded-broker.js';
import { connectServiceClient } from '../src/broker/mqtt-connection.js';
import { MqttRequester } from './lib/mqtt-requester.js';

interface FloorSpec {
  mode: 'http' | 'pipeline' | 'broker';
  mqttUrl?: string;
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
  }
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  out.url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
}
process.stdout.write(`${JSON.stringify(out)}\n`);
process.on('SIGTERM', () => process.exit(0));
