import type { Logger } from 'pino';
import { EVENT_TOPIC_NAMES, EVENT_TOPICS, type EventTopic, isEventTopic } from '../domain/event-topics.js';
import { ProblemError, problems } from '../domain/problems.js';
import { opaqueId } from '../lib/ids.js';
import type { EventLog } from '../store/store.js';

/** What a consumer needs to connect, returned once: the password is nowhere else. */
export interface ProvisionedConsumer {
  /** `amqp://<user>:<password>@<host>:<port>/<vhost>` */
  amqp_url: string;
  queues: Array<{ topic: EventTopic; queue: string }>;
}

/**
 * The port to the message broker's access control (src/events/channels/amqp/ implements it for
 * RabbitMQ): a consumer's account, permissions and queues, made and removed by the broker.
 */
export interface EventConsumerProvisioner {
  createConsumer(consumer: {
    event_consumer_id: string;
    fleet_id: string;
    topics: readonly EventTopic[];
  }): Promise<ProvisionedConsumer>;
  /** Removes the consumer's access, connections and queues; succeeds when they are already gone. */
  deleteConsumer(consumer: { event_consumer_id: string }): Promise<void>;
}

/** What the store keeps of a consumer (a channel record of kind `event-consumer`): never its password. */
interface EventConsumerDoc {
  topics: string[];
  queues: Array<{ topic: string; queue: string }>;
  created_at: string;
}

/** The store's channel records, where consumers are kept (EventLog, both engines). */
export type EventConsumerRecords = Pick<EventLog, 'putRecord' | 'getRecord' | 'listRecords' | 'deleteRecord'>;

const KIND = 'event-consumer';

export interface EventConsumerView {
  event_consumer_id: string;
  topics: string[];
  queues: Array<{ topic: string; queue: string }>;
  created_at: string;
}

/** Event consumer ids: `fgec_` and 20 characters; also the consumer's broker user name. */
export const newEventConsumerId = (): string => `fgec_${opaqueId(20).toLowerCase()}`;

/** Enough for every team of a fleet; bounds what one fleet can make the broker hold. */
export const EVENT_CONSUMERS_PER_FLEET = 100;

/**
 * Event consumers of a fleet (`/event-consumers`, scope `events`): AMQP access to the fleet's
 * events, one queue per subscribed topic. Another fleet's consumers are indistinguishable from
 * missing ones (404, never 403).
 */
export class EventConsumerService {
  constructor(
    private readonly records: EventConsumerRecords,
    /** Undefined when fleetgate publishes to no broker (`--amqp-url` unset). */
    private readonly provisioner: EventConsumerProvisioner | undefined,
    private readonly logger: Logger,
  ) {}

  /** The topics a consumer may subscribe to, with their event types. */
  topics(): Array<{ topic: EventTopic; description: string; event_types: string[] }> {
    return EVENT_TOPIC_NAMES.map((topic) => ({
      topic,
      description: EVENT_TOPICS[topic].description,
      event_types: [...EVENT_TOPICS[topic].event_types],
    }));
  }

  async create(
    fleetId: string,
    topics: readonly string[],
  ): Promise<ProvisionedConsumer & { event_consumer_id: string }> {
    const unknown = topics.filter((t) => !isEventTopic(t));
    if (unknown.length > 0) {
      throw problems.unknownTopics(unknown, EVENT_TOPIC_NAMES);
    }
    const provisioner = this.available();
    const existing = await this.records.listRecords(KIND, fleetId, EVENT_CONSUMERS_PER_FLEET);
    if (existing.length >= EVENT_CONSUMERS_PER_FLEET) {
      throw problems.tooManyEventConsumers(existing.length);
    }
    const wanted = [...new Set(topics)] as EventTopic[];
    const id = newEventConsumerId();
    const provisioned = await this.brokerCall(() =>
      provisioner.createConsumer({ event_consumer_id: id, fleet_id: fleetId, topics: wanted }),
    );
    const doc: EventConsumerDoc = { topics: wanted, queues: provisioned.queues, created_at: new Date().toISOString() };
    try {
      const stored = await this.records.putRecord(KIND, { id, fleet_id: fleetId, doc }, 0);
      if (stored === undefined) throw new Error(`event consumer id ${id} exists`);
    } catch (err) {
      await provisioner.deleteConsumer({ event_consumer_id: id }).catch(() => undefined);
      throw err;
    }
    return { event_consumer_id: id, amqp_url: provisioned.amqp_url, queues: provisioned.queues };
  }

  async list(fleetId: string): Promise<EventConsumerView[]> {
    const records = await this.records.listRecords(KIND, fleetId, EVENT_CONSUMERS_PER_FLEET);
    return records
      .map((r) => view(r.id, r.doc as EventConsumerDoc))
      .sort(
        (a, b) => a.created_at.localeCompare(b.created_at) || a.event_consumer_id.localeCompare(b.event_consumer_id),
      );
  }

  async get(fleetId: string, id: string): Promise<EventConsumerView> {
    return view(id, await this.owned(fleetId, id));
  }

  /** Removes broker access first: a consumer left in the store can be deleted again. */
  async delete(fleetId: string, id: string): Promise<void> {
    await this.owned(fleetId, id);
    const provisioner = this.available();
    await this.brokerCall(() => provisioner.deleteConsumer({ event_consumer_id: id }));
    await this.records.deleteRecord(KIND, id);
  }

  private async owned(fleetId: string, id: string): Promise<EventConsumerDoc> {
    const record = await this.records.getRecord(KIND, id);
    if (!record || record.fleet_id !== fleetId) {
      throw problems.eventConsumerNotFound(id);
    }
    return record.doc as EventConsumerDoc;
  }

  private async brokerCall<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof ProblemError) throw err;
      this.logger.error({ err }, 'event consumer provisioning failed');
      throw problems.brokerUnreachable();
    }
  }

  private available(): EventConsumerProvisioner {
    if (!this.provisioner) {
      throw problems.amqpNotConfigured();
    }
    return this.provisioner;
  }
}

function view(id: string, doc: EventConsumerDoc): EventConsumerView {
  return { event_consumer_id: id, topics: [...doc.topics], queues: doc.queues, created_at: doc.created_at };
}
