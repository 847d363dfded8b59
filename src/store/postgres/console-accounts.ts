import { type ConsoleSession, type ConsoleUser, type SignInFailures, StoreConflictError } from '../store.js';
import { constraintOf, errorCode, type PostgresConnection } from './connection.js';
import { sessionFromRow, signInFailuresFromRow, userFromRow } from './rows.js';

/** The console's users, their sign-in sessions and the failed sign-ins counted against them. */
export class ConsoleAccounts {
  constructor(private readonly db: PostgresConnection) {}

  async createUser(u: ConsoleUser): Promise<void> {
    try {
      await this.db.q(
        `INSERT INTO console_users (user_id, fleet_id, email, role, password_hash, created_at, modified_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)`,
        [u.user_id, u.fleet_id, u.email, u.role, u.password_hash, u.created_at, u.modified_at],
      );
    } catch (err) {
      if (errorCode(err) === '23505') {
        throw new StoreConflictError(constraintOf(err).includes('email') ? 'email' : 'user_id');
      }
      throw err;
    }
  }

  async getUser(userId: string): Promise<ConsoleUser | undefined> {
    const { rows } = await this.db.q('SELECT * FROM console_users WHERE user_id = $1', [userId]);
    return rows[0] && userFromRow(rows[0]);
  }

  async getUserByEmail(email: string): Promise<ConsoleUser | undefined> {
    const { rows } = await this.db.q('SELECT * FROM console_users WHERE email = $1', [email]);
    return rows[0] && userFromRow(rows[0]);
  }

  async listUsers(fleetId?: string): Promise<ConsoleUser[]> {
    const { rows } =
      fleetId === undefined
        ? await this.db.q('SELECT * FROM console_users ORDER BY email', [])
        : await this.db.q('SELECT * FROM console_users WHERE fleet_id = $1 ORDER BY email', [fleetId]);
    return rows.map(userFromRow);
  }

  async updateUser(
    userId: string,
    patch: Partial<Pick<ConsoleUser, 'role' | 'password_hash'>>,
    modifiedAt: string,
  ): Promise<ConsoleUser | undefined> {
    const { rows } = await this.db.q(
      `UPDATE console_users SET role = COALESCE($1, role), password_hash = COALESCE($2, password_hash),
         modified_at = $3 WHERE user_id = $4 RETURNING *`,
      [patch.role ?? null, patch.password_hash ?? null, modifiedAt, userId],
    );
    return rows[0] && userFromRow(rows[0]);
  }

  async deleteUser(userId: string): Promise<boolean> {
    const { rowCount } = await this.db.q('DELETE FROM console_users WHERE user_id = $1', [userId]);
    return (rowCount ?? 0) > 0;
  }

  async createSession(session: ConsoleSession): Promise<void> {
    try {
      await this.db.q(
        'INSERT INTO console_sessions (session_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)',
        [session.session_hash, session.user_id, session.created_at, session.expires_at],
      );
    } catch (err) {
      if (errorCode(err) === '23503') throw new StoreConflictError('user');
      throw err;
    }
  }

  async getSession(sessionHash: string): Promise<{ session: ConsoleSession; user: ConsoleUser } | undefined> {
    const { rows } = await this.db.q(
      `SELECT u.*, s.session_hash, s.created_at AS session_created_at, s.expires_at
         FROM console_sessions s JOIN console_users u ON u.user_id = s.user_id WHERE s.session_hash = $1`,
      [sessionHash],
    );
    return rows[0] && { session: sessionFromRow(rows[0]), user: userFromRow(rows[0]) };
  }

  async deleteSession(sessionHash: string): Promise<void> {
    await this.db.q('DELETE FROM console_sessions WHERE session_hash = $1', [sessionHash]);
  }

  async deleteUserSessions(userId: string): Promise<void> {
    await this.db.q('DELETE FROM console_sessions WHERE user_id = $1', [userId]);
  }

  async purgeSessions(expiredBefore: string): Promise<number> {
    const { rowCount } = await this.db.q('DELETE FROM console_sessions WHERE expires_at < $1', [expiredBefore]);
    return rowCount ?? 0;
  }

  async noteSignInFailure(keys: readonly string[], at: string): Promise<SignInFailures[]> {
    const { rows } = await this.db.q(
      `INSERT INTO sign_in_failures (throttle_key, failures, last_failure_at)
       SELECT k, 1, $2 FROM unnest($1::text[]) AS k
       ON CONFLICT (throttle_key) DO UPDATE
         SET failures = sign_in_failures.failures + 1, last_failure_at = excluded.last_failure_at
       RETURNING *`,
      [keys, at],
    );
    const byKey = new Map(rows.map((r) => [String(r.throttle_key), signInFailuresFromRow(r)]));
    return keys.map((k) => byKey.get(k)!);
  }

  async getSignInFailures(keys: readonly string[]): Promise<SignInFailures[]> {
    const { rows } = await this.db.q('SELECT * FROM sign_in_failures WHERE throttle_key = ANY($1::text[])', [keys]);
    const byKey = new Map(rows.map((r) => [String(r.throttle_key), signInFailuresFromRow(r)]));
    return keys.flatMap((k) => (byKey.has(k) ? [byKey.get(k)!] : []));
  }

  async clearSignInFailures(keys: readonly string[], staleBefore: string): Promise<void> {
    await this.db.q('DELETE FROM sign_in_failures WHERE throttle_key = ANY($1::text[]) OR last_failure_at < $2', [
      keys,
      staleBefore,
    ]);
  }
}
