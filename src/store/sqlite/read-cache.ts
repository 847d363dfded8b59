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
  private readonly entries = new Map<string, T>();
  private dataVersion: number | undefined;

  constructor(
    /** `PRAGMA data_version` of this store's connection. */
    private readonly readDataVersion: () => number,
    private readonly maxEntries = DEFAULT_MAX_ENTRIES,
  ) {}

  /** The cached entry, if still valid. Inside a write transaction, valid until it ends. */
  get(key: string): T | undefined {
    const version = this.readDataVersion();
    if (version !== this.dataVersion) {
      this.entries.clear();
      this.dataVersion = version;
      return undefined;
    }
    const entry = this.entries.get(key);
    if (entry !== undefined) {
      // Most recently used last.
      this.entries.delete(key);
      this.entries.set(key, entry);
    }
    return entry;
  }

  set(key: string, entry: T): void {
    this.entries.delete(key);
    this.entries.set(key, entry);
    if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
  }
}
