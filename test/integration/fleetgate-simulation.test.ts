import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedBroker, startEmbeddedBroker } from '../../src/broker/embedded-broker.js';
import { connectServiceClient } from '../../src/broker/mqtt-connection.js';
import { runSimulation } from '../../src/sim/run-simulation.js';
import { FleetgateMqttAdapter } from '../../src/telematics/fleetgate-mqtt/fleetgate-mqtt-adapter.js';
import { fleetgateModel } from '../../src/telematics/fleetgate-mqtt/models.js';
import { AdapterEventRecorder, makeVehicle } from '../contract/adapter.contract.js';
import { startAdapter } from '../helpers/adapter-context.js';

const logger = pino({ level: 'silent' });

describe('runSimulation (fleetgate simulate)', () => {
  const passwords = new Map([
    ['sim-car', 'pw-car'],
    ['sim-moped', 'pw-moped'],
    ['sim-scooter', 'pw-scooter'],
  ]);
  let broker: EmbeddedBroker;
  let adapter: FleetgateMqttAdapter;
  let recorder: AdapterEventRecorder;
  let stopService: () => Promise<void>;

  beforeAll(async () => {
    broker = await startEmbeddedBroker({
      host: '127.0.0.1',
      port: 0,
      logger,
      authenticateUnit: async (u, p) => passwords.get(u) === p,
    });
    const mqtt = await connectServiceClient(broker.url, broker.serviceCredentials, logger);
    recorder = new AdapterEventRecorder();
    const started = await startAdapter(new FleetgateMqttAdapter(), { mqtt, broker: broker.provisioner, recorder });
    adapter = started.adapter;
    stopService = async () => {
      await started.close();
      await mqtt.endAsync();
    };
  });
  afterAll(async () => {
    await stopService?.();
    await broker?.close();
  });

  it('runs units that answer commands with a realistic delay, then stops them and sums up', async () => {
    let output = '';
    const out = new Writable({
      write(chunk, _enc, done) {
        output += chunk.toString();
        done();
      },
    });
    const stop = new AbortController();
    const summary = runSimulation({
      mqttUrl: broker.url,
      units: [
        { unitId: 'sim-car', password: 'pw-car', model: 'fleetgate-car-v1' },
        { unitId: 'sim-moped', password: 'pw-moped', model: 'fleetgate-moped-v1' },
        { unitId: 'sim-scooter', password: 'pw-scooter', model: 'fleetgate-kickscooter-v1' },
        { unitId: 'sim-intruder', password: 'guess', model: 'fleetgate-car-v1' },
      ],
      out,
      signal: stop.signal,
      logger,
    });
    for (const id of ['sim-car', 'sim-moped', 'sim-scooter']) await recorder.waitForConnection(id, true);

    const car = makeVehicle(fleetgateModel('fleetgate-car-v1')!, 'sim-car');
    const started = Date.now();
    const outcome = await adapter.execute({
      vehicle: car,
      command: 'UNLOCK_AND_ENABLE_DRIVING',
      flowId: 'sim-flow',
      deadline: new Date(Date.now() + 5_000),
      signal: AbortSignal.timeout(5_000),
    });
    const took = Date.now() - started;
    expect(outcome.kind === 'succeeded' && outcome.state.driving_enabled?.value).toBe(true);
    expect(took).toBeGreaterThanOrEqual(250); // the default 300–800 ms answer delay, with timer slack

    stop.abort();
    const result = await summary;
    expect(result).toMatchObject({ units: 4, connected: 3, commands: 1, succeeded: 1 });
    expect(result.refusedLogins.map((r) => r.unitId)).toEqual(['sim-intruder']);
    expect(output).toMatch(/simulating 4 unit\(s\)/);
    expect(output).toMatch(/summary: 3\/4 units connected, 1 commands \(1 succeeded/);
    // Stopping is a clean shutdown: each unit announced offline.
    for (const id of ['sim-car', 'sim-moped', 'sim-scooter']) await recorder.waitForConnection(id, false);
  });
});
