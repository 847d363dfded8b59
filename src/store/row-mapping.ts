import type { Capabilities, LifeStatus, SetupStatus, Vehicle } from '../domain/vehicle.js';
import type {
  ApiClient,
  CommandRecord,
  ConsoleSession,
  ConsoleUser,
  CredentialsRecord,
  IdempotencyRecord,
  SignInFailures,
} from './store.js';

export type Row = Record<string, unknown>;

/** How an engine's driver hands back times and JSON columns (epoch ms and text, or Date and objects). */
export interface ColumnCodec {
  time(value: unknown): string;
  json<T>(value: unknown): T;
}

/**
 * Rows → port records, once for every engine: the columns are the same in each schema; only how
 * times and JSON arrive differs (the codec).
 */
export function rowMappers(codec: ColumnCodec) {
  const { time, json } = codec;
  const timeOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : time(v));
  const jsonOrNull = <T>(v: unknown): T | null => (v === null || v === undefined ? null : json<T>(v));
  const text = (v: unknown): string | null => (v as string | null) ?? null;
  const intOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

  return {
    client: (r: Row): ApiClient => ({
      client_id: String(r.client_id),
      fleet_id: String(r.fleet_id),
      name: String(r.name),
      secret_hash: String(r.secret_hash),
      scopes: json<string[]>(r.scopes),
      created_at: time(r.created_at),
    }),
    user: (r: Row): ConsoleUser => ({
      user_id: String(r.user_id),
      fleet_id: String(r.fleet_id),
      email: String(r.email),
      role: r.role as ConsoleUser['role'],
      password_hash: String(r.password_hash),
      created_at: time(r.created_at),
      modified_at: time(r.modified_at),
    }),
    session: (r: Row): ConsoleSession => ({
      session_hash: String(r.session_hash),
      user_id: String(r.user_id),
      created_at: time(r.session_created_at ?? r.created_at),
      expires_at: time(r.expires_at),
    }),
    signInFailures: (r: Row): SignInFailures => ({
      throttle_key: String(r.throttle_key),
      failures: Number(r.failures),
      last_failure_at: time(r.last_failure_at),
    }),
    vehicle: (r: Row): Vehicle => ({
      vehicle_id: String(r.vehicle_id),
      fleet_id: String(r.fleet_id),
      telematics_brand: String(r.telematics_brand),
      telematics_unit_id: String(r.telematics_unit_id),
      vehicle_model_id: String(r.vehicle_model_id),
      unit_password_hash: text(r.unit_password_hash),
      credentials_id: text(r.credentials_id),
      capabilities: json<Capabilities>(r.capabilities),
      master_data: json<Vehicle['master_data']>(r.master_data),
      custom_fields: json<Vehicle['custom_fields']>(r.custom_fields),
      tags: json<string[]>(r.tags),
      operation_status: r.operation_status as Vehicle['operation_status'],
      setup_status: r.setup_status as SetupStatus,
      setup_failure_reason: text(r.setup_failure_reason),
      life_status: r.life_status as LifeStatus,
      life_status_modified_at: time(r.life_status_modified_at),
      version: Number(r.version),
      created_at: time(r.created_at),
      modified_at: time(r.modified_at),
    }),
    command: (r: Row): CommandRecord => ({
      flow_id: String(r.flow_id),
      fleet_id: String(r.fleet_id),
      client_id: String(r.client_id),
      user_id: text(r.user_id),
      user_email: text(r.user_email),
      vehicle_id: String(r.vehicle_id),
      command: r.command as CommandRecord['command'],
      adapter: String(r.adapter),
      instance_id: String(r.instance_id),
      status: r.status as CommandRecord['status'],
      problem_type: text(r.problem_type),
      detail: text(r.detail),
      delivery: text(r.delivery) as CommandRecord['delivery'],
      steps: jsonOrNull<CommandRecord['steps']>(r.steps),
      requested_at: time(r.requested_at),
      deadline_at: time(r.deadline_at),
      completed_at: timeOrNull(r.completed_at),
      duration_ms: intOrNull(r.duration_ms),
    }),
    credentials: (r: Row): CredentialsRecord => ({
      credentials_id: String(r.credentials_id),
      fleet_id: String(r.fleet_id),
      telematics_brand: String(r.telematics_brand),
      name: text(r.name),
      sealed_secret: String(r.sealed_secret),
      sealed_state: text(r.sealed_state),
      version: Number(r.version),
      created_at: time(r.created_at),
      modified_at: time(r.modified_at),
    }),
    idempotency: (r: Row): IdempotencyRecord => ({
      fleet_id: String(r.fleet_id),
      key: String(r.key),
      vehicle_id: String(r.vehicle_id),
      command: r.command as IdempotencyRecord['command'],
      flow_id: String(r.flow_id),
      status_code: intOrNull(r.status_code),
      response: jsonOrNull(r.response),
      created_at: time(r.created_at),
    }),
  };
}

/** How an engine stores times and JSON columns (the reverse of ColumnCodec). */
export interface ColumnEncoder {
  time(iso: string): unknown;
  json(value: unknown): string;
}

/**
 * The values of a new vehicle, in the column order of both engines' INSERT (vehicle_id …
 * modified_at).
 */
export function vehicleInsertValues(v: Vehicle, encode: ColumnEncoder): unknown[] {
  return [
    v.vehicle_id,
    v.fleet_id,
    v.telematics_brand,
    v.telematics_unit_id,
    v.vehicle_model_id,
    v.unit_password_hash,
    v.credentials_id,
    encode.json(v.capabilities),
    encode.json(v.master_data),
    encode.json(v.custom_fields),
    encode.json(v.tags),
    v.operation_status,
    v.setup_status,
    v.setup_failure_reason,
    v.life_status,
    encode.time(v.life_status_modified_at),
    v.version,
    encode.time(v.created_at),
    encode.time(v.modified_at),
  ];
}

/**
 * The values of a new IN_FLIGHT command record, in the column order of both engines' INSERT
 * (flow_id … deadline_at, user_id, user_email; status being the literal 'IN_FLIGHT').
 */
export function commandInsertValues(c: CommandRecord, encode: ColumnEncoder): unknown[] {
  return [
    c.flow_id,
    c.fleet_id,
    c.client_id,
    c.vehicle_id,
    c.command,
    c.adapter,
    c.instance_id,
    c.problem_type,
    c.detail,
    c.delivery,
    c.steps === null ? null : encode.json(c.steps),
    encode.time(c.requested_at),
    encode.time(c.deadline_at),
    c.user_id,
    c.user_email,
  ];
}
