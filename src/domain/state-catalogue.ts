/**
 * The vehicle state catalogue (SPEC §3): every property fleetgate knows, its type, unit and
 * allowed values. Property `foo_bar` exists on a vehicle only where it has state capability
 * `FOO_BAR`. docs/vehicle-state.md is generated from — and tested against — this table.
 */
export type StatePropertyType =
  | { kind: 'number'; minimum?: number; maximum?: number; integer?: boolean; unit?: string }
  | { kind: 'boolean' }
  | { kind: 'enum'; values: readonly string[] }
  | { kind: 'position' };

export interface StatePropertyDefinition {
  readonly name: string;
  readonly capability: string;
  readonly type: StatePropertyType;
  readonly description: string;
}

const LOCK = ['LOCKED', 'UNLOCKED'] as const;

export const STATE_CATALOGUE = [
  {
    name: 'mileage_in_kilometers',
    // Plausible for any road vehicle; a unit's overflowing counter (4,294,967.3 km) is not.
    type: { kind: 'number', minimum: 0, maximum: 2_000_000, unit: 'km' },
    description: 'Odometer reading.',
  },
  {
    name: 'state_of_charge_or_fuel_level_in_percent',
    type: { kind: 'number', minimum: 0, maximum: 100, unit: '%' },
    description: 'Traction battery charge or fuel tank level.',
  },
  {
    name: 'remaining_range_in_kilometers',
    type: { kind: 'number', minimum: 0, maximum: 5_000, unit: 'km' },
    description: 'Estimated remaining range.',
  },
  {
    name: 'position',
    type: { kind: 'position' },
    description: 'WGS 84 position as `{lat, lon}` in decimal degrees.',
  },
  {
    name: 'cellular_signal_quality',
    type: { kind: 'number', minimum: 0, maximum: 5, integer: true },
    description: 'Cellular signal quality from 0 (none) to 5 (excellent).',
  },
  {
    name: 'driving_enabled',
    type: { kind: 'boolean' },
    description: 'Whether the vehicle can be driven (immobilizer off / key active).',
  },
  {
    name: 'central_lock',
    type: { kind: 'enum', values: LOCK },
    description: 'Central lock of a car.',
  },
  {
    name: 'ignition',
    type: { kind: 'enum', values: ['ON', 'OFF'] },
    description: 'Ignition state.',
  },
  {
    name: 'speed_in_kilometers_per_hour',
    type: { kind: 'number', minimum: 0, maximum: 500, unit: 'km/h' },
    description: 'Current speed over ground.',
  },
  {
    name: 'top_case_lock',
    type: { kind: 'enum', values: LOCK },
    description: 'Lock of a two-wheeler top case.',
  },
  {
    name: 'top_case_lid',
    type: { kind: 'enum', values: ['OPEN', 'CLOSED'] },
    description: 'Lid of a two-wheeler top case.',
  },
  {
    name: 'battery_compartment_lock',
    type: { kind: 'enum', values: LOCK },
    description: 'Lock of a two-wheeler battery compartment.',
  },
].map((p) => ({ ...p, capability: p.name.toUpperCase() }) as StatePropertyDefinition);

const BY_NAME = new Map(STATE_CATALOGUE.map((p) => [p.name, p]));
const NAME_OF_CAPABILITY = new Map(STATE_CATALOGUE.map((p) => [p.capability, p.name]));

export function stateProperty(name: string): StatePropertyDefinition | undefined {
  return BY_NAME.get(name);
}

export const STATE_CAPABILITIES: readonly string[] = STATE_CATALOGUE.map((p) => p.capability);

/** One property value with the time the unit captured it (SPEC §3). */
export interface StateValue {
  timestamp: string;
  value: unknown;
}

/** A vehicle state: property name → timestamped value. */
export type VehicleState = Record<string, StateValue>;

/** True when `value` is valid for the property's type. */
export function isValidStateValue(def: StatePropertyDefinition, value: unknown): boolean {
  const t = def.type;
  switch (t.kind) {
    case 'boolean':
      return typeof value === 'boolean';
    case 'enum':
      return typeof value === 'string' && t.values.includes(value);
    case 'number':
      return (
        typeof value === 'number' &&
        Number.isFinite(value) &&
        (t.minimum === undefined || value >= t.minimum) &&
        (t.maximum === undefined || value <= t.maximum) &&
        (!t.integer || Number.isInteger(value))
      );
    case 'position': {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
      const { lat, lon } = value as Record<string, unknown>;
      return (
        typeof lat === 'number' &&
        typeof lon === 'number' &&
        lat >= -90 &&
        lat <= 90 &&
        lon >= -180 &&
        lon <= 180 &&
        Object.keys(value).length === 2
      );
    }
  }
}

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;

/**
 * Recently seen timestamps, already checked and normalised: a unit repeats the capture times of
 * the properties that did not change in every answer and report, so most lookups hit.
 */
const TIMESTAMP_CACHE_MAX = 4096;
const timestamps = new Map<string, { ms: number; iso: string }>();

/**
 * An ISO 8601 UTC time as epoch ms and its millisecond ISO form (`toISOString`), or undefined when
 * invalid. Cached: callers on the command path (the stores too) parse the same few times again and again.
 */
export function parseTimestamp(text: string): { ms: number; iso: string } | undefined {
  const hit = timestamps.get(text);
  if (hit !== undefined) return hit;
  const ms = ISO_UTC.test(text) ? Date.parse(text) : Number.NaN;
  if (!Number.isFinite(ms)) return undefined;
  const parsed = { ms, iso: new Date(ms).toISOString() };
  if (timestamps.size >= TIMESTAMP_CACHE_MAX) timestamps.clear();
  timestamps.set(text, parsed);
  return parsed;
}

/**
 * Capture timestamps fleetgate accepts, around the time a value arrives: up to 5 minutes ahead
 * (clock skew) and up to 366 days back (a unit that was offline sends its buffered records
 * late). Outside it, the value is refused (docs/vehicle-state.md).
 */
export const STATE_TIMESTAMP_WINDOW = { pastMs: 366 * 24 * 3600_000, futureMs: 5 * 60_000 } as const;

/**
 * Validates untrusted state input (device payloads, vendor JSON after translation) against the
 * catalogue. Returns only the valid, known properties normalised to millisecond ISO timestamps,
 * and the names of what was dropped, so a malformed report never corrupts stored state.
 */
export function sanitizeState(input: unknown, now: Date = new Date()): { state: VehicleState; rejected: string[] } {
  const state: VehicleState = {};
  const rejected: string[] = [];
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    return { state, rejected: ['<state is not an object>'] };
  }
  // Units with a wrong clock must not pin a property forever with a far-future timestamp, nor
  // store a reset clock's 0001-01-01 or 1970 (STATE_TIMESTAMP_WINDOW).
  const latest = now.getTime() + STATE_TIMESTAMP_WINDOW.futureMs;
  const earliest = now.getTime() - STATE_TIMESTAMP_WINDOW.pastMs;
  for (const [name, entry] of Object.entries(input)) {
    const def = BY_NAME.get(name);
    const e = entry as Partial<StateValue> | null;
    if (!def || typeof e !== 'object' || e === null || typeof e.timestamp !== 'string') {
      rejected.push(name);
      continue;
    }
    const parsed = parseTimestamp(e.timestamp);
    if (parsed === undefined || parsed.ms > latest || parsed.ms < earliest || !isValidStateValue(def, e.value)) {
      rejected.push(name);
      continue;
    }
    state[name] = { timestamp: parsed.iso, value: e.value };
  }
  return { state, rejected };
}

/** Keeps only the properties the vehicle's state capabilities allow (SPEC §1 success answer). */
export function filterState(state: VehicleState, capabilities: readonly string[]): VehicleState {
  // Walks the (few) capabilities rather than the state: no set or case conversion per call.
  const out: VehicleState = {};
  for (const capability of capabilities) {
    const name = NAME_OF_CAPABILITY.get(capability);
    if (name === undefined) continue;
    const v = state[name];
    if (v !== undefined) out[name] = v;
  }
  return out;
}

/**
 * What fleetgate keeps of a state a unit reported (a report or a command answer): the valid
 * catalogue properties (sanitizeState) that the vehicle's state capabilities allow (filterState).
 */
export function acceptState(
  raw: unknown,
  capabilities: readonly string[],
  now: Date = new Date(),
): { state: VehicleState; rejected: string[] } {
  const { state, rejected } = sanitizeState(raw, now);
  return { state: filterState(state, capabilities), rejected };
}

/**
 * The one merge rule (SPEC §3): a reported value replaces the stored one of its property when its
 * timestamp is newer than or equal to the stored one's. Every store engine and adapter asks this.
 */
export function supersedes(
  update: Pick<StateValue, 'timestamp'>,
  stored: Pick<StateValue, 'timestamp'> | undefined,
): boolean {
  if (stored === undefined || update.timestamp === stored.timestamp) return true;
  return msOf(update.timestamp) >= msOf(stored.timestamp);
}

function msOf(timestamp: string): number {
  return parseTimestamp(timestamp)?.ms ?? Date.parse(timestamp);
}

/** Merges `update` into `base`, per property by `supersedes`. */
export function mergeState(base: VehicleState, update: VehicleState): VehicleState {
  const out: VehicleState = { ...base };
  for (const [name, v] of Object.entries(update)) {
    if (supersedes(v, out[name])) out[name] = v;
  }
  return out;
}
