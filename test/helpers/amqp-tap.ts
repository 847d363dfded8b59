import amqplib, { type ChannelModel } from 'amqplib';
import { EVENTS_EXCHANGE } from '../../src/events/channels/amqp/routing.js';
import type { Store } from '../../src/store/store.js';

/**
 * A durable queue bound to every event on fleetgate's exchange, declared with the broker's admin
 * account (not an event consumer): what the publisher sent, for tests that count messages.
 */
export async function declareTap(amqpUrl: string, queue: string): Promise<void> {
  const connection = await amqplib.connect(amqpUrl);
  try {
    const channel = await connection.createChannel();
    await channel.assertExchange(EVENTS_EXCHANGE, 'topic', { durable: true });
    await channel.assertQueue(queue, { durable: true });
    await channel.bindQueue(queue, EVENTS_EXCHANGE, '#');
  } finally {
    await connection.close();
  }
}

/** Consumes the tap, pushing each message id into `into`; close the connection when done. */
export async function consumeTap(amqpUrl: string, queue: string, into: string[]): Promise<ChannelModel> {
  const connection = await amqplib.connect(amqpUrl);
  connection.on('error', () => undefined);
  const channel = await connection.createChannel();
  await channel.consume(queue, (m) => {
    if (!m) return;
    into.push(String(m.properties.messageId));
    channel.ack(m);
  });
  return connection;
}

/** Every event id in the store's outbox, in feed order. */
export async function outboxIds(store: Store): Promise<string[]> {
  const ids: string[] = [];
  let after: string | undefined;
  for (;;) {
    const page = await store.events.read({ after, limit: 1000 });
    if (page.items.length === 0) return ids;
    ids.push(...page.items.map((i) => i.event.metadata.id));
    after = page.next_cursor;
  }
}

export function duplicates(ids: readonly string[]): string[] {
  const seen = new Set<string>();
  const dups: string[] = [];
  for (const id of ids) {
    if (seen.has(id)) dups.push(id);
    seen.add(id);
  }
  return dups;
}
