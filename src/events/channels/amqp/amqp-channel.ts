import type { Logger } from 'pino';
import { amqpVhost } from '../../../config.js';
import { AmqpPublisher, type PublishableEvent } from './amqp-publisher.js';
import { RabbitmqProvisioner } from './rabbitmq-provisioner.js';

export interface AmqpSettings {
  amqpUrl: string;
  amqpPublicUrl: string | undefined;
  amqpManagementUrl: string | undefined;
  instanceId: string;
  /** How long unread consumer queues and their messages are kept. */
  retentionMs: number;
}

/** The management API and public URLs that default from --amqp-url (docs/configuration.md). */
export function resolveAmqpUrls(settings: Pick<AmqpSettings, 'amqpUrl' | 'amqpPublicUrl' | 'amqpManagementUrl'>): {
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
 * Delivery of events to RabbitMQ: the publisher (confirm channel, reconnecting) and the
 * provisioner of event consumers (users, permissions, queues).
 */
export class AmqpChannel {
  readonly name = 'amqp';

  private constructor(
    readonly publisher: AmqpPublisher,
    readonly provisioner: RabbitmqProvisioner,
    private readonly logger: Logger,
  ) {}

  static async start(settings: AmqpSettings, logger: Logger): Promise<AmqpChannel> {
    const urls = resolveAmqpUrls(settings);
    const log = logger.child({ channel: 'amqp' });
    const publisher = new AmqpPublisher({
      url: settings.amqpUrl,
      logger: log,
      connectionName: `fleetgate ${settings.instanceId}`,
    });
    const provisioner = new RabbitmqProvisioner({
      managementUrl: urls.managementUrl,
      vhost: urls.vhost,
      publicUrl: urls.publicUrl,
      retentionMs: settings.retentionMs,
      logger: log,
    });
    await publisher.start();
    // The policy that expires consumer queues; retried by the first consumer creation if
    // RabbitMQ is not up yet.
    await provisioner
      .ensureTopology()
      .catch((err: unknown) => log.warn({ err }, 'RabbitMQ management API not reachable yet'));
    return new AmqpChannel(publisher, provisioner, log);
  }

  /** Readiness: rejects, naming why, while RabbitMQ is not connected. */
  async check(): Promise<void> {
    const problem = this.publisher.problem;
    if (problem) throw new Error(problem);
  }

  /** Resolves once RabbitMQ confirmed every event; rejects (events stay undelivered) otherwise. */
  deliver(events: readonly PublishableEvent[]): Promise<void> {
    return this.publisher.publish(events);
  }

  async close(): Promise<void> {
    await this.publisher.close();
    this.logger.debug('AMQP channel closed');
  }
}
