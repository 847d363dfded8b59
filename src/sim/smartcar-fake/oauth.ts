/**
 * Smartcar's token endpoint (RFC 6749 §6 refresh with rotation, errors per §5.2) and the access
 * tokens the vehicle API accepts: one application with its connected account per client id.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { HttpAnswer } from './answers.js';
import type { FakeCounters } from './counters.js';
import type { AuthSwitches } from './faults.js';

export interface FakeApplicationInput {
  clientId: string;
  clientSecret: string;
  /** Access token lifetime; Smartcar's is 2 hours. */
  accessTokenTtlS?: number;
  /** Refresh token lifetime; Smartcar's is 60 days. */
  refreshTokenTtlS?: number;
}

export interface Application {
  clientId: string;
  clientSecret: string;
  accessTokenTtlS: number;
  refreshTokenTtlS: number;
  /** The only refresh token that is currently valid (rotation invalidates the previous one). */
  refreshToken: string | undefined;
  refreshExpiresAt: number;
  accessTokens: Map<string, number>;
  authSwitches: AuthSwitches;
}

const token = (prefix: string): string => `${prefix}${randomBytes(18).toString('base64url')}`;

/** A registered application whose account holds its first refresh token. */
export function newApplication(app: FakeApplicationInput): Application {
  return {
    clientId: app.clientId,
    clientSecret: app.clientSecret,
    accessTokenTtlS: app.accessTokenTtlS ?? 7200,
    refreshTokenTtlS: app.refreshTokenTtlS ?? 60 * 86400,
    refreshToken: token('rt_'),
    refreshExpiresAt: Date.now() + (app.refreshTokenTtlS ?? 60 * 86400) * 1000,
    accessTokens: new Map(),
    authSwitches: {},
  };
}

/** The application whose HTTP Basic client id and secret the request carries. */
export function basicClientApp(apps: ReadonlyMap<string, Application>, req: IncomingMessage): Application | undefined {
  const [scheme, encoded] = (req.headers.authorization ?? '').split(' ');
  if (scheme?.toLowerCase() !== 'basic' || !encoded) return undefined;
  const decoded = Buffer.from(encoded, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  const app = apps.get(decodeURIComponent(decoded.slice(0, colon)));
  return app && app.clientSecret === decodeURIComponent(decoded.slice(colon + 1)) ? app : undefined;
}

/** The application whose unexpired access token the request carries as a Bearer token. */
export function bearerApplication(
  apps: ReadonlyMap<string, Application>,
  req: IncomingMessage,
): Application | undefined {
  const auth = req.headers.authorization ?? '';
  const match = /^Bearer (\S+)$/i.exec(auth);
  if (!match?.[1]) return undefined;
  for (const app of apps.values()) {
    const expires = app.accessTokens.get(match[1]);
    if (expires !== undefined && expires > Date.now()) return app;
  }
  return undefined;
}

/** `POST /oauth/token`: exchanges the current refresh token for an access token and a new refresh token. */
export function tokenEndpoint(
  apps: ReadonlyMap<string, Application>,
  counters: FakeCounters,
  req: IncomingMessage,
  body: string,
): HttpAnswer {
  const oauthError = (status: number, error: string, description: string) =>
    new HttpAnswer(status, { error, error_description: description });
  const app = basicClientApp(apps, req);
  if (!app) return oauthError(401, 'invalid_client', 'Invalid or missing HTTP Basic client credentials.');
  const form = new URLSearchParams(body);
  if (form.get('grant_type') !== 'refresh_token') {
    return oauthError(400, 'unsupported_grant_type', 'Only grant_type=refresh_token is supported by this fake.');
  }
  const presented = form.get('refresh_token');
  if (!presented || presented !== app.refreshToken || Date.now() > app.refreshExpiresAt) {
    counters.tokenRejections++;
    return oauthError(400, 'invalid_grant', 'Invalid or expired refresh token.');
  }
  counters.tokenRefreshes++;
  const accessToken = token('at_');
  app.accessTokens.set(accessToken, Date.now() + app.accessTokenTtlS * 1000);
  app.refreshToken = token('rt_');
  app.refreshExpiresAt = Date.now() + app.refreshTokenTtlS * 1000;
  return new HttpAnswer(200, {
    access_token: accessToken,
    token_type: 'Bearer',
    expires_in: app.accessTokenTtlS,
    refresh_token: app.refreshToken,
    refresh_expires_in: app.refreshTokenTtlS,
  });
}
