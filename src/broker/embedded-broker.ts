import { randomBytes } from 'node:crypto';
import type { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { siblingModule, startModuleWorker } from '../lib/ts-worker.js';
import type { BrokerProvisioner } from '../telematics/adapter.js';
import {
  type BrokerThreadData,
  type FromBrokerThread,
  LOG_LEVELS,
  SERVICE_USERNAME_PREFIX,
  type ToBrokerThread,
} from './embedded-broker-protocol.js';

/** The in-process MQTT broker of the embedded default (SPEC §7). */
export interface EmbeddedBroker {
  port: number;
  /** `mqtt://host:port`, with a loopback host when listening on every address. */
  url: string;
  /** fleetgate's own account: full access. Random per start, never stored. */
  serviceCredentials: { username: string; password: string };
  provisioner: BrokerProvisioner;
  /**
   * Lets units log in. Until then a unit's CONNECT waits for its CONNACK (closedToUnits): a unit
   * let in before the adapters subscribed would publish its first state report to no one, and
   * QoS 0 reports without a subscriber are dropped (the reconnect storm lost them).
   */
  openToUnits(): void;
  close(): Promise<void>;
}

export interface EmbeddedBrokerOptions {
  host: string;
  port: number;
  logger: Logger;
  /** Checks a unit's credentials against the store (username = telematics unit id). */
  authenticateUnit: (username: string, password: string) => Promise<boolean>;
  /** How long a successful unit login is remembered, so reconnect storms skip scrypt. */
  authCacheTtlMs?: number;
  /**
   * Hold units' logins until openToUnits() (the server's start: adapters subscribe first). Held
   * logins beyond MAX_HELD_LOGINS are answered "server unavailable" (units retry).
   */
  closedToUnits?: boolean;
}

const DEFAULT_AUTH_CACHE_TTL_MS = 5 * 60_000;
/** Unit logins held while closed to units; more are refused (CONNACK 3) and retry. */
const MAX_HELD_LOGINS = 50_000;
/**
 * The broker thread's young generation (V8's default: 48 MB, semi-spaces of 16 MB). A reconnect
 * storm's connections and logins outlive two collections of a small one and are copied twice.
 */
const BROKER_YOUNG_GENERATION_MB = 192;
/** Held logins let in per event-loop turn once open (openToUnits). */
const HELD_LOGINS_PER_TURN = 200;
/** A thread that dies is started again, at most this often per minute; then it stays down. */
const MAX_RESTARTS_PER_MINUTE = 5;
const THREAD_MODULE = siblingModule(import.meta.url, 'embedded-broker-thread');

/** An order to the thread that settles once the thread carried it out. */
type Order = { type: 'provision-unit' | 'remove-unit'; username: string } | { type: 'close' };

/**
 * Runs the broker thread (src/broker/embedded-broker-thread.ts) and speaks for it: answers its
 * password checks from the store, passes on orders, relays its log records. A thread that dies
 * (an uncaught error in aedes, say) is started again on the same port with the same service
 * account: units and the service client reconnect, and a dead thread's orders count as done —
 * every unit it served lost its connection and its login cache with it.
 */
export class BrokerThreadHost {
  /** The running thread (tests end it to play a crash). */
  worker: Worker | undefined;
  private nextId = 1;
  private readonly awaiting = new Map<number, { worker: Worker; resolve: () => void }>();
  private closing = false;
  /** Once a thread listened, one that dies is started again (a failed first start is not). */
  private listened = false;
  private restarts: number[] = [];
  /** Whether units may log in (EmbeddedBroker.openToUnits); until then their logins are held. */
  private unitsWelcome: boolean;
  private held: Array<{ worker: Worker; answer: () => void }> = [];

  constructor(
    private readonly data: BrokerThreadData,
    private readonly options: EmbeddedBrokerOptions,
  ) {
    this.unitsWelcome = options.closedToUnits !== true;
  }

  /** Starts the thread; resolves with the port it listens on. */
  start(): Promise<number> {
    const worker = startModuleWorker(THREAD_MODULE, {
      workerData: this.data,
      name: 'embedded MQTT broker',
      resourceLimits: { maxYoungGenerationSizeMb: BROKER_YOUNG_GENERATION_MB },
    });
    this.worker = worker;
    return new Promise<number>((resolve, reject) => {
      worker.on('message', (message: FromBrokerThread) => {
        if (message.type === 'listening') {
          this.listened = true;
          resolve(message.port);
        } else if (message.type === 'listen-failed')
          reject(Object.assign(new Error(message.message), { code: message.code }));
        else this.onMessage(worker, message);
      });
      worker.on('error', (err) => {
        reject(err);
        this.options.logger.error({ err }, 'embedded MQTT broker thread failed');
      });
      worker.on('exit', (code) => {
        reject(new Error(`embedded MQTT broker thread exited (code ${code})`));
        this.onExit(worker, code);
      });
    });
  }

  /**
   * Lets units log in, the held ones first (a dead thread's held logins went with it), a batch
   * per event-loop turn: between batches the thread takes in what the units let in send (their
   * status and first report), so each login's work finishes while young instead of 15,000 at
   * once waiting through several garbage collections (`npm run bench -- --scale`).
   */
  openToUnits(): void {
    this.unitsWelcome = true;
    const held = this.held.splice(0);
    if (held.length > 0)
      this.options.logger.info({ logins: held.length }, 'letting in the unit logins held while starting');
    const release = () => {
      for (const login of held.splice(0, HELD_LOGINS_PER_TURN)) {
        // A thread that died or is closing took these units' connections with it.
        if (login.worker === this.worker && !this.closing) login.answer();
      }
      if (held.length > 0) setImmediate(release);
    };
    release();
  }

  /** Sends an order to the thread; settles when the thread has carried it out. */
  order(order: Order): Promise<void> {
    const worker = this.worker;
    if (!worker) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const id = this.nextId++;
      this.awaiting.set(id, { worker, resolve });
      worker.postMessage({ ...order, id } satisfies ToBrokerThread);
    });
  }

  async close(): Promise<void> {
    this.closing = true;
    const worker = this.worker;
    if (!worker) return;
    await this.order({ type: 'close' });
    await worker.terminate();
  }

  private onMessage(worker: Worker, message: Exclude<FromBrokerThread, { type: 'listening' | 'listen-failed' }>) {
    switch (message.type) {
      case 'authenticate':
        if (!this.unitsWelcome) {
          if (this.held.length < MAX_HELD_LOGINS) {
            this.held.push({ worker, answer: () => this.onMessage(worker, message) });
            return;
          }
          worker.postMessage({
            type: 'authenticated',
            id: message.id,
            ok: false,
            unavailable: true,
          } satisfies ToBrokerThread);
          return;
        }
        this.options.authenticateUnit(message.username, message.password).then(
          (ok) => worker.postMessage({ type: 'authenticated', id: message.id, ok } satisfies ToBrokerThread),
          (err: unknown) =>
            worker.postMessage({
              type: 'authenticated',
              id: message.id,
              ok: false,
              failed: err instanceof Error ? err.message : String(err),
            } satisfies ToBrokerThread),
        );
        return;
      case 'done':
        this.awaiting.get(message.id)?.resolve();
        this.awaiting.delete(message.id);
        return;
      case 'log':
        this.options.logger[message.level](message.fields, message.message);
        return;
    }
  }

  private onExit(worker: Worker, code: number): void {
    // Its held logins went with its connections.
    this.held = this.held.filter((login) => login.worker !== worker);
    for (const [id, pending] of this.awaiting) {
      if (pending.worker !== worker) continue;
      this.awaiting.delete(id);
      pending.resolve();
    }
    if (this.worker !== worker) return;
    this.worker = undefined;
    if (this.closing) return;
    const { logger } = this.options;
    const now = Date.now();
    this.restarts = this.restarts.filter((t) => t > now - 60_000);
    if (!this.listened || this.restarts.length >= MAX_RESTARTS_PER_MINUTE) {
      logger.fatal({ code }, 'embedded MQTT broker thread exited; units cannot connect');
      return;
    }
    this.restarts.push(now);
    logger.error({ code, port: this.data.port }, 'embedded MQTT broker thread exited; starting it again');
    this.start().catch((err: unknown) =>
      logger.fatal({ err }, 'embedded MQTT broker thread could not start again; units cannot connect'),
    );
  }
}

/**
 * Starts aedes on a TCP port with fleetgate's device authentication and ACL (SPEC §5: a unit may
 * only publish as itself and only read its own commands), in a thread of its own
 * (src/broker/embedded-broker-thread.ts): the broker's packet work runs beside the API's, on the
 * second core. Units log in with username = client id = their telematics unit id and their
 * password, which this thread checks against the store; fleetgate itself uses a random service
 * account. A broker thread that dies is started again on the same port (at most 5 times a
 * minute; beyond, it is logged as fatal and `/health/ready` answers 503).
 */
export async function startEmbeddedBroker(options: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
  const service = {
    username: SERVICE_USERNAME_PREFIX + randomBytes(6).toString('hex'),
    password: randomBytes(32).toString('base64url'),
  };
  const data: BrokerThreadData = {
    host: options.host,
    port: options.port,
    service,
    authCacheTtlMs: options.authCacheTtlMs ?? DEFAULT_AUTH_CACHE_TTL_MS,
    logLevels: LOG_LEVELS.filter((level) => options.logger.isLevelEnabled(level)),
  };
  const host = new BrokerThreadHost(data, options);
  let port: number;
  try {
    port = await host.start();
  } catch (e) {
    await host.close();
    throw e;
  }
  // A thread started again listens where the first one did: units and the service client return.
  data.port = port;
  const name = options.host === '0.0.0.0' || options.host === '::' || options.host === '' ? '127.0.0.1' : options.host;
  const url = `mqtt://${name.includes(':') ? `[${name}]` : name}:${port}`;
  options.logger.info({ url }, 'embedded MQTT broker listening');

  let closed: Promise<void> | undefined;
  const broker: EmbeddedBroker & { readonly host: BrokerThreadHost } = {
    // Not part of the interface: tests reach the thread through it.
    host,
    port,
    url,
    serviceCredentials: service,
    provisioner: {
      // Nothing to provision: authentication reads the store. The thread forgets a cached login.
      provisionUnit: (username) => host.order({ type: 'provision-unit', username }),
      // Disconnects the unit; its last will is not published (the adapter clears its status).
      removeUnit: (username) => host.order({ type: 'remove-unit', username }),
    },
    openToUnits: () => host.openToUnits(),
    close() {
      closed ??= host.close();
      return closed;
    },
  };
  return broker;
}
