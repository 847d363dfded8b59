import { type CredentialsRecord, StoreConflictError } from '../store.js';
import { errorCode, type PostgresConnection } from './connection.js';
import { credentialsFromRow } from './rows.js';

/** Each fleet's third-party credentials, sealed; their state is swapped by version (compare and set). */
export class Credentials {
  constructor(private readonly db: PostgresConnection) {}

  async createCredentials(c: CredentialsRecord): Promise<void> {
    try {
      await this.db.q(
        `INSERT INTO credentials (credentials_id, fleet_id, telematics_brand, name, sealed_secret, sealed_state,
           version, created_at, modified_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
        [
          c.credentials_id,
          c.fleet_id,
          c.telematics_brand,
          c.name,
          c.sealed_secret,
          c.sealed_state,
          c.version,
          c.created_at,
          c.modified_at,
        ],
      );
    } catch (err) {
      if (errorCode(err) === '23505') throw new StoreConflictError('credentials_id');
      throw err;
    }
  }

  async getCredentials(credentialsId: string): Promise<CredentialsRecord | undefined> {
    const { rows } = await this.db.q('SELECT * FROM credentials WHERE credentials_id = $1', [credentialsId]);
    return rows[0] && credentialsFromRow(rows[0]);
  }

  async listCredentials(fleetId: string, limit: number, after?: string): Promise<CredentialsRecord[]> {
    const { rows } = await this.db.q(
      `SELECT * FROM credentials WHERE fleet_id = $1 AND ($2::text IS NULL OR credentials_id > $2::text)
        ORDER BY credentials_id LIMIT $3`,
      [fleetId, after ?? null, limit],
    );
    return rows.map(credentialsFromRow);
  }

  async deleteCredentials(credentialsId: string): Promise<'deleted' | 'in-use' | 'not-found'> {
    try {
      const { rowCount } = await this.db.q('DELETE FROM credentials WHERE credentials_id = $1', [credentialsId]);
      return (rowCount ?? 0) > 0 ? 'deleted' : 'not-found';
    } catch (err) {
      // The vehicles.credentials_id foreign key refuses while a vehicle references them.
      if (errorCode(err) === '23503') return 'in-use';
      throw err;
    }
  }

  async updateCredentialsState(
    credentialsId: string,
    expectedVersion: number,
    sealedState: string,
    at: string,
  ): Promise<boolean> {
    const { rowCount } = await this.db.q(
      `UPDATE credentials SET sealed_state = $3, version = version + 1, modified_at = $4
        WHERE credentials_id = $1 AND version = $2`,
      [credentialsId, expectedVersion, sealedState, at],
    );
    return (rowCount ?? 0) > 0;
  }
}
