import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { MqttClient } from 'mqtt';
import { pino } from 'pino';
import { loadConfig } from '../../src/config.js';
import { SecretBox } from '../../src/lib/secrets.js';
import { createAdapterContext } from '../../src/services/adapter-context.js';
import { CredentialsService } from '../../src/services/credentials-service.js';
import { EventBus } from '../../src/services/event-bus.js';
import { VehicleService } from '../../src/services/vehicle-service.js';
import { createStore } from '../../src/store/registry.js';
import type { Store } from '../../src/store/store.js';
import type { AdapterContext, BrokerProvisioner, TelematicsAdapter } from '../../src/telematics/adapter.js';
import type { AdapterEventRecorder } from '../contract/adapter.contract.js';

const silent = pino({ level: 'silent' });

/** The parts an adapter's context is made of, as the composition root (src/app.ts) makes them. */
export interface AdapterTestOptions {
  /** Default: a fresh SQLite store in a temp dir, closed by `close()`. */
  store?: Store;
  /** Shared by instances that must open each other's credentials. Default: a fresh key. */
  secrets?: SecretBox;
  /** fleetgate's own MQTT client; adapters that do not use MQTT may go without. */
  mqtt?: MqttClient;
  sharedBroker?: boolean;
  broker?: BrokerProvisioner;
  instanceId?: string;
  listenHost?: string;
  /** Flags as `loadConfig` takes them (e.g. `{ teltonikaPort: 0 }`); the adapter gets its own part. */
  flags?: Record<string, string | number>;
  /** Also receives every state report and connection change, after the services handled it. */
  recorder?: Pick<AdapterEventRecorder, 'onStateReport' | 'onConnectionChange'>;
  logger?: AdapterContext['logger'];
}

export interface StartedAdapter<A extends TelematicsAdapter> {
  adapter: A;
  ctx: AdapterContext;
  store: Store;
  vehicles: VehicleService;
  credentials: CredentialsService;
  /** Stops the adapter, and closes the store when the helper made it. */
  close(): Promise<void>;
}

const NO_BROKER: BrokerProvisioner = { provisionUnit: async () => {}, removeUnit: async () => {} };

/**
 * Starts `adapter` with a context built exactly as the composition root builds it
 * (services/adapter-context.ts over a real VehicleService and CredentialsService on a real
 * store), then resumes its pending setups as createApp does. No hand-made stand-ins.
 */
export async function startAdapter<A extends TelematicsAdapter>(
  adapter: A,
  options: AdapterTestOptions = {},
): Promise<StartedAdapter<A>> {
  let dataDir: string | undefined;
  let store = options.store;
  if (!store) {
    dataDir = mkdtempSync(path.join(tmpdir(), 'fleetgate-adapter-'));
    store = await createStore({ dataDir, logger: silent });
    await store.migrate();
  }
  const logger = options.logger ?? silent;
  const adapters = new Map<string, TelematicsAdapter>([[adapter.brand, adapter]]);
  const vehicles = new VehicleService(store, adapters, new EventBus(), logger, randomBytes(32));
  const credentials = new CredentialsService(store, options.secrets ?? new SecretBox(randomBytes(32)), adapters);
  const config = loadConfig({ ...options.flags, instanceId: options.instanceId }, {});
  const ctx = createAdapterContext(adapter, config.adapters[adapter.brand] ?? {}, {
    logger,
    instanceId: config.instanceId,
    listenHost: options.listenHost ?? '127.0.0.1',
    mqtt: options.mqtt ?? (undefined as unknown as MqttClient),
    sharedBroker: options.sharedBroker ?? false,
    broker: options.broker ?? NO_BROKER,
    vehicles,
    credentials,
  });
  const recorder = options.recorder;
  if (recorder) {
    const { state, connection } = ctx.sink;
    ctx.sink.state = async (unitId, raw) => {
      await state(unitId, raw);
      await recorder.onStateReport(unitId, raw);
    };
    ctx.sink.connection = async (unitId, online, at) => {
      await connection(unitId, online, at);
      await recorder.onConnectionChange(unitId, online, at);
    };
  }
  await adapter.start(ctx);
  await vehicles.resumeSetups(adapter);
  const ownStore = dataDir !== undefined ? store : undefined;
  return {
    adapter,
    ctx,
    store,
    vehicles,
    credentials,
    async close() {
      await adapter.stop();
      if (ownStore) {
        await ownStore.close();
        rmSync(dataDir!, { recursive: true, force: true });
      }
    },
  };
}
