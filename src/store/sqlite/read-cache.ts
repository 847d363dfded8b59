import { LruMap } from '../../lib/lru-map.js';

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

const DEFAULT_MAX_ENTRIES = 4096;

/** Cached values are shared by every caller that reads them: frozen, so none can change them for the others. */
export function deepFreeze<T>(value: T): T {
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
 * Rows of this store's connection that a command reads again and again (a vehicle, its stored
 * state), kept decoded so the command path need not read and decode them each time
 * (docs/performance.md). It holds what this connection committed or read, and is dropped whole as
 * soon as SQLite's `data_version` shows that another connection (another fleetgate process on the
 * same file) committed anything; the store drops an entry whenever it writes that row itself, and
 * everything when a write transaction of its own fails. Bounded: the least recently used entry
 * goes first.
 */
export class ReadCache<T> {
  private readonly entries: LruMap<string, T>;
  private dataVersion: number | undefined;

  constructor(
    /** `PRAGMA data_version` of this store's connection. */
    private readonly readDataVersion: () => number,
    maxEntries = DEFAULT_MAX_ENTRIES,
  ) {
    this.entries = new LruMap(maxEntries);
  }

  /** The cached entry, if still valid. Inside a write transaction, valid until it ends. */
  get(key: string): T | undefined {
    const version = this.readDataVersion();
    if (version !== this.dataVersion) {
      this.entries.clear();
      this.dataVersion = version;
      return undefined;
    }
    return this.entries.get(key);
  }

  set(key: string, entry: T): void {
    this.entries.set(key, entry);
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
  }
}
