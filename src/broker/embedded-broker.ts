import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { Aedes, type AuthenticateError, type Client } from 'aedes';
import type { Logger } from 'pino';
import type { BrokerProvisioner } from '../telematics/adapter.js';

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
  /**
   * The topic prefix a unit's permissions cover; default `fleetgate/v1/units/<username>/`
   * (docs/mqtt-protocol.md §8).
   */
  unitTopicPrefix?: (username: string) => string;
  /** How long a successful unit login is remembered, so reconnect storms skip scrypt. */
  authCacheTtlMs?: number;
}

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
const DEFAULT_PREFIX = (username: string) => `fleetgate/v1/units/${username}/`;
const DEFAULT_AUTH_CACHE_TTL_MS = 5 * 60_000;
const SERVICE_USERNAME_PREFIX = 'fleetgate-service-';
// A unit id gets this many wrong passwords per window; beyond, logins are refused without a
// password check, so a guessing flood costs no scrypt time.
const MAX_FAILED_LOGINS = 10;
const FAILED_LOGIN_WINDOW_MS = 60_000;
const MAX_TRACKED_FAILURES = 100_000;

function authError(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

function digest(password: string): Buffer {
  return createHash('sha256').update(password).digest();
}

/**
 * Starts aedes on a TCP port with fleetgate's device authentication and ACL (SPEC §5: a unit may
 * only publish as itself and only read its own commands). Units log in with username = client id
 * = their telematics unit id and their password; fleetgate itself uses a random service account.
 */
export async function startEmbeddedBroker(options: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
  const { logger, authenticateUnit } = options;
  const prefixOf = options.unitTopicPrefix ?? DEFAULT_PREFIX;
  const cacheTtlMs = options.authCacheTtlMs ?? DEFAULT_AUTH_CACHE_TTL_MS;
  const service = {
    username: SERVICE_USERNAME_PREFIX + randomBytes(6).toString('hex'),
    password: randomBytes(32).toString('base64url'),
  };
  const serviceDigest = digest(service.password);

  const serviceClients = new WeakSet<Client>();
  const acls = new WeakMap<Client, UnitAcl>();
  /** username → sha256 of the password that last logged in, and when that expires. */
  const authCache = new Map<string, { digest: Buffer; expires: number }>();
  /** Connected units by client id (= username), to disconnect a removed vehicle's unit. */
  const units = new Map<string, Client>();

  const aclFor = (username: string): UnitAcl => {
    const prefix = prefixOf(username);
    return {
      username,
      publish: new Set(UNIT_PUBLISH_LEAVES.map((leaf) => prefix + leaf)),
      retainTopic: prefix + 'status',
      subscribe: prefix + UNIT_SUBSCRIBE_LEAF,
      revoked: false,
    };
  };

  /** Failed logins per username in the current window: guessing is throttled before scrypt runs. */
  const failures = new Map<string, { count: number; windowEnds: number }>();
  const checkUnit = async (username: string, password: string): Promise<boolean> => {
    const now = Date.now();
    const hit = authCache.get(username);
    const d = digest(password);
    if (hit && hit.expires > now && timingSafeEqual(hit.digest, d)) return true;
    const failed = failures.get(username);
    if (failed && failed.windowEnds > now && failed.count >= MAX_FAILED_LOGINS) return false;
    const ok = await authenticateUnit(username, password);
    if (ok) {
      authCache.set(username, { digest: d, expires: Date.now() + cacheTtlMs });
      failures.delete(username);
    } else {
      authCache.delete(username);
      if (failures.size >= MAX_TRACKED_FAILURES) failures.clear();
      const current =
        failed && failed.windowEnds > now ? failed : { count: 0, windowEnds: now + FAILED_LOGIN_WINDOW_MS };
      current.count++;
      failures.set(username, current);
    }
    return ok;
  };

  const broker = await Aedes.createBroker({
    // A socket that sends no CONNECT within this time is closed.
    connectTimeout: 10_000,
    authenticate(client, username, password, done) {
      const user = username ?? '';
      const pass = password ? password.toString('utf8') : '';
      if (user === service.username) {
        if (timingSafeEqual(digest(pass), serviceDigest)) {
          serviceClients.add(client);
          return done(null, true);
        }
        return done(authError('bad username or password', 4), false);
      }
      if (user === '' || user.startsWith(SERVICE_USERNAME_PREFIX)) {
        return done(authError('bad username or password', 4), false);
      }
      // A unit may only be itself: its client id is its username (docs/mqtt-protocol.md §2).
      if (client.id !== user) return done(authError('client id must equal the username', 2), false);
      // Clean session only: the broker must never hold commands for an offline unit (SPEC §1).
      if (!client.clean) return done(authError('units must connect with a clean session', 5), false);
      checkUnit(user, pass).then(
        (ok) => {
          if (!ok) return done(authError('bad username or password', 4), false);
          acls.set(client, aclFor(user));
          done(null, true);
        },
        (err: unknown) => {
          logger.error({ err, unit: user }, 'unit authentication failed with an error');
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
      if (
        !acl ||
        acl.revoked ||
        !acl.publish.has(packet.topic) ||
        (packet.retain && packet.topic !== acl.retainTopic)
      ) {
        // A revoked unit's last will lands here too: dropped, the adapter clears its status.
        if (acl?.revoked) return done(new Error('unit removed'));
        logger.warn({ unit: client.id, topic: packet.topic }, 'unit publish denied; disconnecting it');
        return done(new Error('not authorized'));
      }
      done(null);
    },
    authorizeSubscribe(client, subscription, done) {
      if (serviceClients.has(client)) return done(null, subscription);
      const acl = acls.get(client);
      if (!acl || acl.revoked || subscription.topic !== acl.subscribe) {
        logger.warn({ unit: client.id, topic: subscription.topic }, 'unit subscribe denied');
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
    logger.debug({ client: client.id, err: err.message }, 'MQTT client error');
  });
  broker.on('connectionError', (client, err) => {
    logger.debug({ client: client?.id, err: err.message }, 'MQTT connection error');
  });

  const server = net.createServer({ noDelay: true }, broker.handle);
  // Sockets that never completed CONNECT are not aedes clients; close() ends them too.
  const sockets = new Set<net.Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.listen(options.port, options.host);
  try {
    await once(server, 'listening');
  } catch (e) {
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    throw e;
  }
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : options.port;
  const host = options.host === '0.0.0.0' || options.host === '::' || options.host === '' ? '127.0.0.1' : options.host;
  const url = `mqtt://${host.includes(':') ? `[${host}]` : host}:${port}`;
  logger.info({ url }, 'embedded MQTT broker listening');

  const provisioner: BrokerProvisioner = {
    // Nothing to provision: authentication reads the store through authenticateUnit. A new
    // password for a re-added unit must not be shadowed by a cached login.
    async provisionUnit(username) {
      authCache.delete(username);
    },
    async removeUnit(username) {
      authCache.delete(username);
      const client = units.get(username);
      if (!client) return;
      const acl = acls.get(client);
      // Revoked first, so its last will is not published: the adapter clears the status topic.
      if (acl) acl.revoked = true;
      units.delete(username);
      await new Promise<void>((resolve) => client.close(() => resolve()));
    },
  };

  let closed = false;
  return {
    port,
    url,
    serviceCredentials: service,
    provisioner,
    async close() {
      if (closed) return;
      closed = true;
      const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await serverClosed;
    },
  };
}
