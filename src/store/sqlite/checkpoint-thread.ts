/**
 * The SQLite store's checkpoints, on a thread and a connection of their own (checkpointer.ts).
 * A checkpoint copies the write-ahead log into the database file and fsyncs both: done by the
 * API's connection (SQLite's automatic checkpoint), each one stopped the API thread for the length
 * of two fsyncs. PASSIVE never waits for the API's connection and never blocks it.
 *
 * PASSIVE alone does not bound the log: a writer starts the log over from its beginning only once
 * a checkpoint has copied every frame in it, and under sustained writes new frames arrive while
 * each one runs, so the file grew by ~100 MB/s under command load and kept its size once idle
 * (https://www.sqlite.org/wal.html, "Avoiding Excessively Large WAL Files"). So once the file
 * outgrows its limit, the thread runs a RESTART checkpoint: the next write starts the log over,
 * and cuts the file back to the limit (the API connection's journal_size_limit). Once writes
 * pause, it empties the file (TRUNCATE).
 */
import { statSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

export interface CheckpointThreadData {
  file: string;
  intervalMs: number;
  /** Size of the `-wal` file (bytes) beyond which the thread has the log started over. */
  walLimitBytes: number;
  /** How often the thread looks at the log's size (ms). */
  sizeCheckMs: number;
  /** The busy timeout of a RESTART or TRUNCATE checkpoint (ms): see checkpointer.ts. */
  resetWaitMs: number;
}

/** Thread → owner: the result of a checkpoint asked for (PRAGMA wal_checkpoint's row). */
export interface CheckpointReport {
  busy: number;
  log: number;
  checkpointed: number;
}

type Mode = 'PASSIVE' | 'RESTART' | 'TRUNCATE';

const { file, intervalMs, walLimitBytes, sizeCheckMs, resetWaitMs } = workerData as CheckpointThreadData;
const walFile = `${file}-wal`;
const db = new Database(file, { fileMustExist: true });
db.pragma('busy_timeout = 0');
db.pragma('synchronous = NORMAL');

const checkpoint = (mode: Mode = 'PASSIVE'): CheckpointReport => {
  // PASSIVE never waits; the others wait this long for the write lock, then for readers.
  if (mode !== 'PASSIVE') db.pragma(`busy_timeout = ${resetWaitMs}`);
  try {
    const [row] = db.pragma(`wal_checkpoint(${mode})`) as CheckpointReport[];
    if (row) return row;
  } catch {
    // Another connection's checkpoint is running (SQLITE_BUSY): the next tick tries again.
  } finally {
    if (mode !== 'PASSIVE') db.pragma('busy_timeout = 0');
  }
  return { busy: 1, log: -1, checkpointed: -1 };
};

const walSize = (): number => statSync(walFile, { throwIfNoEntry: false })?.size ?? 0;

/** The timer's last PASSIVE report: the same one again means nothing was written since. */
let previous: CheckpointReport | undefined;
/**
 * When a RESTART for the over-limit log last failed here. Until the file is back under its limit,
 * the next try waits intervalMs: a reader of another process that keeps the log open is not
 * waited for (holding the write lock) at every look.
 */
let failedAt = Number.NEGATIVE_INFINITY;

// The timer's checkpoints report nothing: a message would wake the API thread every second.
const timer = setInterval(() => {
  const report = checkpoint();
  const idle =
    report.busy === 0 &&
    report.log > 0 &&
    report.checkpointed === report.log &&
    previous?.log === report.log &&
    previous.checkpointed === report.log;
  // Writes paused and every frame is in the database: empty the file, or it would keep the size
  // the last burst gave it until the next write (or for good, if none comes). Nothing is left to
  // copy, so the write lock is held only for the ftruncate (~20 ms for 44 MB here).
  previous = idle ? checkpoint('TRUNCATE') : report;
}, intervalMs);

const sizeTimer = setInterval(() => {
  // After a restart the next write cuts the file back to the limit, so a file past it holds a log
  // that has grown past it since (or one restarted that no write has cut back yet: a RESTART then
  // has nothing to copy, and the idle timer empties the file).
  const size = walSize();
  if (size <= walLimitBytes) {
    failedAt = Number.NEGATIVE_INFINITY;
    return;
  }
  // Past twice the limit the owner's connection restarts the log (checkpointer.ts); a checkpoint
  // here would only keep it from its own (SQLite runs one at a time).
  if (Date.now() - failedAt < intervalMs || size > 2 * walLimitBytes) return;
  // PASSIVE first, without any lock: it copies most of the log, so the RESTART after it holds
  // the write lock only for the frames that arrived meanwhile.
  checkpoint();
  // Back-to-back writes can keep the write lock taken at each of the busy handler's looks: the
  // log then grows on, to twice the limit at most.
  if (checkpoint('RESTART').busy !== 0) failedAt = Date.now();
}, sizeCheckMs);

parentPort?.on('message', (message: 'checkpoint' | 'close') => {
  if (message === 'checkpoint') return parentPort?.postMessage(checkpoint() satisfies CheckpointReport);
  clearInterval(timer);
  clearInterval(sizeTimer);
  db.close();
  parentPort?.close();
});
