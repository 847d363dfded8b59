import type Database from 'better-sqlite3';

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

interface Pending {
  work: () => unknown;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/**
 * Group commit: the command path's writes that arrive in the same turn of the event loop run in
 * one SQLite transaction, so concurrent commands share one WAL commit instead of paying one each
 * (a commit writes every page it touched to the WAL; docs/performance.md). Each write runs in a
 * savepoint of its own, so one that fails (a vehicle deleted meanwhile) leaves the others alone.
 * A write is committed before its promise settles: durability is unchanged, a lone write runs in
 * a transaction of its own as before, and it waits at most for the writes queued with it.
 *
 * Background writes (units' state reports, thousands a second) take a second lane. Every turn of
 * the event loop that has writes runs two callbacks in a row: the foreground writes (commands)
 * commit first, in a transaction of their own, and their callers go on (Node runs promise
 * callbacks between the two); then background writes, BACKGROUND_PER_COMMIT per transaction, for
 * at most BACKGROUND_TURN_MS. So a command never waits for reports queued before it, only for the
 * turn's work already running when it arrived, and reports move on in every turn.
 */
/** Background writes per transaction: about 3 ms of 12-property reports on the bench machine. */
export const BACKGROUND_PER_COMMIT = 32;
/** How long background writes may hold the event loop before sockets are read again. */
export const BACKGROUND_TURN_MS = 5;

export class GroupCommit {
  private queue: Pending[] = [];
  private background: Pending[] = [];
  private scheduled = false;
  private readonly inSavepoint: Database.Transaction<(work: () => unknown) => unknown>;
  private readonly group: Database.Transaction<(batch: Pending[], outcomes: Outcome[]) => void>;

  constructor(
    db: Database.Database,
    /** Maps an error out of the group's transaction (a lone write's own, a lock timeout, a failed commit). */
    private readonly mapError: (error: unknown) => unknown = (error) => error,
    /** Called when writes were rolled back: the group's transaction, or one write's savepoint. */
    private readonly onRollback: () => void = () => {},
  ) {
    // Called inside the group's transaction, better-sqlite3 runs this as a SAVEPOINT.
    this.inSavepoint = db.transaction((work: () => unknown) => work());
    this.group = db.transaction((batch: Pending[], outcomes: Outcome[]) => {
      if (batch.length === 1) {
        outcomes.push({ ok: true, value: batch[0]!.work() });
        return;
      }
      for (const { work } of batch) {
        try {
          outcomes.push({ ok: true, value: this.inSavepoint(work) });
        } catch (error) {
          this.onRollback();
          outcomes.push({ ok: false, error });
        }
      }
    });
  }

  /**
   * Runs `work` (synchronous statements) in the next group transaction; `background` work after
   * the foreground work queued with it, in transactions of its own.
   */
  submit<T>(work: () => T, background = false): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      (background ? this.background : this.queue).push({ work, resolve: resolve as (value: unknown) => void, reject });
      this.schedule();
    });
  }

  /** Commits everything queued now (before the database closes). */
  flushNow(): void {
    while (this.queue.length > 0 || this.background.length > 0) {
      this.flushForeground();
      this.commitBackground(Number.POSITIVE_INFINITY);
    }
  }

  /** One turn: the foreground writes, then (after their callers ran) background writes. */
  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flushForeground());
    setImmediate(() => this.flushBackground());
  }

  private flushForeground(): void {
    if (this.queue.length === 0) return;
    const batch = this.queue;
    this.queue = [];
    this.commit(batch);
  }

  /** Background writes for up to BACKGROUND_TURN_MS; the rest, and what arrived meanwhile, next turn. */
  private flushBackground(): void {
    this.scheduled = false;
    this.commitBackground(performance.now() + BACKGROUND_TURN_MS);
    // The rest on the next turn, after sockets are read again.
    if (this.queue.length > 0 || this.background.length > 0) this.schedule();
  }

  /** Background writes, BACKGROUND_PER_COMMIT per transaction, while any wait and until `until`. */
  private commitBackground(until: number): void {
    while (this.background.length > 0 && performance.now() < until) {
      this.commit(this.background.splice(0, BACKGROUND_PER_COMMIT));
    }
  }

  private commit(batch: Pending[]): void {
    const outcomes: Outcome[] = [];
    try {
      this.group.immediate(batch, outcomes);
    } catch (error) {
      // A lone write's own error, or the group's transaction failed (another process held the
      // lock past busy_timeout, the commit failed): nothing of the group is stored.
      this.onRollback();
      const mapped = this.mapError(error);
      for (const item of batch) item.reject(mapped);
      return;
    }
    for (const [i, item] of batch.entries()) {
      const outcome = outcomes[i]!;
      if (outcome.ok) item.resolve(outcome.value);
      else item.reject(outcome.error);
    }
  }
}
