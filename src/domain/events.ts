/**
 * The event catalogue (docs/events.md is written from it and a test checks both list the same
 * types): every fact fleetgate tells a booking backend, its `data` schema and an example. Events
 * travel in the Events API envelope of the reference API: `{metadata, data}`. An event is written
 * in the same transaction as the change it describes (the stores' outbox), so none is lost and
 * none is invented; delivery is at least once, consumers deduplicate by `metadata.id`.
 */
import type { CommandName } from './commands.js';
import { randomBase32 } from './random-id.js';
import type { VehicleState } from './state-catalogue.js';
import type { Vehicle } from './vehicle.js';

/** The envelope of every event (reference API's Events API). */
export interface EventEnvelope<D = Record<string, unknown>> {
  metadata: {
    /** ULID: unique, and sorts by creation time. Consumers deduplicate by it. */
    id: string;
    type: EventType;
    /** Bumped only for a change of `data` that is not backwards compatible. */
    schema_major_version: number;
    /** When the change happened (ISO 8601 UTC, milliseconds). */
    occurred_at: string;
    /** The request's flow id when an API call caused it (X-Flow-ID), a new one otherwise. */
    flow_id: string;
    fleet_id: string;
    vehicle_id: string;
  };
  data: D;
}

/** An event as the outbox holds it: its envelope and its position in the feed (an opaque cursor). */
export interface StoredEvent {
  cursor: string;
  event: EventEnvelope;
}

/** State properties an operator acts on without reading the whole state: each has a `…Changed` event. */
export const CHANGE_EVENT_PROPERTIES = {
  central_lock: 'CentralLockStatusChanged',
  driving_enabled: 'DrivingEnabledChanged',
  ignition: 'IgnitionChanged',
  top_case_lock: 'TopCaseLockStatusChanged',
  battery_compartment_lock: 'BatteryCompartmentLockStatusChanged',
} as const;
export type ChangeEventType = (typeof CHANGE_EVENT_PROPERTIES)[keyof typeof CHANGE_EVENT_PROPERTIES];

export const VEHICLE_CHANGE_REASONS = [
  'LIFE_STATUS_CHANGED',
  'SETUP_STATUS_CHANGED',
  'MASTER_DATA_CHANGED',
  'OPERATION_STATUS_CHANGED',
  'CUSTOM_FIELDS_CHANGED',
  'TAGS_CHANGED',
  'CAPABILITIES_CHANGED',
] as const;
export type VehicleChangeReason = (typeof VEHICLE_CHANGE_REASONS)[number];

/** JSON Schema (draft 2020-12 subset) of one event type's `data`. */
type DataSchema = Record<string, unknown>;

export interface EventTypeDefinition {
  readonly type: string;
  readonly schema_major_version: number;
  readonly description: string;
  readonly data_schema: DataSchema;
  readonly example: Record<string, unknown>;
}

const TS = { type: 'string', format: 'date-time' };
const STATE_SCHEMA = {
  type: 'object',
  description: 'Property name → `{timestamp, value}` as in `GET /vehicles/{id}/state`.',
  additionalProperties: {
    type: 'object',
    required: ['timestamp', 'value'],
    properties: { timestamp: TS, value: {} },
  },
};
/** The vehicle as events carry it: the API's vehicle without secrets, plus its version. */
const VEHICLE_SCHEMA = {
  type: 'object',
  required: ['vehicle_id', 'vehicle_model_id', 'telematics_unit', 'setup_status', 'life_status', 'version'],
  properties: {
    vehicle_id: { type: 'string' },
    vehicle_model_id: { type: 'string' },
    telematics_unit: { type: 'object', properties: { id: { type: 'string' }, brand: { type: 'string' } } },
    capabilities: { type: 'object' },
    setup_status: { enum: ['IN_PROGRESS', 'SUCCEEDED', 'FAILED'] },
    setup_failure_reason: { type: 'string' },
    life_status: { type: 'object', properties: { value: { enum: ['ONLINE', 'OFFLINE'] }, modified_at: TS } },
    operation_status: { type: 'string' },
    credentials_id: { type: 'string' },
    master_data: { type: 'object' },
    custom_fields: { type: 'object' },
    tags: { type: 'array', items: { type: 'string' } },
    version: { type: 'integer' },
    created_at: TS,
    modified_at: TS,
  },
};
const EXAMPLE_VEHICLE = {
  vehicle_id: '7KQ2M9XW4TRB',
  vehicle_model_id: 'fleetgate-scooter',
  telematics_unit: { id: 'unit-0001', brand: 'FLEETGATE' },
  capabilities: { commands: ['LOCK', 'UNLOCK'], vehicle_state: ['CENTRAL_LOCK', 'IGNITION', 'POSITION'] },
  setup_status: 'SUCCEEDED',
  life_status: { value: 'ONLINE', modified_at: '2026-12-07T09:14:03.120Z' },
  operation_status: 'OPERATING',
  master_data: { vehicle_type: 'MOPED', license_plate: 'B-FG 1' },
  custom_fields: {},
  tags: ['berlin'],
  version: 3,
  created_at: '2026-12-07T09:13:58.002Z',
  modified_at: '2026-12-07T09:14:03.120Z',
};
const POSITION = { lat: 52.520008, lon: 13.404954 };

function changeDefinition(property: string, type: string, values: readonly unknown[]): EventTypeDefinition {
  return {
    type,
    schema_major_version: 1,
    description: `\`${property}\` took a new value (from a report or a command's answer); emitted only when the value differs from the stored one.`,
    data_schema: {
      type: 'object',
      required: ['property', 'value', 'timestamp', 'previous'],
      properties: {
        property: { const: property },
        value: { enum: values },
        timestamp: TS,
        previous: {
          description: 'The value before, null when fleetgate knew none.',
          oneOf: [{ enum: values }, { type: 'null' }],
        },
      },
    },
    example: {
      property,
      value: values[1],
      timestamp: '2026-12-07T09:20:11.000Z',
      previous: values[0],
    },
  };
}

const LOCK = ['LOCKED', 'UNLOCKED'] as const;

/** Every event type: the single source for the code and docs/events.md. */
export const EVENT_CATALOGUE = [
  {
    type: 'VehicleStateRecorded',
    schema_major_version: 1,
    description:
      'The unit reported state, on its own or as a command’s answer, and it changed what fleetgate stores (a report that only repeats stored values records nothing). `state`: the reported properties the vehicle’s state capabilities allow, each with its timestamp.',
    data_schema: {
      type: 'object',
      required: ['state'],
      properties: { state: STATE_SCHEMA, command_flow_id: { type: 'string' } },
    },
    example: {
      state: {
        central_lock: { timestamp: '2026-12-07T09:20:11.000Z', value: 'UNLOCKED' },
        position: { timestamp: '2026-12-07T09:20:10.000Z', value: POSITION },
      },
    },
  },
  changeDefinition('central_lock', 'CentralLockStatusChanged', LOCK),
  changeDefinition('driving_enabled', 'DrivingEnabledChanged', [false, true]),
  changeDefinition('ignition', 'IgnitionChanged', ['OFF', 'ON']),
  changeDefinition('top_case_lock', 'TopCaseLockStatusChanged', LOCK),
  changeDefinition('battery_compartment_lock', 'BatteryCompartmentLockStatusChanged', LOCK),
  {
    type: 'VehicleAdded',
    schema_major_version: 1,
    description: 'A vehicle was added (`POST /vehicles`); its setup is IN_PROGRESS until the unit connects.',
    data_schema: { type: 'object', required: ['vehicle'], properties: { vehicle: VEHICLE_SCHEMA } },
    example: { vehicle: { ...EXAMPLE_VEHICLE, setup_status: 'IN_PROGRESS', version: 1 } },
  },
  {
    type: 'VehicleChanged',
    schema_major_version: 1,
    description:
      'Something about the vehicle itself changed: `reasons` says what, `vehicle` is the vehicle as it now is. Life status changes (unit connected or lost) come with `LIFE_STATUS_CHANGED`.',
    data_schema: {
      type: 'object',
      required: ['reasons', 'vehicle'],
      properties: {
        reasons: { type: 'array', items: { enum: VEHICLE_CHANGE_REASONS } },
        vehicle: VEHICLE_SCHEMA,
      },
    },
    example: { reasons: ['LIFE_STATUS_CHANGED'], vehicle: EXAMPLE_VEHICLE },
  },
  {
    type: 'VehicleRemoved',
    schema_major_version: 1,
    description: 'The vehicle was deleted (`DELETE /vehicles/{id}`); `vehicle` is how it was.',
    data_schema: { type: 'object', required: ['vehicle'], properties: { vehicle: VEHICLE_SCHEMA } },
    example: { vehicle: EXAMPLE_VEHICLE },
  },
  {
    type: 'CommandFinished',
    schema_major_version: 1,
    description:
      'A command record ended: every command sent through the API, whatever its outcome. `flow_id` in the metadata is the command request’s.',
    data_schema: {
      type: 'object',
      required: ['command', 'outcome', 'delivery', 'duration_ms', 'client_id', 'requested_at', 'completed_at'],
      properties: {
        command: { type: 'string', description: 'e.g. UNLOCK, LOCK_AND_DISABLE_DRIVING' },
        outcome: { enum: ['SUCCEEDED', 'FAILED', 'OUTCOME_UNKNOWN'] },
        problem_type: { type: ['string', 'null'], description: 'the problem type key, e.g. vehicle/no-connection' },
        detail: { type: ['string', 'null'] },
        delivery: { enum: ['NOT_DELIVERED', 'DELIVERED', 'DELIVERED_OUTCOME_UNKNOWN', null] },
        steps: { type: ['array', 'null'], description: 'each step of a combined command, with its outcome' },
        duration_ms: { type: 'integer' },
        client_id: { type: 'string', description: '`console` for a command sent from the console' },
        user_id: { type: ['string', 'null'], description: 'the console user who sent it; null for API clients' },
        user_email: { type: ['string', 'null'], description: "that user's email" },
        requested_at: TS,
        completed_at: TS,
      },
    },
    example: {
      command: 'UNLOCK',
      outcome: 'SUCCEEDED',
      problem_type: null,
      detail: null,
      delivery: 'DELIVERED',
      steps: null,
      duration_ms: 412,
      client_id: 'fgc_0k3m7q2x9v4b8n1c5d6f',
      user_id: null,
      user_email: null,
      requested_at: '2026-12-07T09:20:10.601Z',
      completed_at: '2026-12-07T09:20:11.013Z',
    },
  },
  {
    type: 'CommandOutcomeResolved',
    schema_major_version: 1,
    description:
      'A unit answered a command after the command had ended OUTCOME_UNKNOWN (504 with delivery DELIVERED_OUTCOME_UNKNOWN): the record now has the real outcome, and the state the answer carried is stored (a VehicleStateRecorded with the same flow_id follows when it changed anything).',
    data_schema: {
      type: 'object',
      required: ['command', 'outcome', 'previous_outcome', 'resolved_at'],
      properties: {
        command: { type: 'string' },
        outcome: { enum: ['SUCCEEDED', 'FAILED'] },
        problem_type: { type: ['string', 'null'] },
        detail: { type: ['string', 'null'] },
        previous_outcome: { const: 'OUTCOME_UNKNOWN' },
        requested_at: TS,
        resolved_at: TS,
      },
    },
    example: {
      command: 'UNLOCK',
      outcome: 'SUCCEEDED',
      problem_type: null,
      detail: null,
      previous_outcome: 'OUTCOME_UNKNOWN',
      requested_at: '2026-12-07T09:20:10.601Z',
      resolved_at: '2026-12-07T09:20:41.377Z',
    },
  },
  {
    type: 'Trip',
    schema_major_version: 1,
    description:
      'A trip ended: derived from the state stream when `ignition` goes from ON to OFF. Start is the report that turned ignition ON. Position and mileage are the latest the unit had reported at that moment (null when it reports none); `distance_in_kilometers` is the mileage difference (null without mileage).',
    data_schema: {
      type: 'object',
      required: ['started_at', 'ended_at', 'duration_seconds'],
      properties: {
        started_at: TS,
        ended_at: TS,
        duration_seconds: { type: 'number' },
        start_position: { oneOf: [{ type: 'object' }, { type: 'null' }] },
        end_position: { oneOf: [{ type: 'object' }, { type: 'null' }] },
        start_mileage_in_kilometers: { type: ['number', 'null'] },
        end_mileage_in_kilometers: { type: ['number', 'null'] },
        distance_in_kilometers: { type: ['number', 'null'] },
      },
    },
    example: {
      started_at: '2026-12-07T09:20:15.000Z',
      ended_at: '2026-12-07T09:41:02.000Z',
      duration_seconds: 1247,
      start_position: POSITION,
      end_position: { lat: 52.50311, lon: 13.44214 },
      start_mileage_in_kilometers: 10234.2,
      end_mileage_in_kilometers: 10239.8,
      distance_in_kilometers: 5.6,
    },
  },
] as const satisfies readonly EventTypeDefinition[];

export type EventType = (typeof EVENT_CATALOGUE)[number]['type'];
export const EVENT_TYPES: readonly EventType[] = EVENT_CATALOGUE.map((d) => d.type);

const BY_TYPE = new Map<string, EventTypeDefinition>(EVENT_CATALOGUE.map((d) => [d.type, d]));

export function isEventType(value: string): value is EventType {
  return BY_TYPE.has(value);
}

export function eventDefinition(type: EventType): EventTypeDefinition {
  return BY_TYPE.get(type)!;
}

// ULIDs (https://github.com/ulid/spec): 48-bit millisecond time and 80 random bits, Crockford base32.
const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

export function newEventId(now: number = Date.now()): string {
  let time = '';
  let t = now;
  for (let i = 0; i < 10; i++) {
    time = CROCKFORD[t % 32] + time;
    t = Math.floor(t / 32);
  }
  return time + randomBase32(16);
}

/** A new event in its envelope. */
export function newEvent(
  type: EventType,
  subject: { fleet_id: string; vehicle_id: string; flow_id: string },
  data: Record<string, unknown>,
  occurredAt: string = new Date().toISOString(),
): EventEnvelope {
  return {
    metadata: {
      id: newEventId(Date.parse(occurredAt) || Date.now()),
      type,
      schema_major_version: eventDefinition(type).schema_major_version,
      occurred_at: occurredAt,
      flow_id: subject.flow_id,
      fleet_id: subject.fleet_id,
      vehicle_id: subject.vehicle_id,
    },
    data,
  };
}

/** The vehicle as events carry it: no secrets (unit password hash), the version included. */
export function vehicleData(v: Vehicle): Record<string, unknown> {
  return {
    vehicle_id: v.vehicle_id,
    vehicle_model_id: v.vehicle_model_id,
    telematics_unit: { id: v.telematics_unit_id, brand: v.telematics_brand },
    capabilities: v.capabilities,
    setup_status: v.setup_status,
    ...(v.setup_failure_reason ? { setup_failure_reason: v.setup_failure_reason } : {}),
    life_status: { value: v.life_status, modified_at: v.life_status_modified_at },
    operation_status: v.operation_status,
    ...(v.credentials_id ? { credentials_id: v.credentials_id } : {}),
    master_data: v.master_data,
    custom_fields: v.custom_fields,
    tags: v.tags,
    version: v.version,
    created_at: v.created_at,
    modified_at: v.modified_at,
  };
}

/** What about a vehicle differs between two versions of it (VehicleChanged `reasons`). */
export function vehicleChangeReasons(before: Vehicle, after: Vehicle): VehicleChangeReason[] {
  const reasons: VehicleChangeReason[] = [];
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  if (before.life_status !== after.life_status) reasons.push('LIFE_STATUS_CHANGED');
  if (before.setup_status !== after.setup_status || before.setup_failure_reason !== after.setup_failure_reason) {
    reasons.push('SETUP_STATUS_CHANGED');
  }
  if (!same(before.master_data, after.master_data)) reasons.push('MASTER_DATA_CHANGED');
  if (before.operation_status !== after.operation_status) reasons.push('OPERATION_STATUS_CHANGED');
  if (!same(before.custom_fields, after.custom_fields)) reasons.push('CUSTOM_FIELDS_CHANGED');
  if (!same(before.tags, after.tags)) reasons.push('TAGS_CHANGED');
  if (!same(before.capabilities, after.capabilities)) reasons.push('CAPABILITIES_CHANGED');
  return reasons;
}

/** A VehicleChanged event between two versions of a vehicle, or none when nothing event-worthy differs. */
export function vehicleChangedEvent(before: Vehicle, after: Vehicle, flowId: string, at: string): EventEnvelope[] {
  const reasons = vehicleChangeReasons(before, after);
  if (reasons.length === 0) return [];
  return [newEvent('VehicleChanged', subjectOf(after, flowId), { reasons, vehicle: vehicleData(after) }, at)];
}

const subjectOf = (v: Pick<Vehicle, 'fleet_id' | 'vehicle_id'>, flowId: string) => ({
  fleet_id: v.fleet_id,
  vehicle_id: v.vehicle_id,
  flow_id: flowId,
});

export function vehicleAddedEvent(v: Vehicle, flowId: string): EventEnvelope {
  return newEvent('VehicleAdded', subjectOf(v, flowId), { vehicle: vehicleData(v) }, v.created_at);
}

export function vehicleRemovedEvent(v: Vehicle, flowId: string, at: string): EventEnvelope {
  return newEvent('VehicleRemoved', subjectOf(v, flowId), { vehicle: vehicleData(v) }, at);
}

/**
 * The events of one state write (a report or a command's answer), computed inside the store's
 * transaction from the state stored before (`before`) and the properties the write stored
 * (`written`: newer than what was stored). Nothing is emitted when nothing was written.
 */
export function stateEvents(
  subject: { fleet_id: string; vehicle_id: string; flow_id: string },
  before: VehicleState,
  written: VehicleState,
  reported: VehicleState,
  at: string,
  tripStart?: TripStart,
): EventEnvelope[] {
  const names = Object.keys(written);
  if (names.length === 0) return [];
  const out = [newEvent('VehicleStateRecorded', subject, { state: sortedState(reported) }, at)];
  for (const name of names) {
    const type = CHANGE_EVENT_PROPERTIES[name as keyof typeof CHANGE_EVENT_PROPERTIES];
    if (type === undefined) continue;
    const previous = before[name];
    const current = written[name]!;
    if (previous !== undefined && JSON.stringify(previous.value) === JSON.stringify(current.value)) continue;
    out.push(
      newEvent(
        type,
        subject,
        { property: name, value: current.value, timestamp: current.timestamp, previous: previous?.value ?? null },
        at,
      ),
    );
  }
  const trip = tripEvent(subject, before, written, tripStart, at);
  if (trip) out.push(trip);
  return out;
}

function sortedState(state: VehicleState): VehicleState {
  const out: VehicleState = {};
  for (const name of Object.keys(state).sort()) out[name] = state[name]!;
  return out;
}

/**
 * Trip derivation: when a write turns `ignition` from anything but ON to ON, the store keeps a
 * trip start (tripStartOf: the time, and the position and mileage known then) beside the state;
 * when a later write turns it from ON to OFF, a Trip is emitted from that start. A unit must
 * report `ignition`; for positions and distance also `position` and `mileage_in_kilometers`.
 */
export interface TripStart {
  started_at: string;
  position: unknown;
  mileage_in_kilometers: number | null;
}

/** The trip start to keep when this write turns ignition ON, if it does. */
export function tripStartOf(before: VehicleState, written: VehicleState): TripStart | undefined {
  const ignition = written.ignition;
  if (ignition?.value !== 'ON' || before.ignition?.value === 'ON') return undefined;
  const after = { ...before, ...written };
  return {
    started_at: ignition.timestamp,
    position: after.position?.value ?? null,
    mileage_in_kilometers: numberOrNull(after.mileage_in_kilometers?.value),
  };
}

function tripEvent(
  subject: { fleet_id: string; vehicle_id: string; flow_id: string },
  before: VehicleState,
  written: VehicleState,
  start: TripStart | undefined,
  at: string,
): EventEnvelope | undefined {
  const ignition = written.ignition;
  if (ignition?.value !== 'OFF' || before.ignition?.value !== 'ON') return undefined;
  const after = { ...before, ...written };
  const endMileage = numberOrNull(after.mileage_in_kilometers?.value);
  const startedAt = start?.started_at ?? before.ignition.timestamp;
  const startMileage = start?.mileage_in_kilometers ?? null;
  return newEvent(
    'Trip',
    subject,
    {
      started_at: startedAt,
      ended_at: ignition.timestamp,
      duration_seconds: Math.max(0, (Date.parse(ignition.timestamp) - Date.parse(startedAt)) / 1000),
      start_position: start?.position ?? null,
      end_position: after.position?.value ?? null,
      start_mileage_in_kilometers: startMileage,
      end_mileage_in_kilometers: endMileage,
      distance_in_kilometers:
        startMileage !== null && endMileage !== null ? Math.round((endMileage - startMileage) * 1000) / 1000 : null,
    },
    at,
  );
}

const numberOrNull = (v: unknown): number | null => (typeof v === 'number' ? v : null);

/** The CommandOutcomeResolved event of a record that had ended OUTCOME_UNKNOWN. */
export function commandOutcomeResolvedEvent(
  record: { flow_id: string; fleet_id: string; vehicle_id: string; command: string; requested_at: string },
  resolution: { status: string; problem_type: string | null; detail: string | null; resolved_at: string },
): EventEnvelope {
  return newEvent(
    'CommandOutcomeResolved',
    subjectOf(record, record.flow_id),
    {
      command: record.command,
      outcome: resolution.status,
      problem_type: resolution.problem_type,
      detail: resolution.detail,
      previous_outcome: 'OUTCOME_UNKNOWN',
      requested_at: record.requested_at,
      resolved_at: resolution.resolved_at,
    },
    resolution.resolved_at,
  );
}

/** The CommandFinished event of a finished record. */
export function commandFinishedEvent(record: {
  flow_id: string;
  fleet_id: string;
  vehicle_id: string;
  client_id: string;
  user_id?: string | null;
  user_email?: string | null;
  command: CommandName | string;
  status: string;
  problem_type: string | null;
  detail: string | null;
  delivery: string | null;
  steps: unknown;
  requested_at: string;
  completed_at: string | null;
  duration_ms: number | null;
}): EventEnvelope {
  const completedAt = record.completed_at ?? new Date().toISOString();
  return newEvent(
    'CommandFinished',
    subjectOf(record, record.flow_id),
    {
      command: record.command,
      outcome: record.status,
      problem_type: record.problem_type,
      detail: record.detail,
      delivery: record.delivery,
      steps: record.steps ?? null,
      duration_ms: record.duration_ms ?? 0,
      client_id: record.client_id,
      user_id: record.user_id ?? null,
      user_email: record.user_email ?? null,
      requested_at: record.requested_at,
      completed_at: completedAt,
    },
    completedAt,
  );
}
