import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { MqttClient } from 'mqtt';
import { pino } from 'pino';
import { type EmbeddedBroker, startEmbeddedBroker } from '../../src/broker/embedded-broker.js';
import { connectServiceClient } from '../../src/broker/mqtt-connection.js';
import { loadConfig } from '../../src/config.js';
import type { Vehicle } from '../../src/domain/vehicle.js';
import { SecretBox } from '../../src/lib/secrets.js';
import { TeltonikaUnit } from '../../src/sim/teltonika/teltonika-unit.js';
import { createStore } from '../../src/store/registry.js';
import type { Store } from '../../src/store/store.js';
import type { AdapterContext } from '../../src/telematics/adapter.js';
import { teltonikaModel } from '../../src/telematics/teltonika/models.js';
import { TeltonikaAdapter, type TeltonikaAdapterOptions } from '../../src/telematics/teltonika/teltonika-adapter.js';
import { AdapterEventRecorder, makeVehicle } from '../contract/adapter.contract.js';

/**
 * A real Teltonika world for tests: the embedded MQTT broker, a temp-dir SQLite store, one or
 * more fleetgate instances' Teltonika adapters (port 0) and simulated units over real TCP.
 */

export const logger = pino({ level: 'silent' });

/** Short limits so hostile-input tests finish in milliseconds, not the production seconds. */
export const TEST_ADAPTER_OPTIONS: TeltonikaAdapterOptions = {
  host: '127.0.0.1',
  handshakeTimeoutMs: 300,
  frameTimeoutMs: 300,
  idleTimeoutMs: 10_000,
  routeAcceptTimeoutMs: 300,
  maxUnauthenticated: 64,
};

export interface Instance {
  adapter: TeltonikaAdapter;
  recorder: AdapterEventRecorder;
  mqtt: MqttClient;
  instanceId: string;
}

export interface TeltonikaWorld {
  broker: EmbeddedBroker;
  store: Store;
  instances: Instance[];
  units: Map<string, TeltonikaUnit>;
  /** Adds a fleetgate instance sharing the broker and the store. */
  addInstance(options?: TeltonikaAdapterOptions): Promise<Instance>;
  /** Stores a vehicle of the model with a fresh IMEI (does not connect a unit). */
  addVehicle(modelId: string): Promise<Vehicle>;
  /** A simulated unit for the vehicle, connected to `instance` (default the first). */
  connectUnit(vehicle: Vehicle, instance?: Instance): Promise<TeltonikaUnit>;
  close(): Promise<void>;
}

let serial = 0;

/** A unique 15-digit IMEI per test process and call. */
export function newImei(): string {
  serial++;
  return `35${String(process.pid % 100000).padStart(5, '0')}${String(serial).padStart(8, '0')}`;
}

export async function startTeltonikaWorld(): Promise<TeltonikaWorld> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'fleetgate-teltonika-'));
  const store = await createStore({ dataDir, logger });
  await store.migrate();
  const broker = await startEmbeddedBroker({
    host: '127.0.0.1',
    port: 0,
    logger,
    authenticateUnit: async () => false,
  });
  const instances: Instance[] = [];
  const units = new Map<string, TeltonikaUnit>();

  const world: TeltonikaWorld = {
    broker,
    store,
    instances,
    units,
    async addInstance(options = TEST_ADAPTER_OPTIONS) {
      const instanceId = `it-${instances.length}-${randomBytes(3).toString('hex')}`;
      const mqtt = await connectServiceClient(broker.url, broker.serviceCredentials, logger);
      const recorder = new AdapterEventRecorder();
      const config = loadConfig({ teltonikaPort: 0, instanceId, host: '127.0.0.1' }, {});
      const ctx: AdapterContext = {
        logger,
        mqtt,
        broker: broker.provisioner,
        onStateReport: recorder.onStateReport,
        onConnectionChange: async (unitId, online, at) => {
          // Like the vehicle service: life_status follows the unit, so other instances route to it.
          const vehicle = await store.findVehicleByUnit('TELTONIKA', unitId);
          if (vehicle) await store.setLifeStatus(vehicle.vehicle_id, online ? 'ONLINE' : 'OFFLINE', at.toISOString());
          await recorder.onConnectionChange(unitId, online, at);
        },
        setSetupResult: async () => undefined,
        store,
        secrets: new SecretBox(randomBytes(32)),
        config,
      };
      const adapter = new TeltonikaAdapter(options);
      await adapter.start(ctx);
      const instance = { adapter, recorder, mqtt, instanceId };
      instances.push(instance);
      return instance;
    },
    async addVehicle(modelId) {
      const model = teltonikaModel(modelId);
      if (!model) throw new Error(`unknown model ${modelId}`);
      const imei = newImei();
      const vehicle = makeVehicle(model, imei, { life_status: 'OFFLINE' });
      await store.insertVehicle(vehicle);
      for (const i of instances) await i.adapter.onVehicleAdded(vehicle);
      return vehicle;
    },
    async connectUnit(vehicle, instance = instances[0]) {
      if (!instance) throw new Error('no instance');
      const unit = new TeltonikaUnit({
        host: '127.0.0.1',
        port: instance.adapter.port,
        imei: vehicle.telematics_unit_id,
        model: vehicle.vehicle_model_id,
        reportIntervalMs: 0,
        answerDelayMs: 0,
        reconnect: false,
      });
      units.set(vehicle.telematics_unit_id, unit);
      const accepted = await unit.connect();
      if (!accepted) throw new Error(`unit ${vehicle.telematics_unit_id} was rejected`);
      await instance.recorder.waitForConnection(vehicle.telematics_unit_id, true);
      return unit;
    },
    async close() {
      await Promise.all([...units.values()].map((u) => u.stop()));
      for (const i of instances) {
        await i.adapter.stop();
        await i.mqtt.endAsync();
      }
      await broker.close();
      await store.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  await world.addInstance();
  return world;
}

/** The vehicle as the store has it now (fresh life_status). */
export async function reload(store: Store, vehicle: Vehicle): Promise<Vehicle> {
  const fresh = await store.getVehicle(vehicle.vehicle_id);
  if (!fresh) throw new Error(`vehicle ${vehicle.vehicle_id} vanished`);
  return fresh;
}
