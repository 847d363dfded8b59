import http from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Api } from '../../../api/server.js';
import type { EventEnvelope } from '../../../domain/events.js';
import { type ChannelRecord, CursorExpiredError } from '../../../store/store.js';
import type { ChannelContext, ChannelDefinition, DeliveryChannel } from '../channel.js';
import { webhookRoutes } from './webhook-routes.js';
import {
  cursorName,
  type DeliveryEntry,
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
const PAGE = 200;
/**
 * Vehicles whose events go out at once, each vehicle's in order: a receiver 20 ms away takes 50
 * events/s one at a time, and a fleet of 15,000 units reporting every 30 s makes 500/s.
 */
const LANES = 8;
/** Backoff: 1 s, doubling, at most an hour, each with jitter (50–100 %). */
const BACKOFF_BASE_MS = 1_000;
const BACKOFF_MAX_MS = 3600_000;

export function backoffMs(attempts: number, random = Math.random()): number {
  const exp = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempts - 1, 30));
  return Math.round(exp * (0.5 + random / 2));
}

/**
 * Webhooks (Standard Webhooks): one worker per subscription, in whichever instance holds the
 * subscription's cursor lease. A worker reads the subscription's events a page at a time and
 * sends each vehicle's events one after the other in feed order, up to LANES vehicles at once
 * over keep-alive connections, so one vehicle's events arrive in the order they happened. A
 * failing event stops its vehicle's lane and the page; it is retried with backoff (alone first,
 * its successors wait behind it) until it succeeds or `--webhooks-retry-seconds` pass, when the
 * subscription is disabled with the reason. Events of the page delivered past it are not sent
 * again by the worker. Workers never run in the command path, and a slow receiver only holds up
 * its own subscription.
 *
 * Several instances: every instance runs a worker for every subscription, but only the lease
 * holder delivers; the others try to take the lease on each scan. A request starts only while
 * the rest of the lease covers it whole (the sender's deadline; LeaseKeeper renews first), so
 * two instances never send for one subscription at once. The cursor moves after each page, in
 * the same write as a renewal: an instance that dies loses nothing, and its successor (within a
 * scan after the lease ran out) sends again at most the page that was going out.
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
    // Events delivered past the stored cursor (a page whose earlier event failed): not sent again
    // by this worker when the page is read again after the backoff.
    let ahead = new Set<string>();
    const agent = new KeepAliveAgents(LANES);
    try {
      while (!signal.aborted) {
        const record = await log.getRecord(WEBHOOK, id);
        const doc = record?.doc as WebhookDoc | undefined;
        if (!record || !doc?.enabled) return;
        const lease = await log.acquireCursor(name, instanceId, leaseMs, doc.start_cursor);
        // Another instance delivers this subscription: the next scan tries again.
        if (!lease) return;
        const retry = (await log.getRecord(WEBHOOK_STATE, id))?.doc as RetryState | undefined;
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
        const keeper = new LeaseKeeper(
          // A subscription deleted or disabled meanwhile ends the page (and never gets its
          // cursor row back through the renewal).
          async () =>
            ((await log.getRecord(WEBHOOK, id))?.doc as WebhookDoc | undefined)?.enabled === true &&
            this.renew(name, doc.start_cursor, undefined),
          leaseMs,
          config.webhooksTimeoutMs + LEASE_SLACK_MS,
        );
        if (!(await keeper.ensure())) return;
        // While retrying, one request at a time, the failed event first (its vehicle's lane).
        const outcome = await this.deliverPage(record, page.items, ahead, retry, keeper, agent);
        // The page's attempts, logged in one write before the cursor moves past them.
        await log.appendLogs(WEBHOOK, record.id, outcome.attempts);
        if (keeper.lost) return;
        // The position after the last event of the unbroken run delivered from the page's start;
        // a whole short page read up to the feed's head continues from there, past filtered events.
        const firstMissing = page.items.findIndex((item) => !outcome.delivered.has(item.event.metadata.id));
        const end =
          firstMissing === -1
            ? page.items.length < PAGE
              ? page.next_cursor
              : page.items.at(-1)!.cursor
            : firstMissing > 0
              ? page.items[firstMissing - 1]!.cursor
              : undefined;
        ahead = new Set(
          page.items
            .slice(firstMissing === -1 ? page.items.length : firstMissing)
            .flatMap((item) => (outcome.delivered.has(item.event.metadata.id) ? [item.event.metadata.id] : [])),
        );
        if (end !== undefined && !(await log.advanceCursor(name, instanceId, end, leaseMs))) return;
        await this.settleRetry(record, outcome.failed, outcome.failedError, retry);
      }
    } finally {
      agent.destroy();
      await log.releaseCursor(name, instanceId).catch(() => undefined);
    }
  }

  /**
   * Sends a page's events: one vehicle's events one after the other, in feed order, stopping at
   * its first failure (its later events wait behind it); up to `lanes` vehicles at once. Each
   * request starts only while the lease covers it (LeaseKeeper).
   */
  private async deliverPage(
    record: ChannelRecord,
    items: Array<{ cursor: string; event: EventEnvelope }>,
    ahead: Set<string>,
    retry: RetryState | undefined,
    lease: LeaseKeeper,
    agents: KeepAliveAgents,
  ): Promise<{
    delivered: Set<string>;
    failed: EventEnvelope | undefined;
    failedError: string | null;
    attempts: DeliveryEntry[];
  }> {
    const lanes = retry ? 1 : LANES;
    const delivered = new Set<string>();
    const attempts: DeliveryEntry[] = [];
    const byVehicle = new Map<string, EventEnvelope[]>();
    for (const { event } of items) {
      if (ahead.has(event.metadata.id)) {
        delivered.add(event.metadata.id);
        continue;
      }
      const key = event.metadata.vehicle_id ?? '';
      const queue = byVehicle.get(key);
      if (queue) queue.push(event);
      else byVehicle.set(key, [event]);
    }
    const queues = [...byVehicle.values()];
    const failures: EventEnvelope[] = [];
    let failedError: string | null = null;
    const order = new Map(items.map((item, i) => [item.event.metadata.id, i]));
    const runLane = async (): Promise<void> => {
      for (let queue = queues.shift(); queue; queue = queues.shift()) {
        for (const event of queue) {
          if (this.stopping.signal.aborted || !(await lease.ensure())) return;
          const attempt = retry?.event_id === event.metadata.id ? retry.attempts + 1 : 1;
          const { result, entry } = await this.service.send(
            record,
            event,
            attempt,
            'automatic',
            agents.agentFor(record),
          );
          attempts.push(entry);
          if (!result.ok) {
            failures.push(event);
            failedError = result.error;
            // After a failure, no other vehicle's events go out either: the backoff applies to all.
            queues.length = 0;
            break;
          }
          delivered.add(event.metadata.id);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(lanes, queues.length) }, runLane));
    failures.sort((a, b) => order.get(a.metadata.id)! - order.get(b.metadata.id)!);
    return { delivered, failed: failures[0], failedError, attempts };
  }

  /**
   * After a page: the earliest failed event's retry state (attempts counted per event, failing
   * since its first failure), or the subscription disabled once it failed for
   * `--webhooks-retry-seconds`; no failure clears the state.
   */
  private async settleRetry(
    record: ChannelRecord,
    failed: EventEnvelope | undefined,
    lastError: string | null,
    state: RetryState | undefined,
  ): Promise<void> {
    const log = this.context.feed.log;
    if (!failed) {
      if (state) await log.deleteRecord(WEBHOOK_STATE, record.id);
      return;
    }
    const same = state?.event_id === failed.metadata.id;
    const attempts = same ? state.attempts + 1 : 1;
    const now = Date.now();
    const failingSince = same ? state.failing_since : new Date(now).toISOString();
    const retrySeconds = this.context.config.webhooksRetrySeconds;
    if (now - Date.parse(failingSince) >= retrySeconds * 1000) {
      await this.disable(record, `Deliveries failed for ${retrySeconds} s (since ${failingSince}); last: ${lastError}`);
      return;
    }
    const next: RetryState = {
      event_id: failed.metadata.id,
      failing_since: failingSince,
      attempts,
      next_attempt_at: new Date(now + backoffMs(attempts)).toISOString(),
      last_error: lastError,
    };
    await log.putRecord(WEBHOOK_STATE, { id: record.id, fleet_id: record.fleet_id, doc: next });
    this.context.logger.info(
      { webhook_id: record.id, event_id: failed.metadata.id, attempts, error: lastError },
      'webhook delivery failed; retrying later',
    );
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

/**
 * The lease while a page goes out: a request starts only while what is left of the lease (from
 * the local time before its last renewal) covers `needMs`; otherwise the lanes wait for one
 * renewal. `lost` once another instance holds it.
 */
class LeaseKeeper {
  lost = false;
  private renewedAt = -Infinity;
  private renewing: Promise<boolean> | undefined;

  constructor(
    private readonly renew: () => Promise<boolean>,
    private readonly leaseMs: number,
    private readonly needMs: number,
  ) {}

  async ensure(): Promise<boolean> {
    if (this.lost) return false;
    if (performance.now() + this.needMs <= this.renewedAt + this.leaseMs) return true;
    this.renewing ??= (async () => {
      const started = performance.now();
      const held = await this.renew();
      if (held) this.renewedAt = started;
      else this.lost = true;
      this.renewing = undefined;
      return held;
    })();
    return this.renewing;
  }
}

/** One keep-alive agent per subscription URL's protocol, with a socket per lane. */
class KeepAliveAgents {
  private readonly agents = new Map<string, http.Agent>();

  constructor(private readonly sockets: number) {}

  agentFor(record: ChannelRecord): http.Agent {
    const https = (record.doc as WebhookDoc).url.startsWith('https:');
    const key = https ? 'https' : 'http';
    let agent = this.agents.get(key);
    if (!agent) {
      const options = { keepAlive: true, maxSockets: this.sockets, maxFreeSockets: this.sockets, timeout: 30_000 };
      agent = https ? new HttpsAgent(options) : new http.Agent(options);
      this.agents.set(key, agent);
    }
    return agent;
  }

  destroy(): void {
    for (const agent of this.agents.values()) agent.destroy();
    this.agents.clear();
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
