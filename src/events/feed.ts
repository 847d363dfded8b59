import { EventEmitter } from 'node:events';
import type { EventLog, EventPage, EventQuery } from '../store/store.js';

/**
 * The feed every consumer of events reads: pull (`GET /events`), the stream, and each delivery
 * channel (webhooks, AMQP…). It wraps the store's outbox (EventLog) with a wake-up: this
 * instance's own writes wake waiting readers at once (`notify`, called by the composition root
 * after each write that may have committed events); other instances' commits are seen by polling
 * every `pollMs`. Channels use the durable cursors of `log` (acquire, advance, release) so that
 * one instance at a time delivers for a cursor and none loses its place across restarts.
 */
export class EventFeed {
  private readonly emitter = new EventEmitter();

  constructor(
    readonly log: EventLog,
    /** How often a waiting reader looks for other instances' commits. */
    private readonly pollMs = 500,
  ) {
    this.emitter.setMaxListeners(0);
  }

  /** Events after `query.after` (see EventLog.read). */
  read(query: EventQuery): Promise<EventPage> {
    return this.log.read(query);
  }

  /**
   * Reads; when nothing is there yet, waits up to `waitMs` for events and reads again (long
   * polling). Returns the first non-empty page, or an empty one when the wait ends.
   */
  async readOrWait(query: EventQuery, waitMs: number, signal?: AbortSignal): Promise<EventPage> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const page = await this.log.read(query);
      const left = deadline - Date.now();
      if (page.items.length > 0 || left <= 0 || signal?.aborted) return page;
      await this.wait(Math.min(left, this.pollMs), signal);
    }
  }

  /** Resolves on this instance's next commit with events, after `timeoutMs`, or on abort. */
  wait(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.emitter.off('commit', done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.emitter.on('commit', done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  /** Called after a write that may have committed events: wakes readers waiting in this instance. */
  notify(): void {
    this.emitter.emit('commit');
  }

  /** Listens for local commits (a channel's delivery loop); returns the unsubscribe function. */
  onCommit(listener: () => void): () => void {
    this.emitter.on('commit', listener);
    return () => this.emitter.off('commit', listener);
  }
}
