import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Checkpointer } from '../../src/store/sqlite/checkpointer.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';

describe('SQLite checkpoints on a thread of their own (src/store/sqlite/checkpointer.ts)', () => {
  let dir: string;
  let file: string;
  let db: Database.Database;
  let checkpointer: Checkpointer | undefined;

  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'fg-checkpoints-'));
    file = path.join(dir, 'db.sqlite');
    db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
  });

  afterEach(async () => {
    await checkpointer?.close();
    checkpointer = undefined;
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const write = (rows: number) => {
    const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
    db.transaction(() => {
      for (let i = 0; i < rows; i++) insert.run('x'.repeat(200));
    })();
  };

  it("stops the API connection's own checkpoints and copies the whole log into the database on the thread", async () => {
    checkpointer = new Checkpointer(db, file, undefined, { intervalMs: 60_000 });
    checkpointer.start();
    expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(0);
    write(20_000); // ~1,000 pages: SQLite's own threshold would have checkpointed on this thread
    const walBefore = statSync(`${file}-wal`).size;
    expect(walBefore).toBeGreaterThan(4_000_000);

    const report = await checkpointer.checkpointNow();
    expect(report.busy).toBe(0);
    expect(report.log).toBeGreaterThan(900);
    expect(report.checkpointed).toBe(report.log);
    // The data reached the database file itself, read here without the log.
    const reader = new Database(file, { readonly: true });
    try {
      expect(reader.prepare('SELECT count(*) FROM t').pluck().get()).toBe(20_000);
    } finally {
      reader.close();
    }
  });

  it('does not count as another writer for the read caches (PRAGMA data_version)', async () => {
    checkpointer = new Checkpointer(db, file, undefined, { intervalMs: 60_000 });
    checkpointer.start();
    write(100);
    const version = db.pragma('data_version', { simple: true });
    await checkpointer.checkpointNow();
    expect(db.pragma('data_version', { simple: true })).toBe(version);
  });

  it('lets the log start over once checkpointed, so it does not grow without bound', async () => {
    checkpointer = new Checkpointer(db, file, undefined, { intervalMs: 60_000 });
    checkpointer.start();
    write(20_000);
    await checkpointer.checkpointNow();
    const walFull = statSync(`${file}-wal`).size;
    write(10);
    await checkpointer.checkpointNow();
    write(10);
    // The writer restarted the log from its start: it did not append after the 20,000 rows.
    expect(statSync(`${file}-wal`).size).toBe(walFull);
    const frames = (await checkpointer.checkpointNow()).log;
    expect(frames).toBeLessThan(10);
  });

  it('waits a bounded time, warns once and backs off while a reader of another connection keeps the log from starting over', async () => {
    const warnings: string[] = [];
    const logger = { warn: (...args: unknown[]) => warnings.push(String(args.at(-1))) };
    // The thread's timer never runs here; its size looks try once, then leave the log for intervalMs.
    checkpointer = new Checkpointer(db, file, logger as never, { intervalMs: 60_000, walLimitBytes: 2 ** 20 });
    checkpointer.start();
    const reader = new Database(file, { readonly: true });
    try {
      reader.prepare('BEGIN').run();
      reader.prepare('SELECT count(*) FROM t').get(); // holds its snapshot: the log cannot start over
      write(20_000); // ~4.5 MB, past twice the limit
      const slowest = { ms: 0 };
      const started = performance.now();
      while (warnings.length === 0 && performance.now() - started < 5000) {
        write(1);
        const t = performance.now();
        checkpointer.afterCommit();
        slowest.ms = Math.max(slowest.ms, performance.now() - t);
        await new Promise((resolve) => setImmediate(resolve));
      }
      expect(warnings).toEqual(['sqlite: could not start the write-ahead log over: another connection is reading it']);
      // Its RESTART waited for the reader for RESET_WAIT_MS (100 ms), not for the API's 5 s busy_timeout.
      expect(slowest.ms).toBeLessThan(1000);
      // Backed off: the commits after it do not wait for the reader again, nor warn again.
      const after = performance.now();
      for (let i = 0; i < 100; i++) {
        write(1);
        checkpointer.afterCommit();
      }
      expect(performance.now() - after).toBeLessThan(500);
      expect(warnings).toHaveLength(1);
    } finally {
      reader.prepare('COMMIT').run();
      reader.close();
    }
  });

  it('hands checkpoints back to the API connection when the thread cannot run, and says so', async () => {
    const warnings: string[] = [];
    const logger = { warn: (...args: unknown[]) => warnings.push(String(args.at(-1))) };
    checkpointer = new Checkpointer(db, path.join(dir, 'missing.sqlite'), logger as never, { intervalMs: 60_000 });
    checkpointer.start();
    await checkpointer.ended;
    expect(checkpointer.running).toBe(false);
    expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(1000);
    expect(warnings).toContain('sqlite: the checkpoint thread stopped; the API connection checkpoints again');
    await expect(checkpointer.checkpointNow()).rejects.toThrow('not running');
  });

  it('the store starts one at its first command-path write, and ends it on close', async () => {
    const storeFile = path.join(dir, 'store.sqlite');
    const store = new SqliteStore({ file: storeFile });
    await store.migrate();
    // Migrations and a state read are no command-path writes: no thread yet.
    await store.getState('nobody');
    expect(store.checkpoints.running).toBe(false);
    await store.mergeState('nobody', {}); // a report for an unknown vehicle: a write that keeps nothing
    expect(store.checkpoints.running).toBe(true);
    expect((await store.checkpoints.checkpointNow()).busy).toBe(0);
    await store.close();
    expect(store.checkpoints.running).toBe(false);
    await store.checkpoints.ended;
  });

  it('a store closed before any command-path write never starts one, and its close settles at once', async () => {
    const storeFile = path.join(dir, 'short.sqlite');
    const store = new SqliteStore({ file: storeFile });
    await store.migrate();
    await store.close();
    expect(store.checkpoints.running).toBe(false);
    await store.checkpoints.ended;
    // Closed: a late write could not start it either.
    store.checkpoints.start();
    expect(store.checkpoints.running).toBe(false);
  });
});
