import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GroupCommit } from '../../src/store/sqlite/group-commit.js';

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
});
