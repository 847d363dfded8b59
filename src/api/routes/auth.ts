import { Type } from 'typebox';
import { ProblemError } from '../../domain/problems.js';
import { Problem, TokenResponse } from '../schemas.js';
import type { Api, ApiDeps } from '../server.js';

const TokenQuery = Type.Object({ grant_type: Type.Optional(Type.String({ maxLength: 64 })) });
const TokenBody = Type.Object({
  grant_type: Type.Optional(Type.String({ maxLength: 64 })),
  client_id: Type.Optional(Type.String({ maxLength: 200 })),
  client_secret: Type.Optional(Type.String({ maxLength: 200 })),
  scope: Type.Optional(Type.String({ maxLength: 200 })),
});

/** SPEC §5: OAuth2 client credentials; HTTP Basic or the RFC 6749 form body. */
export function authRoutes(app: Api, deps: ApiDeps): void {
  app.post(
    '/auth/oauth/token',
    {
      schema: {
        tags: ['Access'],
        summary: 'Get an access token (client credentials grant)',
        description:
          'Authenticate with HTTP Basic `client_id:client_secret` (or `client_id`/`client_secret` in a form body). `grant_type=client_credentials` in the query or the form body.',
        security: [{ clientBasic: [] }],
        querystring: TokenQuery,
        body: TokenBody,
        response: { 200: TokenResponse, 400: Problem, 401: Problem },
      },
      config: { rateLimit: { max: 60, timeWindow: 60_000 } },
    },
    async (request, reply) => {
      const body = request.body ?? {};
      const grant = request.query.grant_type ?? body.grant_type;
      if (grant !== 'client_credentials') {
        throw new ProblemError('validation-error', `grant_type: must be client_credentials, got '${grant ?? ''}'.`, {
          errors: [{ field: 'grant_type', message: 'must be client_credentials' }],
        });
      }
      const basic = parseBasic(request.headers.authorization);
      const clientId = basic?.id ?? body.client_id;
      const secret = basic?.secret ?? body.client_secret;
      if (!clientId || !secret) {
        reply.header('WWW-Authenticate', 'Basic realm="fleetgate"');
        throw new ProblemError(
          'invalid-credentials',
          'Client credentials are missing; use HTTP Basic client_id:client_secret.',
        );
      }
      reply.header('Cache-Control', 'no-store');
      return deps.auth.issueToken(clientId, secret, body.scope);
    },
  );
}

function parseBasic(header: string | undefined): { id: string; secret: string } | undefined {
  const m = header ? /^Basic +([A-Za-z0-9+/]+=*)$/i.exec(header) : null;
  if (!m) return undefined;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 1) return undefined;
  // RFC 6749 §2.3.1: both parts are form-urlencoded inside Basic.
  try {
    return { id: decodeURIComponent(decoded.slice(0, colon)), secret: decodeURIComponent(decoded.slice(colon + 1)) };
  } catch {
    return undefined;
  }
}
