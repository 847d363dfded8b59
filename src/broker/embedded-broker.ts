import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Logger } from 'pino';
import { startModuleWorker } from '../lib/ts-worker.js';
import type { BrokerProvisioner } from '../telematics/adapter.js';
import {
  type BrokerThreadData,
  type FromBrokerThread,
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
}

const DEFAULT_AUTH_CACHE_TTL_MS = 5 * 60_000;

/**
 * Starts aedes on a TCP port with fleetgate's device authentication and ACL (SPEC §5: a unit may
 * only publish as itself and only read its own commands), in a thread of its own
 * (src/broker/embedded-broker-thread.ts): the broker's packet work runs beside the API's, on the
 * second core. Units log in with username = client id = their telematics unit id and their
 * password, which this thread checks against the store; fleetgate itself uses a random service
 * account. A broker thread that dies is logged as fatal: the service client loses its connection
 * and `/ready` answers 503.
 */
export async function startEmbeddedBroker(options: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
  const { logger } = options;
  const service = {
    username: SERVICE_USERNAME_PREFIX + randomBytes(6).toString('hex'),
    password: randomBytes(32).toString('base64url'),
  };
  const workerData: BrokerThreadData = {
    host: options.host,
    port: options.port,
    service,
    authCacheTtlMs: options.authCacheTtlMs ?? DEFAULT_AUTH_CACHE_TTL_MS,
    logLevel: logger.levelVal,
  };
  // The thread's module sits beside this one, as .ts when run from source and .js when built.
  const module = new URL(`./embedded-broker-thread${path.extname(new URL(import.meta.url).pathname)}`, import.meta.url);
  const worker = startModuleWorker(module, { workerData, name: 'embedded MQTT broker' });

  let nextId = 1;
  const awaiting = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  let closing = false;
  /** Sends an order to the thread; settles when the thread has carried it out. */
  const request = (message: { type: 'provision-unit' | 'remove-unit'; username: string } | { type: 'close' }) =>
    new Promise<void>((resolve, reject) => {
      const id = nextId++;
      awaiting.set(id, { resolve, reject });
      worker.postMessage({ ...message, id } as ToBrokerThread);
    });

  const listening = new Promise<number>((resolve, reject) => {
    worker.on('message', (message: FromBrokerThread) => {
      switch (message.type) {
        case 'listening':
          return resolve(message.port);
        case 'listen-failed':
          return reject(Object.assign(new Error(message.message), { code: message.code }));
        case 'authenticate':
          options.authenticateUnit(message.username, message.password).then(
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
          awaiting.get(message.id)?.resolve();
          awaiting.delete(message.id);
          return;
        case 'log':
          logger[message.level](message.fields, message.message);
          return;
      }
    });
    worker.on('error', (err) => {
      reject(err);
      logger.fatal({ err }, 'embedded MQTT broker thread failed');
    });
    worker.on('exit', (code) => {
      const gone = new Error(`embedded MQTT broker thread exited (code ${code})`);
      reject(gone);
      for (const pending of awaiting.values()) pending.reject(gone);
      awaiting.clear();
      if (!closing) logger.fatal({ code }, 'embedded MQTT broker thread exited; units cannot connect');
    });
  });

  let port: number;
  try {
    port = await listening;
  } catch (e) {
    closing = true;
    await worker.terminate();
    throw e;
  }
  const host = options.host === '0.0.0.0' || options.host === '::' || options.host === '' ? '127.0.0.1' : options.host;
  const url = `mqtt://${host.includes(':') ? `[${host}]` : host}:${port}`;
  logger.info({ url }, 'embedded MQTT broker listening');

  const provisioner: BrokerProvisioner = {
    // Nothing to provision: authentication reads the store. The thread forgets a cached login.
    provisionUnit: (username) => request({ type: 'provision-unit', username }),
    // Disconnects the unit; its last will is not published (the adapter clears its status).
    removeUnit: (username) => request({ type: 'remove-unit', username }),
  };

  let closed: Promise<void> | undefined;
  return {
    port,
    url,
    serviceCredentials: service,
    provisioner,
    close() {
      closed ??= (async () => {
        closing = true;
        await request({ type: 'close' }).catch(() => undefined);
        await worker.terminate();
      })();
      return closed;
    },
  };
}
