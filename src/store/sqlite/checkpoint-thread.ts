/**
 * The SQLite store's checkpoints, on a thread and a connection of their own (checkpointer.ts).
 * A checkpoint copies the write-ahead log into the database file and fsyncs both: done by the
 * API's connection (SQLite's automatic checkpoint), each one stopped the API thread for the length
 * of two fsyncs. PASSIVE never waits for the API's connection and never blocks it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

export interface CheckpointThreadData {
  file: string;
  intervalMs: number;
}

/** Thread → owner: the result of a checkpoint asked for (PRAGMA wal_checkpoint's row). */
export interface CheckpointReport {
  busy: number;
  log: number;
  checkpointed: number;
}

const { file, intervalMs } = workerData as CheckpointThreadData;
const db = new Database(file, { fileMustExist: true });
db.pragma('busy_timeout = 0');
db.pragma('synchronous = NORMAL');

const checkpoint = (): CheckpointReport => {
  try {
    const [row] = db.pragma('wal_checkpoint(PASSIVE)') as CheckpointReport[];
    if (row) return row;
  } catch {
    // Another connection's checkpoint is running (SQLITE_BUSY): the next tick tries again.
  }
  return { busy: 1, log: -1, checkpointed: -1 };
};
// The timer's checkpoints report nothing: a message would wake the API thread every second.
const timer = setInterval(checkpoint, intervalMs);

parentPort?.on('message', (message: 'checkpoint' | 'close') => {
  if (message === 'checkpoint') return parentPort?.postMessage(checkpoint() satisfies CheckpointReport);
  clearInterval(timer);
  db.close();
  parentPort?.close();
});
