/**
 * The SQL of the command path (command-path.ts): a command's start, its completion with the
 * unit's report, and state reports, each one statement that also writes its events
 * (state-events-sql.ts) and reads back what it needs.
 */
import type { CommandCompletion } from '../store.js';
import { json } from './rows.js';
import { eventCtes } from './state-events-sql.js';

/**
 * The records a completion may still write (Store.completeCommand): one in flight, or one a
 * deadline expiry ended as OUTCOME_UNKNOWN meanwhile — the real outcome wins over the expiry.
 */
const FINISHABLE_STATUSES = "('IN_FLIGHT', 'OUTCOME_UNKNOWN')";

/**
 * Upserts state rows from `source` (columns vehicle_id, property, ts, value) of the vehicles
 * `vehicleIds` (a text[] expression): newer-or-equal timestamps win (SPEC §3). The ids let the
 * planner read only those vehicles' rows through the primary key: it estimates 100 rows for any
 * JSON record set and would otherwise hash-join the whole table. Rows that would not change are
 * dropped by the join before the upsert, which would otherwise lock, and so WAL-log, each one;
 * ON CONFLICT still settles a row another instance inserted or changed meanwhile. Rows are
 * written in key order, so two statements writing the same vehicle's properties (a batch of
 * reports and a command's completion) lock them in the same order instead of deadlocking (the
 * ingestion bench, 21:18 UTC 2026-12-07: four completions chosen as deadlock victims in 10 s).
 */
export const upsertState = (source: string, vehicleIds: string): string =>
  `INSERT INTO vehicle_state (vehicle_id, property, ts, value)
   SELECT s.vehicle_id, s.property, s.ts, s.value FROM ${source}
   LEFT JOIN vehicle_state cur ON cur.vehicle_id = s.vehicle_id AND cur.property = s.property
     AND cur.vehicle_id = ANY(${vehicleIds})
   WHERE cur.vehicle_id IS NULL OR s.ts > cur.ts OR (s.ts = cur.ts AND s.value IS DISTINCT FROM cur.value)
   ORDER BY s.vehicle_id, s.property
   ON CONFLICT (vehicle_id, property) DO UPDATE SET ts = excluded.ts, value = excluded.value
   WHERE excluded.ts > vehicle_state.ts
      OR (excluded.ts = vehicle_state.ts AND excluded.value IS DISTINCT FROM vehicle_state.value)
   RETURNING vehicle_state.vehicle_id, vehicle_state.property, vehicle_state.value`;

/** One vehicle's state (parameter `vehicle`) from a JSON object of {timestamp, value} (parameter `state`). */
export const stateOf = (vehicle: string, state: string): string =>
  `(SELECT ${vehicle}::text AS vehicle_id, e.key AS property, (e.value->>'timestamp')::timestamptz AS ts,
     e.value->'value' AS value FROM jsonb_each(${state}::jsonb) AS e) AS s`;

/**
 * The command path's batched statements that join JSON record sets to tables (exported for the
 * plan test, test/integration/postgres-plans.test.ts). Every table is reached by key: the planner
 * estimates 100 rows for any record set, and joined without key filters it hash-joined whole
 * tables (a sequential scan of `commands` per completion batch).
 */
export const START_COMMANDS_SQL = `WITH r AS (
   SELECT * FROM jsonb_to_recordset($1::jsonb) AS r(flow_id text, fleet_id text, client_id text,
     vehicle_id text, command text, instance_id text, problem_type text, detail text, delivery text,
     steps jsonb, requested_at timestamptz, deadline_at timestamptz, user_id text, user_email text)),
 v AS MATERIALIZED (SELECT * FROM vehicles WHERE vehicle_id = ANY($2::text[])),
 begun AS (
   INSERT INTO commands (flow_id, fleet_id, client_id, vehicle_id, command, adapter, instance_id, status,
     problem_type, detail, delivery, steps, requested_at, deadline_at, user_id, user_email)
   SELECT r.flow_id, r.fleet_id, r.client_id, r.vehicle_id, r.command, v.telematics_brand, r.instance_id,
     'IN_FLIGHT', r.problem_type, r.detail, r.delivery, r.steps, r.requested_at, r.deadline_at, r.user_id, r.user_email
   FROM r JOIN v ON v.vehicle_id = r.vehicle_id
   WHERE v.fleet_id = r.fleet_id AND v.setup_status = 'SUCCEEDED'
     AND v.capabilities->'commands' ? r.command
   ON CONFLICT (vehicle_id) WHERE status = 'IN_FLIGHT' DO NOTHING
   RETURNING flow_id)
 SELECT r.flow_id AS start_flow_id, b.flow_id IS NOT NULL AS start_begun, v.*
 FROM r LEFT JOIN v ON v.vehicle_id = r.vehicle_id LEFT JOIN begun b ON b.flow_id = r.flow_id`;

/**
 * START_COMMANDS_SQL for one command, with a parameter per column instead of a JSON record set:
 * what runs when a command arrives alone (low and moderate load). PostgreSQL plans the batched
 * form anew on every execution (its generic plan never wins against the custom one, which knows
 * the record set), at about as much CPU as running it; this one settles on a generic plan
 * after five executions (docs/performance.md).
 */
export const START_COMMAND_SQL = `WITH v AS MATERIALIZED (SELECT * FROM vehicles WHERE vehicle_id = $4::text),
 begun AS (
   INSERT INTO commands (flow_id, fleet_id, client_id, vehicle_id, command, adapter, instance_id, status,
     problem_type, detail, delivery, steps, requested_at, deadline_at, user_id, user_email)
   SELECT $1::text, $2::text, $3::text, $4::text, $5::text, v.telematics_brand, $6::text, 'IN_FLIGHT',
     $7::text, $8::text, $9::text, $10::jsonb, $11::timestamptz, $12::timestamptz, $13::text, $14::text
   FROM v
   WHERE v.fleet_id = $2::text AND v.setup_status = 'SUCCEEDED' AND v.capabilities->'commands' ? $5::text
   ON CONFLICT (vehicle_id) WHERE status = 'IN_FLIGHT' DO NOTHING
   RETURNING flow_id)
 SELECT $1::text AS start_flow_id, EXISTS (SELECT 1 FROM begun) AS start_begun, v.*
 FROM (SELECT 1) AS one LEFT JOIN v ON true`;

/**
 * The state of the vehicles `vehicleIds` as the statement's snapshot holds it, one row per
 * property, and one row with a NULL property for a vehicle that exists (none for one deleted).
 * In a statement that also writes state, this is the state before those writes (sub-statements
 * of a WITH do not see each other's effects): the caller merges its report over it (mergeReport).
 */
export const snapshotState = (vehicleIds: string): string =>
  `SELECT ve.vehicle_id, st.property, st.ts, st.value FROM vehicles ve
   LEFT JOIN vehicle_state st ON st.vehicle_id = ve.vehicle_id
   WHERE ve.vehicle_id = ANY(${vehicleIds})`;

export const COMPLETE_COMMANDS_SQL = `WITH done AS (
     SELECT * FROM jsonb_to_recordset($1::jsonb) AS d(flow_id text, status text, problem_type text, detail text,
       delivery text, steps jsonb, completed_at timestamptz, duration_ms integer)),
   finished AS (
     UPDATE commands c SET status = d.status, problem_type = d.problem_type, detail = d.detail,
       delivery = d.delivery, steps = d.steps, completed_at = d.completed_at, duration_ms = d.duration_ms
     FROM done d WHERE c.flow_id = d.flow_id AND c.flow_id = ANY($3::text[])
       AND c.status IN ${FINISHABLE_STATUSES} RETURNING c.*),
   merged AS (
   ${upsertState('jsonb_to_recordset($2::jsonb) AS s(vehicle_id text, property text, ts timestamptz, value jsonb)', '$4::text[]')}),
   ${eventCtes('$5', '$4::text[]', true)}
   none AS (SELECT 1)
   ${snapshotState('$4::text[]')}`;

/** State reports of several vehicles (each at most once) in one statement, with their events. */
export const MERGE_STATES_SQL = `WITH merged AS (
   ${upsertState('jsonb_to_recordset($1::jsonb) AS s(vehicle_id text, property text, ts timestamptz, value jsonb)', '$2::text[]')}),
   ${eventCtes('$3', '$2::text[]', false)}
   none AS (SELECT 1)
   ${snapshotState('$2::text[]')}`;

/** Finishes one command's record: parameters from finishCommandValues. */
export const FINISH_COMMAND_SQL = `UPDATE commands SET status = $2, problem_type = $3, detail = $4, delivery = $5,
  steps = $6::jsonb, completed_at = $7, duration_ms = $8 WHERE flow_id = $1 AND status IN ${FINISHABLE_STATUSES}`;

export function finishCommandValues(flowId: string, c: CommandCompletion): unknown[] {
  return [
    flowId,
    c.status,
    c.problem_type,
    c.detail,
    c.delivery,
    c.steps === null ? null : json(c.steps),
    c.completed_at,
    c.duration_ms,
  ];
}
