import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { CredentialsPort, CredentialsSnapshot } from '../adapter.js';
import { isSmartcarError, type SmartcarClient, SmartcarError } from './smartcar-client.js';

/**
 * Access tokens for Smartcar credentials, shared by every fleetgate instance through the
 * credentials port (one stored row per credentials).
 *
 * Smartcar rotates the refresh token on every exchange and invalidates the old one, so two
 * instances refreshing at once would leave one of them holding a dead token — or worse, persist
 * it. Rotation is therefore serialised through the credentials row: an instance first writes a
 * short lease into the credentials' state with `swapState` (compare-and-swap on the row
 * version), refreshes, and writes the new tokens with another compare-and-swap. Everyone else
 * waits for the lease to end and reuses the new access token. The refresh call never takes a
 * command's signal: aborting it after Smartcar rotated would lose the new refresh token.
 */

/** What the operator gave at `POST /credentials`. */
export interface SmartcarSecret {
  client_id: string;
  client_secret: string;
  refresh_token: string;
}

/** Mutable token state, the credentials' swapped state. Times are epoch milliseconds. */
interface TokenState {
  refresh_token: string;
  access_token?: string;
  access_expires_at?: number;
  refresh_expires_at?: number;
  lease?: { holder: string; until: number };
  revoked?: { at: string; reason: string };
}

/** The credentials can no longer be used; the operator must act (the message says how). */
export class CredentialsRevokedError extends Error {
  constructor(
    readonly credentialsId: string,
    readonly reason: string,
  ) {
    super(reason);
    this.name = 'CredentialsRevokedError';
  }
}

/** The credentials are gone or cannot be opened with this instance's secret key. */
export class CredentialsUnusableError extends Error {
  constructor(
    readonly credentialsId: string,
    message: string,
  ) {
    super(message);
    this.name = 'CredentialsUnusableError';
  }
}

export interface TokenManagerOptions {
  credentials: CredentialsPort;
  client: SmartcarClient;
  /** Names the lease holder in the row (with a random suffix per lease). */
  instanceId: string;
  logger: Logger;
  /** Called once when Smartcar refuses the credentials for good. */
  onRevoked(credentialsId: string, reason: string): Promise<void>;
  now?: () => number;
  /** Refresh this long before the access token expires. Default 5 minutes. */
  refreshBeforeExpiryMs?: number;
  /** How long a refresh lease holds; the refresh call's own timeout is half of it. Default 20 s. */
  leaseMs?: number;
  /** How often a waiting instance re-reads the row. Default 25 ms. */
  pollMs?: number;
}

export function revokedReason(credentialsId: string, detail: string): string {
  return (
    `Smartcar no longer accepts the credentials '${credentialsId}' (${detail}): the vehicle owner revoked ` +
    'the authorization, or the refresh token expired, or the application credentials changed. Reconnect the ' +
    'account in Smartcar Connect, store the new refresh token with POST /credentials, and add the vehicles ' +
    'again with the new credentials_id.'
  );
}

export class TokenManager {
  private readonly now: () => number;
  private readonly skewMs: number;
  private readonly leaseMs: number;
  private readonly pollMs: number;
  /** In-process single flight per credentials; the store serialises across instances. */
  private readonly inflight = new Map<string, Promise<string>>();
  private readonly cache = new Map<string, { token: string; expiresAt: number }>();

  constructor(private readonly o: TokenManagerOptions) {
    this.now = o.now ?? Date.now;
    this.skewMs = o.refreshBeforeExpiryMs ?? 300_000;
    this.leaseMs = o.leaseMs ?? 20_000;
    this.pollMs = o.pollMs ?? 25;
  }

  /** A valid access token; rejects with SmartcarError `timeout` when `signal` aborts first. */
  async accessToken(credentialsId: string, signal: AbortSignal): Promise<string> {
    const cached = this.cache.get(credentialsId);
    if (cached && cached.expiresAt - this.skewMs > this.now()) return cached.token;
    let flight = this.inflight.get(credentialsId);
    if (!flight) {
      flight = this.obtain(credentialsId).finally(() => this.inflight.delete(credentialsId));
      this.inflight.set(credentialsId, flight);
    }
    return raceSignal(flight, signal);
  }

  /** Smartcar refused `accessToken` (401): forget it so the next call refreshes. */
  async invalidate(credentialsId: string, accessToken: string): Promise<void> {
    if (this.cache.get(credentialsId)?.token === accessToken) this.cache.delete(credentialsId);
    for (let attempt = 0; attempt < 5; attempt++) {
      const rec = await this.o.credentials.read(credentialsId);
      if (!rec) return;
      const state = this.openState(rec);
      if (state.access_token !== accessToken) return;
      const next: TokenState = { ...state };
      delete next.access_token;
      delete next.access_expires_at;
      if (await this.write(rec.credentials_id, rec.version, next)) return;
    }
  }

  private async obtain(id: string): Promise<string> {
    // Leases run on the wall clock (shared by all instances); `now` only judges token expiry.
    // Waiting for another instance's lease is bounded by a little more than one lease.
    const giveUpAt = Date.now() + this.leaseMs * 2;
    for (;;) {
      const rec = await this.o.credentials.read(id);
      if (!rec) throw new CredentialsUnusableError(id, `the credentials '${id}' no longer exist`);
      const state = this.openState(rec);
      if (state.revoked) throw new CredentialsRevokedError(id, state.revoked.reason);
      const now = this.now();
      if (state.access_token && (state.access_expires_at ?? 0) - this.skewMs > now) {
        this.cache.set(id, { token: state.access_token, expiresAt: state.access_expires_at ?? 0 });
        return state.access_token;
      }
      const wall = Date.now();
      if (state.lease && state.lease.until > wall) {
        if (wall > giveUpAt) throw new SmartcarError({ kind: 'timeout', detail: 'waiting for another token refresh' });
        await sleep(this.pollMs);
        continue;
      }
      const leased: TokenState = {
        ...state,
        lease: { holder: `${this.o.instanceId}:${randomUUID()}`, until: wall + this.leaseMs },
      };
      if (!(await this.write(id, rec.version, leased))) continue; // another writer won; look again
      const token = await this.refresh(id, rec.version + 1, leased, rec);
      if (token !== undefined) return token;
    }
  }

  /** Exchanges the refresh token while holding the lease; undefined means "look again". */
  private async refresh(
    id: string,
    version: number,
    state: TokenState,
    rec: CredentialsSnapshot,
  ): Promise<string | undefined> {
    const secret = this.openSecret(rec);
    const started = this.now();
    try {
      const t = await this.o.client.refreshToken(
        secret.client_id,
        secret.client_secret,
        state.refresh_token,
        AbortSignal.timeout(Math.max(1000, this.leaseMs / 2)),
      );
      const next: TokenState = {
        refresh_token: t.refreshToken,
        access_token: t.accessToken,
        access_expires_at: started + t.expiresInS * 1000,
        ...(t.refreshExpiresInS !== undefined ? { refresh_expires_at: started + t.refreshExpiresInS * 1000 } : {}),
      };
      await this.persistRotation(id, version, state.refresh_token, next);
      this.cache.set(id, { token: t.accessToken, expiresAt: next.access_expires_at ?? 0 });
      this.o.logger.info({ credentials_id: id }, 'smartcar access token refreshed');
      return t.accessToken;
    } catch (e) {
      const f = isSmartcarError(e) ? e.failure : undefined;
      if (f?.kind === 'oauth' && (f.error === 'invalid_grant' || f.error === 'invalid_client')) {
        const current = await this.o.credentials.read(id);
        // Only our own lease's row may be declared revoked: a changed row means someone else
        // rotated meanwhile (our lease had run out), so the refusal says nothing.
        if (!current || current.version !== version) return undefined;
        const reason = revokedReason(id, f.error);
        if (
          await this.write(id, version, {
            refresh_token: state.refresh_token,
            revoked: { at: new Date(this.now()).toISOString(), reason },
          })
        ) {
          this.cache.delete(id);
          this.o.logger.warn({ credentials_id: id, error: f.error }, 'smartcar credentials refused; marking vehicles');
          await this.o.onRevoked(id, reason);
          throw new CredentialsRevokedError(id, reason);
        }
        return undefined;
      }
      // Transient: give the lease back so the next caller may try at once.
      const released: TokenState = { ...state };
      delete released.lease;
      await this.write(id, version, released).catch(() => false);
      throw e;
    }
  }

  /**
   * Writes the rotated tokens. When our lease was overtaken the compare-and-swap fails; the new
   * tokens still supersede any state that holds the refresh token we used, which Smartcar has
   * just invalidated.
   */
  private async persistRotation(id: string, version: number, used: string, next: TokenState): Promise<void> {
    if (await this.write(id, version, next)) return;
    for (let attempt = 0; attempt < 10; attempt++) {
      const rec = await this.o.credentials.read(id);
      if (!rec) return;
      if (this.openState(rec).refresh_token !== used) {
        this.o.logger.error({ credentials_id: id }, 'smartcar refresh token rotated twice; keeping the stored one');
        return;
      }
      if (await this.write(id, rec.version, next)) return;
    }
  }

  private write(id: string, expectedVersion: number, state: TokenState): Promise<boolean> {
    return this.o.credentials.swapState(id, expectedVersion, state);
  }

  private openSecret(rec: CredentialsSnapshot): SmartcarSecret {
    const s = rec.secret;
    if (
      s &&
      typeof s.client_id === 'string' &&
      typeof s.client_secret === 'string' &&
      typeof s.refresh_token === 'string'
    ) {
      return { client_id: s.client_id, client_secret: s.client_secret, refresh_token: s.refresh_token };
    }
    throw new CredentialsUnusableError(
      rec.credentials_id,
      `the credentials '${rec.credentials_id}' cannot be decrypted with this instance's secret key`,
    );
  }

  private openState(rec: CredentialsSnapshot): TokenState {
    if (rec.state === null) return { refresh_token: this.openSecret(rec).refresh_token };
    const s = rec.state as Partial<TokenState> | undefined;
    if (typeof s === 'object' && s !== null && typeof s.refresh_token === 'string') return s as TokenState;
    throw new CredentialsUnusableError(
      rec.credentials_id,
      `the token state of credentials '${rec.credentials_id}' cannot be decrypted with this instance's secret key`,
    );
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits for `p` unless `signal` aborts first (then rejects as a timeout; `p` runs on). */
function raceSignal<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    p.catch(() => undefined);
    return Promise.reject(new SmartcarError({ kind: 'timeout', detail: 'obtaining a Smartcar access token' }));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new SmartcarError({ kind: 'timeout', detail: 'obtaining a Smartcar access token' }));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
