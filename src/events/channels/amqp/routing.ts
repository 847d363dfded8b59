import { EVENT_TOPICS, type EventTopic } from '../../../domain/event-topics.js';

/**
 * Names fleetgate uses in its RabbitMQ virtual host (docs/events.md, "AMQP"). One durable topic
 * exchange carries every fleet's events; routing keys are `<fleet>.<event type>.<vehicle>`, so a
 * binding can select a fleet, a type, a vehicle or any mix with `*` and `#`. Isolation between
 * fleets rests on RabbitMQ's permissions and topic permissions (rabbitmq-provisioner.ts).
 */
export const EVENTS_EXCHANGE = 'fleetgate.events';

/** Every event consumer's queues (and any it declares itself) start with this. */
export const CONSUMER_QUEUE_PREFIX = 'fleetgate.consumer.';

/** Name of the RabbitMQ policy that makes consumer queues expire. */
export const QUEUE_POLICY = 'fleetgate-consumer-queues';

/**
 * A routing key word: `.` separates words in AMQP topic routing, and fleet ids may hold dots,
 * so a dot is written `%2E` (fleet ids have no `%`). Vehicle and type names have no dots.
 */
export function routingWord(value: string | null | undefined): string {
  if (value === null || value === undefined || value === '') return '-';
  return value.replaceAll('%', '%25').replaceAll('.', '%2E');
}

export function routingKey(fleetId: string, eventType: string, vehicleId: string | null | undefined): string {
  return `${routingWord(fleetId)}.${routingWord(eventType)}.${routingWord(vehicleId)}`;
}

/** The binding keys that route a topic's event types of one fleet into a queue. */
export function topicBindingKeys(fleetId: string, topic: EventTopic): string[] {
  return EVENT_TOPICS[topic].event_types.map((type) => `${routingWord(fleetId)}.${type}.*`);
}

export function consumerQueuePrefix(consumerId: string): string {
  return `${CONSUMER_QUEUE_PREFIX}${consumerId}.`;
}

export function consumerQueue(consumerId: string, topic: EventTopic): string {
  return `${consumerQueuePrefix(consumerId)}${topic}`;
}

const escapeRegex = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * RabbitMQ permissions of one consumer's user. It may declare, bind and read only queues (and
 * exchanges) under its own prefix, and read (bind from) the events exchange; its topic
 * permission on that exchange only admits binding keys that start with its fleet's word, so no
 * binding it can make routes another fleet's events to it. It may publish nowhere.
 */
export function consumerPermissions(
  consumerId: string,
  fleetId: string,
): {
  configure: string;
  write: string;
  read: string;
  topic: { exchange: string; write: string; read: string };
} {
  const own = `^${escapeRegex(consumerQueuePrefix(consumerId))}`;
  return {
    configure: own,
    write: own,
    read: `^(${escapeRegex(EVENTS_EXCHANGE)}$|${escapeRegex(consumerQueuePrefix(consumerId))})`,
    topic: { exchange: EVENTS_EXCHANGE, write: '^$', read: `^${escapeRegex(routingWord(fleetId))}\\.` },
  };
}
