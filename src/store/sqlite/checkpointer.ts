import type { Worker } from 'node:worker_threads';
import type Database from 'better-sqlite3';
import type { Logger } from 'pino';
import { siblingModule, startModuleWorker } from '../../lib/ts-worker.js';
import type { CheckpointReport, CheckpointThreadData } from './checkpoint-thread.js';

const THREAD_MODULE = siblingModule(import.meta.url, 'checkpoint-thread');
/** SQLite's own automatic checkpoint, in pages of WAL: what the API's connection falls back to. */
const AUTOCHECKPOINT_PAGES = 1000;

/**
 * Moves the SQLite store's checkpoints off the API thread (checkpoint-thread.ts): the API's
 * connection stops checkpointing by itself, and a thread checkpoints every `intervalMs`. In the
 * bench, the API thread had waited in fsync for 1–6 % of its time at the maximum, while the rest
 * of the pipeline ran dry (docs/performance.md). Should the thread die, the API's connection
 * checkpoints by itself again, so the log never grows without bound.
 */
export class Checkpointer {
  private worker: Worker | undefined;
  private started = false;
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
    private readonly intervalMs = 1000,
  ) {}

  /**
   * Starts the thread, once; until then the API's connection checkpoints by itself. The store
   * calls this at its first command-path write, so a short CLI command (which writes a client or
   * lists vehicles) never pays for a thread.
   */
  start(): void {
    if (this.started) return;
    this.started = true;
    const data: CheckpointThreadData = { file: this.file, intervalMs: this.intervalMs };
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
