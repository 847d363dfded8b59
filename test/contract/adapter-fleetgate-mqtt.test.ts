import { randomBytes } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedBroker, startEmbeddedBroker } from '../../src/broker/embedded-broker.js';
import { connectServiceClient } from '../../src/broker/mqtt-connection.js';
import type { CommandName } from '../../src/domain/commands.js';
import type { Vehicle } from '../../src/domain/vehicle.js';
import { generateSecret } from '../../src/lib/secrets.js';
import { FleetgateUnit } from '../../src/sim/fleetgate-unit.js';
import { FleetgateMqttAdapter } from '../../src/telematics/fleetgate-mqtt/fleetgate-mqtt-adapter.js';
import { fleetgateModel } from '../../src/telematics/fleetgate-mqtt/models.js';
import { encodeCommand, encodeResponse, unitTopic } from '../../src/telematics/fleetgate-mqtt/protocol.js';
import { type StartedAdapter, startAdapter } from '../helpers/adapter-context.js';
import { AdapterEventRecorder, type AdapterHarness, adapterContract, makeVehicle } from './adapter.contract.js';

const logger = pino({ level: 'silent' });

interface FleetgateWorld extends AdapterHarness {
  adapter: FleetgateMqttAdapter;
  broker: EmbeddedBroker;
  mqtt: MqttClient;
  units: Map<string, FleetgateUnit>;
  passwords: Map<string, string>;
  /** Starts another instance's adapter on `mqtt`, sharing this world's store. */
  startAnother(mqtt: MqttClient, recorder: AdapterEventRecorder): Promise<StartedAdapter<FleetgateMqttAdapter>>;
  unitOf(vehicle: Vehicle): FleetgateUnit;
}

let serial = 0;

/** The embedded broker, fleetgate's own client, the adapter and simulated units, all real. */
async function startWorld(): Promise<FleetgateWorld> {
  // Stands in for the store's unit credentials: the broker asks it like it asks the real store.
  const passwords = new Map<string, string>();
  const broker = await startEmbeddedBroker({
    host: '127.0.0.1',
    port: 0,
    logger,
    authenticateUnit: async (username, password) => passwords.get(username) === password,
  });
  const mqtt = await connectServiceClient(broker.url, broker.serviceCredentials, logger);
  const recorder = new AdapterEventRecorder();
  const started = await startAdapter(new FleetgateMqttAdapter(), { mqtt, broker: broker.provisioner, recorder });
  const adapter = started.adapter;
  const startAnother = (client: MqttClient, rec: AdapterEventRecorder) =>
    startAdapter(new FleetgateMqttAdapter(), {
      store: started.store,
      mqtt: client,
      broker: broker.provisioner,
      recorder: rec,
    });
  const units = new Map<string, FleetgateUnit>();
  const unitOf = (vehicle: Vehicle) => {
    const unit = units.get(vehicle.telematics_unit_id);
    if (!unit) throw new Error(`no simulated unit for ${vehicle.telematics_unit_id}`);
    return unit;
  };

  return {
    adapter,
    recorder,
    broker,
    mqtt,
    units,
    passwords,
    startAnother,
    unitOf,
    answerTimeoutMs: 3_000,
    async createVehicle(modelId) {
      const model = fleetgateModel(modelId);
      if (!model) throw new Error(`unknown model ${modelId}`);
      const unitId = `ct-${process.pid}-${++serial}-${randomBytes(3).toString('hex')}`;
      const password = generateSecret();
      const vehicle = makeVehicle(model, unitId);
      passwords.set(unitId, password);
      await adapter.onVehicleAdded(vehicle, { password });
      const unit = new FleetgateUnit({
        mqttUrl: broker.url,
        unitId,
        password,
        model,
        answerDelayMs: 0,
        reportIntervalMs: 60_000,
        logger,
      });
      units.set(unitId, unit);
      await unit.start();
      await recorder.waitForConnection(unitId, true);
      return vehicle;
    },
    async setBehaviour(vehicle, behaviour) {
      const unit = unitOf(vehicle);
      const wasOffline = unit.behaviour === 'offline';
      await unit.setBehaviour(behaviour);
      if (behaviour === 'offline') await recorder.waitForConnection(vehicle.telematics_unit_id, false);
      else if (wasOffline) await recorder.waitForConnection(vehicle.telematics_unit_id, true);
    },
    async triggerStateReport(vehicle) {
      unitOf(vehicle).reportState(true);
    },
    async close() {
      await Promise.all([...units.values()].map((u) => u.stop()));
      await started.close();
      await mqtt.endAsync();
      await broker.close();
    },
  };
}

adapterContract('FLEETGATE (fleetgate/v1 over the embedded broker)', startWorld);

describe('FLEETGATE adapter specifics', () => {
  let w: FleetgateWorld;
  const budget = () => AbortSignal.timeout(3_000);
  const run = (vehicle: Vehicle, command: CommandName, signal = budget(), deadline = new Date(Date.now() + 3_000)) =>
    w.adapter.execute({ vehicle, command, flowId: 'test-flow', deadline, signal });

  beforeAll(async () => {
    w = await startWorld();
  });
  afterAll(async () => {
    await w?.close();
  });

  it('executes combined commands natively in one step', async () => {
    const vehicle = await w.createVehicle('fleetgate-car-v1');
    const seen: string[] = [];
    w.unitOf(vehicle).on('command', (c: { command: string }) => seen.push(c.command));
    const outcome = await run(vehicle, 'UNLOCK_AND_ENABLE_DRIVING');
    expect(outcome.kind === 'succeeded' && outcome.state.central_lock?.value).toBe('UNLOCKED');
    expect(seen).toEqual(['UNLOCK_AND_ENABLE_DRIVING']);
  });

  // SPEC §1: refuses lock while moving or with the ignition on → vehicle/conflicting-state
  it('passes on a natural refusal: locking a moving car', async () => {
    const vehicle = await w.createVehicle('fleetgate-car-v1');
    w.unitOf(vehicle).setMoving(true);
    expect(await run(vehicle, 'LOCK_CENTRAL_LOCK')).toEqual({ kind: 'refused', reason: 'the vehicle is moving' });
    w.unitOf(vehicle).setMoving(false);
    expect(await run(vehicle, 'LOCK_CENTRAL_LOCK')).toMatchObject({ kind: 'succeeded' });
  });

  it("reads a unit's retained status again when it never saw one, then sends the command", async () => {
    const vehicle = await w.createVehicle('fleetgate-car-v1');
    const unitId = vehicle.telematics_unit_id;
    // As if the broker had dropped the unit's `online` on its way to this instance (Mosquitto does
    // for a client that lags behind by more than max_queued_messages).
    (w.adapter as unknown as { online: Map<string, boolean> }).online.delete(unitId);
    expect(w.adapter.isOnline(unitId)).toBe(false);
    expect(await run(vehicle, 'DRAW_ATTENTION')).toMatchObject({ kind: 'succeeded' });
    expect(w.adapter.isOnline(unitId)).toBe(true);
  });

  it('ends a command as no-answer, not delivered, when its budget runs out while the status is read again', async () => {
    const vehicle = await w.createVehicle('fleetgate-car-v1');
    const unitId = vehicle.telematics_unit_id;
    (w.adapter as unknown as { online: Map<string, boolean> }).online.delete(unitId);
    const budget = new AbortController();
    const sent: unknown[] = [];
    w.unitOf(vehicle).on('command', (c: unknown) => sent.push(c));
    const pending = run(vehicle, 'DRAW_ATTENTION', budget.signal);
    budget.abort();
    expect(await pending).toEqual({ kind: 'no-answer', delivered: false });
    expect(sent).toEqual([]);
  });

  // SPEC §1: commands are never queued
  it('sends expires_at = deadline, and the unit drops a command that arrives after it', async () => {
    const vehicle = await w.createVehicle('fleetgate-car-v1');
    const unit = w.unitOf(vehicle);
    const deadline = new Date(Date.now() + 2_500);
    const received = new Promise<{ expires_at: string }>((resolve) => unit.once('command', resolve));
    await run(vehicle, 'DRAW_ATTENTION', budget(), deadline);
    expect((await received).expires_at).toBe(deadline.toISOString());

    const expired = new Promise((resolve) => unit.once('expired', resolve));
    const past = new Date(Date.now() - 1_000);
    const answers: string[] = [];
    const onAnswer = (_c: unknown, status: string) => answers.push(status);
    unit.on('answered', onAnswer);
    await w.mqtt.publishAsync(
      unitTopic(vehicle.telematics_unit_id, 'commands'),
      encodeCommand('late-1', 'UNLOCK_CENTRAL_LOCK', past, past),
      { qos: 1 },
    );
    await expired;
    unit.off('answered', onAnswer);
    expect(answers).toEqual([]);
    expect(unit.stats.expired).toBe(1);
  });

  it('ends a command as no-answer, delivered, when the unit goes offline after accepting it', async () => {
    const vehicle = await w.createVehicle('fleetgate-moped-v1');
    const unit = w.unitOf(vehicle);
    await unit.setBehaviour('accept-only');
    const accepted = new Promise((resolve) => unit.once('command', resolve));
    const started = Date.now();
    const pending = run(vehicle, 'UNLOCK_TOP_CASE', AbortSignal.timeout(10_000));
    await accepted;
    await unit.setBehaviour('offline');
    expect(await pending).toEqual({ kind: 'no-answer', delivered: true });
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('ignores responses for ids it does not know and responses from another unit', async () => {
    const a = await w.createVehicle('fleetgate-kickscooter-v1');
    const b = await w.createVehicle('fleetgate-kickscooter-v1');
    const unitA = w.unitOf(a);
    await unitA.setBehaviour('silent');
    const received = new Promise<{ id: string }>((resolve) => unitA.once('command', resolve));
    const pending = run(a, 'UNLOCK_BATTERY_COMPARTMENT', AbortSignal.timeout(1_000));
    const { id } = await received;
    // Another unit answering with A's correlation id must not complete A's command.
    const forged = encodeResponse({ id, status: 'SUCCEEDED', state: {} });
    await w.mqtt.publishAsync(unitTopic(b.telematics_unit_id, 'responses'), forged, { qos: 1 });
    await w.mqtt.publishAsync(
      unitTopic(a.telematics_unit_id, 'responses'),
      encodeResponse({ id: 'someone-elses', status: 'FAILED', reason: 'x' }),
      { qos: 1 },
    );
    expect(await pending).toEqual({ kind: 'no-answer', delivered: false });
  });

  // SPEC §7: no instance holds state another needs; the retained status tells every instance.
  it('lets a second instance learn unit status from the retained topic and command the unit', async () => {
    const vehicle = await w.createVehicle('fleetgate-car-v1');
    const mqtt2 = await connectServiceClient(w.broker.url, w.broker.serviceCredentials, logger);
    const recorder2 = new AdapterEventRecorder();
    const another = await w.startAnother(mqtt2, recorder2);
    const second = another.adapter;
    try {
      await recorder2.waitForConnection(vehicle.telematics_unit_id, true);
      expect(second.isOnline(vehicle.telematics_unit_id)).toBe(true);
      expect(await run(vehicle, 'UNLOCK_CENTRAL_LOCK')).toMatchObject({ kind: 'succeeded' });
      const outcome = await second.execute({
        vehicle,
        command: 'LOCK_CENTRAL_LOCK',
        flowId: 'f2',
        deadline: new Date(Date.now() + 3_000),
        signal: budget(),
      });
      expect(outcome.kind === 'succeeded' && outcome.state.central_lock?.value).toBe('LOCKED');
    } finally {
      await another.close();
      await mqtt2.endAsync();
    }
  });

  it('on removal, disconnects the unit, refuses it and clears its retained status', async () => {
    const vehicle = await w.createVehicle('fleetgate-car-v1');
    const unitId = vehicle.telematics_unit_id;
    w.passwords.delete(unitId); // the store forgets the vehicle first
    await w.adapter.onVehicleRemoved(vehicle);
    expect(w.adapter.isOnline(unitId)).toBe(false);
    expect(await run(vehicle, 'DRAW_ATTENTION')).toMatchObject({ kind: 'not-connected' });

    // A fresh subscriber sees no retained status for the removed unit.
    const probe = await connectServiceClient(w.broker.url, w.broker.serviceCredentials, logger);
    try {
      const statuses: string[] = [];
      probe.on('message', (topic, payload) => {
        if (topic === unitTopic(unitId, 'status')) statuses.push(payload.toString());
      });
      const marked = new Promise<void>((resolve) =>
        probe.on('message', (_t, payload) => payload.toString() === 'marker' && resolve()),
      );
      await probe.subscribeAsync(unitTopic(unitId, 'status'), { qos: 1 });
      // A retained status would be sent on subscribe, ahead of this later live message.
      await probe.publishAsync(unitTopic(unitId, 'status'), 'marker', { qos: 1 });
      await marked;
      expect(statuses).toEqual(['marker']);
    } finally {
      await probe.endAsync();
    }
  });

  it('rejects a unit id that cannot be an MQTT topic level', async () => {
    const model = fleetgateModel('fleetgate-car-v1')!;
    await expect(w.adapter.onVehicleAdded(makeVehicle(model, 'a/b'), { password: 'x' })).rejects.toThrow(/topics/);
    await expect(w.adapter.onVehicleAdded(makeVehicle(model, 'ok-id'), {})).rejects.toThrow(/password/);
  });
});
