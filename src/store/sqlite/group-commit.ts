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
 */
export class GroupCommit {
  private queue: Pending[] = [];
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

  /** Runs `work` (synchronous statements) in the next group transaction. */
  submit<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ work, resolve: resolve as (value: unknown) => void, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Commits what is queued now (before the database closes). */
  flushNow(): void {
    if (this.queue.length > 0) this.flush();
  }

  private flush(): void {
    this.scheduled = false;
    if (this.queue.length === 0) return;
    const batch = this.queue;
    this.queue = [];
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
