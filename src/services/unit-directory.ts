import type { Vehicle } from '../domain/vehicle.js';
import { LruMap } from '../lib/lru-map.js';
import type { Store } from '../store/store.js';

export interface UnitDirectoryOptions {
  /** How long a found vehicle is remembered; other instances' changes show after at most this. */
  foundTtlMs?: number;
  /** How long an unknown unit is remembered (a unit knocking before its vehicle exists). */
  unknownTtlMs?: number;
  maxEntries?: number;
}

interface Entry {
  vehicle: Vehicle | undefined;
  expires: number;
}

/**
 * The vehicle behind a telematics unit, cached for every adapter alike (one cache, so reconnect
 * storms and record floods spare the database). The vehicle service drops an entry whenever it
 * changes that vehicle; changes made by other instances show once the entry expires.
 */
export class UnitDirectory {
  private readonly entries: LruMap<string, Entry>;
  private readonly lookups = new Map<string, Promise<Vehicle | undefined>>();
  private readonly foundTtlMs: number;
  private readonly unknownTtlMs: number;

  constructor(
    private readonly store: Store,
    options: UnitDirectoryOptions = {},
  ) {
    this.foundTtlMs = options.foundTtlMs ?? 60_000;
    this.unknownTtlMs = options.unknownTtlMs ?? 5_000;
    this.entries = new LruMap(options.maxEntries ?? 50_000);
  }

  async find(brand: string, unitId: string): Promise<Vehicle | undefined> {
    const key = `${brand}\u0000${unitId}`;
    const cached = this.entries.get(key);
    if (cached && cached.expires > Date.now()) return cached.vehicle;
    const running = this.lookups.get(key);
    if (running) return running;
    const lookup = this.store.findVehicleByUnit(brand, unitId).then((vehicle) => {
      // Only remember what no change overtook while the read ran.
      if (this.lookups.get(key) === lookup) {
        this.entries.set(key, { vehicle, expires: Date.now() + (vehicle ? this.foundTtlMs : this.unknownTtlMs) });
      }
      return vehicle;
    });
    this.lookups.set(key, lookup);
    try {
      return await lookup;
    } finally {
      if (this.lookups.get(key) === lookup) this.lookups.delete(key);
    }
  }

  /** The vehicle of this unit changed (added, removed, setup or capabilities): read it afresh. */
  forget(brand: string, unitId: string): void {
    const key = `${brand}\u0000${unitId}`;
    this.entries.delete(key);
    this.lookups.delete(key);
  }
}
