/**
 * The outbox rows of the command path's state writes and completions, written by the same
 * statement as the change (one round trip, as before). Whether an event happened depends on
 * what the statement finds stored (a lock that was already LOCKED changes nothing), so the
 * statement decides: fleetgate passes candidates (envelopes with their ids made in advance), and
 * the SQL keeps those whose condition holds, completing them with what only the database knows
 * (the fleet, the previous value, the trip's start, the command's client). The rules are those of
 * domain/events.ts stateEvents, which the SQLite engine runs in process; the store contract
 * suite holds both to the same events.
 */
import { CHANGE_EVENT_PROPERTIES, type EventEnvelope, newEvent, type TripStart } from '../../domain/events.js';
import type { VehicleState } from '../../domain/state-catalogue.js';
import type { CommandCompletion } from '../store.js';

export type Candidate =
  | { kind: 'recorded' | 'change' | 'trip_end'; vehicle_id: string; property?: string; env: EventEnvelope }
  | { kind: 'trip_start'; vehicle_id: string; start: TripStart }
  | { kind: 'finished'; flow_id: string; env: EventEnvelope };

/** The candidate events of one state write (`reported`, normalized). */
export function stateCandidates(vehicleId: string, flowId: string, reported: VehicleState, at: string): Candidate[] {
  const subject = { fleet_id: '', vehicle_id: vehicleId, flow_id: flowId };
  const sorted: VehicleState = {};
  for (const name of Object.keys(reported).sort()) sorted[name] = reported[name]!;
  const out: Candidate[] = [
    { kind: 'recorded', vehicle_id: vehicleId, env: newEvent('VehicleStateRecorded', subject, { state: sorted }, at) },
  ];
  for (const [property, v] of Object.entries(reported)) {
    const type = CHANGE_EVENT_PROPERTIES[property as keyof typeof CHANGE_EVENT_PROPERTIES];
    if (type === undefined) continue;
    const data = { property, value: v.value, timestamp: v.timestamp };
    out.push({ kind: 'change', vehicle_id: vehicleId, property, env: newEvent(type, subject, data, at) });
  }
  const ignition = reported.ignition;
  if (ignition?.value === 'ON') {
    const start: TripStart = {
      started_at: ignition.timestamp,
      position: reported.position?.value ?? null,
      mileage_in_kilometers: (reported.mileage_in_kilometers?.value as number | undefined) ?? null,
    };
    out.push({ kind: 'trip_start', vehicle_id: vehicleId, start });
  } else if (ignition?.value === 'OFF') {
    const data = {
      ended_at: ignition.timestamp,
      end_position: reported.position?.value ?? null,
      end_mileage_in_kilometers: reported.mileage_in_kilometers?.value ?? null,
    };
    out.push({ kind: 'trip_end', vehicle_id: vehicleId, env: newEvent('Trip', subject, data, at) });
  }
  return out;
}

/** The CommandFinished candidate of a completion; the SQL adds fleet, client, command, request time. */
export function finishedCandidate(flowId: string, vehicleId: string, c: CommandCompletion): Candidate {
  const data = {
    outcome: c.status,
    problem_type: c.problem_type,
    detail: c.detail,
    delivery: c.delivery,
    steps: c.steps,
    duration_ms: c.duration_ms,
    completed_at: c.completed_at,
  };
  return {
    kind: 'finished',
    flow_id: flowId,
    env: newEvent('CommandFinished', { fleet_id: '', vehicle_id: vehicleId, flow_id: flowId }, data, c.completed_at),
  };
}

const ISO = (ts: string) => `to_jsonb(to_char(${ts} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))`;

/**
 * CTEs (each ending with a comma) that follow `merged` (the state upsert, RETURNING vehicle_id,
 * property, value) and, when `withFinished`, `finished` (the commands UPDATE, RETURNING *).
 * `candidates`: the JSON parameter of Candidate[]; `vehicleIds`: a text[] expression of the
 * vehicles written. Reads of vehicle_state here see the statement's snapshot: the state before.
 */
export function eventCtes(candidates: string, vehicleIds: string, withFinished: boolean): string {
  const finished = withFinished
    ? `UNION ALL
     SELECT c.env, f.fleet_id, jsonb_build_object('client_id', f.client_id, 'user_id', f.user_id, 'user_email', f.user_email,
       'command', f.command,
       'requested_at', ${ISO('f.requested_at')}) AS extra
     FROM cand c JOIN finished f ON f.flow_id = c.flow_id WHERE c.kind = 'finished'`
    : '';
  return `cand AS (SELECT * FROM jsonb_to_recordset(${candidates}::jsonb)
     AS c(kind text, vehicle_id text, flow_id text, property text, env jsonb, start jsonb)),
   old AS (SELECT st.vehicle_id, st.property, st.ts, st.value FROM vehicle_state st
     WHERE st.vehicle_id = ANY(${vehicleIds})
       AND st.property IN ('ignition', 'position', 'mileage_in_kilometers', ${Object.keys(CHANGE_EVENT_PROPERTIES)
         .map((p) => `'${p}'`)
         .join(', ')})),
   ve AS (SELECT vehicle_id, fleet_id FROM vehicles WHERE vehicle_id = ANY(${vehicleIds})),
   trip AS (SELECT vehicle_id, start FROM vehicle_trips WHERE vehicle_id = ANY(${vehicleIds})),
   ev AS (
     SELECT c.env, ve.fleet_id, '{}'::jsonb AS extra FROM cand c JOIN ve ON ve.vehicle_id = c.vehicle_id
     WHERE c.kind = 'recorded' AND EXISTS (SELECT 1 FROM merged m WHERE m.vehicle_id = c.vehicle_id)
     UNION ALL
     SELECT c.env, ve.fleet_id, jsonb_build_object('previous', COALESCE(o.value, 'null'::jsonb))
     FROM cand c JOIN ve ON ve.vehicle_id = c.vehicle_id
     JOIN merged m ON m.vehicle_id = c.vehicle_id AND m.property = c.property
     LEFT JOIN old o ON o.vehicle_id = c.vehicle_id AND o.property = c.property
     WHERE c.kind = 'change' AND o.value IS DISTINCT FROM m.value
     UNION ALL
     SELECT c.env, ve.fleet_id, jsonb_build_object('started_at', s.started_at, 'start_position', s.sp,
       'start_mileage_in_kilometers', s.sm, 'end_position', s.ep, 'end_mileage_in_kilometers', s.em,
       'duration_seconds', to_jsonb(GREATEST(0, extract(epoch FROM
         ((c.env->'data'->>'ended_at')::timestamptz - (s.started_at #>> '{}')::timestamptz)))),
       'distance_in_kilometers', CASE WHEN jsonb_typeof(s.sm) = 'number' AND jsonb_typeof(s.em) = 'number'
         THEN to_jsonb(round((s.em #>> '{}')::numeric - (s.sm #>> '{}')::numeric, 3)) ELSE 'null'::jsonb END)
     FROM cand c JOIN ve ON ve.vehicle_id = c.vehicle_id
     JOIN merged m ON m.vehicle_id = c.vehicle_id AND m.property = 'ignition'
     JOIN old o ON o.vehicle_id = c.vehicle_id AND o.property = 'ignition' AND o.value = '"ON"'::jsonb
     LEFT JOIN trip t ON t.vehicle_id = c.vehicle_id
     LEFT JOIN old op ON op.vehicle_id = c.vehicle_id AND op.property = 'position'
     LEFT JOIN old om ON om.vehicle_id = c.vehicle_id AND om.property = 'mileage_in_kilometers'
     CROSS JOIN LATERAL (SELECT COALESCE(t.start->'started_at', ${ISO('o.ts')}) AS started_at,
       COALESCE(t.start->'position', 'null'::jsonb) AS sp,
       COALESCE(t.start->'mileage_in_kilometers', 'null'::jsonb) AS sm,
       COALESCE(NULLIF(c.env->'data'->'end_position', 'null'::jsonb), op.value, 'null'::jsonb) AS ep,
       COALESCE(NULLIF(c.env->'data'->'end_mileage_in_kilometers', 'null'::jsonb), om.value, 'null'::jsonb) AS em) s
     WHERE c.kind = 'trip_end'
     ${finished}),
   trip_started AS (INSERT INTO vehicle_trips (vehicle_id, start)
     SELECT c.vehicle_id, c.start || jsonb_build_object(
       'position', COALESCE(NULLIF(c.start->'position', 'null'::jsonb), op.value, 'null'::jsonb),
       'mileage_in_kilometers', COALESCE(NULLIF(c.start->'mileage_in_kilometers', 'null'::jsonb), om.value, 'null'::jsonb))
     FROM cand c JOIN merged m ON m.vehicle_id = c.vehicle_id AND m.property = 'ignition'
     LEFT JOIN old o ON o.vehicle_id = c.vehicle_id AND o.property = 'ignition'
     LEFT JOIN old op ON op.vehicle_id = c.vehicle_id AND op.property = 'position'
     LEFT JOIN old om ON om.vehicle_id = c.vehicle_id AND om.property = 'mileage_in_kilometers'
     WHERE c.kind = 'trip_start' AND o.value IS DISTINCT FROM '"ON"'::jsonb
     ON CONFLICT (vehicle_id) DO UPDATE SET start = excluded.start),
   trip_ended AS (DELETE FROM vehicle_trips t USING cand c, merged m
     WHERE c.kind = 'trip_end' AND t.vehicle_id = c.vehicle_id AND t.vehicle_id = ANY(${vehicleIds})
       AND m.vehicle_id = c.vehicle_id AND m.property = 'ignition'),
   written_events AS (INSERT INTO events (id, fleet_id, vehicle_id, type, envelope)
     SELECT e.env->'metadata'->>'id', e.fleet_id, e.env->'metadata'->>'vehicle_id', e.env->'metadata'->>'type',
       jsonb_build_object('metadata', (e.env->'metadata') || jsonb_build_object('fleet_id', e.fleet_id),
         'data', (e.env->'data') || e.extra)
     FROM ev e),
`;
}
