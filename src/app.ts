import type { MqttClient } from 'mqtt';
import { type Logger, pino } from 'pino';
import { Metrics, startMetricsServer } from './api/metrics.js';
import { type Api, buildServer, type ReadinessCheck, stopAccepting } from './api/server.js';
import { type EmbeddedBroker, startEmbeddedBroker } from './broker/embedded-broker.js';
import { MosquittoDynsecProvisioner } from './broker/mosquitto-dynsec.js';
import { connectServiceClient } from './broker/mqtt-connection.js';
import type { Config } from './config.js';
import { parseHostPort, redact } from './config.js';
import type { DeliveryChannel } from './events/channels/channel.js';
import { createChannels } from './events/channels/registry.js';
import { EventFeed } from './events/feed.js';
import { loadOrCreateKeyFile } from './lib/key-file.js';
import { listenUrl, listenWithFallback } from './lib/listen.js';
import { deriveKey, SecretBox } from './lib/secrets.js';
import { type AdapterContextParts, createAdapterContext } from './services/adapter-context.js';
import { AuthService } from './services/auth-service.js';
import { CommandService } from './services/command-service.js';
import { CompletionWriter } from './services/completion-writer.js';
import { CredentialsService } from './services/credentials-service.js';
import { EventBus } from './services/event-bus.js';
import { EventConsumerService } from './services/event-consumer-service.js';
import { EventService } from './services/event-service.js';
import { MaintenanceService } from './services/maintenance-service.js';
import { UserService } from './services/user-service.js';
import { VehicleService } from './services/vehicle-service.js';
import { createStore } from './store/registry.js';
import type { Store } from './store/store.js';
import type { BrokerProvisioner, TelematicsAdapter } from './telematics/adapter.js';
import { createAdapters } from './telematics/registry.js';

export interface App {
  config: Readonly<Config>;
  logger: Logger;
  store: Store;
  api: Api;
  /** The HTTP base URL this instance listens on (loopback form when bound to every address). */
  url: string;
  /** Where Prometheus scrapes this instance. */
  metricsUrl: string;
  /** The broker units connect to: the embedded one's URL, or the external one. */
  mqttUrl: string;
  adapters: ReadonlyMap<string, TelematicsAdapter>;
  auth: AuthService;
  vehicles: VehicleService;
  commands: CommandService;
  users: UserService;
  events: EventBus;
  /** The outbox's feed (pull, stream and delivery channels read it). */
  feed: EventFeed;
  /** The delivery channels (webhooks, …) running in this instance. */
  channels: readonly DeliveryChannel[];
  /** Graceful stop: refuse new commands, finish running ones, then close everything. */
  stop(): Promise<void>;
}

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
  /** What stop() ends, each part named for the log (how long each took). */
  const cleanups: Array<{ part: string; fn: () => Promise<void> }> = [];
  const onStop = (part: string, fn: () => Promise<void>) => cleanups.push({ part, fn });
  const cleanup = async () => {
    for (const { part, fn } of cleanups.reverse()) {
      const since = performance.now();
      await fn().catch((err: unknown) => logger.error({ err, part }, 'error while stopping'));
      logger.info({ part, ms: Math.round(performance.now() - since) }, 'stopped a part');
    }
  };

  try {
    const store = await createStore({
      databaseUrl: config.databaseUrl,
      dataDir: config.dataDir,
      sqliteWalLimitMb: config.sqliteWalLimitMb,
      logger,
    });
    onStop('store', () => store.close());
    await store.migrate();

    const masterSecret = config.secretKey ?? loadOrCreateKeyFile(config.dataDir);
    const secrets = new SecretBox(deriveKey(masterSecret, 'secret-box'));
    const events = new EventBus();
    const feed = new EventFeed(store.events);
    onStop('event feed', async () => feed.close());
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
      mqtt = await connectServiceClient(config.mqttUrl, creds, logger, { packetLog: config.mqttPacketLog });
      if (config.mqttProvisioning === 'mosquitto-dynsec') {
        const client = mqtt;
        // SPEC §5 on the external broker: each unit's account and topic ACL, made as vehicles come and go.
        const dynsec = await MosquittoDynsecProvisioner.start(client, { logger }).catch(async (e: unknown) => {
          await client.endAsync(true).catch(() => undefined);
          throw e;
        });
        onStop('broker accounts', async () => dynsec.close());
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
            closedToUnits: true,
          }),
      );
      const started = broker;
      onStop('embedded broker', () => started.close());
      mqttUrl = broker.url;
      provisioner = broker.provisioner;
      mqtt = await connectServiceClient(broker.url, broker.serviceCredentials, logger, {
        packetLog: config.mqttPacketLog,
      });
    }
    onStop('MQTT client', () => new Promise<void>((resolve) => mqtt.end(false, {}, () => resolve())));

    const contextParts: AdapterContextParts = {
      logger,
      instanceId: config.instanceId,
      listenHost: config.host,
      mqtt,
      sharedBroker: config.mqttUrl !== undefined,
      broker: provisioner,
      vehicles,
      credentials,
      lateAnswers: (flowId, outcome) => commands.onLateAnswer(flowId, outcome, logger),
    };
    if (!contextParts.sharedBroker) {
      // Alone, this process held every connection of such brands (the embedded broker starts
      // empty): what the database remembers as ONLINE from before is OFFLINE until the unit is
      // back. Before the adapters listen, so that a unit's `online` is recorded after this.
      for (const adapter of adapters.values()) {
        if (!adapter.unitsConnectToThisProcess) continue;
        const units = await vehicles.recordAllOffline(adapter.brand, new Date());
        if (units > 0) {
          logger.info(
            { brand: adapter.brand, units },
            'units online before this start recorded offline until they are back',
          );
        }
      }
    }
    for (const adapter of adapters.values()) {
      await adapter.start(createAdapterContext(adapter, config.adapters[adapter.brand] ?? {}, contextParts));
      onStop(`adapter ${adapter.brand}`, () => adapter.stop());
      await vehicles.resumeSetups(adapter);
    }
    // Units in only now: a unit's first report after a restart must find its adapter subscribed.
    broker?.openToUnits();

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
    const metrics = new Metrics(events, () => commands.running, {
      countVehicles: () => store.countVehicles(),
      readiness,
    });
    // Delivery never runs in the command path: each channel reads the outbox on its own.
    const channels = createChannels({ feed, config, logger, instanceId: config.instanceId, secrets });
    for (const channel of channels) {
      // Named in /health/ready while down; the instance stays ready (events wait in the outbox).
      if (channel.health) readiness.push({ name: channel.name, optional: true, check: () => channel.health!() });
    }
    const eventConsumers = new EventConsumerService(store.events, channels.find((c) => c.consumers)?.consumers, logger);
    const api = await buildServer({
      config,
      logger,
      auth,
      vehicles,
      commands,
      credentials,
      events: new EventService(feed),
      channelRoutes: channels.flatMap((c) => (c.registerRoutes ? [(app: Api) => c.registerRoutes!(app)] : [])),
      users,
      eventConsumers,
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
    onStop('HTTP API', async () => {
      await stopAccepting(api.server, CONNECTION_LINGER_MS);
      await api.close();
    });
    const metricsAt = config.metricsAddress ? parseHostPort(config.metricsAddress) : undefined;
    const metricsServer = metricsAt
      ? await startMetricsServer(metrics, {
          ...metricsAt,
          token: config.metricsToken,
          base: config.publicUrl ?? listenUrl('http', config.host, portOf(api)),
        })
      : undefined;
    if (metricsServer) onStop('metrics', () => metricsServer.close());

    const maintenance = new MaintenanceService(store, vehicles, users, logger, {
      setupTimeoutSeconds: config.setupTimeoutSeconds,
      eventRetentionHours: config.eventRetentionHours,
    });
    maintenance.start();
    onStop('maintenance', async () => maintenance.stop());

    for (const channel of channels) {
      await channel.start();
      onStop(`channel ${channel.name}`, () => channel.stop());
    }

    const port = portOf(api);
    let stopped: Promise<void> | undefined;
    return {
      config,
      logger,
      store,
      api,
      url: listenUrl('http', config.host, port),
      metricsUrl: metricsServer?.url ?? `${listenUrl('http', config.host, port)}/metrics`,
      mqttUrl,
      adapters,
      auth,
      vehicles,
      commands,
      users,
      events,
      feed,
      channels,
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

function portOf(api: Api): number {
  const address = api.server.address();
  return typeof address === 'object' && address ? address.port : 0;
}
