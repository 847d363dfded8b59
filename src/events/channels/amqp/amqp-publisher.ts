import amqplib, { type ChannelModel, type ConfirmChannel, type Options } from 'amqplib';
import type { Logger } from 'pino';
import { redact } from '../../../config.js';
import type { EventEnvelope } from '../../../domain/events.js';
import { EVENTS_EXCHANGE, routingKey } from './routing.js';

/** An event as published: its envelope is the message body (docs/events.md, "AMQP"). */
export type PublishableEvent = EventEnvelope<unknown>;

export interface AmqpPublisherOptions {
  url: string;
  logger: Logger;
  /** Shown in RabbitMQ's connection list. */
  connectionName: string;
}

const RECONNECT_MIN_MS = 100;
const RECONNECT_MAX_MS = 5_000;
const HEARTBEAT_S = 10;

/**
 * Publishes events to fleetgate's topic exchange on a confirm channel: `publish` resolves only
 * once RabbitMQ has confirmed every message (for durable queues: written to disk), so the caller
 * marks events delivered only then. Reconnects by itself, with backoff, whenever the connection
 * is lost; while it is down `publish` rejects and events stay in the outbox.
 */
export class AmqpPublisher {
  private connection: ChannelModel | undefined;
  private channel: ConfirmChannel | undefined;
  private stopped = false;
  private retry: NodeJS.Timeout | undefined;
  private delayMs = RECONNECT_MIN_MS;
  private lastError = 'not connected yet';
  private readonly connectedWaiters = new Set<() => void>();

  constructor(private readonly options: AmqpPublisherOptions) {}

  /** Starts connecting; resolves after the first attempt, connected or not. */
  async start(): Promise<void> {
    await this.connect();
  }

  get connected(): boolean {
    return this.channel !== undefined;
  }

  /** Why it is not connected, for readiness; undefined when connected. */
  get problem(): string | undefined {
    return this.connected ? undefined : `not connected to ${redact(this.options.url)}: ${this.lastError}`;
  }

  /** Resolves the next time a channel is open (at once when one is). */
  whenConnected(): Promise<void> {
    if (this.connected) return Promise.resolve();
    return new Promise((resolve) => this.connectedWaiters.add(resolve));
  }

  /**
   * Publishes the events in order and resolves once RabbitMQ confirmed all of them; rejects when
   * not connected, when RabbitMQ refuses one (nack) or when the channel closes first. A rejected
   * batch may have been partly delivered: delivery is at least once, consumers deduplicate by
   * message id.
   */
  async publish(events: readonly PublishableEvent[]): Promise<void> {
    const channel = this.channel;
    if (!channel) throw new Error(this.problem);
    let onClose: (() => void) | undefined;
    const closed = new Promise<never>((_, reject) => {
      onClose = () => reject(new Error('the AMQP channel closed before RabbitMQ confirmed the events'));
      channel.once('close', onClose);
    });
    try {
      for (const event of events) {
        const m = event.metadata;
        channel.publish(
          EVENTS_EXCHANGE,
          routingKey(m.fleet_id, m.type, m.vehicle_id),
          Buffer.from(JSON.stringify(event)),
          messageProperties(event),
        );
      }
      await Promise.race([channel.waitForConfirms(), closed]);
    } finally {
      if (onClose) channel.off('close', onClose);
      closed.catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retry);
    const connection = this.connection;
    this.connection = undefined;
    this.channel = undefined;
    await connection?.close().catch(() => undefined);
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    let connection: ChannelModel | undefined;
    try {
      const url = new URL(this.options.url);
      if (!url.searchParams.has('heartbeat')) url.searchParams.set('heartbeat', String(HEARTBEAT_S));
      connection = await amqplib.connect(url.toString(), {
        clientProperties: { connection_name: this.options.connectionName },
        timeout: 5_000,
      });
      connection.on('error', (err: Error) => {
        this.lastError = err.message;
      });
      const channel = await connection.createConfirmChannel();
      channel.on('error', (err: Error) => {
        this.lastError = err.message;
      });
      await channel.assertExchange(EVENTS_EXCHANGE, 'topic', { durable: true });
      if (this.stopped) {
        await connection.close().catch(() => undefined);
        return;
      }
      const current = connection;
      connection.once('close', () => this.lost(current));
      channel.once('close', () => {
        // A channel closed by an error (e.g. a refused publish) takes the connection down with
        // it, so that the next attempt starts clean.
        if (this.connection === current) void current.close().catch(() => undefined);
      });
      this.connection = connection;
      this.channel = channel;
      this.delayMs = RECONNECT_MIN_MS;
      this.options.logger.info({ amqp: redact(this.options.url) }, 'connected to RabbitMQ');
      for (const resolve of this.connectedWaiters) resolve();
      this.connectedWaiters.clear();
    } catch (err) {
      this.lastError = err instanceof Error ? err.message : String(err);
      await connection?.close().catch(() => undefined);
      this.schedule();
    }
  }

  private lost(connection: ChannelModel): void {
    if (this.connection !== connection) return;
    this.connection = undefined;
    this.channel = undefined;
    if (this.stopped) return;
    this.options.logger.warn({ amqp: redact(this.options.url), reason: this.lastError }, 'lost RabbitMQ; reconnecting');
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped) return;
    const delay = this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, RECONNECT_MAX_MS);
    this.retry = setTimeout(() => void this.connect(), delay);
    this.retry.unref();
  }
}

/** AMQP 0-9-1 basic properties repeating the envelope's metadata (docs/events.md). */
export function messageProperties(event: PublishableEvent): Options.Publish {
  const m = event.metadata;
  return {
    persistent: true,
    contentType: 'application/json',
    messageId: m.id,
    type: m.type,
    // AMQP timestamps are whole seconds since the epoch; `occurred_at` in the body keeps the ms.
    timestamp: Math.floor(Date.parse(m.occurred_at) / 1000),
    correlationId: m.flow_id,
    appId: 'fleetgate',
    headers: { schema_major_version: m.schema_major_version },
  };
}
