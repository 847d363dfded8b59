import { Type } from 'typebox';
import { problemResponses, scopedProblemResponses, User, UserRole } from '../schemas.js';
import type { Api, ApiDeps } from '../server.js';

const UserIdParam = Type.Object({ user_id: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }) });
const errors = scopedProblemResponses(404);
const security: Array<Record<string, string[]>> = [{ bearer: [] }, { consoleSession: [] }];

/** The fleet's console users; scope `admin` (the console's admin role). */
export function userRoutes(app: Api, { users }: ApiDeps): void {
  app.get(
    '/users',
    {
      config: { scope: 'admin' },
      schema: {
        operationId: 'listUsers',
        tags: ['Administration'],
        summary: "List the fleet's console users",
        security,
        response: { 200: Type.Object({ items: Type.Array(User) }), ...errors },
      },
    },
    async (request) => ({ items: await users.list(request.principal!.fleetId) }),
  );

  app.post(
    '/users',
    {
      config: { scope: 'admin' },
      schema: {
        operationId: 'createUser',
        tags: ['Administration'],
        summary: 'Add a console user to the fleet',
        description: 'The password (10–200 characters) is stored as a scrypt hash. 409 when the email is taken.',
        security,
        body: Type.Object({
          email: Type.String({ maxLength: 254 }),
          role: UserRole,
          password: Type.String({ maxLength: 200 }),
        }),
        response: { 201: User, ...errors, ...problemResponses(409) },
      },
    },
    async (request, reply) =>
      reply.status(201).send(await users.create({ fleetId: request.principal!.fleetId, ...request.body })),
  );

  app.patch(
    '/users/:user_id',
    {
      config: { scope: 'admin' },
      schema: {
        operationId: 'updateUser',
        tags: ['Administration'],
        summary: "Change a user's role or password",
        description: "A new password ends the user's sessions.",
        security,
        params: UserIdParam,
        body: Type.Object(
          { role: Type.Optional(UserRole), password: Type.Optional(Type.String({ maxLength: 200 })) },
          { additionalProperties: false },
        ),
        response: { 200: User, ...errors },
      },
    },
    async (request) => users.update(request.principal!.fleetId, request.params.user_id, request.body),
  );

  app.delete(
    '/users/:user_id',
    {
      config: { scope: 'admin' },
      schema: {
        operationId: 'deleteUser',
        tags: ['Administration'],
        summary: 'Remove a console user',
        description: 'Its sessions end with it.',
        security,
        params: UserIdParam,
        response: { 204: { type: 'null' }, ...errors },
      },
    },
    async (request, reply) => {
      await users.delete(request.principal!.fleetId, request.params.user_id);
      return reply.status(204).send(null);
    },
  );
}
