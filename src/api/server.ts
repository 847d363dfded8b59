import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import net from 'node:net';
import cookie from '@fastify/cookie';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance, type FastifyRequest, LogController } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { ProblemError, problems } from '../domain/problems.js';
import { isUuid } from '../lib/ids.js';
import { credentialParameters, redactUrl } from '../lib/redact-url.js';
import { type AuthService, hasScope, type Principal, type Scope } from '../services/auth-service.js';
import type { CommandService } from '../services/command-service.js';
import type { CredentialsService } from '../services/credentials-service.js';
import type { EventConsumerService } from '../services/event-consumer-service.js';
import type { EventService } from '../services/event-service.js';
import type { UserService } from '../services/user-service.js';
import type { VehicleService } from '../services/vehicle-service.js';
import type { TelematicsAdapter } from '../telematics/adapter.js';
import {
  clientErrorProblem,
  handleExpectations,
  MethodTable,
  notFoundOrMethodNotAllowed,
  requireHost,
} from './http-conformance.js';
import type { Metrics } from './metrics.js';
import { documentRoute, finishDocument, securitySchemes } from './openapi.js';
import { type PublicBase, problemErrorHandler, sendProblem } from './problem-response.js';
import { publicBase } from './public-base.js';
import { authRoutes } from './routes/auth.js';
import { clientRoutes } from './routes/clients.js';
import { commandRoutes } from './routes/commands.js';
import { consoleRoutes } from './routes/console.js';
import { credentialsRoutes } from './routes/credentials.js';
import { eventConsumerRoutes } from './routes/event-consumers.js';
import { eventRoutes } from './routes/events.js';
import { operationsRoutes } from './routes/operations.js';
import { problemRoutes } from './routes/problems.js';
import { SESSION_COOKIE, sessionRoutes } from './routes/session.js';
import { telematicsBrandRoutes } from './routes/telematics-brands.js';
import { userRoutes } from './routes/users.js';
import { vehicleRoutes } from './routes/vehicles.js';
import { PROBLEM_SCHEMA_ID, Problem } from './schemas.js';

export interface ReadinessCheck {
  name: string;
  check(): Promise<void>;
  /**
   * A part the instance works on without (e.g. RabbitMQ: events wait in the outbox): named in
   * the answer while it is down, but the instance stays ready and keeps taking commands.
   */
  optional?: boolean;
}

/** What the HTTP layer calls; the composition root (app.ts) builds it. */
export interface ApiDeps {
  config: Readonly<Config>;
  logger: Logger;
  auth: AuthService;
  vehicles: VehicleService;
  commands: CommandService;
  credentials: CredentialsService;
  events: EventService;
  /** Routes of the delivery channels (events/channels/<name>/), e.g. /webhooks. */
  channelRoutes?: ReadonlyArray<(app: Api) => void>;
  users: UserService;
  eventConsumers: EventConsumerService;
  adapters: ReadonlyMap<string, TelematicsAdapter>;
  readiness: ReadinessCheck[];
  metrics: Metrics;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
  interface FastifyContextConfig {
    /** The scope a route needs; routes without it are public. */
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
  // type_documentation links: the configured public URL, else the address this server listens on.
  const base: PublicBase = publicBase(config, () => app.server);
  const errorHandler = problemErrorHandler(base, { bodyLimit: BODY_LIMIT });
  // Request log lines carry the URL with credential parameters redacted (Fastify reads a logger's
  // `serializers` property over its own).
  const httpLogger = Object.assign(deps.logger.child({}), {
    serializers: {
      req: (req: FastifyRequest) => ({
        method: req.method,
        url: redactUrl(req.url),
        host: req.host,
        remoteAddress: req.ip,
        remotePort: req.socket?.remotePort,
      }),
    },
  });
  const app = Fastify({
    loggerInstance: httpLogger,
    // Every response and log line carries the flow id; a caller's own UUID is kept.
    genReqId: (req) => {
      const given = req.headers['x-flow-id'];
      return isUuid(given) ? given : randomUUID();
    },
    logController: new LogController({ requestIdLogLabel: 'flow_id' }),
    bodyLimit: BODY_LIMIT,
    // Forwarding headers only from configured proxies (off by default): anyone can send
    // X-Forwarded-For, and per-address limits keyed on it would be no limits.
    trustProxy: config.trustedProxies.length > 0 ? config.trustedProxies : false,
    // OWASP API4: headers and body must arrive in time; Node answers through clientErrorHandler
    // (408 request-timeout) and closes. Checked every second, not Node's default 30 s.
    requestTimeout: config.requestBodyTimeoutMs,
    ajv: { customOptions: { allErrors: true, removeAdditional: false, coerceTypes: 'array', useDefaults: true } },
    forceCloseConnections: 'idle',
    // Ids longer than any fleetgate issues still answer 404, not Fastify's 414 (see http-conformance.ts).
    routerOptions: { maxParamLength: 1000 },
    // Host is checked in onRequest so its absence is answered as a problem, not by Node itself.
    http: {
      requireHostHeader: false,
      headersTimeout: config.requestBodyTimeoutMs,
      connectionsCheckingInterval: Math.min(1000, config.requestBodyTimeoutMs),
    },
    frameworkErrors: (error, request, reply) => errorHandler(error, request, reply),
    clientErrorHandler: clientErrorProblem(base, deps.logger),
  }).withTypeProvider<TypeBoxTypeProvider>() as unknown as Api;

  app.setErrorHandler(errorHandler);
  const methods = new MethodTable();
  app.addHook('onRoute', (route) => methods.add(route.url, route.method));
  app.setNotFoundHandler(notFoundOrMethodNotAllowed(base, methods));
  handleExpectations(app.server, base, BODY_LIMIT);

  // Commands may come with an empty body and `Content-Type: application/json` (the reference's
  // own curl example), which Fastify's default parser rejects.
  const defaultJson = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') return done(null, undefined);
    defaultJson(req, text, (err, value) => {
      if (!err) return done(null, value);
      done(problems.invalidJson(err.message), undefined);
    });
  });
  // Only JSON and forms are read; any other body is 415 (RFC 9110 §15.5.16), not a text string.
  app.removeContentTypeParser('text/plain');
  // RFC 6749 §4.4.2: the token request may come as a form.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    // JSON sent with the form type would become one field named after the whole text, secrets
    // included, and be echoed in the validation problem: refuse it without echoing anything.
    if (/^\s*[{[]/.test(text)) {
      return done(problems.jsonSentAsForm(), undefined);
    }
    done(null, Object.fromEntries(new URLSearchParams(text)));
  });

  // A POST without a body is validated as `{}`, so a missing field is named, not "body".
  app.addHook('preValidation', async (request) => {
    if (request.body === undefined && request.method !== 'GET' && request.method !== 'DELETE') request.body = {};
  });

  await app.register(cookie);
  app.addHook('onRequest', async (request, reply) => {
    reply.header('X-Flow-ID', request.id);
    requireHost(request);
    refuseCredentialsInUrl(request);
    const scope = request.routeOptions.config.scope;
    if (scope) request.principal = await authorize(deps, request, scope);
  });

  // The whole request, arrival to answer, is bounded too (commands end by their own, shorter budget).
  app.addHook('onRequest', async (request, reply) => {
    const timer = setTimeout(() => {
      if (reply.sent || reply.raw.headersSent) return;
      reply.header('Connection', 'close');
      sendProblem(
        request,
        reply,
        base,
        'service-unavailable',
        `The request did not complete within ${config.requestTimeoutMs / 1000} s; retry later.`,
      );
    }, config.requestTimeoutMs);
    timer.unref();
    reply.raw.once('close', () => clearTimeout(timer));
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
    keyGenerator: (request: FastifyRequest) => {
      const p = request.principal;
      return p?.user ? `user:${p.user.userId}` : (p?.clientId ?? `ip:${request.ip}`);
    },
    allowList: (request: FastifyRequest) => request.url.startsWith('/health') || request.url.startsWith('/metrics'),
    errorResponseBuilder: (_request, context) => problems.rateLimited(context.max, Math.ceil(context.ttl / 1000)),
  });

  app.addSchema({ ...Problem, $id: PROBLEM_SCHEMA_ID });
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'fleetgate Vehicle Commands API',
        version: '1.0.0',
        description:
          'Send commands to shared-mobility vehicles and get their verified state or a typed problem. Errors are application/problem+json (RFC 9457); every response carries X-Flow-ID.',
        license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
      },
      // Relative unless a public URL is configured: the instance that served the document.
      servers: [{ url: config.publicUrl ?? '/', description: 'This fleetgate instance' }],
      components: {
        securitySchemes: {
          ...securitySchemes(config.publicUrl),
          consoleSession: {
            type: 'apiKey',
            in: 'cookie',
            name: SESSION_COOKIE,
            description:
              "The console's session (POST /auth/session), for the user's role; changes also need the header `x-fleetgate-console`.",
          },
        },
      },
      tags: [
        {
          name: 'Commands',
          description:
            'Send a command to a vehicle and get its answer in the same request: the vehicle state on success, a problem otherwise. One command at a time per vehicle; `Idempotency-Key` makes retries safe.',
        },
        {
          name: 'Vehicles',
          description:
            'Add, read, change and delete vehicles; read their latest state. A vehicle can take commands once its setup has SUCCEEDED.',
        },
        { name: 'Telematics', description: 'Brands, models and credentials' },
        {
          name: 'Access',
          description: 'Access tokens for API clients through the OAuth 2.0 client credentials grant.',
        },
        {
          name: 'Events',
          description:
            'What happened to vehicles and commands: pull pages of events, follow them as a stream, or have them delivered to webhooks.',
        },
        { name: 'Administration', description: "The fleet's API clients and console users" },
        { name: 'Console', description: 'Sign-in of people to the console at /console' },
        { name: 'Operations', description: 'Health and metrics' },
      ],
    },
    hideUntagged: true,
    // Shared schemas keep their $id as their name (components.schemas.Problem).
    refResolver: {
      buildLocalReference: (json, _base, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`),
    },
    transform: documentRoute,
    transformObject: finishDocument,
  });
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { deepLinking: true } });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  authRoutes(app, deps);
  sessionRoutes(app, deps);
  clientRoutes(app, deps);
  userRoutes(app, deps);
  consoleRoutes(app, deps);
  vehicleRoutes(app, deps);
  commandRoutes(app, deps);
  telematicsBrandRoutes(app, deps);
  credentialsRoutes(app, deps);
  eventRoutes(app, deps);
  for (const routes of deps.channelRoutes ?? []) routes(app);
  eventConsumerRoutes(app, deps);
  problemRoutes(app, deps);
  operationsRoutes(app, deps);

  deps.metrics.instrument(app);
  return app;
}

/** Credentials in a URL end up in proxy and server logs: refuse them, and say where they go. */
function refuseCredentialsInUrl(request: FastifyRequest): void {
  const found = credentialParameters(request.url);
  if (found.length === 0) return;
  throw problems.credentialsInUrl(found);
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

// RFC 6750 §3: API 401s and 403s say how to authenticate; no error code when no token was sent.
const REALM = 'fleetgate';
const quoted = (s: string): string => s.replace(/[^\x20-\x21\x23-\x5B\x5D-\x7E]/g, ' ');
const bearerChallenge = (params: Record<string, string> = {}): string =>
  [`Bearer realm="${REALM}"`, ...Object.entries(params).map(([k, v]) => `${k}="${quoted(v)}"`)].join(', ');

/**
 * The caller of a route that needs `scope`: a bearer token (API clients), or else the console's
 * session cookie (people; the role's scopes). Cookies ride along on any request a browser makes,
 * so a cookie-authenticated request that changes something must also prove it comes from the
 * console itself (assertSameOrigin).
 */
async function authorize(deps: ApiDeps, request: FastifyRequest, scope: Scope): Promise<Principal> {
  const header = request.headers.authorization;
  const session = request.cookies[SESSION_COOKIE];
  let principal: Principal;
  if (header === undefined && session) {
    if (!SAFE_METHODS.has(request.method)) assertSameOrigin(request);
    principal = await deps.users.authenticate(session);
  } else {
    principal = await bearerPrincipal(deps.auth, header);
  }
  if (!hasScope(principal, scope)) {
    if (principal.user) {
      throw problems.roleLacksScope(principal.user.role, scope);
    }
    throw problems.tokenLacksScope(scope, {
      'WWW-Authenticate': bearerChallenge({ error: 'insufficient_scope', scope }),
    });
  }
  return principal;
}

/** The API client behind an `Authorization: Bearer` header, or a 401 with its RFC 6750 challenge. */
async function bearerPrincipal(auth: AuthService, header: string | undefined): Promise<Principal> {
  const m = header ? /^Bearer +(\S*)$/i.exec(header) : null;
  if (!m) {
    throw problems.bearerTokenMissing(Boolean(header), { 'WWW-Authenticate': bearerChallenge() });
  }
  try {
    if (!/^[A-Za-z0-9._~+/-]+=*$/.test(m[1]!)) {
      throw problems.accessTokenMalformed();
    }
    return await verifyCached(auth, m[1]!);
  } catch (e) {
    if (!(e instanceof ProblemError) || e.key !== 'invalid-credentials') throw e;
    throw new ProblemError(e.key, e.message, e.extensions, {
      ...e.headers,
      'WWW-Authenticate': bearerChallenge({ error: 'invalid_token', error_description: e.message }),
    });
  }
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** The header the console sends with every request; a cross-site form or link cannot set it. */
export const CONSOLE_HEADER = 'x-fleetgate-console';

/**
 * CSRF defence for cookie-authenticated changes (OWASP: custom request header, plus an Origin
 * check): browsers let no other site send a custom header without a CORS preflight, which
 * fleetgate never grants, and they name the page's origin in `Origin`.
 */
export function assertSameOrigin(request: FastifyRequest): void {
  if (request.headers[CONSOLE_HEADER] === undefined) {
    throw problems.consoleHeaderMissing(CONSOLE_HEADER);
  }
  const origin = request.headers.origin;
  if (origin !== undefined && origin !== `${request.protocol}://${request.host}`) {
    throw problems.originRefused(origin);
  }
}
