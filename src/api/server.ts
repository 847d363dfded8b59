import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import net from 'node:net';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance, type FastifyRequest, LogController } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { ProblemError } from '../domain/problems.js';
import { isUuid } from '../lib/ids.js';
import { type AuthService, hasScope, type Principal, type Scope } from '../services/auth-service.js';
import type { CommandService } from '../services/command-service.js';
import type { CredentialsService } from '../services/credentials-service.js';
import type { VehicleService } from '../services/vehicle-service.js';
import type { TelematicsAdapter } from '../telematics/adapter.js';
import type { Metrics } from './metrics.js';
import { problemErrorHandler, sendProblem } from './problem-response.js';
import { authRoutes } from './routes/auth.js';
import { commandRoutes } from './routes/commands.js';
import { credentialsRoutes } from './routes/credentials.js';
import { operationsRoutes } from './routes/operations.js';
import { problemRoutes } from './routes/problems.js';
import { telematicsBrandRoutes } from './routes/telematics-brands.js';
import { vehicleRoutes } from './routes/vehicles.js';

export interface ReadinessCheck {
  name: string;
  check(): Promise<void>;
}

/** What the HTTP layer calls; the composition root (app.ts) builds it. */
export interface ApiDeps {
  config: Readonly<Config>;
  logger: Logger;
  auth: AuthService;
  vehicles: VehicleService;
  commands: CommandService;
  credentials: CredentialsService;
  adapters: ReadonlyMap<string, TelematicsAdapter>;
  readiness: ReadinessCheck[];
  metrics: Metrics;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
  interface FastifyContextConfig {
    /** The scope a route needs (SPEC §5); routes without it are public. */
    scope?: Scope;
  }
}

export type Api = FastifyInstance<
  import('node:http').Server,
  import('node:http').IncomingMessage,
  import('node:http').ServerResponse,
  Logger,
  TypeBoxTypeProvider
>;

const BODY_LIMIT = 64 * 1024;

export async function buildServer(deps: ApiDeps): Promise<Api> {
  const { config } = deps;
  const app = Fastify({
    loggerInstance: deps.logger,
    // SPEC §2: every response and log line carries the flow id; a caller's own UUID is kept.
    genReqId: (req) => {
      const given = req.headers['x-flow-id'];
      return isUuid(given) ? given : randomUUID();
    },
    logController: new LogController({ requestIdLogLabel: 'flow_id' }),
    bodyLimit: BODY_LIMIT,
    trustProxy: true,
    ajv: { customOptions: { allErrors: true, removeAdditional: false, coerceTypes: 'array', useDefaults: true } },
    forceCloseConnections: 'idle',
  }).withTypeProvider<TypeBoxTypeProvider>() as unknown as Api;

  app.setErrorHandler(problemErrorHandler(config.publicUrl));
  app.setNotFoundHandler((request, reply) =>
    sendProblem(
      request,
      reply,
      config.publicUrl,
      'resource-not-found',
      `Nothing is found at ${request.method} ${request.url.split('?')[0]}.`,
    ),
  );

  // Commands may come with an empty body and `Content-Type: application/json` (the reference's
  // own curl example), which Fastify's default parser rejects.
  const defaultJson = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') return done(null, undefined);
    defaultJson(req, text, (err, value) => {
      if (!err) return done(null, value);
      done(new ProblemError('invalid-json', `The request body is not valid JSON: ${err.message}.`), undefined);
    });
  });
  // RFC 6749 §4.4.2: the token request may come as a form.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(typeof body === 'string' ? body : body.toString('utf8'))));
  });

  // A POST without a body is validated as `{}`, so a missing field is named, not "body".
  app.addHook('preValidation', async (request) => {
    if (request.body === undefined && request.method !== 'GET' && request.method !== 'DELETE') request.body = {};
  });

  app.addHook('onRequest', async (request, reply) => {
    reply.header('X-Flow-ID', request.id);
    const scope = request.routeOptions.config.scope;
    if (scope) request.principal = await authorize(deps.auth, request, scope);
  });

  // Draining: every answer closes its connection, so no client is left holding an idle
  // keep-alive socket that the stopping server would close under a request in transit.
  app.addHook('onSend', async (_request, reply) => {
    if (deps.commands.isDraining) reply.header('Connection', 'close');
  });

  await app.register(rateLimit, {
    global: true,
    hook: 'preHandler',
    max: config.rateLimitPerMinute,
    timeWindow: 60_000,
    keyGenerator: (request: FastifyRequest) => request.principal?.clientId ?? `ip:${request.ip}`,
    allowList: (request: FastifyRequest) => request.url.startsWith('/health') || request.url.startsWith('/metrics'),
    errorResponseBuilder: (_request, context) =>
      new ProblemError(
        'too-many-requests',
        `Rate limit of ${context.max} requests per minute exceeded; retry in ${Math.ceil(context.ttl / 1000)} s.`,
        {},
        {
          'Retry-After': String(Math.ceil(context.ttl / 1000)),
        },
      ),
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'fleetgate Vehicle Commands API',
        version: '1.0.0',
        description:
          'Send commands to shared-mobility vehicles and get their verified state or a typed problem. Errors are application/problem+json (RFC 9457); every response carries X-Flow-ID.',
      },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
          clientBasic: { type: 'http', scheme: 'basic' },
        },
      },
      tags: [
        { name: 'Commands', description: 'Vehicle Commands API (SPEC §1)' },
        { name: 'Vehicles', description: 'Vehicle lifecycle (SPEC §4)' },
        { name: 'Telematics', description: 'Brands, models and credentials' },
        { name: 'Access', description: 'OAuth2 client credentials (SPEC §5)' },
        { name: 'Operations', description: 'Health and metrics' },
      ],
    },
    hideUntagged: true,
  });
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { deepLinking: true } });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  authRoutes(app, deps);
  vehicleRoutes(app, deps);
  commandRoutes(app, deps);
  telematicsBrandRoutes(app, deps);
  credentialsRoutes(app, deps);
  problemRoutes(app, deps);
  operationsRoutes(app, deps);

  deps.metrics.instrument(app);
  return app;
}

/**
 * The first step of closing the API: stops accepting connections and lets the open ones end by
 * themselves (every answer while draining closes its connection), for at most `lingerMs`.
 * Node's own http close would at once close every connection without a request in progress,
 * including one whose request is still unread in the kernel's buffer: its client sees a reset,
 * with no answer. What is left after `lingerMs` is closed by Fastify's close.
 */
export async function stopAccepting(server: http.Server, lingerMs: number): Promise<void> {
  if (!server.listening) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, lingerMs);
    // net.Server's close: it calls back once every connection has ended.
    net.Server.prototype.close.call(server, () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

// Verified tokens, so a client's every request does not pay an HS256 check through WebCrypto
// (11 % of fleetgate's busy CPU per command in the bench profile). A token is only ever valid or
// not by its signature and `exp`: an entry lives until the token's expiry, at most a minute.
const TOKEN_CACHE_MAX = 10_000;
const TOKEN_CACHE_TTL_MS = 60_000;
const verifiedTokens = new WeakMap<AuthService, Map<string, { principal: Principal; until: number }>>();

async function verifyCached(auth: AuthService, token: string): Promise<Principal> {
  let cache = verifiedTokens.get(auth);
  if (!cache) {
    cache = new Map();
    verifiedTokens.set(auth, cache);
  }
  const now = Date.now();
  const hit = cache.get(token);
  if (hit && now < hit.until) return hit.principal;
  const principal = await auth.verifyToken(token);
  const exp = expiryOf(token);
  if (exp !== undefined) {
    if (cache.size >= TOKEN_CACHE_MAX) cache.clear();
    cache.set(token, { principal, until: Math.min(exp, now + TOKEN_CACHE_TTL_MS) });
  }
  return principal;
}

/** `exp` of a token whose signature was just verified, in epoch ms. */
function expiryOf(token: string): number | undefined {
  try {
    const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as {
      exp?: unknown;
    };
    return typeof payload.exp === 'number' ? payload.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

async function authorize(auth: AuthService, request: FastifyRequest, scope: Scope): Promise<Principal> {
  const header = request.headers.authorization;
  if (!header) {
    throw new ProblemError(
      'invalid-credentials',
      'The Authorization header is missing; send `Authorization: Bearer <access_token>`.',
    );
  }
  const m = /^Bearer +([A-Za-z0-9._~+/-]+=*)$/i.exec(header);
  if (!m) throw new ProblemError('invalid-credentials', 'The Authorization header is not a bearer token.');
  const principal = await verifyCached(auth, m[1]!);
  if (!hasScope(principal, scope)) {
    throw new ProblemError('forbidden-resource', `The access token lacks the scope '${scope}' this endpoint needs.`, {
      required_scope: scope,
    });
  }
  return principal;
}
