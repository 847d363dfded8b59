import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import { EVENT_TYPES, type EventEnvelope, isEventType } from '../../../domain/events.js';
import { problems } from '../../../domain/problems.js';
import { opaqueId } from '../../../lib/ids.js';
import { decodePageToken, encodePageToken } from '../../../lib/pagination.js';
import type { ChannelRecord } from '../../../store/store.js';
import type { ChannelContext } from '../channel.js';
import { checkWebhookUrl } from './url-guard.js';
import { type SendResult, sendWebhook } from './webhook-sender.js';

export const WEBHOOK = 'webhook';
/** A subscription's retry state, kept apart from the subscription so edits and deliveries never collide. */
export const WEBHOOK_STATE = 'webhook-state';
export const cursorName = (id: string): string => `webhook:${id}`;

/** A subscription as stored (channel record `webhook`). */
export interface WebhookDoc {
  url: string;
  /** null: every event type. */
  event_types: string[] | null;
  enabled: boolean;
  disabled_reason: string | null;
  sealed_secret: string;
  /** The feed's head when it was created: delivery starts after it. */
  start_cursor: string | null;
  created_at: string;
  modified_at: string;
}

/** The head event's retry state (channel record `webhook-state`). */
export interface RetryState {
  event_id: string;
  failing_since: string;
  attempts: number;
  next_attempt_at: string;
  last_error: string | null;
}

/** One delivery attempt (the subscription's log). */
export interface DeliveryEntry {
  event_id: string;
  event_type: string;
  vehicle_id: string;
  attempt: number;
  trigger: 'automatic' | 'manual';
  status: 'succeeded' | 'failed';
  http_status: number | null;
  latency_ms: number;
  error: string | null;
  attempted_at: string;
  event: EventEnvelope;
}

export interface WebhookView {
  webhook_id: string;
  url: string;
  event_types: string[] | null;
  enabled: boolean;
  disabled_reason: string | null;
  created_at: string;
  modified_at: string;
}

export interface WebhookInput {
  url?: string;
  event_types?: string[] | null;
  enabled?: boolean;
}

const view = (r: ChannelRecord): WebhookView => {
  const d = r.doc as WebhookDoc;
  return {
    webhook_id: r.id,
    url: d.url,
    event_types: d.event_types,
    enabled: d.enabled,
    disabled_reason: d.disabled_reason,
    created_at: d.created_at,
    modified_at: d.modified_at,
  };
};

/** Webhook subscriptions of a fleet (issue: `/webhooks`), their deliveries and manual retries. */
export class WebhookService {
  constructor(private readonly context: ChannelContext) {}

  private get log() {
    return this.context.feed.log;
  }

  async create(fleetId: string, input: WebhookInput): Promise<WebhookView & { secret: string }> {
    const url = await this.checkUrl(input.url);
    const eventTypes = checkTypes(input.event_types);
    const id = `wh_${opaqueId(20).toLowerCase()}`;
    // Standard Webhooks: `whsec_` and a base64 key of 24 random bytes (192 bits).
    const secret = `whsec_${randomBytes(24).toString('base64')}`;
    const now = new Date().toISOString();
    const doc: WebhookDoc = {
      url,
      event_types: eventTypes,
      enabled: input.enabled ?? true,
      disabled_reason: null,
      sealed_secret: this.context.secrets.seal(secret, cursorName(id)),
      start_cursor: await this.log.head(),
      created_at: now,
      modified_at: now,
    };
    await this.log.putRecord(WEBHOOK, { id, fleet_id: fleetId, doc }, 0);
    return { ...view({ id, fleet_id: fleetId, doc, version: 1 }), secret };
  }

  async list(
    fleetId: string,
    limit: number,
    pageToken?: string,
  ): Promise<{ items: WebhookView[]; next_page_token: string | null }> {
    const after = pageToken === undefined ? undefined : decodePageToken(pageToken, 'w');
    const rows = await this.log.listRecords(WEBHOOK, fleetId, limit + 1, after);
    const items = rows.slice(0, limit);
    return {
      items: items.map(view),
      next_page_token: rows.length > limit ? encodePageToken('w', items.at(-1)!.id) : null,
    };
  }

  async get(fleetId: string, id: string): Promise<WebhookView> {
    return view(await this.own(fleetId, id));
  }

  async update(fleetId: string, id: string, input: WebhookInput): Promise<WebhookView> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const current = await this.own(fleetId, id);
      const doc = { ...(current.doc as WebhookDoc) };
      if (input.url !== undefined) doc.url = await this.checkUrl(input.url);
      if (input.event_types !== undefined) doc.event_types = checkTypes(input.event_types);
      if (input.enabled !== undefined) {
        // Enabling again starts over with the failing event: a fresh retry period.
        if (input.enabled && !doc.enabled) {
          doc.disabled_reason = null;
          await this.log.deleteRecord(WEBHOOK_STATE, id);
        }
        doc.enabled = input.enabled;
      }
      doc.modified_at = new Date().toISOString();
      const version = await this.log.putRecord(WEBHOOK, { id, fleet_id: fleetId, doc }, current.version);
      if (version !== undefined) return view({ ...current, doc, version });
    }
    throw problems.webhookBusy();
  }

  async remove(fleetId: string, id: string): Promise<void> {
    await this.own(fleetId, id);
    await this.log.deleteRecord(WEBHOOK, id);
    await this.log.deleteRecord(WEBHOOK_STATE, id);
    await this.log.deleteCursor(cursorName(id));
  }

  async deliveries(
    fleetId: string,
    id: string,
    limit: number,
    pageToken?: string,
  ): Promise<{ items: Array<Omit<DeliveryEntry, 'event'> & { delivery_id: string }>; next_page_token: string | null }> {
    await this.own(fleetId, id);
    const before = pageToken === undefined ? undefined : Number(decodePageToken(pageToken, 'd'));
    const rows = await this.log.listLog(WEBHOOK, id, limit + 1, before);
    const items = rows.slice(0, limit);
    return {
      items: items.map((r) => deliveryView(r.id, r.entry as DeliveryEntry)),
      next_page_token: rows.length > limit ? encodePageToken('d', String(items.at(-1)!.id)) : null,
    };
  }

  /** Sends a logged delivery's event again, now, once; answers the new attempt. */
  async retry(
    fleetId: string,
    id: string,
    deliveryId: string,
  ): Promise<Omit<DeliveryEntry, 'event'> & { delivery_id: string }> {
    const record = await this.own(fleetId, id);
    const entry = /^\d{1,15}$/.test(deliveryId)
      ? ((await this.log.getLog(WEBHOOK, id, Number(deliveryId))) as DeliveryEntry | undefined)
      : undefined;
    if (!entry) {
      throw problems.webhookDeliveryNotFound(id, deliveryId);
    }
    const { logId, entry: sent } = await this.deliver(record, entry.event, entry.attempt + 1, 'manual');
    return deliveryView(logId, sent);
  }

  /** Sends one event to the subscription and logs the attempt. */
  async deliver(
    record: ChannelRecord,
    event: EventEnvelope,
    attempt: number,
    trigger: DeliveryEntry['trigger'],
  ): Promise<{ result: SendResult; logId: number; entry: DeliveryEntry }> {
    const { result, entry } = await this.send(record, event, attempt, trigger);
    const logId = await this.log.appendLog(WEBHOOK, record.id, entry);
    return { result, logId, entry };
  }

  /** Sends one event to the subscription; the caller logs the attempt (`entry`). */
  async send(
    record: ChannelRecord,
    event: EventEnvelope,
    attempt: number,
    trigger: DeliveryEntry['trigger'],
    agent?: http.Agent,
  ): Promise<{ result: SendResult; entry: DeliveryEntry }> {
    const doc = record.doc as WebhookDoc;
    const secret = this.context.secrets.open(doc.sealed_secret, cursorName(record.id));
    const attemptedAt = new Date().toISOString();
    const result = await sendWebhook(doc.url, secret, event, {
      timeoutMs: this.context.config.webhooksTimeoutMs,
      allowPrivate: this.context.config.webhooksAllowPrivateUrls,
      agent,
    });
    const entry: DeliveryEntry = {
      event_id: event.metadata.id,
      event_type: event.metadata.type,
      vehicle_id: event.metadata.vehicle_id,
      attempt,
      trigger,
      status: result.ok ? 'succeeded' : 'failed',
      http_status: result.http_status,
      latency_ms: result.latency_ms,
      error: result.error,
      attempted_at: attemptedAt,
      event,
    };
    return { result, entry };
  }

  private async own(fleetId: string, id: string): Promise<ChannelRecord> {
    const record = await this.log.getRecord(WEBHOOK, id);
    if (!record || record.fleet_id !== fleetId) {
      throw problems.webhookNotFound(id);
    }
    return record;
  }

  private async checkUrl(url: string | undefined): Promise<string> {
    if (url === undefined) throw validation('url', 'is required');
    if (url.length > 2000) throw validation('url', 'is longer than 2000 characters');
    const problem = await checkWebhookUrl(url, this.context.config.webhooksAllowPrivateUrls);
    if (problem) {
      const hint = problem.includes('private') ? ' (allowed with --webhooks-allow-private-urls)' : '';
      throw validation('url', `${problem}${hint}`);
    }
    return url;
  }
}

function deliveryView(id: number, e: DeliveryEntry): Omit<DeliveryEntry, 'event'> & { delivery_id: string } {
  const { event: _event, ...rest } = e;
  return { delivery_id: String(id), ...rest };
}

function checkTypes(types: string[] | null | undefined): string[] | null {
  if (types === undefined || types === null) return null;
  const unknown = types.filter((t) => !isEventType(t));
  if (unknown.length > 0) {
    throw validation('event_types', `unknown: ${unknown.join(', ')}; known: ${EVENT_TYPES.join(', ')}`);
  }
  if (types.length === 0) throw validation('event_types', 'must name at least one type, or be null for all');
  return [...new Set(types)];
}

const validation = problems.field;
