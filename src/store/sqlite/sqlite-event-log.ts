import { EventEmitter } from 'node:events';
import type Database from 'better-sqlite3';
import type { EventEnvelope, StoredEvent } from '../../domain/events.js';
import {
  type ChannelRecord,
  CursorExpiredError,
  type CursorLease,
  type EventLog,
  type EventPage,
  type EventQuery,
  InvalidCursorError,
} from '../store.js';

type Prepare = (sql: string) => Database.Statement;

/** Cursors are the outbox's seq as decimal text: seq order is commit order under SQLite's write lock. */
function parseCursor(cursor: string): number {
  if (!/^\d{1,15}$/.test(cursor)) throw new InvalidCursorError(cursor);
  return Number(cursor);
}

/**
 * SQLite's EventLog (store.ts): reads the outbox the SqliteStore writes, keeps delivery cursors
 * and channel records. Runs on the store's connection, so it shares its write lock.
 */
export class SqliteEventLog implements EventLog {
  private readonly emitter = new EventEmitter();

  constructor(
    private readonly db: Database.Database,
    private readonly prepare: Prepare,
  ) {
    this.emitter.setMaxListeners(0);
  }

  /** Inserts events inside the caller's transaction. */
  insert(events: readonly EventEnvelope[]): void {
    if (events.length === 0) return;
    const insert = this.prepare(
      'INSERT INTO events (id, fleet_id, vehicle_id, type, created_at, envelope) VALUES (?, ?, ?, ?, ?, ?)',
    );
    const now = Date.now();
    for (const e of events) {
      const m = e.metadata;
      insert.run(m.id, m.fleet_id, m.vehicle_id, m.type, now, JSON.stringify(e));
    }
  }

  /** After a commit that wrote events. */
  committed(): void {
    this.emitter.emit('commit');
  }

  onCommit(listener: () => void): () => void {
    this.emitter.on('commit', listener);
    return () => this.emitter.off('commit', listener);
  }

  private prunedThrough(): number {
    const row = this.prepare("SELECT value FROM event_feed WHERE key = 'pruned_through'").get() as
      | { value: string }
      | undefined;
    return row ? Number(row.value) : 0;
  }

  async read(query: EventQuery): Promise<EventPage> {
    const after = query.after === undefined ? undefined : parseCursor(query.after);
    // One read transaction: the page and the head come from the same snapshot.
    const read = this.db.transaction((): EventPage => {
      const pruned = this.prunedThrough();
      if (after !== undefined && after < pruned) throw new CursorExpiredError(query.after!);
      const where = ['seq > ?'];
      const params: unknown[] = [after ?? 0];
      if (query.fleet_id !== undefined) {
        where.push('fleet_id = ?');
        params.push(query.fleet_id);
      }
      if (query.vehicle_id !== undefined) {
        where.push('vehicle_id = ?');
        params.push(query.vehicle_id);
      }
      if (query.types !== undefined && query.types.length > 0) {
        where.push(`type IN (${query.types.map(() => '?').join(', ')})`);
        params.push(...query.types);
      }
      params.push(query.limit);
      const rows = this.prepare(
        `SELECT seq, envelope FROM events WHERE ${where.join(' AND ')} ORDER BY seq LIMIT ?`,
      ).all(...params) as Array<{ seq: number; envelope: string }>;
      const items: StoredEvent[] = rows.map((r) => ({
        cursor: String(r.seq),
        event: JSON.parse(r.envelope) as EventEnvelope,
      }));
      let next = rows.at(-1)?.seq ?? after ?? pruned;
      if (rows.length < query.limit) {
        // Everything up to the head was looked at: skip past what the filters left out.
        const head = (this.prepare('SELECT MAX(seq) AS s FROM events').get() as { s: number | null }).s;
        if (head !== null && head > next) next = head;
      }
      return { items, next_cursor: String(next) };
    });
    return read();
  }

  async head(): Promise<string | null> {
    const row = this.prepare('SELECT MAX(seq) AS s FROM events').get() as { s: number | null };
    return row.s === null ? null : String(row.s);
  }

  async prune(before: string, batch: number): Promise<number> {
    const cutoff = Date.parse(before);
    const prune = this.db.transaction((): number => {
      // Only a prefix of the feed goes, so "older than the pruned ones" is one number.
      const rows = this.prepare('SELECT seq, created_at FROM events ORDER BY seq LIMIT ?').all(batch) as Array<{
        seq: number;
        created_at: number;
      }>;
      let last: number | undefined;
      for (const r of rows) {
        if (r.created_at >= cutoff) break;
        last = r.seq;
      }
      if (last === undefined) return 0;
      const info = this.prepare('DELETE FROM events WHERE seq <= ?').run(last);
      this.prepare(
        "INSERT INTO event_feed (key, value) VALUES ('pruned_through', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      ).run(String(last));
      return info.changes;
    });
    return prune.immediate();
  }

  async acquireCursor(
    name: string,
    owner: string,
    leaseMs: number,
    initial: string | null,
  ): Promise<CursorLease | undefined> {
    const now = Date.now();
    const acquire = this.db.transaction((): CursorLease | undefined => {
      this.prepare('INSERT INTO event_cursors (name, position) VALUES (?, ?) ON CONFLICT (name) DO NOTHING').run(
        name,
        initial,
      );
      const row = this.prepare(
        `UPDATE event_cursors SET owner = ?, lease_until = ?
          WHERE name = ? AND (owner IS NULL OR owner = ? OR lease_until < ?) RETURNING position`,
      ).get(owner, now + leaseMs, name, owner, now) as { position: string | null } | undefined;
      return row && { position: row.position };
    });
    return acquire.immediate();
  }

  async advanceCursor(name: string, owner: string, position: string, renewMs?: number): Promise<boolean> {
    const leaseUntil = renewMs === undefined ? null : Date.now() + renewMs;
    return (
      this.prepare(
        'UPDATE event_cursors SET position = ?, lease_until = coalesce(?, lease_until) WHERE name = ? AND owner = ?',
      ).run(position, leaseUntil, name, owner).changes > 0
    );
  }

  async releaseCursor(name: string, owner: string): Promise<void> {
    this.prepare('UPDATE event_cursors SET owner = NULL, lease_until = 0 WHERE name = ? AND owner = ?').run(
      name,
      owner,
    );
  }

  async deleteCursor(name: string): Promise<void> {
    this.prepare('DELETE FROM event_cursors WHERE name = ?').run(name);
  }

  async getCursor(name: string): Promise<CursorLease | undefined> {
    const row = this.prepare('SELECT position FROM event_cursors WHERE name = ?').get(name) as
      | { position: string | null }
      | undefined;
    return row && { position: row.position };
  }

  async putRecord(
    kind: string,
    record: { id: string; fleet_id: string; doc: unknown },
    expectedVersion?: number,
  ): Promise<number | undefined> {
    const doc = JSON.stringify(record.doc);
    if (expectedVersion === 0) {
      const info = this.prepare(
        'INSERT INTO channel_records (kind, id, fleet_id, doc, version) VALUES (?, ?, ?, ?, 1) ON CONFLICT DO NOTHING',
      ).run(kind, record.id, record.fleet_id, doc);
      return info.changes > 0 ? 1 : undefined;
    }
    if (expectedVersion !== undefined) {
      const row = this.prepare(
        'UPDATE channel_records SET doc = ?, version = version + 1 WHERE kind = ? AND id = ? AND version = ? RETURNING version',
      ).get(doc, kind, record.id, expectedVersion) as { version: number } | undefined;
      return row?.version;
    }
    const row = this.prepare(
      `INSERT INTO channel_records (kind, id, fleet_id, doc, version) VALUES (?, ?, ?, ?, 1)
       ON CONFLICT (kind, id) DO UPDATE SET doc = excluded.doc, version = channel_records.version + 1
       RETURNING version`,
    ).get(kind, record.id, record.fleet_id, doc) as { version: number };
    return row.version;
  }

  async getRecord(kind: string, id: string): Promise<ChannelRecord | undefined> {
    const row = this.prepare('SELECT * FROM channel_records WHERE kind = ? AND id = ?').get(kind, id) as
      | RecordRow
      | undefined;
    return row && recordFromRow(row);
  }

  async listRecords(
    kind: string,
    fleetId: string | undefined,
    limit: number,
    after?: string,
  ): Promise<ChannelRecord[]> {
    const rows = this.prepare(
      `SELECT * FROM channel_records WHERE kind = ? AND (? IS NULL OR fleet_id = ?) AND (? IS NULL OR id > ?)
        ORDER BY id LIMIT ?`,
    ).all(kind, fleetId ?? null, fleetId ?? null, after ?? null, after ?? null, limit) as RecordRow[];
    return rows.map(recordFromRow);
  }

  async deleteRecord(kind: string, id: string): Promise<boolean> {
    const tx = this.db.transaction((): boolean => {
      this.prepare('DELETE FROM channel_logs WHERE kind = ? AND record_id = ?').run(kind, id);
      return this.prepare('DELETE FROM channel_records WHERE kind = ? AND id = ?').run(kind, id).changes > 0;
    });
    return tx.immediate();
  }

  async appendLog(kind: string, recordId: string, entry: unknown): Promise<number> {
    const info = this.prepare('INSERT INTO channel_logs (kind, record_id, entry, created_at) VALUES (?, ?, ?, ?)').run(
      kind,
      recordId,
      JSON.stringify(entry),
      Date.now(),
    );
    return Number(info.lastInsertRowid);
  }

  async appendLogs(kind: string, recordId: string, entries: readonly unknown[]): Promise<number[]> {
    const insert = this.prepare('INSERT INTO channel_logs (kind, record_id, entry, created_at) VALUES (?, ?, ?, ?)');
    const now = Date.now();
    return this.db.transaction(() =>
      entries.map((entry) => Number(insert.run(kind, recordId, JSON.stringify(entry), now).lastInsertRowid)),
    )();
  }

  async listLog(
    kind: string,
    recordId: string,
    limit: number,
    before?: number,
  ): Promise<Array<{ id: number; entry: unknown }>> {
    const rows = this.prepare(
      `SELECT id, entry FROM channel_logs WHERE kind = ? AND record_id = ? AND (? IS NULL OR id < ?)
        ORDER BY id DESC LIMIT ?`,
    ).all(kind, recordId, before ?? null, before ?? null, limit) as Array<{ id: number; entry: string }>;
    return rows.map((r) => ({ id: r.id, entry: JSON.parse(r.entry) as unknown }));
  }

  async getLog(kind: string, recordId: string, id: number): Promise<unknown | undefined> {
    const row = this.prepare('SELECT entry FROM channel_logs WHERE kind = ? AND record_id = ? AND id = ?').get(
      kind,
      recordId,
      id,
    ) as { entry: string } | undefined;
    return row && (JSON.parse(row.entry) as unknown);
  }

  async pruneLog(before: string, batch: number): Promise<number> {
    return this.prepare(
      'DELETE FROM channel_logs WHERE id IN (SELECT id FROM channel_logs WHERE created_at < ? ORDER BY id LIMIT ?)',
    ).run(Date.parse(before), batch).changes;
  }
}

interface RecordRow {
  id: string;
  fleet_id: string;
  doc: string;
  version: number;
}

function recordFromRow(r: RecordRow): ChannelRecord {
  return { id: r.id, fleet_id: r.fleet_id, doc: JSON.parse(r.doc) as unknown, version: r.version };
}
