import { type CommandName, isCommandName } from '../../domain/commands.js';
import { isTopicLevelId } from '../../lib/topic-level.js';

/**
 * fleetgate/v1, fleetgate's own open device protocol over MQTT 3.1.1 (docs/mqtt-protocol.md).
 * Pure: topic builders and parsers, payload encoders and strict decoders. Decoders take untrusted
 * bytes and never throw; they return a typed result.
 */

export const PROTOCOL_VERSION = 1;
export const TOPIC_ROOT = 'fleetgate/v1/units/';

/** Topic leaves below `fleetgate/v1/units/{unit_id}/`. */
export const TOPIC_COMMANDS = 'commands';
export const TOPIC_RESPONSES = 'responses';
export const TOPIC_STATE = 'state';
export const TOPIC_STATUS = 'status';

export type UnitTopicKind = typeof TOPIC_COMMANDS | typeof TOPIC_RESPONSES | typeof TOPIC_STATE | typeof TOPIC_STATUS;

/** QoS per topic (docs/mqtt-protocol.md §3). */
export const QOS_COMMANDS = 1;
export const QOS_RESPONSES = 1;
export const QOS_STATE = 0;
export const QOS_STATUS = 1;

/** Payloads above this size are dropped unread: a unit has no reason to send more. */
export const MAX_PAYLOAD_BYTES = 64 * 1024;
/** Correlation ids: the server sends UUIDs; anything a unit echoes back is bounded. */
export const MAX_ID_LENGTH = 64;
export const MAX_REASON_LENGTH = 500;

/** Wildcard subscriptions fleetgate's own client makes. */
export const SERVER_SUBSCRIPTIONS: readonly string[] = [
  `${TOPIC_ROOT}+/${TOPIC_RESPONSES}`,
  `${TOPIC_ROOT}+/${TOPIC_STATE}`,
  `${TOPIC_ROOT}+/${TOPIC_STATUS}`,
];

/** The shared-subscription group of fleetgate instances on one external broker. */
export const SHARED_GROUP = 'fleetgate';

/**
 * With several instances on one broker, each state report must be stored once, not once per
 * instance: state goes to one instance of the group (`$share`, Mosquitto ≥ 1.6, EMQX, MQTT 5).
 * Responses and status still reach every instance (correlation and the online view need them).
 */
export function serverSubscriptions(shared: boolean): string[] {
  return SERVER_SUBSCRIPTIONS.map((t) => (shared && t.endsWith(`/${TOPIC_STATE}`) ? `$share/${SHARED_GROUP}/${t}` : t));
}

/** True when `id` can name a unit in a topic: 1–128 of `A–Z a–z 0–9 _ . : -`. */
export function isValidUnitId(id: string): boolean {
  return isTopicLevelId(id);
}

/** `fleetgate/v1/units/{unitId}/` — the prefix a unit's broker permissions cover. */
export function unitTopicPrefix(unitId: string): string {
  return TOPIC_ROOT + unitId + '/';
}

export function unitTopic(unitId: string, kind: UnitTopicKind): string {
  return TOPIC_ROOT + unitId + '/' + kind;
}

export interface ParsedTopic {
  unitId: string;
  kind: UnitTopicKind;
}

/**
 * Parses `fleetgate/v1/units/{unitId}/{kind}`; undefined for anything else. No split(): this
 * runs for every message fleetgate receives.
 */
export function parseUnitTopic(topic: string): ParsedTopic | undefined {
  if (!topic.startsWith(TOPIC_ROOT)) return undefined;
  const slash = topic.indexOf('/', TOPIC_ROOT.length);
  if (slash <= TOPIC_ROOT.length) return undefined;
  const kind = topic.slice(slash + 1);
  if (kind !== TOPIC_RESPONSES && kind !== TOPIC_STATE && kind !== TOPIC_STATUS && kind !== TOPIC_COMMANDS) {
    return undefined;
  }
  const unitId = topic.slice(TOPIC_ROOT.length, slash);
  if (!isValidUnitId(unitId)) return undefined;
  return { unitId, kind };
}

// ---------------------------------------------------------------------------------------------
// Payloads

/** server → unit, on `…/commands`. */
export interface CommandMessage {
  v: number;
  /** Correlation id, echoed in every response. */
  id: string;
  command: CommandName;
  /** When the server sent it (ISO 8601 UTC). */
  issued_at: string;
  /** The unit must drop the command if it arrives, or would start, after this moment (SPEC §1). */
  expires_at: string;
}

export const RESPONSE_STATUSES = ['ACCEPTED', 'SUCCEEDED', 'REFUSED', 'FAILED', 'UNSUPPORTED'] as const;
export type ResponseStatus = (typeof RESPONSE_STATUSES)[number];

/** unit → server, on `…/responses`. */
export interface ResponseMessage {
  v: number;
  id: string;
  status: ResponseStatus;
  /** Why, for REFUSED / FAILED / UNSUPPORTED. */
  reason?: string;
  /** The vehicle state after the command (SUCCEEDED). Untrusted: the service sanitizes it. */
  state?: Record<string, unknown>;
  timestamp?: string;
}

/** unit → server, on `…/state`. */
export interface StateMessage {
  v: number;
  /** Property name → `{timestamp, value}` (SPEC §3). Untrusted: the service sanitizes it. */
  state: Record<string, unknown>;
}

export type UnitStatus = 'online' | 'offline';

/** unit → everyone, retained, on `…/status`; also the unit's last will. */
export interface StatusMessage {
  v: number;
  status: UnitStatus;
  timestamp?: string;
}

export type DecodeResult<T> = { ok: true; value: T } | { ok: false; error: string };

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;

function fail(error: string): { ok: false; error: string } {
  return { ok: false, error };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isTimestamp(value: unknown): value is string {
  return typeof value === 'string' && ISO_UTC.test(value) && Number.isFinite(Date.parse(value));
}

function isId(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_ID_LENGTH;
}

function toUtf8(bytes: Buffer | Uint8Array): string {
  if (Buffer.isBuffer(bytes)) return bytes.toString('utf8');
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
}

/** Size check, UTF-8 decode, JSON.parse, object and version check: common to every payload. */
function parseEnvelope(payload: Buffer | Uint8Array | string): DecodeResult<Record<string, unknown>> {
  const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.byteLength;
  if (size === 0) return fail('empty payload');
  if (size > MAX_PAYLOAD_BYTES) return fail(`payload of ${size} bytes exceeds ${MAX_PAYLOAD_BYTES}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(typeof payload === 'string' ? payload : toUtf8(payload));
  } catch {
    return fail('payload is not JSON');
  }
  if (!isPlainObject(parsed)) return fail('payload is not a JSON object');
  if (parsed.v !== PROTOCOL_VERSION) return fail(`unsupported protocol version ${JSON.stringify(parsed.v)}`);
  return { ok: true, value: parsed };
}

/** Decodes a command (unit side). Unknown fields are ignored (docs/mqtt-protocol.md §9). */
export function decodeCommand(payload: Buffer | Uint8Array | string): DecodeResult<CommandMessage> {
  const env = parseEnvelope(payload);
  if (!env.ok) return env;
  const m = env.value;
  if (!isId(m.id)) return fail('id must be a string of 1–64 characters');
  if (!isCommandName(m.command)) return fail('command is not a known command');
  if (!isTimestamp(m.issued_at)) return fail('issued_at must be an ISO 8601 UTC timestamp');
  if (!isTimestamp(m.expires_at)) return fail('expires_at must be an ISO 8601 UTC timestamp');
  return {
    ok: true,
    value: { v: PROTOCOL_VERSION, id: m.id, command: m.command, issued_at: m.issued_at, expires_at: m.expires_at },
  };
}

/** Decodes a response (server side). */
export function decodeResponse(payload: Buffer | Uint8Array | string): DecodeResult<ResponseMessage> {
  const env = parseEnvelope(payload);
  if (!env.ok) return env;
  const m = env.value;
  if (!isId(m.id)) return fail('id must be a string of 1–64 characters');
  const status = m.status;
  if (typeof status !== 'string' || !(RESPONSE_STATUSES as readonly string[]).includes(status)) {
    return fail('status must be one of ' + RESPONSE_STATUSES.join(', '));
  }
  const out: ResponseMessage = { v: PROTOCOL_VERSION, id: m.id, status: status as ResponseStatus };
  if (m.reason !== undefined) {
    if (typeof m.reason !== 'string') return fail('reason must be a string');
    out.reason = m.reason.length > MAX_REASON_LENGTH ? m.reason.slice(0, MAX_REASON_LENGTH) : m.reason;
  }
  if (m.state !== undefined) {
    if (!isPlainObject(m.state)) return fail('state must be an object');
    out.state = m.state;
  } else if (status === 'SUCCEEDED') {
    return fail('a SUCCEEDED response must carry state');
  }
  if (m.timestamp !== undefined) {
    if (!isTimestamp(m.timestamp)) return fail('timestamp must be an ISO 8601 UTC timestamp');
    out.timestamp = m.timestamp;
  }
  return { ok: true, value: out };
}

/** Decodes a state report (server side); property values are checked later by sanitizeState. */
export function decodeState(payload: Buffer | Uint8Array | string): DecodeResult<StateMessage> {
  const env = parseEnvelope(payload);
  if (!env.ok) return env;
  if (!isPlainObject(env.value.state)) return fail('state must be an object');
  return { ok: true, value: { v: PROTOCOL_VERSION, state: env.value.state } };
}

/** Decodes a status message or last will. An empty payload (a cleared retained message) is not one. */
export function decodeStatus(payload: Buffer | Uint8Array | string): DecodeResult<StatusMessage> {
  const env = parseEnvelope(payload);
  if (!env.ok) return env;
  const m = env.value;
  if (m.status !== 'online' && m.status !== 'offline') return fail("status must be 'online' or 'offline'");
  const out: StatusMessage = { v: PROTOCOL_VERSION, status: m.status };
  if (m.timestamp !== undefined) {
    if (!isTimestamp(m.timestamp)) return fail('timestamp must be an ISO 8601 UTC timestamp');
    out.timestamp = m.timestamp;
  }
  return { ok: true, value: out };
}

// Encoders. Ids, command names and ISO timestamps need no JSON escaping, so the hot path
// (one command per request) builds the string directly; the rest use JSON.stringify.

export function encodeCommand(id: string, command: CommandName, issuedAt: Date, expiresAt: Date): string {
  return (
    '{"v":1,"id":' +
    JSON.stringify(id) +
    ',"command":"' +
    command +
    '","issued_at":"' +
    issuedAt.toISOString() +
    '","expires_at":"' +
    expiresAt.toISOString() +
    '"}'
  );
}

export function encodeResponse(message: Omit<ResponseMessage, 'v'>): string {
  return JSON.stringify({ v: PROTOCOL_VERSION, ...message });
}

export function encodeState(state: Record<string, unknown>): string {
  return JSON.stringify({ v: PROTOCOL_VERSION, state });
}

export function encodeStatus(status: UnitStatus, at: Date = new Date()): string {
  return '{"v":1,"status":"' + status + '","timestamp":"' + at.toISOString() + '"}';
}
