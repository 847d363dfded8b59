import type { Logger } from 'pino';
import type { Api } from '../../api/server.js';
import type { Config } from '../../config.js';
import type { EventConsumerProvisioner } from '../../services/event-consumer-service.js';
import type { EventFeed } from '../feed.js';

/**
 * A delivery channel: a way events leave fleetgate (webhooks, AMQP…). Each channel is a folder
 * beside its siblings (events/channels/<name>/) with one line in registry.ts. A channel reads the
 * feed (EventFeed, over the outbox) and never runs in the command path: a slow or dead receiver
 * only delays that channel's own cursor.
 *
 * The usual loop, per subscription or consumer:
 * 1. `feed.log.acquireCursor(name, instanceId, leaseMs, initial)`: undefined means another
 *    instance delivers for it now; try again later. Renew (acquire again) well within leaseMs.
 * 2. `feed.read({ after: lease.position, fleet_id, types, limit })`: the next events in order.
 * 3. Deliver them (e.g. publish a batch and wait for publisher confirms), then
 *    `feed.log.advanceCursor(name, instanceId, page.next_cursor)` (given a lease length, it renews
 *    the lease in the same write): false means the lease was lost and the other holder continues
 *    (so delivery is at least once, never skipped).
 * 4. When nothing was read, `feed.wait(ms)` until this instance commits more or ms pass.
 * 5. On stop, `feed.log.releaseCursor(name, instanceId)` so another instance takes over at once.
 */
export interface DeliveryChannel {
  readonly name: string;
  /** Starts delivering in the background; resolves once started. */
  start(): Promise<void>;
  /** Stops delivering, releases its leases; resolves when no delivery is in progress. */
  stop(): Promise<void>;
  /**
   * The channel's HTTP routes (e.g. `/webhooks`), registered before the API listens and before
   * start(). Give each route `config: { scope: 'events' }` (or `events.ro`): the API's shared
   * auth hook then authenticates the caller and sets `request.principal` (its fleet), whatever
   * credentials the API accepts.
   */
  registerRoutes?(app: Api): void;
  /**
   * Rejects, saying why, while what the channel delivers to is unreachable (its broker).
   * `/health/ready` names the channel then, but the instance stays ready: events wait in the
   * outbox, commands go on.
   */
  health?(): Promise<void>;
  /** Consumer accounts that operators make through `POST /event-consumers` (AMQP), when enabled. */
  readonly consumers?: EventConsumerProvisioner | undefined;
}

/** What a channel is given: the feed and its durable state, its settings, a logger. */
export interface ChannelContext {
  feed: EventFeed;
  config: Readonly<Config>;
  logger: Logger;
  /** This instance's id: the owner of the cursor leases it takes. */
  instanceId: string;
  /** Encrypts what a channel keeps that is secret (signing keys, passwords) before it is stored. */
  secrets: {
    seal(plaintext: string, associatedData: string): string;
    open(sealed: string, associatedData: string): string;
  };
}

/** A channel's registry entry (registry.ts). */
export interface ChannelDefinition<C extends DeliveryChannel = DeliveryChannel> {
  readonly name: string;
  create(context: ChannelContext): C;
}
