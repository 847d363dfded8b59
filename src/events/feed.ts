import { EventEmitter } from 'node:events';
import type { EventLog, EventPage, EventQuery } from '../store/store.js';

/**
 * The feed every consumer of events reads: pull (`GET /events`), the stream, and each delivery
 * channel (webhooks, AMQP…). It wraps the store's outbox (EventLog) with a wake-up: this
 * instance's own commits wake waiting readers at once (EventLog.onCommit); other instances'
 * commits are noticed by one shared poll of the feed's head every `pollMs` while anyone waits.
 * Channels keep their place with the durable cursors of `log` (acquire, advance, release), so
 * that one instance at a time delivers for a cursor and none loses its place across restarts.
 */
export class EventFeed {
  private readonly emitter = new EventEmitter();
  private readonly unsubscribe: () => void;
  private waiters = 0;
  private poller: NodeJS.Timeout | undefined;
  private lastHead: string | null | undefined;

  constructor(
    readonly log: EventLog,
    /** How often, while readers wait, the feed looks for other instances' commits. */
    private readonly pollMs = 250,
  ) {
    this.emitter.setMaxListeners(0);
    this.unsubscribe = log.onCommit(() => this.emitter.emit('commit'));
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
    let after = query.after;
    for (;;) {
      const page = await this.log.read({ ...query, after });
      const left = deadline - Date.now();
      if (page.items.length > 0 || left <= 0 || signal?.aborted) return page;
      // Filters may skip events: continue from where this read looked, not from the start.
      after = page.next_cursor;
      await this.wait(left, signal);
    }
  }

  /** Resolves when events may have been committed (here or elsewhere), after `timeoutMs`, or on abort. */
  wait(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.emitter.off('commit', done);
        signal?.removeEventListener('abort', done);
        this.waiters--;
        if (this.waiters === 0) this.stopPolling();
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.emitter.on('commit', done);
      signal?.addEventListener('abort', done, { once: true });
      this.waiters++;
      this.startPolling();
    });
  }

  /** Listens for commits seen by this instance; returns the function that removes the listener. */
  onCommit(listener: () => void): () => void {
    this.emitter.on('commit', listener);
    return () => this.emitter.off('commit', listener);
  }

  close(): void {
    this.stopPolling();
    this.unsubscribe();
    this.emitter.emit('commit');
  }

  private startPolling(): void {
    if (this.poller !== undefined) return;
    this.poller = setInterval(() => {
      this.log.head().then(
        (head) => {
          // The first look wakes readers too: what committed between their read and the poll's start.
          if (head !== this.lastHead) this.emitter.emit('commit');
          this.lastHead = head;
        },
        () => undefined,
      );
    }, this.pollMs);
    this.poller.unref();
  }

  private stopPolling(): void {
    clearInterval(this.poller);
    this.poller = undefined;
    this.lastHead = undefined;
  }
}
