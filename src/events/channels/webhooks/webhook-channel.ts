import type { Api } from '../../../api/server.js';
import type { EventEnvelope } from '../../../domain/events.js';
import { type ChannelRecord, CursorExpiredError } from '../../../store/store.js';
import type { ChannelContext, ChannelDefinition, DeliveryChannel } from '../channel.js';
import { webhookRoutes } from './webhook-routes.js';
import {
  cursorName,
  type RetryState,
  WEBHOOK,
  WEBHOOK_STATE,
  type WebhookDoc,
  WebhookService,
} from './webhook-service.js';

/**
 * How often the channel looks for subscriptions no instance is delivering: a dead instance's
 * subscriptions continue at most this long after their lease (--webhooks-lease-ms) ran out.
 */
export const SCAN_MS = 1_000;
/**
 * A delivery starts only while at least the receiver's timeout and this much of the lease are
 * left: slack for timers firing late, so a request never outlives its instance's lease.
 */
const LEASE_SLACK_MS = 250;
const PAGE = 50;
/** Backoff: 1 s, doubling, at most an hour, each with jitter (50–100 %). */
const BACKOFF_BASE_MS = 1_000;
const BACKOFF_MAX_MS = 3600_000;

export function backoffMs(attempts: number, random = Math.random()): number {
  const exp = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempts - 1, 30));
  return Math.round(exp * (0.5 + random / 2));
}

/**
 * Webhooks (Standard Webhooks): one worker per subscription, in whichever instance holds the
 * subscription's cursor lease. A worker delivers the subscription's events one at a time in feed
 * order, so one vehicle's events arrive in the order they happened; a failing event is retried
 * with backoff (its successors wait behind it) until it succeeds or `--webhooks-retry-seconds`
 * pass, when the subscription is disabled with the reason. Workers never run in the command
 * path, and a slow receiver only holds up its own subscription.
 *
 * Several instances: every instance runs a worker for every subscription, but only the lease
 * holder delivers; the others try to take the lease on each scan. The holder renews the lease
 * before each delivery and sends only while the rest of the lease covers the whole request
 * (the sender's deadline), so two instances never send for one subscription at once. Each
 * acknowledged event's position is stored with the next renewal, before anything else is sent:
 * an instance that dies loses nothing, and its successor (within a scan after the lease ran out)
 * sends again at most the one event that was in flight.
 */
export class WebhookChannel implements DeliveryChannel {
  readonly name = 'webhooks';
  readonly service: WebhookService;
  private readonly workers = new Map<string, Promise<void>>();
  private readonly stopping = new AbortController();
  private scanner: NodeJS.Timeout | undefined;
  private scanning = false;

  constructor(private readonly context: ChannelContext) {
    this.service = new WebhookService(context);
  }

  registerRoutes(app: Api): void {
    webhookRoutes(app, this.service, () => this.scan());
  }

  async start(): Promise<void> {
    this.scanner = setInterval(() => this.scan(), SCAN_MS);
    this.scanner.unref();
    this.scan();
  }

  async stop(): Promise<void> {
    clearInterval(this.scanner);
    this.stopping.abort();
    await Promise.allSettled([...this.workers.values()]);
  }

  /** Starts a worker for every enabled subscription that has none here. */
  scan(): void {
    if (this.scanning || this.stopping.signal.aborted) return;
    this.scanning = true;
    void this.scanAll()
      .catch((err: unknown) => this.context.logger.warn({ err }, 'webhooks: looking for subscriptions failed'))
      .finally(() => {
        this.scanning = false;
      });
  }

  private async scanAll(): Promise<void> {
    let after: string | undefined;
    for (;;) {
      const page = await this.context.feed.log.listRecords(WEBHOOK, undefined, 500, after);
      for (const record of page) {
        if ((record.doc as WebhookDoc).enabled && !this.workers.has(record.id)) this.startWorker(record.id);
      }
      if (page.length < 500) return;
      after = page.at(-1)!.id;
    }
  }

  private startWorker(id: string): void {
    const work = this.work(id)
      .catch((err: unknown) => this.context.logger.warn({ err, webhook_id: id }, 'webhooks: worker stopped'))
      .finally(() => this.workers.delete(id));
    this.workers.set(id, work);
  }

  /** Delivers one subscription while this instance holds its lease. */
  private async work(id: string): Promise<void> {
    const { feed, instanceId, config } = this.context;
    const log = feed.log;
    const signal = this.stopping.signal;
    const name = cursorName(id);
    const leaseMs = config.webhooksLeaseMs;
    try {
      while (!signal.aborted) {
        const record = await log.getRecord(WEBHOOK, id);
        const doc = record?.doc as WebhookDoc | undefined;
        if (!record || !doc?.enabled) return;
        const lease = await log.acquireCursor(name, instanceId, leaseMs, doc.start_cursor);
        // Another instance delivers this subscription: the next scan tries again.
        if (!lease) return;
        let retry = (await log.getRecord(WEBHOOK_STATE, id))?.doc as RetryState | undefined;
        if (retry && Date.parse(retry.next_attempt_at) > Date.now()) {
          await sleep(Math.min(Date.parse(retry.next_attempt_at) - Date.now(), leaseMs / 3), signal);
          continue;
        }
        const page = await this.read(record, doc, lease.position);
        if (page.items.length === 0) {
          if (page.next_cursor !== lease.position) await log.advanceCursor(name, instanceId, page.next_cursor);
          await feed.wait(leaseMs / 3, signal);
          continue;
        }
        // The last event acknowledged and not stored yet: the next renewal stores it (one write).
        let acked: string | undefined;
        let delivered = 0;
        for (const item of page.items) {
          if (signal.aborted) break;
          // Renew the lease before each delivery; stop if another instance took over.
          if (!(await this.renew(name, doc.start_cursor, acked))) return;
          acked = undefined;
          if (!(await this.deliverOne(record, item.event, retry))) break;
          retry = undefined;
          acked = item.cursor;
          delivered++;
        }
        // A whole short page read up to the feed's head: continue from there, past filtered events.
        const end = delivered === page.items.length && delivered < PAGE ? page.next_cursor : acked;
        if (end !== undefined && !(await log.advanceCursor(name, instanceId, end))) return;
      }
    } finally {
      await log.releaseCursor(name, instanceId).catch(() => undefined);
    }
  }

  /**
   * Renews the lease, storing `acked` as the cursor's position in the same write, until what is
   * left of the lease covers a whole delivery (the database answered slowly otherwise): false
   * when another instance holds it or the channel stops. The lease runs from the database's clock
   * when it renewed, which is after the local start taken here.
   */
  private async renew(name: string, initial: string | null, acked: string | undefined): Promise<boolean> {
    const { feed, instanceId, config } = this.context;
    const leaseMs = config.webhooksLeaseMs;
    let position = acked;
    for (;;) {
      const started = performance.now();
      const held =
        position === undefined
          ? (await feed.log.acquireCursor(name, instanceId, leaseMs, initial)) !== undefined
          : await feed.log.advanceCursor(name, instanceId, position, leaseMs);
      if (!held) return false;
      position = undefined;
      if (started + leaseMs - performance.now() >= config.webhooksTimeoutMs + LEASE_SLACK_MS) return true;
      if (this.stopping.signal.aborted) return false;
    }
  }

  private async read(record: ChannelRecord, doc: WebhookDoc, position: string | null) {
    const query = {
      fleet_id: record.fleet_id,
      types: doc.event_types ?? undefined,
      after: position ?? undefined,
      limit: PAGE,
    };
    try {
      return await this.context.feed.read(query);
    } catch (e) {
      if (!(e instanceof CursorExpiredError)) throw e;
      // Disabled longer than retention: what it missed is gone; continue with what is kept.
      this.context.logger.warn({ webhook_id: record.id }, 'webhooks: events past retention were never delivered');
      return this.context.feed.read({ ...query, after: undefined });
    }
  }

  /**
   * One attempt at the head event, whose retry state (if it failed before) is `state`; on
   * failure records the retry state (or disables).
   */
  private async deliverOne(
    record: ChannelRecord,
    event: EventEnvelope,
    state: RetryState | undefined,
  ): Promise<boolean> {
    const log = this.context.feed.log;
    const same = state?.event_id === event.metadata.id;
    const attempts = same ? state.attempts + 1 : 1;
    const { result } = await this.service.deliver(record, event, attempts, 'automatic');
    if (result.ok) {
      if (state) await log.deleteRecord(WEBHOOK_STATE, record.id);
      return true;
    }
    const now = Date.now();
    const failingSince = same ? state.failing_since : new Date(now).toISOString();
    const retrySeconds = this.context.config.webhooksRetrySeconds;
    if (now - Date.parse(failingSince) >= retrySeconds * 1000) {
      await this.disable(
        record,
        `Deliveries failed for ${retrySeconds} s (since ${failingSince}); last: ${result.error}`,
      );
      return false;
    }
    const next: RetryState = {
      event_id: event.metadata.id,
      failing_since: failingSince,
      attempts,
      next_attempt_at: new Date(now + backoffMs(attempts)).toISOString(),
      last_error: result.error,
    };
    await log.putRecord(WEBHOOK_STATE, { id: record.id, fleet_id: record.fleet_id, doc: next });
    this.context.logger.info(
      { webhook_id: record.id, event_id: event.metadata.id, attempts, error: result.error },
      'webhook delivery failed; retrying later',
    );
    return false;
  }

  private async disable(record: ChannelRecord, reason: string): Promise<void> {
    const log = this.context.feed.log;
    for (let attempt = 0; attempt < 5; attempt++) {
      const current = await log.getRecord(WEBHOOK, record.id);
      if (!current) return;
      const doc = { ...(current.doc as WebhookDoc), enabled: false, disabled_reason: reason };
      doc.modified_at = new Date().toISOString();
      if (
        (await log.putRecord(WEBHOOK, { id: current.id, fleet_id: current.fleet_id, doc }, current.version)) !==
        undefined
      ) {
        await log.deleteRecord(WEBHOOK_STATE, record.id);
        this.context.logger.warn({ webhook_id: record.id, reason }, 'webhook subscription disabled');
        return;
      }
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    signal.addEventListener('abort', done, { once: true });
  });
}

export const webhooksChannel: ChannelDefinition<WebhookChannel> = {
  name: 'webhooks',
  create: (context: ChannelContext) => new WebhookChannel(context),
};
