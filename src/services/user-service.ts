import { createHash, randomBytes } from 'node:crypto';
import { problems } from '../domain/problems.js';
import { newUserId } from '../lib/ids.js';
import { hashSecret, verifySecret } from '../lib/secrets.js';
import {
  type ConsoleUser,
  type SignInFailures,
  type Store,
  StoreConflictError,
  USER_ROLES,
  type UserRole,
} from '../store/store.js';
import { DUMMY_HASH, FLEET_ID, type Principal, scopesForRole } from './auth-service.js';

/** A user as the API and CLI show it: never the password hash. */
export interface UserView {
  user_id: string;
  fleet_id: string;
  email: string;
  role: UserRole;
  created_at: string;
  modified_at: string;
}

export interface SignedIn {
  /** The cookie value; only its hash is stored. */
  sessionId: string;
  expiresAt: string;
  user: UserView;
}

/**
 * Sign-in throttling. Failures count under two keys: the account together with the source
 * address, and the account alone. Past the free failures each key makes the next attempt wait,
 * doubling from one second. From one source the wait grows to 15 minutes, so guessing from one
 * address stops; the account-wide wait stops at 30 seconds, so that guesses from many addresses
 * are slowed to two a minute while the real user, signing in from elsewhere, waits at most that.
 */
const THROTTLE = {
  pair: { free: 5, maxDelayMs: 15 * 60_000 },
  account: { free: 20, maxDelayMs: 30_000 },
  /** Counts older than this are forgotten. */
  retentionMs: 24 * 3600_000,
} as const;

const EMAIL = /^[^\s@]{1,64}@[^\s@]{1,190}$/;
const PASSWORD_MIN = 10;
const PASSWORD_MAX = 200;

const view = ({ password_hash: _hidden, ...user }: ConsoleUser): UserView => user;
const sessionHash = (sessionId: string): string => createHash('sha256').update(sessionId).digest('hex');

const validationError = problems.validation;

function checkPassword(password: string, errors: Array<{ field: string; message: string }>): void {
  if (password.length < PASSWORD_MIN || password.length > PASSWORD_MAX) {
    errors.push({ field: 'password', message: `must be ${PASSWORD_MIN} to ${PASSWORD_MAX} characters` });
  }
}

function checkRole(role: string, errors: Array<{ field: string; message: string }>): role is UserRole {
  if ((USER_ROLES as readonly string[]).includes(role)) return true;
  errors.push({ field: 'role', message: `must be one of ${USER_ROLES.join(', ')}` });
  return false;
}

/**
 * Console users (SPEC §9): people of a fleet with a role, their passwords (scrypt, memory-hard)
 * and their sessions. A session id is 256 random bits; the store keeps only its SHA-256, so a
 * database leak does not hand out sessions.
 */
export class UserService {
  constructor(
    private readonly store: Store,
    private readonly options: { sessionTtlMinutes: number; clock?: () => number },
  ) {}

  private now(): number {
    return this.options.clock?.() ?? Date.now();
  }

  async create(input: { fleetId: string; email: string; role: string; password: string }): Promise<UserView> {
    const errors: Array<{ field: string; message: string }> = [];
    if (!FLEET_ID.test(input.fleetId)) errors.push({ field: 'fleet', message: 'must be 1–64 of A–Z a–z 0–9 . _ -' });
    const email = input.email.trim().toLowerCase();
    if (!EMAIL.test(email)) errors.push({ field: 'email', message: 'is not an email address' });
    const roleOk = checkRole(input.role, errors);
    checkPassword(input.password, errors);
    if (errors.length > 0 || !roleOk) throw validationError(errors);
    const now = new Date().toISOString();
    const user: ConsoleUser = {
      user_id: newUserId(),
      fleet_id: input.fleetId,
      email,
      role: input.role as UserRole,
      password_hash: await hashSecret(input.password),
      created_at: now,
      modified_at: now,
    };
    try {
      await this.store.createUser(user);
    } catch (e) {
      if (e instanceof StoreConflictError) {
        throw problems.userEmailTaken(email);
      }
      throw e;
    }
    return view(user);
  }

  async list(fleetId?: string): Promise<UserView[]> {
    return (await this.store.listUsers(fleetId)).map(view);
  }

  /** The user, when it belongs to `fleetId`; else 404 (never 403, as for vehicles). */
  async get(fleetId: string, userId: string): Promise<UserView> {
    return view(await this.own(fleetId, userId));
  }

  private async own(fleetId: string, userId: string): Promise<ConsoleUser> {
    const user = await this.store.getUser(userId);
    if (!user || user.fleet_id !== fleetId) {
      throw problems.userNotFound(userId);
    }
    return user;
  }

  /** Changes role and/or password; a new password ends the user's sessions. */
  async update(fleetId: string, userId: string, patch: { role?: string; password?: string }): Promise<UserView> {
    await this.own(fleetId, userId);
    const errors: Array<{ field: string; message: string }> = [];
    if (patch.role !== undefined) checkRole(patch.role, errors);
    if (patch.password !== undefined) checkPassword(patch.password, errors);
    if (errors.length > 0) throw validationError(errors);
    const updated = await this.store.updateUser(
      userId,
      {
        role: patch.role as UserRole | undefined,
        password_hash: patch.password === undefined ? undefined : await hashSecret(patch.password),
      },
      new Date().toISOString(),
    );
    if (!updated) throw problems.userNotFound(userId);
    if (patch.password !== undefined) await this.store.deleteUserSessions(userId);
    return view(updated);
  }

  async delete(fleetId: string, userId: string): Promise<void> {
    await this.own(fleetId, userId);
    await this.store.deleteUser(userId);
  }

  /** Deletes by email, in any fleet (CLI). Returns whether the user existed. */
  async deleteByEmail(email: string): Promise<boolean> {
    const user = await this.store.getUserByEmail(email.trim().toLowerCase());
    return user !== undefined && (await this.store.deleteUser(user.user_id));
  }

  /**
   * Checks email and password and opens a session. Wrong email and wrong password answer alike,
   * in about the same time (the hash is checked either way), and count as failures.
   */
  async signIn(emailInput: string, password: string, source: string): Promise<SignedIn> {
    const email = emailInput.trim().toLowerCase();
    const keys = [`pair:${email}|${source}`, `account:${email}`];
    const now = this.now();
    const wait = this.waitMs(await this.store.getSignInFailures(keys), now);
    if (wait > 0) {
      const seconds = Math.ceil(wait / 1000);
      throw problems.signInThrottled(seconds);
    }
    const user = await this.store.getUserByEmail(email);
    const ok = await verifySecret(password, user?.password_hash ?? DUMMY_HASH);
    if (!user || !ok) {
      await this.store.noteSignInFailure(keys, new Date(now).toISOString());
      throw problems.wrongEmailOrPassword();
    }
    await this.store.clearSignInFailures(keys, new Date(now - THROTTLE.retentionMs).toISOString());
    const sessionId = randomBytes(32).toString('base64url');
    const expiresAt = new Date(now + this.options.sessionTtlMinutes * 60_000).toISOString();
    await this.store.createSession({
      session_hash: sessionHash(sessionId),
      user_id: user.user_id,
      created_at: new Date(now).toISOString(),
      expires_at: expiresAt,
    });
    return { sessionId, expiresAt, user: view(user) };
  }

  private waitMs(counts: SignInFailures[], now: number): number {
    let wait = 0;
    for (const c of counts) {
      const rule = c.throttle_key.startsWith('pair:') ? THROTTLE.pair : THROTTLE.account;
      if (c.failures < rule.free) continue;
      const delay = Math.min(rule.maxDelayMs, 1000 * 2 ** Math.min(30, c.failures - rule.free));
      wait = Math.max(wait, Date.parse(c.last_failure_at) + delay - now);
    }
    return wait;
  }

  /** The principal of a session cookie: the user's fleet and its role's scopes; 401 when expired or unknown. */
  async authenticate(sessionId: string): Promise<Principal> {
    const found = await this.store.getSession(sessionHash(sessionId));
    if (!found) throw problems.consoleSessionUnknown();
    // Left for purge(), so that every request of an expired session hears why.
    if (Date.parse(found.session.expires_at) <= this.now()) {
      throw problems.consoleSessionExpired();
    }
    const { user } = found;
    return {
      fleetId: user.fleet_id,
      clientId: 'console',
      scopes: scopesForRole(user.role),
      user: { userId: user.user_id, email: user.email, role: user.role },
    };
  }

  async signOut(sessionId: string): Promise<void> {
    await this.store.deleteSession(sessionHash(sessionId));
  }

  /** Forgets expired sessions and stale failure counts (maintenance). */
  async purge(now = this.now()): Promise<void> {
    await this.store.purgeSessions(new Date(now).toISOString());
    await this.store.clearSignInFailures([], new Date(now - THROTTLE.retentionMs).toISOString());
  }
}
