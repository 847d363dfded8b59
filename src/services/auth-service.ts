import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { ProblemError, problems } from '../domain/problems.js';
import { newClientId } from '../lib/ids.js';
import { generateSecret, hashSecret, verifySecret } from '../lib/secrets.js';
import type { ApiClient, Store } from '../store/store.js';

/**
 * SPEC §5: the scopes; a write scope implies its `.ro` twin (`events`: also webhooks and event
 * consumers). `admin` manages the fleet's API clients and console users (the console's admin role).
 */
export const SCOPES = ['vehicle-commands', 'vehicles', 'vehicles.ro', 'events', 'events.ro', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

export function isScope(value: string): value is Scope {
  return (SCOPES as readonly string[]).includes(value);
}

/** What each scope allows, for the OAuth2 metadata and the OpenAPI document. */
export const SCOPE_DESCRIPTIONS: Partial<Record<Scope, string>> = {
  'vehicle-commands': 'Send commands to vehicles.',
  vehicles: 'Add, change and delete vehicles and credentials (implies vehicles.ro).',
  'vehicles.ro': 'Read vehicles, their state, command records, telematics brands and credentials.',
  events: 'Read events, and manage webhooks and event consumers (implies events.ro).',
  'events.ro': 'Read events: the pull feed and the stream.',
  admin: "Manage the fleet's API clients and console users.",
};

/** Who is calling: the fleet a token is bound to, its client and scopes. */
export interface Principal {
  fleetId: string;
  /** The API client; `console` for a person signed in to the console. */
  clientId: string;
  scopes: readonly string[];
  /** The console user behind a session (SPEC §9); absent for API clients. */
  user?: { userId: string; email: string; role: string };
}

export function hasScope(principal: Principal, needed: Scope): boolean {
  return (
    principal.scopes.includes(needed) || (needed.endsWith('.ro') && principal.scopes.includes(needed.slice(0, -3)))
  );
}

/**
 * What a console role may do, as scopes (SPEC §9): a viewer reads everything of its fleet, an
 * operator also sends commands, an admin may do everything.
 */
export function scopesForRole(role: 'viewer' | 'operator' | 'admin'): string[] {
  const readOnly = SCOPES.filter((s) => s.endsWith('.ro'));
  if (role === 'viewer') return readOnly;
  if (role === 'operator') return [...readOnly, 'vehicle-commands'];
  return [...SCOPES];
}

const ISSUER = 'fleetgate';
const AUDIENCE = 'fleetgate-api';
export const FLEET_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export interface TokenResponse {
  access_token: string;
  token_type: 'bearer';
  expires_in: number;
  scope: string;
}

export interface CreatedClient {
  client_id: string;
  client_secret: string;
  fleet_id: string;
  scopes: string[];
}

/** Creates an API client of a fleet; the secret is returned once and stored only as a hash. */
export async function createApiClient(
  store: Store,
  input: { fleetId: string; scopes: string[]; name?: string },
): Promise<CreatedClient> {
  const errors: string[] = [];
  if (!FLEET_ID.test(input.fleetId)) errors.push(`fleet id '${input.fleetId}' must be 1–64 of A–Z a–z 0–9 . _ -`);
  const bad = input.scopes.filter((s) => !isScope(s));
  if (bad.length > 0) errors.push(`unknown scope(s) ${bad.join(', ')}; known: ${SCOPES.join(', ')}`);
  if (input.scopes.length === 0) errors.push(`at least one --scope is needed (${SCOPES.join(', ')})`);
  if (errors.length > 0) throw new Error(errors.join('; '));
  const clientId = newClientId();
  const secret = generateSecret();
  const scopes = [...new Set(input.scopes)];
  await store.createClient({
    client_id: clientId,
    fleet_id: input.fleetId,
    name: input.name ?? clientId,
    secret_hash: await hashSecret(secret),
    scopes,
    created_at: new Date().toISOString(),
  });
  return { client_id: clientId, client_secret: secret, fleet_id: input.fleetId, scopes };
}

/**
 * OAuth2 client credentials (RFC 6749 §4.4) with fleet-bound HS256 JWTs. Client secrets are
 * kept as scrypt hashes and shown once, when the client is created.
 */
export class AuthService {
  constructor(
    private readonly store: Store,
    private readonly signingKey: Uint8Array,
    private readonly tokenTtlSeconds: number,
  ) {}

  /** The API clients of a fleet, without their secret hashes. */
  async listClients(fleetId: string): Promise<Array<Omit<ApiClient, 'secret_hash'>>> {
    return (await this.store.listClients(fleetId)).map(({ secret_hash: _hidden, ...c }) => c);
  }

  /** Creates a client of the fleet; the answer holds the secret, the only time it is shown. */
  async createClient(
    fleetId: string,
    scopes: string[],
    name?: string,
  ): Promise<Omit<ApiClient, 'secret_hash'> & { client_secret: string }> {
    const created = await createApiClient(this.store, { fleetId, scopes, name }).catch((e: unknown) => {
      throw e instanceof Error ? problems.invalidRequest(e.message) : e;
    });
    const { secret_hash: _hidden, ...stored } = (await this.store.getClient(created.client_id))!;
    return { ...stored, client_secret: created.client_secret };
  }

  /** Deletes a client of the fleet (404 for another fleet's); its tokens die with it. */
  async deleteClient(fleetId: string, clientId: string): Promise<void> {
    const client = await this.store.getClient(clientId);
    if (!client || client.fleet_id !== fleetId) {
      throw problems.apiClientNotFound(clientId);
    }
    await this.store.deleteClient(clientId);
  }

  /** Issues a token for the client's scopes, or the requested subset of them. */
  async issueToken(clientId: string, clientSecret: string, requestedScope?: string): Promise<TokenResponse> {
    const client = await this.store.getClient(clientId);
    // Hash even for unknown clients so timing does not reveal which client ids exist.
    const ok = await verifySecret(clientSecret, client?.secret_hash ?? DUMMY_HASH);
    if (!client || !ok) {
      throw problems.wrongClientSecret();
    }
    let scopes = client.scopes;
    if (requestedScope !== undefined && requestedScope.trim() !== '') {
      const wanted = requestedScope.trim().split(/\s+/);
      const granted: Principal = { fleetId: client.fleet_id, clientId: client.client_id, scopes: client.scopes };
      const denied = wanted.filter((s) => !isScope(s) || !hasScope(granted, s));
      if (denied.length > 0) {
        throw problems.scopeNotGranted(denied);
      }
      scopes = wanted;
    }
    const accessToken = await new SignJWT({ fleet_id: client.fleet_id, scope: scopes.join(' ') })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setSubject(client.client_id)
      .setIssuedAt()
      .setExpirationTime(`${this.tokenTtlSeconds}s`)
      .sign(this.signingKey);
    return {
      access_token: accessToken,
      token_type: 'bearer',
      expires_in: this.tokenTtlSeconds,
      scope: scopes.join(' '),
    };
  }

  /** Verifies a bearer token; any defect (forged, alg none, expired, wrong audience) → 401. */
  async verifyToken(token: string): Promise<Principal> {
    try {
      const { payload } = await jwtVerify(token, this.signingKey, {
        algorithms: ['HS256'],
        issuer: ISSUER,
        audience: AUDIENCE,
        requiredClaims: ['exp', 'sub'],
      });
      const fleetId = payload.fleet_id;
      const scope = payload.scope;
      if (typeof fleetId !== 'string' || typeof scope !== 'string' || typeof payload.sub !== 'string') {
        throw problems.accessTokenWithoutFleetOrScope();
      }
      // A deleted client's tokens die with it (the API caches a verified token for ≤ 1 min).
      const client = await this.store.getClient(payload.sub);
      if (!client || client.fleet_id !== fleetId) {
        throw problems.accessTokenClientGone();
      }
      return { fleetId, clientId: payload.sub, scopes: scope.split(' ').filter(Boolean) };
    } catch (e) {
      if (e instanceof ProblemError) throw e;
      throw e instanceof joseErrors.JWTExpired ? problems.accessTokenExpired() : problems.accessTokenInvalid();
    }
  }
}

// A valid hash of a random secret nobody knows, checked against when the client id is unknown.
export const DUMMY_HASH = 'scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';
