import {
  type EventEnvelope,
  vehicleAddedEvent,
  vehicleChangedEvent,
  vehicleRemovedEvent,
} from '../../domain/events.js';
import type { Capabilities, LifeStatus, SetupStatus, Vehicle } from '../../domain/vehicle.js';
import { vehicleInsertValues } from '../row-mapping.js';
import {
  type ChangeCause,
  StoreConflictError,
  type UnitOffline,
  type VehicleCount,
  type VehicleFilter,
  type VehiclePatch,
} from '../store.js';
import { Batcher } from './batcher.js';
import { constraintOf, errorCode, type PostgresConnection, type Queryable } from './connection.js';
import type { PostgresEventLog } from './postgres-event-log.js';
import { ENCODE, flowOf, json, vehicleFromRow } from './rows.js';

/** A life-status change waiting for its batch (Vehicles.setLifeStatus). */
interface LifeChange {
  vehicleId: string;
  status: LifeStatus;
  at: string;
  cause?: ChangeCause;
}

/**
 * The vehicles' rows and tags, outside the command path (command-path.ts reads a vehicle for a
 * command): each change and its event in one transaction.
 */
export class Vehicles {
  constructor(
    private readonly db: PostgresConnection,
    private readonly events: PostgresEventLog,
  ) {}

  private async writeTags(c: Queryable, fleetId: string, vehicleId: string, tags: readonly string[]): Promise<void> {
    await this.db.q('DELETE FROM vehicle_tags WHERE vehicle_id = $1', [vehicleId], c);
    if (tags.length === 0) return;
    await this.db.q(
      `INSERT INTO vehicle_tags (fleet_id, tag, vehicle_id)
       SELECT $1, t, $2 FROM unnest($3::text[]) AS t ON CONFLICT DO NOTHING`,
      [fleetId, vehicleId, tags],
      c,
    );
  }

  async insertVehicle(v: Vehicle, cause?: ChangeCause): Promise<void> {
    try {
      await this.events.transaction(async (c) => {
        await this.db.q(
          `INSERT INTO vehicles (vehicle_id, fleet_id, telematics_brand, telematics_unit_id, vehicle_model_id,
             unit_password_hash, credentials_id, capabilities, master_data, custom_fields, tags, operation_status,
             setup_status, setup_failure_reason, life_status, life_status_modified_at, version, created_at, modified_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb, $10::jsonb, $11::jsonb, $12, $13, $14, $15, $16,
             $17, $18, $19)`,
          vehicleInsertValues(v, ENCODE),
          c,
        );
        await this.writeTags(c, v.fleet_id, v.vehicle_id, v.tags);
        await this.events.insert(c, [vehicleAddedEvent(v, flowOf(cause))]);
      });
    } catch (err) {
      const code = errorCode(err);
      if (code === '23505' && constraintOf(err) === 'vehicles_telematics_unit_key') {
        throw new StoreConflictError('telematics_unit');
      }
      if (code === '23505') throw new StoreConflictError('vehicle_id');
      if (code === '23503') throw new StoreConflictError('credentials');
      throw err;
    }
  }

  findVehicleByUnit(brand: string, unitId: string): Promise<Vehicle | undefined> {
    return this.unitLookups.submit({ brand, unitId });
  }

  /**
   * Unit lookups, coalesced (batcher.ts): after a broker restart every unit's status and first
   * report look its vehicle up at once, and one statement each queued thousands of them behind
   * the pool past its timeout (the 15,000-unit storm of docs/performance.md).
   */
  private readonly unitLookups = new Batcher<{ brand: string; unitId: string }, Vehicle | undefined>(
    async (units) => {
      const { rows } = await this.db.q(
        `SELECT v.* FROM vehicles v
          JOIN unnest($1::text[], $2::text[]) AS u(brand, unit_id)
            ON v.telematics_brand = u.brand AND v.telematics_unit_id = u.unit_id`,
        [units.map((u) => u.brand), units.map((u) => u.unitId)],
      );
      const byUnit = new Map(
        rows.map((r) => [`${r.telematics_brand}\u0000${r.telematics_unit_id}`, vehicleFromRow(r)]),
      );
      return units.map((u) => byUnit.get(`${u.brand}\u0000${u.unitId}`));
    },
    async ({ brand, unitId }) => {
      const { rows } = await this.db.q(
        'SELECT * FROM vehicles WHERE telematics_brand = $1 AND telematics_unit_id = $2',
        [brand, unitId],
      );
      return rows[0] && vehicleFromRow(rows[0]);
    },
  );

  async listVehicles(filter: VehicleFilter): Promise<Vehicle[]> {
    const params: unknown[] = [];
    const p = (value: unknown): string => {
      params.push(value);
      return `$${params.length}`;
    };
    const where: string[] = [];
    const [firstTag, ...otherTags] = [...new Set(filter.tags ?? [])];
    let from = 'vehicles v';
    let order = 'v.vehicle_id';
    if (firstTag === undefined) {
      where.push(`v.fleet_id = ${p(filter.fleet_id)}`);
      if (filter.after !== undefined) where.push(`v.vehicle_id > ${p(filter.after)}`);
    } else {
      // Walk the first tag's primary-key range in vehicle_id order: a page costs `limit` lookups.
      from = 'vehicle_tags t JOIN vehicles v ON v.vehicle_id = t.vehicle_id';
      order = 't.vehicle_id';
      where.push(`t.fleet_id = ${p(filter.fleet_id)}`, `t.tag = ${p(firstTag)}`);
      if (filter.after !== undefined) where.push(`t.vehicle_id > ${p(filter.after)}`);
      for (const tag of otherTags) {
        where.push(
          `EXISTS (SELECT 1 FROM vehicle_tags o WHERE o.fleet_id = t.fleet_id AND o.tag = ${p(tag)} AND o.vehicle_id = v.vehicle_id)`,
        );
      }
    }
    if (filter.telematics_brand !== undefined) where.push(`v.telematics_brand = ${p(filter.telematics_brand)}`);
    if (filter.setup_status !== undefined) where.push(`v.setup_status = ${p(filter.setup_status)}`);
    const sql = `SELECT v.* FROM ${from} WHERE ${where.join(' AND ')} ORDER BY ${order} LIMIT ${p(filter.limit)}`;
    const { rows } = await this.db.q(sql, params);
    return rows.map(vehicleFromRow);
  }

  async updateVehicle(
    vehicleId: string,
    patch: VehiclePatch,
    expectedVersion: number | undefined,
    modifiedAt: string,
    cause?: ChangeCause,
  ): Promise<Vehicle | 'version-mismatch' | undefined> {
    const params: unknown[] = [vehicleId, expectedVersion ?? null, modifiedAt];
    const sets = ['version = version + 1', 'modified_at = $3'];
    for (const key of ['master_data', 'custom_fields', 'tags'] as const) {
      if (patch[key] === undefined) continue;
      params.push(json(patch[key]));
      sets.push(`${key} = $${params.length}::jsonb`);
    }
    if (patch.operation_status !== undefined) {
      params.push(patch.operation_status);
      sets.push(`operation_status = $${params.length}`);
    }
    return this.events.transaction(async (c) => {
      const before = await this.lockVehicle(c, vehicleId);
      const { rows } = await this.db.q(
        `UPDATE vehicles SET ${sets.join(', ')}
          WHERE vehicle_id = $1 AND ($2::integer IS NULL OR version = $2::integer) RETURNING *`,
        params,
        c,
      );
      const r = rows[0];
      if (!r) return (await this.exists(vehicleId, c)) ? 'version-mismatch' : undefined;
      const v = vehicleFromRow(r);
      if (patch.tags !== undefined) await this.writeTags(c, v.fleet_id, v.vehicle_id, v.tags);
      if (before) await this.events.insert(c, vehicleChangedEvent(before, v, flowOf(cause), modifiedAt));
      return v;
    });
  }

  /** The vehicle as it is before a change, locked until the transaction ends. */
  private async lockVehicle(c: Queryable, vehicleId: string): Promise<Vehicle | undefined> {
    const { rows } = await this.db.q('SELECT * FROM vehicles WHERE vehicle_id = $1 FOR UPDATE', [vehicleId], c);
    return rows[0] && vehicleFromRow(rows[0]);
  }

  private async exists(vehicleId: string, c?: Queryable): Promise<boolean> {
    const { rowCount } = await this.db.q('SELECT 1 FROM vehicles WHERE vehicle_id = $1', [vehicleId], c);
    return (rowCount ?? 0) > 0;
  }

  async deleteVehicle(
    vehicleId: string,
    expectedVersion?: number,
    cause?: ChangeCause,
  ): Promise<boolean | 'version-mismatch'> {
    // State, commands, tags and idempotency keys go with it through ON DELETE CASCADE, within
    // the DELETE statement; its event in the same transaction.
    const deleted = await this.events.transaction(async (c) => {
      const { rows } = await this.db.q(
        'DELETE FROM vehicles WHERE vehicle_id = $1 AND ($2::integer IS NULL OR version = $2::integer) RETURNING *',
        [vehicleId, expectedVersion ?? null],
        c,
      );
      if (!rows[0]) return false;
      await this.events.insert(c, [
        vehicleRemovedEvent(vehicleFromRow(rows[0]), flowOf(cause), new Date().toISOString()),
      ]);
      return true;
    });
    if (deleted) return true;
    return (await this.exists(vehicleId)) ? 'version-mismatch' : false;
  }

  async setSetupStatus(
    vehicleId: string,
    update: { status: SetupStatus; reason: string | null; capabilities?: Capabilities; at: string },
    onlyFrom?: SetupStatus,
    cause?: ChangeCause,
  ): Promise<boolean> {
    return this.events.transaction(async (c) => {
      const before = await this.lockVehicle(c, vehicleId);
      if (!before) return false;
      const { rows } = await this.db.q(
        `UPDATE vehicles
          SET setup_status = $2, setup_failure_reason = $3, capabilities = COALESCE($4::jsonb, capabilities),
              version = version + 1, modified_at = $5
        WHERE vehicle_id = $1
          AND ($6::text IS NULL OR setup_status = $6::text)
          AND (setup_status IS DISTINCT FROM $2 OR setup_failure_reason IS DISTINCT FROM $3
               OR ($4::jsonb IS NOT NULL AND capabilities IS DISTINCT FROM $4::jsonb))
        RETURNING *`,
        [
          vehicleId,
          update.status,
          update.reason,
          update.capabilities === undefined ? null : json(update.capabilities),
          update.at,
          onlyFrom ?? null,
        ],
        c,
      );
      if (!rows[0]) return false;
      await this.events.insert(c, vehicleChangedEvent(before, vehicleFromRow(rows[0]), flowOf(cause), update.at));
      return true;
    });
  }

  setLifeStatus(vehicleId: string, status: LifeStatus, at: string, cause?: ChangeCause): Promise<boolean> {
    return this.lifeChanges.submit({ vehicleId, status, at, cause });
  }

  /**
   * Life-status changes, coalesced (batcher.ts) into one transaction (lock the rows, one UPDATE,
   * one events INSERT) however many there are; a lone change takes the same path. A broker
   * restart brings every unit's `offline` and then its `online` at once (30,000 changes for 15,000
   * units), and one transaction each (five round trips) was most of fleetgate's CPU in that storm
   * (docs/performance.md). Not an operator edit: the version (ETag) stays as it is.
   */
  private readonly lifeChanges = new Batcher<LifeChange, boolean>(
    (changes) => this.writeLifeChanges(changes),
    async (change) => (await this.writeLifeChanges([change]))[0]!,
  );

  /** One transaction for the changes, in order: each reports whether it changed the vehicle. */
  private writeLifeChanges(changes: LifeChange[]): Promise<boolean[]> {
    return this.events.transaction(async (c) => {
      const ids = [...new Set(changes.map((ch) => ch.vehicleId))].sort();
      // Locked in one order, so two batches (or a batch and a state merge) cannot deadlock.
      const { rows } = await this.db.q(
        'SELECT * FROM vehicles WHERE vehicle_id = ANY($1::text[]) ORDER BY vehicle_id FOR UPDATE',
        [ids],
        c,
      );
      const current = new Map(rows.map((r) => [String(r.vehicle_id), vehicleFromRow(r)]));
      const events: EventEnvelope[] = [];
      const changed = changes.map((ch) => {
        const before = current.get(ch.vehicleId);
        if (!before || before.life_status === ch.status) return false;
        const after: Vehicle = {
          ...before,
          life_status: ch.status,
          life_status_modified_at: new Date(ch.at).toISOString(),
        };
        current.set(ch.vehicleId, after);
        events.push(...vehicleChangedEvent(before, after, flowOf(ch.cause), ch.at));
        return true;
      });
      const last = [...new Set(changes.filter((_, i) => changed[i]).map((ch) => ch.vehicleId))].map(
        (id) => current.get(id)!,
      );
      if (last.length === 0) return changed;
      await this.db.q(
        `UPDATE vehicles v SET life_status = u.status, life_status_modified_at = u.at
           FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(vehicle_id, status, at)
          WHERE v.vehicle_id = u.vehicle_id`,
        [last.map((v) => v.vehicle_id), last.map((v) => v.life_status), last.map((v) => v.life_status_modified_at)],
        c,
      );
      await this.events.insert(c, events);
      return changed;
    });
  }

  async countVehicles(): Promise<VehicleCount[]> {
    const { rows } = await this.db.q(
      `SELECT telematics_brand, setup_status, life_status, COUNT(*)::int AS count FROM vehicles
        GROUP BY telematics_brand, setup_status, life_status`,
      [],
    );
    return rows as unknown as VehicleCount[];
  }

  async setBrandOffline(brand: string, at: string, limit: number, afterUnit = ''): Promise<UnitOffline[]> {
    const modifiedAt = new Date(at).toISOString();
    return this.events.transaction(async (c) => {
      const { rows } = await this.db.q(
        `SELECT * FROM vehicles WHERE telematics_brand = $1 AND telematics_unit_id > $2 AND life_status = 'ONLINE'
          ORDER BY telematics_unit_id LIMIT $3 FOR UPDATE`,
        [brand, afterUnit, limit],
        c,
      );
      if (rows.length === 0) return [];
      const before = rows.map(vehicleFromRow);
      await this.db.q(
        `UPDATE vehicles SET life_status = 'OFFLINE', life_status_modified_at = $2
          WHERE vehicle_id = ANY($1::text[]) AND life_status = 'ONLINE'`,
        [before.map((v) => v.vehicle_id), modifiedAt],
        c,
      );
      await this.events.insert(
        c,
        before.flatMap((v) =>
          vehicleChangedEvent(
            v,
            { ...v, life_status: 'OFFLINE', life_status_modified_at: modifiedAt },
            flowOf(undefined),
            modifiedAt,
          ),
        ),
      );
      return before.map((v) => ({ vehicle_id: v.vehicle_id, telematics_unit_id: v.telematics_unit_id }));
    });
  }

  async listStaleSetups(createdBefore: string, limit: number): Promise<Vehicle[]> {
    const { rows } = await this.db.q(
      `SELECT * FROM vehicles WHERE setup_status = 'IN_PROGRESS' AND created_at < $1
        ORDER BY created_at, vehicle_id LIMIT $2`,
      [createdBefore, limit],
    );
    return rows.map(vehicleFromRow);
  }
}
