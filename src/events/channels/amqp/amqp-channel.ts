import type { Logger } from 'pino';
import { amqpVhost, type Config } from '../../../config.js';
import { CursorExpiredError, type CursorLease } from '../../../store/store.js';
import type { EventFeed } from '../../feed.js';
import type { ChannelContext, ChannelDefinition, DeliveryChannel } from '../channel.js';
import { AmqpPublisher } from './amqp-publisher.js';
import { RabbitmqProvisioner } from './rabbitmq-provisioner.js';

/** The durable cursor of AMQP delivery: one for every fleet, since one exchange carries them all. */
export const AMQP_CURSOR = 'amqp';
/** Events per publish; one confirm wait per batch. */
const BATCH = 500;
/** A dead instance's lease passes to another after this long. */
const LEASE_MS = 15_000;
/** Renew the lease when a third of it is gone. */
const RENEW_MS = LEASE_MS / 3;
/** How long an instance without the lease waits before trying to take it. */
const STANDBY_MS = 2_000;
/** Retry pause after a failed round (RabbitMQ or the database gone). */
const RETRY_MS = 500;

/** The management API and public URLs that default from --amqp-url (docs/configuration.md). */
export function resolveAmqpUrls(
  settings: Pick<Config, 'amqpUrl' | 'amqpPublicUrl' | 'amqpManagementUrl'> & { amqpUrl: string },
): {
  managementUrl: string;
  publicUrl: string;
  vhost: string;
} {
  const amqp = new URL(settings.amqpUrl);
  const account = `${amqp.username || 'guest'}:${amqp.password || 'guest'}`;
  const port = amqp.port || (amqp.protocol === 'amqps:' ? '5671' : '5672');
  return {
    managementUrl: settings.amqpManagementUrl ?? `http://${account}@${amqp.hostname}:15672`,
    publicUrl: settings.amqpPublicUrl ?? `${amqp.protocol}//${amqp.hostname}:${port}`,
    vhost: amqpVhost(settings.amqpUrl),
  };
}

/**
 * Delivery of events to RabbitMQ (`--amqp-url`): every event of the outbox, of every fleet, is
 * published to the topic exchange on a confirm channel, and the durable cursor advances only
 * once RabbitMQ confirmed the batch. One instance at a time holds the cursor's lease, so several
 * instances publish each event once in normal operation (twice at most across a lease lost
 * mid-batch: consumers deduplicate by message id). Off when --amqp-url is unset.
 */
export class AmqpChannel implements DeliveryChannel {
  readonly name = 'amqp';
  /** Event consumers' users, permissions and queues; undefined when AMQP is off. */
  readonly consumers: RabbitmqProvisioner | undefined;
  readonly publisher: AmqpPublisher | undefined;
  /**
   * Readiness: rejects, naming why, while RabbitMQ is not connected. Undefined when AMQP is off,
   * so /health/ready lists no `amqp` check then.
   */
  readonly health: (() => Promise<void>) | undefined;
  private readonly feed: EventFeed;
  private readonly logger: Logger;
  private readonly owner: string;
  private readonly stopping = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(context: ChannelContext) {
    this.feed = context.feed;
    this.logger = context.logger;
    this.owner = context.instanceId;
    const { config } = context;
    if (!config.amqpUrl) return;
    const urls = resolveAmqpUrls({ ...config, amqpUrl: config.amqpUrl });
    this.publisher = new AmqpPublisher({
      url: config.amqpUrl,
      logger: this.logger,
      connectionName: `fleetgate ${context.instanceId}`,
    });
    const publisher = this.publisher;
    this.health = async () => {
      if (publisher.problem) throw new Error(publisher.problem);
    };
    this.consumers = new RabbitmqProvisioner({
      managementUrl: urls.managementUrl,
      vhost: urls.vhost,
      publicUrl: urls.publicUrl,
      retentionMs: config.eventRetentionHours * 3600_000,
      logger: this.logger,
    });
  }

  async start(): Promise<void> {
    if (!this.publisher || !this.consumers) return;
    await this.publisher.start();
    // Retried by the first consumer creation when RabbitMQ is not up yet.
    await this.consumers
      .ensureTopology()
      .catch((err: unknown) => this.logger.warn({ err }, 'RabbitMQ management API not reachable yet'));
    this.loop = this.run(this.publisher);
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    await this.loop;
    await this.publisher?.close();
  }

  private async run(publisher: AmqpPublisher): Promise<void> {
    const { log } = this.feed;
    const signal = this.stopping.signal;
    let lease: CursorLease | undefined;
    let renewedAt = 0;
    while (!signal.aborted) {
      try {
        if (!publisher.connected) {
          await Promise.race([publisher.whenConnected(), aborted(signal)]);
          continue;
        }
        if (!lease || Date.now() - renewedAt > RENEW_MS) {
          lease = await log.acquireCursor(AMQP_CURSOR, this.owner, LEASE_MS, await log.head());
          renewedAt = Date.now();
          if (!lease) {
            await this.feed.wait(STANDBY_MS, signal);
            continue;
          }
        }
        const page = await this.read(lease.position);
        if (page.items.length === 0) {
          await this.feed.wait(RENEW_MS / 2, signal);
          continue;
        }
        await publisher.publish(page.items.map((i) => i.event));
        if (await log.advanceCursor(AMQP_CURSOR, this.owner, page.next_cursor)) {
          lease = { position: page.next_cursor };
        } else {
          // Another instance took the lease (this one stalled past it); it continues from the
          // cursor, republishing at most this batch.
          lease = undefined;
        }
      } catch (err) {
        lease = undefined;
        if (!signal.aborted) {
          this.logger.warn({ err }, 'AMQP delivery round failed; events wait in the outbox');
          await this.feed.wait(RETRY_MS, signal);
        }
      }
    }
    if (lease) await log.releaseCursor(AMQP_CURSOR, this.owner).catch(() => undefined);
  }

  private async read(position: string | null) {
    try {
      return await this.feed.read({ after: position ?? undefined, limit: BATCH });
    } catch (err) {
      if (!(err instanceof CursorExpiredError)) throw err;
      // RabbitMQ was unreachable for longer than the retention: what was pruned is gone for
      // every channel; go on from the oldest event kept.
      this.logger.error(
        { cursor: position },
        'AMQP delivery fell behind the event retention; continuing from the oldest',
      );
      return this.feed.read({ limit: BATCH });
    }
  }
}

/** The registry's entry (events/channels/registry.ts). */
export const AMQP_CHANNEL: ChannelDefinition<AmqpChannel> = {
  name: 'amqp',
  create: (context) => new AmqpChannel(context),
};

function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}
