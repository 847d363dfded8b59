import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { EventTopic } from '../../../domain/event-topics.js';
import type { EventConsumerProvisioner, ProvisionedConsumer } from '../../../services/event-consumer-service.js';
import { RabbitmqManagement, seg } from './rabbitmq-management.js';
import {
  CONSUMER_QUEUE_PREFIX,
  consumerPermissions,
  consumerQueue,
  consumerQueuePrefix,
  EVENTS_EXCHANGE,
  QUEUE_POLICY,
  topicBindingKeys,
} from './routing.js';

export interface RabbitmqProvisionerOptions {
  /** Management API base with an administrator account, e.g. http://fleetgate:pw@rabbit:15672. */
  managementUrl: string;
  /** fleetgate's virtual host, where its exchange and every consumer queue live. */
  vhost: string;
  /** Where consumers reach RabbitMQ: `amqp[s]://host:port` (user, password and vhost are added). */
  publicUrl: string;
  /** Unread consumer queues expire after this long, and messages older than this are dropped. */
  retentionMs: number;
  logger: Logger;
}

/**
 * Gives each event consumer its own RabbitMQ user, permissions, topic permissions and queues
 * through the management HTTP API, so the broker itself keeps fleets apart (docs/events.md,
 * "AMQP"). Nothing of it lives in fleetgate's memory: any instance may create or delete any
 * consumer.
 */
export class RabbitmqProvisioner implements EventConsumerProvisioner {
  private readonly api: RabbitmqManagement;
  private topologyReady = false;

  constructor(private readonly options: RabbitmqProvisionerOptions) {
    this.api = new RabbitmqManagement(options.managementUrl);
  }

  /** The exchange and the expiry policy of consumer queues; idempotent. */
  async ensureTopology(): Promise<void> {
    const vhost = seg(this.options.vhost);
    await this.api.put(`/exchanges/${vhost}/${seg(EVENTS_EXCHANGE)}`, {
      type: 'topic',
      durable: true,
      auto_delete: false,
      internal: false,
      arguments: {},
    });
    // Also covers queues a consumer declares itself under its prefix.
    await this.api.put(`/policies/${vhost}/${seg(QUEUE_POLICY)}`, {
      pattern: `^${CONSUMER_QUEUE_PREFIX.replaceAll('.', '\\.')}`,
      'apply-to': 'queues',
      priority: 0,
      definition: { expires: this.options.retentionMs, 'message-ttl': this.options.retentionMs },
    });
    this.topologyReady = true;
  }

  async createConsumer(consumer: {
    event_consumer_id: string;
    fleet_id: string;
    topics: readonly EventTopic[];
  }): Promise<ProvisionedConsumer> {
    if (!this.topologyReady) await this.ensureTopology();
    const vhost = seg(this.options.vhost);
    const id = consumer.event_consumer_id;
    const password = randomBytes(24).toString('base64url');
    try {
      const queues: ProvisionedConsumer['queues'] = [];
      for (const topic of consumer.topics) {
        const queue = consumerQueue(id, topic);
        await this.api.put(`/queues/${vhost}/${seg(queue)}`, {
          durable: true,
          auto_delete: false,
          arguments: {
            'x-queue-type': 'classic',
            'x-expires': this.options.retentionMs,
            'x-message-ttl': this.options.retentionMs,
          },
        });
        for (const key of topicBindingKeys(consumer.fleet_id, topic)) {
          await this.api.post(`/bindings/${vhost}/e/${seg(EVENTS_EXCHANGE)}/q/${seg(queue)}`, {
            routing_key: key,
            arguments: {},
          });
        }
        queues.push({ topic, queue });
      }
      const perms = consumerPermissions(id, consumer.fleet_id);
      await this.api.put(`/users/${seg(id)}`, { password, tags: '' });
      await this.api.put(`/permissions/${vhost}/${seg(id)}`, {
        configure: perms.configure,
        write: perms.write,
        read: perms.read,
      });
      await this.api.put(`/topic-permissions/${vhost}/${seg(id)}`, perms.topic);
      return { amqp_url: this.connectionUrl(id, password), queues };
    } catch (err) {
      await this.deleteConsumer({ event_consumer_id: id }).catch((e: unknown) =>
        this.options.logger.warn({ err: e, event_consumer_id: id }, 'could not undo a half-made event consumer'),
      );
      throw err;
    }
  }

  /** Removes the user (and with it its permissions), its connections and every queue of its prefix. */
  async deleteConsumer(consumer: { event_consumer_id: string }): Promise<void> {
    const id = consumer.event_consumer_id;
    const vhost = seg(this.options.vhost);
    // Connections first: RabbitMQ 3.10 also closes them when the user goes, and then answers
    // 500 to a request racing that close.
    await this.api
      .delete(`/connections/username/${seg(id)}`)
      .catch((err: unknown) => this.options.logger.debug({ err }, 'closing an event consumer connection failed'));
    await this.api.delete(`/users/${seg(id)}`);
    const prefix = consumerQueuePrefix(id);
    const queues = (await this.api.get(`/queues/${vhost}?columns=name`)) as Array<{ name: string }>;
    const exchanges = (await this.api.get(`/exchanges/${vhost}?columns=name`)) as Array<{ name: string }>;
    for (const q of queues.filter((q) => q.name.startsWith(prefix))) {
      await this.api.delete(`/queues/${vhost}/${seg(q.name)}`);
    }
    for (const x of exchanges.filter((x) => x.name.startsWith(prefix))) {
      await this.api.delete(`/exchanges/${vhost}/${seg(x.name)}`);
    }
  }

  private connectionUrl(username: string, password: string): string {
    const pub = new URL(this.options.publicUrl);
    // URL keeps IPv6 hosts in brackets already.
    const port = pub.port || (pub.protocol === 'amqps:' ? '5671' : '5672');
    return `${pub.protocol}//${seg(username)}:${seg(password)}@${pub.hostname}:${port}/${seg(this.options.vhost)}`;
  }
}
