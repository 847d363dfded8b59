import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BACKGROUND_PER_COMMIT, GroupCommit } from '../../src/store/sqlite/group-commit.js';

describe('SQLite group commit (src/store/sqlite/group-commit.ts)', () => {
  let dir: string;
  let db: Database.Database;
  let other: Database.Database;
  /** How often the group reported a rollback (the store then drops what it cached). */
  let rollbacks = 0;
  const counting = () => rollbacks++;

  beforeEach(() => {
    rollbacks = 0;
    dir = mkdtempSync(path.join(os.tmpdir(), 'fg-group-commit-'));
    const file = path.join(dir, 'db.sqlite');
    db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('busy_timeout = 0');
    db.exec('CREATE TABLE t (id TEXT PRIMARY KEY)');
    other = new Database(file);
  });

  afterEach(() => {
    other.close();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const insert = (id: string) => () => db.prepare('INSERT INTO t (id) VALUES (?)').run(id).changes;
  const ids = () => (other.prepare('SELECT id FROM t ORDER BY id').all() as Array<{ id: string }>).map((r) => r.id);

  it('commits the writes of one turn together, each in a transaction, before they resolve', async () => {
    const group = new GroupCommit(db, undefined, counting);
    const seen: boolean[] = [];
    const all = Promise.all(
      ['a', 'b', 'c'].map((id) =>
        group.submit(() => {
          seen.push(db.inTransaction);
          return insert(id)();
        }),
      ),
    );
    expect(ids()).toEqual([]); // nothing runs before the turn ends
    expect(await all).toEqual([1, 1, 1]);
    expect(seen).toEqual([true, true, true]);
    expect(ids()).toEqual(['a', 'b', 'c']); // committed: another connection sees them
  });

  it('a failing write rolls back only its own statements; the others of its group are kept', async () => {
    const group = new GroupCommit(db, undefined, counting);
    const results = await Promise.allSettled([
      group.submit(insert('a')),
      group.submit(() => {
        insert('b')();
        return insert('a')(); // duplicate key: this write fails after writing 'b'
      }),
      group.submit(insert('c')),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(String((results[1] as PromiseRejectedResult).reason)).toMatch(/UNIQUE/);
    expect(ids()).toEqual(['a', 'c']);
    expect(rollbacks).toBe(1); // the store drops what it cached for the rolled-back write
  });

  it('a lone write that fails rejects with its own error and stores nothing', async () => {
    const group = new GroupCommit(db, undefined, counting);
    await group.submit(insert('a'));
    await expect(
      group.submit(() => {
        insert('b')();
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(ids()).toEqual(['a']);
    expect(rollbacks).toBe(1);
  });

  it('when the group cannot get the write lock, every write of it fails (mapped) and nothing is stored', async () => {
    const group = new GroupCommit(db, (e) => new Error(`unavailable: ${String(e)}`), counting);
    other.prepare('BEGIN IMMEDIATE').run();
    const results = await Promise.allSettled([group.submit(insert('a')), group.submit(insert('b'))]);
    other.prepare('ROLLBACK').run();
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(String((results[0] as PromiseRejectedResult).reason)).toMatch(/unavailable: .*locked|busy/i);
    expect(ids()).toEqual([]);
    expect(rollbacks).toBe(1);
    expect(await group.submit(insert('a'))).toBe(1); // and it works again once the lock is free
    expect(rollbacks).toBe(1);
  });

  it('flushNow commits what is queued at once (before the database closes)', async () => {
    const group = new GroupCommit(db);
    const pending = group.submit(insert('a'));
    group.flushNow();
    expect(ids()).toEqual(['a']);
    expect(await pending).toBe(1);
  });

  it('background writes (reports) commit after the foreground ones, whose callers go on first', async () => {
    const group = new GroupCommit(db);
    const order: string[] = [];
    const rows = () => (db.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n;
    const reports = Array.from({ length: BACKGROUND_PER_COMMIT + 5 }, (_, i) =>
      group.submit(() => {
        order.push(`report ${i}`);
        return insert(`r${String(i).padStart(3, '0')}`)();
      }, true),
    );
    const command = group.submit(insert('command')).then((n) => {
      // The command's caller runs before any report is written, and its write is committed.
      order.push('command answered');
      expect(ids()).toEqual(['command']);
      return n;
    });
    expect(await command).toBe(1);
    expect(await Promise.all(reports)).toEqual(reports.map(() => 1));
    expect(order[0]).toBe('command answered');
    expect(order.slice(1)).toEqual(reports.map((_, i) => `report ${i}`));
    expect(rows()).toBe(BACKGROUND_PER_COMMIT + 6);
  });

  it('background writes are committed in transactions of BACKGROUND_PER_COMMIT, a failing one alone', async () => {
    const group = new GroupCommit(db, undefined, counting);
    const transactions = new Set<number>();
    // Each write notes its transaction: SQLite's data_version does not change inside one, so
    // the writes note the count of rows another connection sees, which grows per commit.
    const committedBefore = () => (other.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n;
    const results = await Promise.allSettled(
      Array.from({ length: 2 * BACKGROUND_PER_COMMIT + 1 }, (_, i) =>
        group.submit(() => {
          transactions.add(committedBefore());
          if (i === 3) throw new Error('a report for a deleted vehicle');
          return insert(`r${i}`)();
        }, true),
      ),
    );
    expect(results.filter((r) => r.status === 'rejected')).toHaveLength(1);
    expect(rollbacks).toBe(1);
    expect(ids()).toHaveLength(2 * BACKGROUND_PER_COMMIT);
    // Three transactions: 32 (one rolled back to its savepoint), 32, 1.
    expect([...transactions]).toEqual([0, BACKGROUND_PER_COMMIT - 1, 2 * BACKGROUND_PER_COMMIT - 1]);
  });

  it('commands arriving every turn do not starve the background writes: both lanes run every turn', async () => {
    const group = new GroupCommit(db);
    const reports = Array.from({ length: BACKGROUND_PER_COMMIT + 8 }, (_, i) => group.submit(insert(`r${i}`), true));
    let reportsDone = false;
    void Promise.all(reports).then(() => {
      reportsDone = true;
    });
    // Each command is submitted as soon as the one before it committed: one in every turn.
    let commands = 0;
    while (!reportsDone && commands < 50) {
      await group.submit(insert(`c${commands}`));
      commands++;
    }
    expect(reportsDone).toBe(true);
    expect(commands).toBeLessThanOrEqual(2); // a background turn after each command: 32, then 8
  });

  it('flushNow commits the background writes too', async () => {
    const group = new GroupCommit(db);
    const pending = Array.from({ length: BACKGROUND_PER_COMMIT * 2 }, (_, i) => group.submit(insert(`r${i}`), true));
    group.flushNow();
    expect(ids()).toHaveLength(BACKGROUND_PER_COMMIT * 2);
    await Promise.all(pending);
  });
});
