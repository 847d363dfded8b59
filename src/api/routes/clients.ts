import { Type } from 'typebox';
import { SCOPES } from '../../services/auth-service.js';
import { ApiClientView, scopedProblemResponses } from '../schemas.js';
import type { Api, ApiDeps } from '../server.js';

const ClientIdParam = Type.Object({ client_id: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }) });
const errors = scopedProblemResponses(404);
const security: Array<Record<string, string[]>> = [{ bearer: [] }, { consoleSession: [] }];

/** The fleet's API clients; scope `admin`. A secret is shown once, when created. */
export function clientRoutes(app: Api, { auth }: ApiDeps): void {
  app.get(
    '/clients',
    {
      config: { scope: 'admin' },
      schema: {
        operationId: 'listClients',
        tags: ['Administration'],
        summary: "List the fleet's API clients (never their secrets)",
        security,
        response: { 200: Type.Object({ items: Type.Array(ApiClientView) }), ...errors },
      },
    },
    async (request) => ({ items: await auth.listClients(request.principal!.fleetId) }),
  );

  app.post(
    '/clients',
    {
      config: { scope: 'admin' },
      schema: {
        operationId: 'createClient',
        tags: ['Administration'],
        summary: 'Create an API client; the answer holds its secret, shown only this once',
        security,
        body: Type.Object({
          name: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
          scopes: Type.Array(Type.Enum(SCOPES), { minItems: 1, uniqueItems: true }),
        }),
        response: {
          201: Type.Object({ ...ApiClientView.properties, client_secret: Type.String() }),
          ...errors,
        },
      },
    },
    async (request, reply) => {
      reply.header('Cache-Control', 'no-store');
      const { scopes, name } = request.body;
      return reply.status(201).send(await auth.createClient(request.principal!.fleetId, scopes, name));
    },
  );

  app.delete(
    '/clients/:client_id',
    {
      config: { scope: 'admin' },
      schema: {
        operationId: 'deleteClient',
        tags: ['Administration'],
        summary: 'Delete an API client; its tokens are refused within a minute',
        security,
        params: ClientIdParam,
        response: { 204: { type: 'null' }, ...errors },
      },
    },
    async (request, reply) => {
      await auth.deleteClient(request.principal!.fleetId, request.params.client_id);
      return reply.status(204).send(null);
    },
  );
}
