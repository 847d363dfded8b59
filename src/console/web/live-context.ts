import { createContext } from 'preact';
import { useContext, useEffect, useRef } from 'preact/hooks';
import type { EventEnvelope } from './api.js';

/** Fans the one event stream out to whichever page is shown. */
export class LiveHub {
  private readonly events = new Set<(e: EventEnvelope) => void>();
  private readonly lives = new Set<() => void>();

  emit(event: EventEnvelope): void {
    for (const fn of this.events) fn(event);
  }

  wentLive(): void {
    for (const fn of this.lives) fn();
  }

  subscribe(onEvent: (e: EventEnvelope) => void, onLive: () => void): () => void {
    this.events.add(onEvent);
    this.lives.add(onLive);
    return () => {
      this.events.delete(onEvent);
      this.lives.delete(onLive);
    };
  }
}

export const LiveContext = createContext(new LiveHub());

/**
 * Calls the latest `onEvent` for each event, and `onLive` each time the stream opened (the first
 * time too): a page shown before then reloads, as what was stored meanwhile never comes as events.
 */
export function useLive(onEvent: (e: EventEnvelope) => void, onLive: () => void): void {
  const hub = useContext(LiveContext);
  const handlers = useRef({ onEvent, onLive });
  handlers.current = { onEvent, onLive };
  useEffect(
    () =>
      hub.subscribe(
        (e) => handlers.current.onEvent(e),
        () => handlers.current.onLive(),
      ),
    [hub],
  );
}
