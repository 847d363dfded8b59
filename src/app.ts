import type { MqttClient } from 'mqtt';
import { type Logger, pino } from 'pino';
import { Metrics } from './api/metrics.js';
import { type Api, buildServer, type ReadinessCheck, stopAccepting } from './api/server.js';
import { type EmbeddedBroker, startEmbeddedBroker } from './broker/embedded-broker.js';
import { MosquittoDynsecProvisioner } from './broker/mosquitto-dynsec.js';
import { connectServiceClient } from './broker/mqtt-connection.js';
import type { Config } from './config.js';
import { redact } from './config.js';
import { loadOrCreateKeyFile } from './lib/key-file.js';
import { listenUrl, listenWithFallback } from './lib/listen.js';
import { deriveKey, SecretBox } from './lib/secrets.js';
import { AuthService } from './services/auth-service.js';
import { CommandService } from './services/command-service.js';
import { CompletionWriter } from './services/completion-writer.js';
import { CredentialsService } from './services/credentials-service.js';
import { EventBus } from './services/event-bus.js';
import { UserService } from './services/user-service.js';
import { VehicleService } from './services/vehicle-service.js';
import { createStore } from './store/registry.js';
import type { Store } from './store/store.js';
import type { AdapterContext, BrokerProvisioner, TelematicsAdapter } from './telematics/adapter.js';
import { createAdapters } from './telematics/registry.js';

export interface App {
  config: Readonly<Config>;
  logger: Logger;
  store: Store;
  api: Api;
  /** The HTTP base URL this instance listens on (loopback form when bound to every address). */
  url: string;
  /** The broker units connect to: the embedded one's URL, or the external one. */
  mqttUrl: string;
  adapters: ReadonlyMap<string, TelematicsAdapter>;
  auth: AuthService;
  vehicles: VehicleService;
  commands: CommandService;
  users: UserService;
  events: EventBus;
  /** Graceful stop: refuse new commands, finish running ones, then close everything. */
  stop(): Promise<void>;
}

const MAINTENANCE_INTERVAL_MS = 5_000;
const IDEMPOTENCY_RETENTION_MS = 24 * 3600_000;
/** How long a stopping instance keeps trying to record outcomes kept through a database outage. */
const COMPLETION_FLUSH_MS = 10_000;
/** How long a stopping instance waits for open HTTP connections to end by themselves. */
const CONNECTION_LINGER_MS = 1_000;

/** A no-op provisioner: the embedded broker authenticates units against the store itself. */
const STORE_BACKED_PROVISIONER: BrokerProvisioner = {
  provisionUnit: async () => {},
  removeUnit: async () => {},
};

/**
 * The composition root: the only place that names concrete engines, brokers and adapters.
 * Everything it starts is stopped again by `stop()`, in reverse order.
 */
export async function createApp(config: Readonly<Config>, options: { logger?: Logger } = {}): Promise<App> {
  const logger = options.logger ?? pino({ level: config.logLevel, base: { instance: config.instanceId } });
  const cleanups: Array<() => Promise<void>> = [];
  const cleanup = async () => {
    for (const fn of cleanups.reverse()) {
      await fn().catch((err: unknown) => logger.error({ err }, 'error while stopping'));
    }
  };

  try {
    const store = await createStore({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, logger });
    cleanups.push(() => store.close());
    await store.migrate();

    const masterSecret = config.secretKey ?? loadOrCreateKeyFile(config.dataDir);
    const secrets = new SecretBox(deriveKey(masterSecret, 'secret-box'));
    const events = new EventBus();
    const adapters = createAdapters();
    const vehicles = new VehicleService(store, adapters, events, logger, deriveKey(masterSecret, 'unit-password'));
    const completions = new CompletionWriter(store, logger);
    const commands = new CommandService(store, vehicles, events, {
      timeoutMs: config.commandTimeoutMs,
      instanceId: config.instanceId,
      completions,
    });
    const auth = new AuthService(store, deriveKey(masterSecret, 'jwt-hs256'), config.tokenTtlSeconds);
    const credentials = new CredentialsService(store, secrets, adapters);
    const users = new UserService(store, { sessionTtlMinutes: config.consoleSessionMinutes });

    let broker: EmbeddedBroker | undefined;
    let mqttUrl: string;
    let provisioner: BrokerProvisioner;
    let mqtt: MqttClient;
    if (config.mqttUrl) {
      mqttUrl = config.mqttUrl;
      const creds = config.mqttUsername ? { username: config.mqttUsername, password: config.mqttPassword! } : undefined;
      mqtt = await connectServiceClient(config.mqttUrl, creds, logger);
      if (config.mqttProvisioning === 'mosquitto-dynsec') {
        const client = mqtt;
        // SPEC §5 on the external broker: each unit's account and topic ACL, made as vehicles come and go.
        const dynsec = await MosquittoDynsecProvisioner.start(client, { logger }).catch(async (e: unknown) => {
          await client.endAsync(true).catch(() => undefined);
          throw e;
        });
        cleanups.push(async () => dynsec.close());
        provisioner = dynsec;
      } else {
        // `none`: the operator's broker authenticates units itself (docs/deploy.md, EMQX).
        provisioner = STORE_BACKED_PROVISIONER;
      }
    } else {
      broker = await listenWithFallback(
        {
          name: 'embedded MQTT broker',
          setting: '--mqtt-port / FLEETGATE_MQTT_PORT',
          port: config.mqttPort,
          isDefault: config.defaulted.includes('mqttPort'),
          onFallback: (port) =>
            logger.warn(
              { port, wanted: config.mqttPort },
              `MQTT port ${config.mqttPort} is taken; the embedded broker listens on ${port}`,
            ),
        },
        (port) =>
          startEmbeddedBroker({
            host: config.mqttHost,
            port,
            logger,
            authenticateUnit: (username, password) => vehicles.authenticateUnit('FLEETGATE', username, password),
          }),
      );
      const started = broker;
      cleanups.push(() => started.close());
      mqttUrl = broker.url;
      provisioner = broker.provisioner;
      mqtt = await connectServiceClient(broker.url, broker.serviceCredentials, logger);
    }
    cleanups.push(() => new Promise<void>((resolve) => mqtt.end(false, {}, () => resolve())));

    for (const adapter of adapters.values()) {
      const brand = adapter.brand;
      const ctx: AdapterContext = {
        logger: logger.child({ adapter: brand }),
        mqtt,
        broker: provisioner,
        store,
        secrets,
        config,
        onStateReport: async (unitId, state) => {
          await vehicles.onStateReport(brand, unitId, state);
        },
        onConnectionChange: (unitId, online, at) => vehicles.onConnectionChange(brand, unitId, online, at),
        setSetupResult: (vehicleId, result, force) => vehicles.setSetupResult(vehicleId, result, force),
      };
      await adapter.start(ctx);
      cleanups.push(() => adapter.stop());
    }

    const readiness: ReadinessCheck[] = [
      {
        // SPEC §7: from the first stop signal on, so a load balancer stops sending requests here.
        name: 'instance',
        check: async () => {
          if (commands.isDraining) throw new Error('shutting down: draining running commands');
        },
      },
      { name: 'database', check: () => store.ping() },
      {
        name: 'broker',
        check: async () => {
          if (!mqtt.connected) throw new Error(`not connected to ${redact(mqttUrl)}`);
        },
      },
    ];
    const metrics = new Metrics(events, () => commands.running);
    const api = await buildServer({
      config,
      logger,
      auth,
      vehicles,
      commands,
      credentials,
      users,
      adapters,
      readiness,
      metrics,
    });
    await listenWithFallback(
      {
        name: 'HTTP API',
        setting: '--port / FLEETGATE_PORT',
        port: config.port,
        isDefault: config.defaulted.includes('port'),
        onFallback: (port) =>
          logger.warn({ port, wanted: config.port }, `HTTP port ${config.port} is taken; the API listens on ${port}`),
      },
      (port) => api.listen({ port, host: config.host }),
    );
    cleanups.push(async () => {
      await stopAccepting(api.server, CONNECTION_LINGER_MS);
      await api.close();
    });

    const maintenance = startMaintenance(store, vehicles, users, config, logger);
    cleanups.push(async () => clearInterval(maintenance));

    const address = api.server.address();
    const port = typeof address === 'object' && address ? address.port : config.port;
    let stopped: Promise<void> | undefined;
    return {
      config,
      logger,
      store,
      api,
      url: listenUrl('http', config.host, port),
      mqttUrl,
      adapters,
      auth,
      vehicles,
      commands,
      users,
      events,
      stop: () => {
        stopped ??= (async () => {
          await commands.drain();
          // Outcomes kept through a database outage are written before the store closes.
          await completions.flush(COMPLETION_FLUSH_MS);
          await cleanup();
        })();
        return stopped;
      },
    };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

/**
 * Periodic upkeep that any instance may do: orphaned commands, old idempotency keys, stale setups,
 * expired console sessions.
 */
function startMaintenance(
  store: Store,
  vehicles: VehicleService,
  users: UserService,
  config: Readonly<Config>,
  logger: Logger,
): NodeJS.Timeout {
  let running = false;
  let lastPurge = 0;
  const timer = setInterval(async () => {
    if (running) return;
    running = true;
    try {
      const now = Date.now();
      const expired = await store.expireCommands(new Date(now).toISOString());
      if (expired > 0) logger.warn({ expired }, 'commands of a stopped instance ended with outcome unknown');
      await vehicles.failStaleSetups(config.setupTimeoutSeconds);
      if (now - lastPurge > 3600_000) {
        lastPurge = now;
        await store.purgeIdempotencyKeys(new Date(now - IDEMPOTENCY_RETENTION_MS).toISOString());
        await users.purge(now);
      }
    } catch (err) {
      logger.warn({ err }, 'maintenance round failed; retrying');
    } finally {
      running = false;
    }
  }, MAINTENANCE_INTERVAL_MS);
  timer.unref();
  return timer;
}
