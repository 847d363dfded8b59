import { EVENT_TYPES, type EventEnvelope, isEventType, type StoredEvent } from '../domain/events.js';
import { problems } from '../domain/problems.js';
import type { EventFeed } from '../events/feed.js';
import { CursorExpiredError, type EventPage, InvalidCursorError } from '../store/store.js';
import type { Principal } from './auth-service.js';

/** Long polls wait at most this long (issue: `wait=` up to 30 s). */
export const MAX_WAIT_SECONDS = 30;

export interface EventFilter {
  types?: readonly string[];
  vehicle_id?: string;
}

/**
 * Pull and stream (SPEC §8): a fleet's events from the outbox, in the order they happened, from
 * any cursor within retention. Always scoped to the caller's fleet.
 */
export class EventService {
  constructor(private readonly feed: EventFeed) {}

  /** `GET /events`: a page after `after`; with `waitSeconds`, waits for the first event (long poll). */
  async pull(
    principal: Principal,
    query: EventFilter & { after?: string; limit: number; waitSeconds?: number },
    signal?: AbortSignal,
  ): Promise<{ items: EventEnvelope[]; next_cursor: string }> {
    const types = checkTypes(query.types);
    const wait = Math.min(query.waitSeconds ?? 0, MAX_WAIT_SECONDS) * 1000;
    const request = {
      fleet_id: principal.fleetId,
      after: query.after,
      types,
      vehicle_id: query.vehicle_id,
      limit: query.limit,
    };
    const page = await translate(
      wait > 0 ? this.feed.readOrWait(request, wait, signal) : this.feed.read(request),
      'after',
    );
    return { items: page.items.map((e) => e.event), next_cursor: page.next_cursor };
  }

  /** The newest event's cursor (a stream without a cursor starts after it). */
  head(): Promise<string | null> {
    return this.feed.log.head();
  }

  /**
   * The stream's source (`GET /events/stream`): yields events after `after` as they commit,
   * until `signal` aborts. The first read happens before the first yield, so a bad or expired
   * cursor is thrown before the response starts.
   */
  async open(
    principal: Principal,
    query: EventFilter & { after?: string },
    field: string,
  ): Promise<{ first: EventPage; next: (after: string, waitMs: number, signal: AbortSignal) => Promise<EventPage> }> {
    const types = checkTypes(query.types);
    const base = { fleet_id: principal.fleetId, types, vehicle_id: query.vehicle_id, limit: 200 };
    const first = await translate(this.feed.read({ ...base, after: query.after }), field);
    return {
      first,
      next: (after, waitMs, signal) => translate(this.feed.readOrWait({ ...base, after }, waitMs, signal), field),
    };
  }
}

function checkTypes(types: readonly string[] | undefined): string[] | undefined {
  if (types === undefined) return undefined;
  const list = types
    .flatMap((t) => t.split(','))
    .map((t) => t.trim())
    .filter((t) => t !== '');
  const unknown = list.filter((t) => !isEventType(t));
  if (unknown.length > 0) {
    throw problems.unknownEventTypes(unknown, EVENT_TYPES);
  }
  return list.length > 0 ? list : undefined;
}

async function translate<T extends { items: StoredEvent[] }>(read: Promise<T>, field: string): Promise<T> {
  try {
    return await read;
  } catch (e) {
    if (e instanceof CursorExpiredError) {
      throw problems.cursorExpired(field, e.cursor);
    }
    if (e instanceof InvalidCursorError) {
      throw problems.notAnEventCursor(field, e.cursor);
    }
    throw e;
  }
}
