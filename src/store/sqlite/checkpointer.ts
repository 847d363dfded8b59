import path from 'node:path';
import type { Worker } from 'node:worker_threads';
import type Database from 'better-sqlite3';
import type { Logger } from 'pino';
import { startModuleWorker } from '../../lib/ts-worker.js';
import type { CheckpointReport, CheckpointThreadData } from './checkpoint-thread.js';

// The thread's module sits beside this one, as .ts when run from source and .js when built.
const THREAD_MODULE = new URL(`./checkpoint-thread${path.extname(new URL(import.meta.url).pathname)}`, import.meta.url);
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
  private readonly waiting: Array<(report: CheckpointReport) => void> = [];
  /** Settles once the thread has ended, by close() or by failing. */
  readonly ended: Promise<void>;

  constructor(
    private readonly db: Database.Database,
    file: string,
    private readonly logger: Logger | undefined,
    intervalMs = 1000,
  ) {
    const data: CheckpointThreadData = { file, intervalMs };
    const worker = startModuleWorker(THREAD_MODULE, { workerData: data, name: 'SQLite checkpoints' });
    worker.unref();
    // Not events.once: that rejects on the 'error' a failing thread emits before it exits.
    this.ended = new Promise((resolve) => worker.once('exit', () => resolve()));
    worker.on('message', (report: CheckpointReport) => {
      for (const resolve of this.waiting.splice(0)) resolve(report);
    });
    worker.on('error', (err) => this.logger?.warn({ err }, 'sqlite: the checkpoint thread failed'));
    worker.on('exit', () => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      if (this.db.open) this.db.pragma(`wal_autocheckpoint = ${AUTOCHECKPOINT_PAGES}`);
      this.logger?.warn('sqlite: the checkpoint thread stopped; the API connection checkpoints again');
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
    if (!worker) return;
    // Unreferenced while it runs; now the caller waits for it, so the process must too.
    worker.ref();
    worker.postMessage('close');
    await this.ended;
  }
}
