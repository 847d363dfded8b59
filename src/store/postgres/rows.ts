/** How values cross the driver: what PostgreSQL's columns hand back, and what goes into them. */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { VehicleState } from '../../domain/state-catalogue.js';
import { type ColumnEncoder, type Row, rowMappers } from '../row-mapping.js';
import type { ChangeCause } from '../store.js';

export const iso = (d: unknown): string => (d instanceof Date ? d : new Date(String(d))).toISOString();
export const json = (value: unknown): string => JSON.stringify(value);
// pg hands back timestamptz as Date and jsonb already parsed.
export const {
  client: clientFromRow,
  vehicle: vehicleFromRow,
  command: commandFromRow,
  credentials: credentialsFromRow,
  idempotency: idempotencyFromRow,
  user: userFromRow,
  session: sessionFromRow,
  signInFailures: signInFailuresFromRow,
} = rowMappers({ time: iso, json: <T>(v: unknown) => v as T });

/** timestamptz takes ISO strings as they are; JSON goes as text. */
export const ENCODE: ColumnEncoder = { time: (iso) => iso, json };

/** State rows, read with STATE_ROW_TYPES: `ts` is PostgreSQL's text for a timestamptz. */
export function stateFromRows(rows: Row[]): VehicleState {
  const out: VehicleState = {};
  for (const r of rows) {
    // snapshotState's row for a vehicle without state has no property.
    if (r.property !== null) out[String(r.property)] = { timestamp: isoFromPostgres(String(r.ts)), value: r.value };
  }
  return out;
}

export function groupByVehicle(rows: Row[]): Map<string, Row[]> {
  const byId = new Map<string, Row[]>();
  for (const r of rows) {
    const id = String(r.vehicle_id);
    const list = byId.get(id);
    if (list) list.push(r);
    else byId.set(id, [r]);
  }
  return byId;
}

/**
 * Type parsers for state reads: timestamptz stays text, which isoFromPostgres turns into the ISO
 * form directly, instead of pg building a Date for each row only to format it again (a unit's
 * state has a dozen rows, read after every command).
 */
export const STATE_ROW_TYPES = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === pg.types.builtins.TIMESTAMPTZ
      ? (text: string) => text
      : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};
const parseTimestamptz = pg.types.getTypeParser(pg.types.builtins.TIMESTAMPTZ);
/**
 * A timestamptz's text as toISOString would write it (milliseconds, truncated as a Date would).
 * In the pool's sessions (TimeZone UTC) PostgreSQL writes `2026-11-26 16:22:19.123+00`, with
 * 0-6 fraction digits: rebuilt by position, without a regex match or a Date per row. Any
 * other form goes through pg's own parser.
 */
export function isoFromPostgres(text: string): string {
  const n = text.length;
  const fraction = n - 23; // digits between "…:SS." and "+00"
  if (
    text.charCodeAt(10) === 32 && // ' '
    text.endsWith('+00') &&
    text.charCodeAt(4) === 45 && // '-'
    text.charCodeAt(13) === 58 && // ':'
    (n === 22 || (fraction >= 1 && fraction <= 6 && text.charCodeAt(19) === 46)) // '.'
  ) {
    const ms = n === 22 ? '000' : text.slice(20, 20 + Math.min(3, fraction)).padEnd(3, '0');
    return `${text.slice(0, 10)}T${text.slice(11, 19)}.${ms}Z`;
  }
  return iso(parseTimestamptz(text));
}

/** The flow id a change's events carry: the request's, or a new one (SPEC §2). */
export function flowOf(cause: ChangeCause | undefined): string {
  return cause?.flow_id ?? randomUUID();
}
