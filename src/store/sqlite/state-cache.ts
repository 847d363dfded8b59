/** One vehicle_state row as stored, with its decoded forms. */
export interface StoredProperty {
  /** Epoch milliseconds, as the column holds it. */
  ts: number;
  /** The value's JSON text, as the column holds it. */
  json: string;
  timestamp: string;
  /** Decoded once and frozen: every merged state that includes it shares it. */
  value: unknown;
}

/** A vehicle's stored state, by property name. Never changed once cached: replaced whole. */
export type StoredState = ReadonlyMap<string, StoredProperty>;

const DEFAULT_MAX_VEHICLES = 4096;

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}

export function storedProperty(ts: number, json: string, timestamp: string, value: unknown): StoredProperty {
  return { ts, json, timestamp, value: deepFreeze(value) };
}

/**
 * The stored state of recently commanded vehicles, so a command's state merge need not read and
 * decode the vehicle's rows again (docs/performance.md). It holds what this connection committed
 * or read, and is dropped whole as soon as SQLite's `data_version` shows that another connection
 * (another fleetgate process on the same file) committed anything, and whenever a write
 * transaction of this connection fails. Bounded: the least recently used vehicle goes first.
 */
export class StateCache {
  private readonly vehicles = new Map<string, StoredState>();
  private dataVersion: number | undefined;

  constructor(
    /** `PRAGMA data_version` of this store's connection. */
    private readonly readDataVersion: () => number,
    private readonly maxVehicles = DEFAULT_MAX_VEHICLES,
  ) {}

  /** A vehicle's cached state, if still valid. Call inside the write transaction that uses it. */
  get(vehicleId: string): StoredState | undefined {
    const version = this.readDataVersion();
    if (version !== this.dataVersion) {
      this.vehicles.clear();
      this.dataVersion = version;
      return undefined;
    }
    const state = this.vehicles.get(vehicleId);
    if (state !== undefined) {
      // Most recently used last.
      this.vehicles.delete(vehicleId);
      this.vehicles.set(vehicleId, state);
    }
    return state;
  }

  set(vehicleId: string, state: StoredState): void {
    this.vehicles.delete(vehicleId);
    this.vehicles.set(vehicleId, state);
    if (this.vehicles.size > this.maxVehicles) this.vehicles.delete(this.vehicles.keys().next().value!);
  }

  delete(vehicleId: string): void {
    this.vehicles.delete(vehicleId);
  }

  clear(): void {
    this.vehicles.clear();
  }
}
