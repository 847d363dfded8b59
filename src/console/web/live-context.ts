import { createContext } from 'preact';
import { useContext, useEffect, useRef } from 'preact/hooks';
import type { EventEnvelope } from './api.js';

/** Fans the one event stream out to whichever page is shown. */
export class LiveHub {
  private readonly events = new Set<(e: EventEnvelope) => void>();
  private readonly resumes = new Set<() => void>();

  emit(event: EventEnvelope): void {
    for (const fn of this.events) fn(event);
  }

  resumed(): void {
    for (const fn of this.resumes) fn();
  }

  subscribe(onEvent: (e: EventEnvelope) => void, onResumed: () => void): () => void {
    this.events.add(onEvent);
    this.resumes.add(onResumed);
    return () => {
      this.events.delete(onEvent);
      this.resumes.delete(onResumed);
    };
  }
}

export const LiveContext = createContext(new LiveHub());

/** Calls the latest `onEvent` for each event, and `onResumed` after a lost stream came back. */
export function useLive(onEvent: (e: EventEnvelope) => void, onResumed: () => void): void {
  const hub = useContext(LiveContext);
  const handlers = useRef({ onEvent, onResumed });
  handlers.current = { onEvent, onResumed };
  useEffect(
    () =>
      hub.subscribe(
        (e) => handlers.current.onEvent(e),
        () => handlers.current.onResumed(),
      ),
    [hub],
  );
}
