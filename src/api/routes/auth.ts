import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { ProblemError, problems } from '../../domain/problems.js';
import { SCOPE_DESCRIPTIONS, SCOPES } from '../../services/auth-service.js';
import { LoginThrottle } from '../../services/login-throttle.js';
import { PROBLEM_CONTENT_TYPE } from '../problem-response.js';
import { publicBase } from '../public-base.js';
import { Problem, problemResponses, TokenResponse } from '../schemas.js';
import type { Api, ApiDeps } from '../server.js';

export const TOKEN_PATH = '/auth/oauth/token';
export const METADATA_PATH = '/.well-known/oauth-authorization-server';

const TokenQuery = Type.Object({ grant_type: Type.Optional(Type.String({ maxLength: 64 })) });
const TokenBody = Type.Object({
  grant_type: Type.Optional(Type.String({ maxLength: 64 })),
  client_id: Type.Optional(Type.String({ maxLength: 200 })),
  client_secret: Type.Optional(Type.String({ maxLength: 200 })),
  scope: Type.Optional(Type.String({ maxLength: 200 })),
});

/** RFC 6749 §5.2 error codes, plus §4.1.2.1's two for a server that cannot answer now. */
const OAUTH_ERRORS = [
  'invalid_request',
  'invalid_client',
  'invalid_grant',
  'unauthorized_client',
  'unsupported_grant_type',
  'invalid_scope',
  'temporarily_unavailable',
  'server_error',
] as const;
type OAuthErrorCode = (typeof OAUTH_ERRORS)[number];

const OAuthError = Type.Object(
  {
    error: Type.Enum(OAUTH_ERRORS),
    error_description: Type.String(),
    ...Problem.properties,
  },
  {
    additionalProperties: true,
    description: 'RFC 6749 §5.2 error (application/json) with the problem details members beside it.',
  },
);
const oauthError = (description: string, headers?: Record<string, unknown>) => ({
  description,
  ...(headers ? { headers } : {}),
  content: { 'application/json': { schema: OAuthError } },
});

const AuthorizationServerMetadata = Type.Object(
  {
    issuer: Type.String({ format: 'uri' }),
    token_endpoint: Type.String({ format: 'uri' }),
    token_endpoint_auth_methods_supported: Type.Array(Type.String()),
    grant_types_supported: Type.Array(Type.String()),
    response_types_supported: Type.Array(Type.String()),
    scopes_supported: Type.Array(Type.String()),
    service_documentation: Type.String({ format: 'uri' }),
  },
  { additionalProperties: true, description: 'RFC 8414 authorization server metadata.' },
);

/** OAuth2 client credentials (RFC 6749 §4.4); HTTP Basic or the form body. */
export function authRoutes(app: Api, deps: ApiDeps): void {
  const base = publicBase(deps.config, () => app.server);
  const throttle = new LoginThrottle();
  app.post(
    TOKEN_PATH,
    {
      schema: {
        operationId: 'getAccessToken',
        tags: ['Access'],
        summary: 'Get an access token (client credentials grant)',
        description:
          "Authenticate with HTTP Basic `client_id:client_secret` (or `client_id`/`client_secret` in the form body). `grant_type=client_credentials` in the form body or the query; `scope` may ask for a subset of the client's scopes. Errors are RFC 6749 `application/json` with `error` and `error_description`, and the problem details members beside them.",
        security: [{ clientBasic: [] }],
        consumes: ['application/x-www-form-urlencoded', 'application/json'],
        querystring: TokenQuery,
        body: TokenBody,
        response: {
          200: TokenResponse,
          400: oauthError('`invalid_request`, `unsupported_grant_type` or `invalid_scope`.'),
          413: oauthError('`invalid_request`: the body is larger than 64 KiB.'),
          415: oauthError('`invalid_request`: the body is neither a form nor JSON.'),
          401: oauthError('`invalid_client`: client credentials missing or wrong.', {
            'WWW-Authenticate': {
              type: 'string',
              description: '`Basic realm="fleetgate"` unless the credentials came in the form body.',
            },
          }),
          429: oauthError('`temporarily_unavailable`: more than 60 token requests a minute from this address.', {
            'Retry-After': { type: 'integer', description: 'Seconds until a request is accepted again.' },
          }),
          500: oauthError('`server_error`: a bug; quote the flow_id.'),
          503: oauthError('`temporarily_unavailable`: the database cannot be reached.'),
        },
      },
      config: { rateLimit: { max: 60, timeWindow: 60_000 } },
      onSend: asOAuthError,
    },
    async (request, reply) => {
      const body = request.body ?? {};
      const basic = parseBasic(request.headers.authorization);
      const clientId = basic?.id ?? body.client_id;
      const secret = basic?.secret ?? body.client_secret;
      if (!clientId || !secret) {
        throw problems.clientCredentialsMissing();
      }
      const grant = body.grant_type ?? request.query.grant_type;
      if (grant === undefined || grant === '') {
        throw problems.grantTypeMissing();
      }
      if (grant !== 'client_credentials') {
        throw problems.grantTypeUnsupported(grant);
      }
      reply.header('Cache-Control', 'no-store').header('Pragma', 'no-cache');
      // Guessing is throttled per client id (per address, and over all addresses) as well as by
      // the per-address rate limit above.
      const wait = throttle.retryAfterSeconds(clientId, request.ip);
      if (wait > 0) {
        throw problems.tokenRequestsThrottled(wait);
      }
      try {
        const token = await deps.auth.issueToken(clientId, secret, body.scope);
        throttle.succeeded(clientId, request.ip);
        return token;
      } catch (e) {
        if (e instanceof ProblemError && e.key === 'invalid-credentials') throttle.failed(clientId, request.ip);
        throw e;
      }
    },
  );

  app.get(
    METADATA_PATH,
    {
      schema: {
        operationId: 'getAuthorizationServerMetadata',
        tags: ['Access'],
        summary: 'OAuth 2.0 authorization server metadata (RFC 8414)',
        description:
          '`issuer` is the configured public URL (`--public-url`), else the address fleetgate listens on. OAuth2 libraries discover the token endpoint here.',
        security: [],
        response: { 200: AuthorizationServerMetadata, ...problemResponses(429, 500) },
      },
    },
    async () => {
      const issuer = typeof base === 'function' ? base() : base;
      return {
        issuer,
        token_endpoint: `${issuer}${TOKEN_PATH}`,
        token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
        grant_types_supported: ['client_credentials'],
        // No authorization endpoint: client credentials need none (RFC 8414 still asks for the member).
        response_types_supported: [],
        scopes_supported: [...SCOPES],
        service_documentation: `${issuer}/docs`,
      };
    },
  );
}

/** What `scopes` lists in the OpenAPI document's oauth2 flow. */
export function scopeDescriptions(): Record<string, string> {
  return Object.fromEntries(SCOPES.map((s) => [s, SCOPE_DESCRIPTIONS[s] ?? `Scope ${s}.`]));
}

const DEFAULT_OAUTH_ERROR: Record<number, OAuthErrorCode> = {
  401: 'invalid_client',
  429: 'temporarily_unavailable',
  503: 'temporarily_unavailable',
};

// RFC 6749 §5.2 allows only these characters in error_description.
const descriptionText = (s: unknown): string => String(s ?? '').replace(/[^\x20-\x21\x23-\x5B\x5D-\x7E]/g, ' ');

/**
 * RFC 6749 §5.2: the token endpoint answers errors as `application/json` with an `error` code,
 * which OAuth2 libraries read. The one error handler has rendered the problem already; this
 * puts `error` and `error_description` before its members and gives 401 the `Basic` challenge.
 */
async function asOAuthError(request: FastifyRequest, reply: FastifyReply, payload: unknown): Promise<unknown> {
  const status = reply.statusCode;
  if (status < 400 || typeof payload !== 'string') return payload;
  if (!String(reply.getHeader('content-type') ?? '').startsWith(PROBLEM_CONTENT_TYPE)) return payload;
  const problem = JSON.parse(payload) as Record<string, unknown>;
  const error =
    typeof problem.error === 'string'
      ? problem.error
      : (DEFAULT_OAUTH_ERROR[status] ?? (status >= 500 ? 'server_error' : 'invalid_request'));
  // §5.2: a client that authenticated with the Authorization header gets the challenge of its
  // scheme (MUST), and so does one that sent no credentials; a form-body client gets the body alone.
  const formSecret = (request.body as { client_secret?: unknown } | undefined)?.client_secret;
  if (status === 401 && (request.headers.authorization !== undefined || formSecret === undefined)) {
    reply.header('WWW-Authenticate', 'Basic realm="fleetgate"');
  }
  reply.header('Cache-Control', 'no-store').header('Pragma', 'no-cache').type('application/json');
  return JSON.stringify({ error, error_description: descriptionText(problem.detail), ...problem });
}

function parseBasic(header: string | undefined): { id: string; secret: string } | undefined {
  const m = header ? /^Basic +([A-Za-z0-9+/]+=*)$/i.exec(header) : null;
  if (!m) return undefined;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 1) return undefined;
  // RFC 6749 §2.3.1: both parts are form-urlencoded inside Basic (a space is `+`).
  const formDecode = (s: string): string => decodeURIComponent(s.replaceAll('+', ' '));
  try {
    return { id: formDecode(decoded.slice(0, colon)), secret: formDecode(decoded.slice(colon + 1)) };
  } catch {
    return undefined;
  }
}
