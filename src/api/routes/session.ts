import { Type } from 'typebox';
import { problems } from '../../domain/problems.js';
import { problemResponses, User } from '../schemas.js';
import { type Api, type ApiDeps, assertSameOrigin } from '../server.js';

/** The console's session cookie: HttpOnly, SameSite=Strict, expiring with the session. */
export const SESSION_COOKIE = 'fleetgate_session';

const SignInBody = Type.Object({
  email: Type.String({ minLength: 1, maxLength: 254 }),
  password: Type.String({ minLength: 1, maxLength: 200 }),
});
const SessionView = Type.Object({
  user: Type.Pick(User, ['user_id', 'fleet_id', 'email', 'role']),
  scopes: Type.Array(Type.String()),
});

/** People sign in to the console with email and password; the session lives in a cookie. */
export function sessionRoutes(app: Api, { users }: ApiDeps): void {
  app.post(
    '/auth/session',
    {
      schema: {
        operationId: 'signIn',
        tags: ['Console'],
        summary: 'Sign in to the console',
        description: `Sets the session cookie \`${SESSION_COOKIE}\` (HttpOnly, SameSite=Strict). Needs the header \`x-fleetgate-console\` (CSRF). Failed sign-ins are throttled per account and source (429 with Retry-After).`,
        body: SignInBody,
        response: { 200: SessionView, ...problemResponses(400, 401, 403, 429, 500, 503) },
      },
      // Per source address, on top of the per-account throttle in UserService.
      config: { rateLimit: { max: 30, timeWindow: 60_000 } },
    },
    async (request, reply) => {
      assertSameOrigin(request);
      const signedIn = await users.signIn(request.body.email, request.body.password, request.ip);
      reply.setCookie(SESSION_COOKIE, signedIn.sessionId, {
        httpOnly: true,
        sameSite: 'strict',
        secure: request.protocol === 'https',
        path: '/',
        expires: new Date(signedIn.expiresAt),
      });
      reply.header('Cache-Control', 'no-store');
      const principal = await users.authenticate(signedIn.sessionId);
      return { user: signedIn.user, scopes: [...principal.scopes] };
    },
  );

  app.get(
    '/auth/session',
    {
      schema: {
        operationId: 'getSession',
        tags: ['Console'],
        summary: 'The signed-in console user and what the role may do',
        security: [{ consoleSession: [] }],
        response: { 200: SessionView, ...problemResponses(401, 429, 500, 503) },
      },
    },
    async (request, reply) => {
      const id = request.cookies[SESSION_COOKIE];
      if (!id) throw problems.notSignedIn();
      const principal = await users.authenticate(id);
      reply.header('Cache-Control', 'no-store');
      const u = principal.user!;
      return {
        user: { user_id: u.userId, fleet_id: principal.fleetId, email: u.email, role: u.role as 'viewer' },
        scopes: [...principal.scopes],
      };
    },
  );

  app.delete(
    '/auth/session',
    {
      schema: {
        operationId: 'signOut',
        tags: ['Console'],
        summary: 'Sign out of the console',
        description: 'Ends the session and clears its cookie. Needs the header `x-fleetgate-console` (CSRF).',
        security: [{ consoleSession: [] }],
        response: { 204: { type: 'null', description: 'Signed out.' }, ...problemResponses(403, 429, 500, 503) },
      },
    },
    async (request, reply) => {
      assertSameOrigin(request);
      const id = request.cookies[SESSION_COOKIE];
      if (id) await users.signOut(id);
      reply.clearCookie(SESSION_COOKIE, { path: '/', httpOnly: true, sameSite: 'strict' });
      return reply.status(204).send(null);
    },
  );
}
