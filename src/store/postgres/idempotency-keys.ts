import { type IdempotencyRecord, StoreConflictError } from '../store.js';
import { errorCode, type PostgresConnection } from './connection.js';
import { idempotencyFromRow, json } from './rows.js';

/** Idempotency keys: claimed before a command runs, completed with its response, purged when old. */
export class IdempotencyKeys {
  constructor(private readonly db: PostgresConnection) {}

  async claimIdempotencyKey(
    record: Omit<IdempotencyRecord, 'status_code' | 'response'>,
  ): Promise<{ claimed: true } | { claimed: false; existing: IdempotencyRecord }> {
    // ON CONFLICT waits for a concurrent claimer to commit, so the SELECT then sees its row; the
    // loop covers the rare purge between the two statements.
    for (let attempt = 0; attempt < 3; attempt++) {
      const { rowCount } = await this.db
        .q(
          `INSERT INTO idempotency_keys (fleet_id, key, vehicle_id, command, flow_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (fleet_id, key) DO NOTHING`,
          [record.fleet_id, record.key, record.vehicle_id, record.command, record.flow_id, record.created_at],
        )
        .catch((err: unknown) => {
          if (errorCode(err) === '23503') throw new StoreConflictError('vehicle');
          throw err;
        });
      if ((rowCount ?? 0) > 0) return { claimed: true };
      const { rows } = await this.db.q('SELECT * FROM idempotency_keys WHERE fleet_id = $1 AND key = $2', [
        record.fleet_id,
        record.key,
      ]);
      if (rows[0]) return { claimed: false, existing: idempotencyFromRow(rows[0]) };
    }
    throw new Error(`idempotency key ${record.key} could neither be claimed nor read`);
  }

  async completeIdempotencyKey(fleetId: string, key: string, statusCode: number, response: unknown): Promise<void> {
    await this.db.q(
      'UPDATE idempotency_keys SET status_code = $3, response = $4::jsonb WHERE fleet_id = $1 AND key = $2',
      [fleetId, key, statusCode, json(response ?? null)],
    );
  }

  async releaseIdempotencyKey(fleetId: string, key: string, flowId: string): Promise<void> {
    await this.db.q(
      'DELETE FROM idempotency_keys WHERE fleet_id = $1 AND key = $2 AND flow_id = $3 AND status_code IS NULL',
      [fleetId, key, flowId],
    );
  }

  async purgeIdempotencyKeys(createdBefore: string): Promise<number> {
    const { rowCount } = await this.db.q('DELETE FROM idempotency_keys WHERE created_at < $1', [createdBefore]);
    return rowCount ?? 0;
  }
}
