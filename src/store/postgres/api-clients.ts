import { type ApiClient, StoreConflictError } from '../store.js';
import { errorCode, type PostgresConnection } from './connection.js';
import { clientFromRow, json } from './rows.js';

/** The API clients of each fleet (Store.createClient and its siblings). */
export class ApiClients {
  constructor(private readonly db: PostgresConnection) {}

  async createClient(c: ApiClient): Promise<void> {
    try {
      await this.db.q(
        `INSERT INTO api_clients (client_id, fleet_id, name, secret_hash, scopes, created_at)
         VALUES ($1, $2, $3, $4, $5::jsonb, $6)`,
        [c.client_id, c.fleet_id, c.name, c.secret_hash, json(c.scopes), c.created_at],
      );
    } catch (err) {
      if (errorCode(err) === '23505') throw new StoreConflictError('client_id');
      throw err;
    }
  }

  async getClient(clientId: string): Promise<ApiClient | undefined> {
    const { rows } = await this.db.q('SELECT * FROM api_clients WHERE client_id = $1', [clientId]);
    return rows[0] && clientFromRow(rows[0]);
  }

  async listClients(fleetId?: string): Promise<ApiClient[]> {
    const { rows } =
      fleetId === undefined
        ? await this.db.q('SELECT * FROM api_clients ORDER BY created_at, client_id', [])
        : await this.db.q('SELECT * FROM api_clients WHERE fleet_id = $1 ORDER BY created_at, client_id', [fleetId]);
    return rows.map(clientFromRow);
  }

  async deleteClient(clientId: string): Promise<boolean> {
    const { rowCount } = await this.db.q('DELETE FROM api_clients WHERE client_id = $1', [clientId]);
    return (rowCount ?? 0) > 0;
  }
}
