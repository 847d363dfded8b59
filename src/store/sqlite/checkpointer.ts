import { statSync } from 'node:fs';
import type { Worker } from 'node:worker_threads';
import type Database from 'better-sqlite3';
import type { Logger } from 'pino';
import { siblingModule, startModuleWorker } from '../../lib/ts-worker.js';
import type { CheckpointReport, CheckpointThreadData } from './checkpoint-thread.js';

const THREAD_MODULE = siblingModule(import.meta.url, 'checkpoint-thread');
/** SQLite's own automatic checkpoint, in pages of WAL: what the API's connection falls back to. */
const AUTOCHECKPOINT_PAGES = 1000;
/** The `-wal` file's size beyond which the log is started over (--sqlite-wal-limit-mb). */
export const DEFAULT_WAL_LIMIT_MB = 64;
/**
 * How often the thread, and the API thread after its commits, look at the log's size: one stat(2),
 * no lock. The file outgrows its limit by about what is written between two looks.
 */
const SIZE_CHECK_MS = 100;
/**
 * The busy timeout (ms) of a RESTART or TRUNCATE checkpoint: how long it waits for the write lock,
 * then, holding it, for readers to leave the log. Holding the write lock it copies what the
 * PASSIVE before it left, syncs the log and the database file and waits for those readers (a
 * TRUNCATE also empties the file): for that time the API's writes wait in their busy_timeout. So
 * writes are held back for at most this wait plus that copy and two fsyncs; a whole RESTART took
 * 10–55 ms in the command load test, its wait for the lock included. This process's reads are
 * short, so the wait for them is too. A checkpoint that cannot get the lock or the readers in time
 * ends as a PASSIVE one and reports busy.
 */
const RESET_WAIT_MS = 100;
/** When the thread's checkpoint kept the API's connection from its own, it tries again after this (ms). */
const CHECKPOINT_BUSY_RETRY_MS = 10;
/** The longest the API's connection waits before trying again to restart a log it could not (ms). */
const MAX_RETRY_MS = 60_000;

export interface CheckpointerOptions {
  /** How often the thread runs a PASSIVE checkpoint (ms). */
  intervalMs?: number;
  /** Size of the `-wal` file past which the thread has the log started over (bytes). */
  walLimitBytes?: number;
}

/**
 * Moves the SQLite store's checkpoints off the API thread (checkpoint-thread.ts): the API's
 * connection stops checkpointing by itself, and a thread checkpoints every `intervalMs`. In the
 * bench, the API thread had waited in fsync for 1–6 % of its time at the maximum, while the rest
 * of the pipeline ran dry (docs/performance.md). The thread also keeps the log's file near
 * `walLimitBytes` under sustained writes and empties it once they pause (checkpoint-thread.ts).
 * Should the thread die, the API's connection checkpoints by itself again, so the log never grows
 * without bound.
 */
export class Checkpointer {
  private worker: Worker | undefined;
  private started = false;
  /** When afterCommit() next looks at the log's size (performance.now()). */
  private nextLook = 0;
  /** How many times in a row this connection could not restart the log. */
  private failures = 0;
  private readonly waiting: Array<(report: CheckpointReport) => void> = [];
  private resolveEnded!: () => void;
  /** Settles once the thread has ended, by close() or by failing (at once if it never started). */
  readonly ended = new Promise<void>((resolve) => {
    this.resolveEnded = resolve;
  });

  constructor(
    private readonly db: Database.Database,
    private readonly file: string,
    private readonly logger: Logger | undefined,
    private readonly options: CheckpointerOptions = {},
  ) {
    // When the API's connection starts the log over (after a checkpoint copied all of it), it cuts
    // the file back to this size: what keeps the file near the limit after each RESTART.
    db.pragma(`journal_size_limit = ${this.walLimitBytes}`);
  }

  private get walLimitBytes(): number {
    return this.options.walLimitBytes ?? DEFAULT_WAL_LIMIT_MB * 2 ** 20;
  }

  /**
   * Starts the thread, once; until then the API's connection checkpoints by itself. The store
   * calls this at its first command-path write, so a short CLI command (which writes a client or
   * lists vehicles) never pays for a thread.
   */
  start(): void {
    if (this.started) return;
    this.started = true;
    const data: CheckpointThreadData = {
      file: this.file,
      intervalMs: this.options.intervalMs ?? 1000,
      walLimitBytes: this.walLimitBytes,
      sizeCheckMs: SIZE_CHECK_MS,
      resetWaitMs: RESET_WAIT_MS,
    };
    const worker = startModuleWorker(THREAD_MODULE, { workerData: data, name: 'SQLite checkpoints' });
    worker.unref();
    worker.on('message', (report: CheckpointReport) => {
      for (const resolve of this.waiting.splice(0)) resolve(report);
    });
    worker.on('error', (err) => this.logger?.warn({ err }, 'sqlite: the checkpoint thread failed'));
    // Not events.once for `ended`: that rejects on the 'error' a failing thread emits before it exits.
    worker.once('exit', () => {
      // Ended by close() (which cleared `worker` first), or died: then hand checkpoints back.
      if (this.worker === worker) {
        this.worker = undefined;
        if (this.db.open) this.db.pragma(`wal_autocheckpoint = ${AUTOCHECKPOINT_PAGES}`);
        this.logger?.warn('sqlite: the checkpoint thread stopped; the API connection checkpoints again');
      }
      this.resolveEnded();
    });
    this.worker = worker;
    this.db.pragma('wal_autocheckpoint = 0');
  }

  /** Whether checkpoints run on the thread (false once it died, or after close). */
  get running(): boolean {
    return this.worker !== undefined;
  }

  /** A checkpoint now, on the thread; resolves with its result. */
  checkpointNow(): Promise<CheckpointReport> {
    const worker = this.worker;
    if (!worker) return Promise.reject(new Error('the checkpoint thread is not running'));
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      worker.postMessage('checkpoint');
    });
  }

  /**
   * The bound's backstop, for the store to call after its commits: should the log reach twice its
   * limit all the same, because the thread got no CPU or back-to-back writes kept the write lock
   * taken at each of its looks, the API's connection runs the RESTART. That blocks the API thread
   * while it copies the frames the thread's PASSIVE checkpoints have not, and syncs; this
   * connection's own lock never stands in its way, a reader of another process can, for
   * RESET_WAIT_MS at most, after which it tries again later and later.
   */
  afterCommit(): void {
    // A checkpoint cannot run inside a transaction of its own connection.
    if (!this.worker || this.db.inTransaction) return;
    const now = performance.now();
    if (now < this.nextLook) return;
    this.nextLook = now + SIZE_CHECK_MS;
    const size = statSync(`${this.file}-wal`, { throwIfNoEntry: false })?.size ?? 0;
    if (size <= 2 * this.walLimitBytes) return;
    const busyTimeout = this.db.pragma('busy_timeout', { simple: true }) as number;
    this.db.pragma(`busy_timeout = ${RESET_WAIT_MS}`);
    try {
      const [report] = this.db.pragma('wal_checkpoint(RESTART)') as CheckpointReport[];
      if (report?.busy === 0) {
        this.failures = 0;
        return;
      }
      // The thread's checkpoint is running (SQLite runs one at a time): try again shortly.
      if (report?.log === -1) {
        this.nextLook = now + CHECKPOINT_BUSY_RETRY_MS;
        return;
      }
      if (this.failures === 0) {
        this.logger?.warn(
          { wal_bytes: size },
          'sqlite: could not start the write-ahead log over: another connection is reading it',
        );
      }
    } catch (err) {
      this.logger?.warn({ err }, 'sqlite: could not start the write-ahead log over');
    } finally {
      this.db.pragma(`busy_timeout = ${busyTimeout}`);
    }
    this.nextLook = now + Math.min(MAX_RETRY_MS, 1000 * 2 ** this.failures);
    this.failures++;
  }

  /** Stops the thread; the caller then closes its connection, whose close checkpoints the rest. */
  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    if (!this.started) {
      this.started = true; // never starts after close
      this.resolveEnded();
    }
    if (!worker) return;
    // Unreferenced while it runs; now the caller waits for it, so the process must too.
    worker.ref();
    worker.postMessage('close');
    await this.ended;
  }
}
