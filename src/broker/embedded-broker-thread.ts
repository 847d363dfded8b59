/**
 * The embedded MQTT broker's thread (src/broker/embedded-broker.ts starts it): aedes with
 * fleetgate's device authentication and ACL. It runs beside the API's thread so that the broker's
 * packet work — every command and answer passes through it twice — has a core of its own
 * (docs/performance.md). It asks the API's thread to check unit passwords against the store, and
 * takes orders to forget or disconnect a unit and to close.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { parentPort, workerData } from 'node:worker_threads';
import { Aedes, type AuthenticateError, type Client } from 'aedes';
import { isTopicLevelId } from '../lib/topic-level.js';
import { AEDES_MESSAGE_QUEUE } from './aedes-settings.js';
import {
  type BrokerThreadData,
  type FromBrokerThread,
  LOG_LEVELS,
  type LogLevel,
  SERVICE_USERNAME_PREFIX,
  type ToBrokerThread,
} from './embedded-broker-protocol.js';
import { memoryPersistenceWithRetainedIndex } from './retained-index.js';

/** What a unit may do (docs/mqtt-protocol.md §8): computed once at login, checked per packet. */
interface UnitAcl {
  username: string;
  publish: Set<string>;
  /** Retained messages only on the status topic: a unit cannot pin junk on other topics. */
  retainTopic: string;
  subscribe: string;
  revoked: boolean;
}

// Unit-side topic leaves of fleetgate/v1 (src/telematics/fleetgate-mqtt/protocol.ts).
const UNIT_PUBLISH_LEAVES = ['state', 'responses', 'status'];
const UNIT_SUBSCRIBE_LEAF = 'commands';
const unitTopicPrefix = (username: string) => `fleetgate/v1/units/${username}/`;
// Guessing is throttled per source address, never per unit id alone: a unit id gets this many
// wrong passwords per window from one address, and one address this many over all unit ids;
// beyond, logins from that address are refused without a password check (a guessing flood
// costs no scrypt time). The unit that knows its password, connecting from its own address, is
// never refused: knowing a unit id is not enough to keep a unit offline.
const MAX_FAILED_LOGINS = 10;
const MAX_FAILED_LOGINS_PER_SOURCE = 100;
const FAILED_LOGIN_WINDOW_MS = 60_000;
const MAX_TRACKED_FAILURES = 100_000;

function authError(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

function digest(password: string): Buffer {
  return createHash('sha256').update(password).digest();
}

const port = parentPort!;
const data = workerData as BrokerThreadData;
const send = (message: FromBrokerThread) => port.postMessage(message);

const writes = new Set(data.logLevels);
const log = Object.fromEntries(
  LOG_LEVELS.map((level) => [
    level,
    (fields: Record<string, unknown>, message: string) => {
      if (writes.has(level)) send({ type: 'log', level, fields, message });
    },
  ]),
) as Record<LogLevel, (fields: Record<string, unknown>, message: string) => void>;

/** Requests to the API thread that await an answer, by id. */
let nextId = 1;
const awaiting = new Map<number, (message: ToBrokerThread & { type: 'authenticated' }) => void>();

/** Thrown while fleetgate is not ready for units: CONNACK "server unavailable", not an error. */
class NotReadyForUnits extends Error {}

function authenticateUnit(username: string, password: string): Promise<boolean> {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    awaiting.set(id, (answer) => {
      if (answer.unavailable) reject(new NotReadyForUnits('not ready for units yet'));
      else if (answer.failed) reject(new Error(answer.failed));
      else resolve(answer.ok);
    });
    send({ type: 'authenticate', id, username, password });
  });
}

const serviceDigest = digest(data.service.password);
const serviceClients = new WeakSet<Client>();
const acls = new WeakMap<Client, UnitAcl>();
/** username → sha256 of the password that last logged in, and when that expires. */
const authCache = new Map<string, { digest: Buffer; expires: number }>();
/** Connected units by client id (= username), to disconnect a removed vehicle's unit. */
const units = new Map<string, Client>();

const aclFor = (username: string): UnitAcl => {
  const prefix = unitTopicPrefix(username);
  return {
    username,
    publish: new Set(UNIT_PUBLISH_LEAVES.map((leaf) => prefix + leaf)),
    retainTopic: prefix + 'status',
    subscribe: prefix + UNIT_SUBSCRIBE_LEAF,
    revoked: false,
  };
};

/** Failed logins in the current window, by `source` and by `source|username`. */
const failures = new Map<string, { count: number; windowEnds: number }>();
const throttled = (key: string, max: number, now: number): boolean => {
  const failed = failures.get(key);
  return failed !== undefined && failed.windowEnds > now && failed.count >= max;
};
const countFailure = (key: string, now: number): void => {
  if (failures.size >= MAX_TRACKED_FAILURES) failures.clear();
  const failed = failures.get(key);
  const current = failed && failed.windowEnds > now ? failed : { count: 0, windowEnds: now + FAILED_LOGIN_WINDOW_MS };
  current.count++;
  failures.set(key, current);
};
const checkUnit = async (username: string, password: string, source: string): Promise<boolean> => {
  const now = Date.now();
  const hit = authCache.get(username);
  const d = digest(password);
  if (hit && hit.expires > now && timingSafeEqual(hit.digest, d)) return true;
  const pair = `${source}|${username}`;
  if (throttled(pair, MAX_FAILED_LOGINS, now) || throttled(source, MAX_FAILED_LOGINS_PER_SOURCE, now)) return false;
  const ok = await authenticateUnit(username, password);
  if (ok) {
    authCache.set(username, { digest: d, expires: Date.now() + data.authCacheTtlMs });
    failures.delete(pair);
  } else {
    // Not authCache.delete: a wrong guess must not make the unit's own next login slower.
    countFailure(pair, now);
    countFailure(source, now);
  }
  return ok;
};

const broker = await Aedes.createBroker({
  ...AEDES_MESSAGE_QUEUE,
  persistence: memoryPersistenceWithRetainedIndex(),
  // A socket that sends no CONNECT within this time is closed.
  connectTimeout: 10_000,
  authenticate(client, username, password, done) {
    const user = username ?? '';
    const pass = password ? password.toString('utf8') : '';
    if (user === data.service.username) {
      if (timingSafeEqual(digest(pass), serviceDigest)) {
        serviceClients.add(client);
        return done(null, true);
      }
      return done(authError('bad username or password', 4), false);
    }
    // A unit's username is one topic level (docs/mqtt-protocol.md §2): other names are refused
    // before any look-up, so junk names cost neither the store nor memory.
    if (!isTopicLevelId(user) || user.startsWith(SERVICE_USERNAME_PREFIX)) {
      return done(authError('bad username or password', 4), false);
    }
    // A unit may only be itself: its client id is its username (docs/mqtt-protocol.md §2).
    if (client.id !== user) return done(authError('client id must equal the username', 2), false);
    // Clean session only: the broker must never hold commands for an offline unit (SPEC §1).
    if (!client.clean) return done(authError('units must connect with a clean session', 5), false);
    const source = (client.conn as { remoteAddress?: string } | undefined)?.remoteAddress ?? '';
    checkUnit(user, pass, source).then(
      (ok) => {
        if (!ok) return done(authError('bad username or password', 4), false);
        acls.set(client, aclFor(user));
        done(null, true);
      },
      (err: unknown) => {
        if (!(err instanceof NotReadyForUnits))
          log.error({ err: String(err), unit: user }, 'unit authentication failed with an error');
        done(authError('server unavailable', 3), false);
      },
    );
  },
  authorizePublish(client, packet, done) {
    // client is null for the broker's own publishes.
    if (client === null || serviceClients.has(client)) {
      return done(packet.topic.startsWith('$SYS') && client !== null ? new Error('$SYS is reserved') : null);
    }
    const acl = acls.get(client);
    if (!acl || acl.revoked || !acl.publish.has(packet.topic) || (packet.retain && packet.topic !== acl.retainTopic)) {
      // A revoked unit's last will lands here too: dropped, the adapter clears its status.
      if (acl?.revoked) return done(new Error('unit removed'));
      log.warn({ unit: client.id, topic: packet.topic }, 'unit publish denied; disconnecting it');
      return done(new Error('not authorized'));
    }
    done(null);
  },
  authorizeSubscribe(client, subscription, done) {
    if (serviceClients.has(client)) return done(null, subscription);
    const acl = acls.get(client);
    if (!acl || acl.revoked || subscription.topic !== acl.subscribe) {
      log.warn({ unit: client.id, topic: subscription.topic }, 'unit subscribe denied');
      // null grants nothing: SUBACK 0x80 for this topic, the connection stays (MQTT 3.1.1 §3.9.3).
      return done(null, null);
    }
    done(null, subscription);
  },
});

broker.on('client', (client) => {
  if (acls.has(client)) units.set(client.id, client);
});
broker.on('clientDisconnect', (client) => {
  if (units.get(client.id) === client) units.delete(client.id);
});
broker.on('clientError', (client, err) => {
  log.debug({ client: client.id, err: err.message }, 'MQTT client error');
});
broker.on('connectionError', (client, err) => {
  log.debug({ client: client?.id, err: err.message }, 'MQTT connection error');
});

const server = net.createServer({ noDelay: true }, broker.handle);

async function removeUnit(username: string): Promise<void> {
  authCache.delete(username);
  const client = units.get(username);
  if (!client) return;
  const acl = acls.get(client);
  // Revoked first, so its last will is not published: the adapter clears the status topic.
  if (acl) acl.revoked = true;
  units.delete(username);
  await new Promise<void>((resolve) => client.close(() => resolve()));
}

/**
 * Closing for good: stops accepting, and the host ends the thread right after, which closes every
 * socket. aedes's own close is skipped: per client it unsubscribes and publishes the last will,
 * which nobody reads any more (fleetgate's client has gone) and which took 6.5 s with 15,000 units
 * connected (`npm run bench -- --scale`), delaying a restart by as much.
 */
function close(): void {
  server.close();
}

port.on('message', (message: ToBrokerThread) => {
  switch (message.type) {
    case 'authenticated':
      awaiting.get(message.id)?.(message);
      awaiting.delete(message.id);
      return;
    case 'provision-unit':
      // Nothing to provision: authentication asks the store. A new password for a re-added unit
      // must not be shadowed by a cached login.
      authCache.delete(message.username);
      return send({ type: 'done', id: message.id });
    case 'remove-unit':
      return void removeUnit(message.username).then(() => send({ type: 'done', id: message.id }));
    case 'close':
      close();
      return send({ type: 'done', id: message.id });
  }
});

server.listen(data.port, data.host);
try {
  await once(server, 'listening');
  const address = server.address();
  send({ type: 'listening', port: typeof address === 'object' && address !== null ? address.port : data.port });
} catch (e) {
  await new Promise<void>((resolve) => broker.close(() => resolve()));
  const error = e as NodeJS.ErrnoException;
  send({ type: 'listen-failed', message: error.message, code: error.code });
  port.close();
}
