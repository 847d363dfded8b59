import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { MqttClient } from 'mqtt';
import { pino } from 'pino';
import { type EmbeddedBroker, startEmbeddedBroker } from '../../src/broker/embedded-broker.js';
import { connectServiceClient } from '../../src/broker/mqtt-connection.js';
import type { Vehicle } from '../../src/domain/vehicle.js';
import type { VehicleService } from '../../src/services/vehicle-service.js';
import { TeltonikaUnit } from '../../src/sim/teltonika/teltonika-unit.js';
import { createStore } from '../../src/store/registry.js';
import type { Store } from '../../src/store/store.js';
import { teltonikaModel } from '../../src/telematics/teltonika/models.js';
import { TeltonikaAdapter, type TeltonikaAdapterOptions } from '../../src/telematics/teltonika/teltonika-adapter.js';
import { AdapterEventRecorder, makeVehicle } from '../contract/adapter.contract.js';
import { startAdapter } from './adapter-context.js';

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
  /** The instance's vehicle service (its unit cache is dropped when a vehicle changes). */
  vehicles: VehicleService;
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
  /** Stores the vehicle and tells every instance, as VehicleService.add does. */
  insertVehicle(vehicle: Vehicle): Promise<void>;
  /** Deletes the vehicle and tells every instance, as VehicleService.remove does. */
  removeVehicle(vehicle: Vehicle): Promise<void>;
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
      const started = await startAdapter(new TeltonikaAdapter(options), {
        store,
        mqtt,
        broker: broker.provisioner,
        instanceId,
        flags: { teltonikaPort: 0 },
        recorder,
      });
      const adapter = started.adapter;
      const vehicles = started.vehicles;
      const instance = { adapter, recorder, mqtt, instanceId, vehicles };
      instances.push(instance);
      return instance;
    },
    async addVehicle(modelId) {
      const model = teltonikaModel(modelId);
      if (!model) throw new Error(`unknown model ${modelId}`);
      const imei = newImei();
      const vehicle = makeVehicle(model, imei, { life_status: 'OFFLINE' });
      await world.insertVehicle(vehicle);
      return vehicle;
    },
    async insertVehicle(vehicle) {
      await store.insertVehicle(vehicle);
      for (const i of instances) {
        i.vehicles.units.forget(vehicle.telematics_brand, vehicle.telematics_unit_id);
        await i.adapter.onVehicleAdded(vehicle);
      }
    },
    async removeVehicle(vehicle) {
      await store.deleteVehicle(vehicle.vehicle_id);
      for (const i of instances) {
        i.vehicles.units.forget(vehicle.telematics_brand, vehicle.telematics_unit_id);
        await i.adapter.onVehicleRemoved(vehicle);
      }
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
