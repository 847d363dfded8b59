import { EventEmitter } from 'node:events';
import type pg from 'pg';
import type { EventEnvelope, StoredEvent } from '../../domain/events.js';
import type { Row } from '../row-mapping.js';
import {
  type ChannelRecord,
  CursorExpiredError,
  type CursorLease,
  type EventLog,
  type EventPage,
  type EventQuery,
  InvalidCursorError,
} from '../store.js';

type Queryable = Pick<pg.PoolClient, 'query'>;
type Query = (text: string, params?: unknown[], client?: Queryable) => Promise<pg.QueryResult<Row>>;
type Tx = <T>(fn: (c: pg.PoolClient) => Promise<T>) => Promise<T>;

/** A feed position: the writing transaction's id and the row's seq, as `<xid>-<seq>`. */
function parseCursor(cursor: string): [string, string] {
  const m = /^(\d{1,20})-(\d{1,19})$/.exec(cursor);
  if (!m) throw new InvalidCursorError(cursor);
  return [m[1]!, m[2]!];
}
const cursorOf = (r: Row): string => `${r.xid}-${r.seq}`;
const ORIGIN = '0-0';

/** Any stable 64-bit number: serialises pruning across instances. */
const PRUNE_LOCK = 7_310_455_118_224_912;

/** Inserts events (envelopes as a JSON array in parameter `param`) inside the caller's statement or transaction. */
export const INSERT_EVENTS_SQL = (param: string): string =>
  `INSERT INTO events (id, fleet_id, vehicle_id, type, envelope)
   SELECT e->'metadata'->>'id', e->'metadata'->>'fleet_id', e->'metadata'->>'vehicle_id', e->'metadata'->>'type', e
   FROM jsonb_array_elements(${param}::jsonb) AS e`;

/**
 * PostgreSQL's EventLog (store.ts). Reads order by (xid, seq) and see only rows whose
 * transaction is older than every running one (migrations.ts, version 2), so a cursor never
 * passes an event that commits later; the page and the head come from one statement's snapshot.
 */
export class PostgresEventLog implements EventLog {
  private readonly emitter = new EventEmitter();

  constructor(
    private readonly q: Query,
    private readonly tx: Tx,
  ) {
    this.emitter.setMaxListeners(0);
  }

  async insert(c: Queryable, events: readonly EventEnvelope[]): Promise<void> {
    if (events.length === 0) return;
    await this.q(INSERT_EVENTS_SQL('$1'), [JSON.stringify(events)], c);
  }

  committed(): void {
    this.emitter.emit('commit');
  }

  /** A transaction that writes events (insert): wakes this instance's event readers once it committed. */
  async transaction<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const out = await this.tx(fn);
    this.committed();
    return out;
  }

  onCommit(listener: () => void): () => void {
    this.emitter.on('commit', listener);
    return () => this.emitter.off('commit', listener);
  }

  async read(query: EventQuery): Promise<EventPage> {
    const [xid, seq] = parseCursor(query.after ?? ORIGIN);
    const params: unknown[] = [xid, seq];
    const p = (v: unknown) => {
      params.push(v);
      return `$${params.length}`;
    };
    const where = ['(e.xid, e.seq) > ($1::xid8, $2::bigint)', 'e.xid < x.xmin'];
    if (query.fleet_id !== undefined) where.push(`e.fleet_id = ${p(query.fleet_id)}`);
    if (query.vehicle_id !== undefined) where.push(`e.vehicle_id = ${p(query.vehicle_id)}`);
    if (query.types !== undefined && query.types.length > 0) where.push(`e.type = ANY(${p(query.types)}::text[])`);
    const limit = p(query.limit);
    const { rows } = await this.q(
      `WITH x AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin),
        page AS (SELECT e.xid, e.seq, e.envelope FROM events e, x WHERE ${where.join(' AND ')}
                 ORDER BY e.xid, e.seq LIMIT ${limit}),
        head AS (SELECT e.xid, e.seq FROM events e, x WHERE e.xid < x.xmin ORDER BY e.xid DESC, e.seq DESC LIMIT 1),
        pruned AS (SELECT value FROM event_feed WHERE key = 'pruned_through')
       SELECT 'p' AS k, xid::text AS xid, seq::text AS seq, envelope FROM page
       UNION ALL SELECT 'h', xid::text, seq::text, NULL FROM head
       UNION ALL SELECT 'x', value, NULL, NULL FROM pruned`,
      params,
    );
    const pruned = rows.find((r) => r.k === 'x')?.xid as string | undefined;
    if (query.after !== undefined && pruned !== undefined && before(query.after, pruned)) {
      throw new CursorExpiredError(query.after);
    }
    const pageRows = rows.filter((r) => r.k === 'p');
    const items: StoredEvent[] = pageRows.map((r) => ({ cursor: cursorOf(r), event: r.envelope as EventEnvelope }));
    let next = items.at(-1)?.cursor ?? query.after ?? pruned ?? ORIGIN;
    const head = rows.find((r) => r.k === 'h');
    if (items.length < query.limit && head !== undefined && before(next, cursorOf(head))) next = cursorOf(head);
    return { items, next_cursor: next };
  }

  async head(): Promise<string | null> {
    const { rows } = await this.q(
      `SELECT xid::text AS xid, seq::text AS seq FROM events
        WHERE xid < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY xid DESC, seq DESC LIMIT 1`,
    );
    return rows[0] ? cursorOf(rows[0]) : null;
  }

  async prune(beforeTime: string, batch: number): Promise<number> {
    return this.tx(async (c) => {
      const { rows: lock } = await this.q('SELECT pg_try_advisory_xact_lock($1::bigint) AS ok', [PRUNE_LOCK], c);
      if (lock[0]?.ok !== true) return 0;
      // Only a prefix of the feed goes, so "older than the pruned ones" is one position.
      const { rows } = await this.q(
        `SELECT xid::text AS xid, seq::text AS seq, created_at < $1 AS old FROM events
          WHERE xid < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY xid, seq LIMIT $2`,
        [beforeTime, batch],
        c,
      );
      let last: Row | undefined;
      for (const r of rows) {
        if (r.old !== true) break;
        last = r;
      }
      if (last === undefined) return 0;
      const { rowCount } = await this.q(
        'DELETE FROM events WHERE (xid, seq) <= ($1::xid8, $2::bigint) AND xid < pg_snapshot_xmin(pg_current_snapshot())',
        [last.xid, last.seq],
        c,
      );
      await this.q(
        `INSERT INTO event_feed (key, value) VALUES ('pruned_through', $1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
        [cursorOf(last)],
        c,
      );
      return rowCount ?? 0;
    });
  }

  async acquireCursor(
    name: string,
    owner: string,
    leaseMs: number,
    initial: string | null,
  ): Promise<CursorLease | undefined> {
    const { rows } = await this.q(
      `INSERT INTO event_cursors AS c (name, position, owner, lease_until)
       VALUES ($1, $2, $3, clock_timestamp() + $4 * interval '1 millisecond')
       ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until
         WHERE c.owner IS NULL OR c.owner = excluded.owner OR c.lease_until < clock_timestamp()
       RETURNING position`,
      [name, initial, owner, leaseMs],
    );
    return rows[0] && { position: (rows[0].position as string | null) ?? null };
  }

  async advanceCursor(name: string, owner: string, position: string, renewMs?: number): Promise<boolean> {
    const { rowCount } = await this.q(
      `UPDATE event_cursors SET position = $3,
         lease_until = CASE WHEN $4::bigint IS NULL THEN lease_until ELSE clock_timestamp() + $4 * interval '1 millisecond' END
       WHERE name = $1 AND owner = $2`,
      [name, owner, position, renewMs ?? null],
    );
    return (rowCount ?? 0) > 0;
  }

  async releaseCursor(name: string, owner: string): Promise<void> {
    await this.q("UPDATE event_cursors SET owner = NULL, lease_until = 'epoch' WHERE name = $1 AND owner = $2", [
      name,
      owner,
    ]);
  }

  async deleteCursor(name: string): Promise<void> {
    await this.q('DELETE FROM event_cursors WHERE name = $1', [name]);
  }

  async getCursor(name: string): Promise<CursorLease | undefined> {
    const { rows } = await this.q('SELECT position FROM event_cursors WHERE name = $1', [name]);
    return rows[0] && { position: (rows[0].position as string | null) ?? null };
  }

  async putRecord(
    kind: string,
    record: { id: string; fleet_id: string; doc: unknown },
    expectedVersion?: number,
  ): Promise<number | undefined> {
    const doc = JSON.stringify(record.doc);
    if (expectedVersion === 0) {
      const { rows } = await this.q(
        `INSERT INTO channel_records (kind, id, fleet_id, doc, version) VALUES ($1, $2, $3, $4::jsonb, 1)
         ON CONFLICT DO NOTHING RETURNING version`,
        [kind, record.id, record.fleet_id, doc],
      );
      return rows[0] ? Number(rows[0].version) : undefined;
    }
    if (expectedVersion !== undefined) {
      const { rows } = await this.q(
        `UPDATE channel_records SET doc = $3::jsonb, version = version + 1
          WHERE kind = $1 AND id = $2 AND version = $4 RETURNING version`,
        [kind, record.id, doc, expectedVersion],
      );
      return rows[0] ? Number(rows[0].version) : undefined;
    }
    const { rows } = await this.q(
      `INSERT INTO channel_records AS r (kind, id, fleet_id, doc, version) VALUES ($1, $2, $3, $4::jsonb, 1)
       ON CONFLICT (kind, id) DO UPDATE SET doc = excluded.doc, version = r.version + 1 RETURNING version`,
      [kind, record.id, record.fleet_id, doc],
    );
    return Number(rows[0]!.version);
  }

  async getRecord(kind: string, id: string): Promise<ChannelRecord | undefined> {
    const { rows } = await this.q('SELECT * FROM channel_records WHERE kind = $1 AND id = $2', [kind, id]);
    return rows[0] && recordFromRow(rows[0]);
  }

  async listRecords(
    kind: string,
    fleetId: string | undefined,
    limit: number,
    after?: string,
  ): Promise<ChannelRecord[]> {
    const { rows } = await this.q(
      `SELECT * FROM channel_records WHERE kind = $1 AND ($2::text IS NULL OR fleet_id = $2::text)
          AND ($3::text IS NULL OR id > $3::text) ORDER BY id LIMIT $4`,
      [kind, fleetId ?? null, after ?? null, limit],
    );
    return rows.map(recordFromRow);
  }

  async deleteRecord(kind: string, id: string): Promise<boolean> {
    return this.tx(async (c) => {
      await this.q('DELETE FROM channel_logs WHERE kind = $1 AND record_id = $2', [kind, id], c);
      const { rowCount } = await this.q('DELETE FROM channel_records WHERE kind = $1 AND id = $2', [kind, id], c);
      return (rowCount ?? 0) > 0;
    });
  }

  async appendLog(kind: string, recordId: string, entry: unknown): Promise<number> {
    const { rows } = await this.q(
      'INSERT INTO channel_logs (kind, record_id, entry) VALUES ($1, $2, $3::jsonb) RETURNING id',
      [kind, recordId, JSON.stringify(entry)],
    );
    return Number(rows[0]!.id);
  }

  async appendLogs(kind: string, recordId: string, entries: readonly unknown[]): Promise<number[]> {
    if (entries.length === 0) return [];
    const { rows } = await this.q(
      `INSERT INTO channel_logs (kind, record_id, entry)
         SELECT $1, $2, e.entry FROM jsonb_array_elements($3::jsonb) WITH ORDINALITY AS e(entry, n) ORDER BY e.n
       RETURNING id`,
      [kind, recordId, JSON.stringify(entries)],
    );
    // Ids come from the sequence in insertion order; RETURNING's order is not promised.
    return rows.map((r) => Number(r.id)).sort((a, b) => a - b);
  }

  async listLog(
    kind: string,
    recordId: string,
    limit: number,
    beforeId?: number,
  ): Promise<Array<{ id: number; entry: unknown }>> {
    const { rows } = await this.q(
      `SELECT id, entry FROM channel_logs WHERE kind = $1 AND record_id = $2 AND ($3::bigint IS NULL OR id < $3::bigint)
        ORDER BY id DESC LIMIT $4`,
      [kind, recordId, beforeId ?? null, limit],
    );
    return rows.map((r) => ({ id: Number(r.id), entry: r.entry }));
  }

  async getLog(kind: string, recordId: string, id: number): Promise<unknown | undefined> {
    const { rows } = await this.q('SELECT entry FROM channel_logs WHERE kind = $1 AND record_id = $2 AND id = $3', [
      kind,
      recordId,
      id,
    ]);
    return rows[0]?.entry;
  }

  async pruneLog(beforeTime: string, batch: number): Promise<number> {
    const { rowCount } = await this.q(
      'DELETE FROM channel_logs WHERE id IN (SELECT id FROM channel_logs WHERE created_at < $1 ORDER BY created_at LIMIT $2)',
      [beforeTime, batch],
    );
    return rowCount ?? 0;
  }
}

/** a < b in feed order. */
function before(a: string, b: string): boolean {
  const [ax, as] = parseCursor(a).map(BigInt) as [bigint, bigint];
  const [bx, bs] = parseCursor(b).map(BigInt) as [bigint, bigint];
  return ax < bx || (ax === bx && as < bs);
}

function recordFromRow(r: Row): ChannelRecord {
  return { id: String(r.id), fleet_id: String(r.fleet_id), doc: r.doc, version: Number(r.version) };
}
