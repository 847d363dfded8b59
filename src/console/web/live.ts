import type { EventEnvelope } from './api.js';

export type LiveStatus = 'connecting' | 'live' | 'lost';

/**
 * Event types the stream may send as named SSE events (`event: <type>`), which reach only
 * listeners of that name; unnamed ones arrive as `message`. The catalogue (src/domain/events.ts)
 * is server code; its names are repeated here.
 */
const EVENT_TYPES = [
  'VehicleStateRecorded',
  'CentralLockStatusChanged',
  'DrivingEnabledChanged',
  'IgnitionChanged',
  'TopCaseLockStatusChanged',
  'BatteryCompartmentLockStatusChanged',
  'VehicleChanged',
  'VehicleAdded',
  'VehicleRemoved',
  'CommandFinished',
  'CommandOutcomeResolved',
  'Trip',
];

const RETRY_MS = 3000;

/**
 * Follows the fleet's event stream (`GET /events/stream`, Server-Sent Events, authenticated by
 * the session cookie). The browser resumes a dropped stream by itself, sending Last-Event-ID;
 * when the server refused it (an error status closes an EventSource for good), this opens a new
 * one after a pause. `onLive` is called whenever the stream opens, the first time too: a stream
 * opened without a cursor (the first, or a new one after a refusal) starts with what commits
 * from then on, so what was stored after a page loaded and before that comes only by reloading.
 */
export function followEvents(handlers: {
  onEvent: (event: EventEnvelope) => void;
  onStatus: (status: LiveStatus) => void;
  onLive: () => void;
}): () => void {
  let source: EventSource | undefined;
  let retry: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  const seen = new Set<string>();

  const receive = (message: MessageEvent<string>) => {
    let event: EventEnvelope;
    try {
      event = JSON.parse(message.data) as EventEnvelope;
    } catch {
      return;
    }
    const id = event.metadata?.id;
    if (id) {
      // At least once: a resumed stream may repeat what was already shown.
      if (seen.has(id)) return;
      seen.add(id);
      if (seen.size > 2000) seen.clear();
    }
    handlers.onEvent(event);
  };

  const open = () => {
    if (stopped) return;
    handlers.onStatus('connecting');
    const es = new EventSource('/events/stream', { withCredentials: true });
    source = es;
    es.onopen = () => {
      handlers.onStatus('live');
      handlers.onLive();
    };
    es.onmessage = receive;
    for (const type of EVENT_TYPES) es.addEventListener(type, receive as EventListener);
    es.onerror = () => {
      handlers.onStatus('lost');
      if (es.readyState === EventSource.CLOSED) {
        retry = setTimeout(open, RETRY_MS);
      }
    };
  };
  open();
  return () => {
    stopped = true;
    if (retry) clearTimeout(retry);
    source?.close();
  };
}
