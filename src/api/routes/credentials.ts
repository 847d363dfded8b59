import { Type } from 'typebox';
import { scopedProblemResponses } from '../schemas.js';
import type { Api, ApiDeps } from '../server.js';

const CredentialsView = Type.Object(
  {
    credentials_id: Type.String(),
    telematics_brand: Type.String(),
    name: Type.Union([Type.String(), Type.Null()]),
    created_at: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: true, description: 'Credentials without their secrets (never returned).' },
);
const CredentialsIdParam = Type.Object({ credentials_id: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }) });

/** Third-party credentials of the fleet (e.g. a Smartcar application and account). */
export function credentialsRoutes(app: Api, { credentials }: ApiDeps): void {
  app.post(
    '/credentials',
    {
      config: { scope: 'vehicles' },
      schema: {
        tags: ['Telematics'],
        operationId: 'createCredentials',
        summary: 'Store third-party credentials',
        description:
          'SMARTCAR: `{"telematics_brand": "SMARTCAR", "client_id", "client_secret", "refresh_token"}`. Secrets are encrypted at rest and never returned.',
        body: Type.Object({ telematics_brand: Type.String({ maxLength: 32 }) }, { additionalProperties: true }),
        response: { 201: CredentialsView, ...scopedProblemResponses() },
      },
    },
    async (request, reply) =>
      reply.status(201).send(await credentials.create(request.principal!.fleetId, request.body)),
  );

  app.get(
    '/credentials',
    {
      config: { scope: 'vehicles.ro' },
      schema: {
        tags: ['Telematics'],
        operationId: 'listCredentials',
        summary: "List the fleet's credentials",
        querystring: Type.Object({
          limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }),
          page_token: Type.Optional(Type.String({ maxLength: 400 })),
        }),
        response: {
          200: Type.Object({
            items: Type.Array(CredentialsView),
            next_page_token: Type.Union([Type.String(), Type.Null()]),
          }),
          ...scopedProblemResponses(),
        },
      },
    },
    async (request) => credentials.list(request.principal!.fleetId, request.query.limit, request.query.page_token),
  );

  app.get(
    '/credentials/:credentials_id',
    {
      config: { scope: 'vehicles.ro' },
      schema: {
        tags: ['Telematics'],
        operationId: 'getCredentials',
        summary: 'Get credentials (without secrets)',
        params: CredentialsIdParam,
        response: { 200: CredentialsView, ...scopedProblemResponses(404) },
      },
    },
    async (request) => credentials.get(request.principal!.fleetId, request.params.credentials_id),
  );

  app.delete(
    '/credentials/:credentials_id',
    {
      config: { scope: 'vehicles' },
      schema: {
        tags: ['Telematics'],
        operationId: 'deleteCredentials',
        summary: 'Delete credentials',
        description: 'Refused with 409 conflicting-resource while vehicles use them.',
        params: CredentialsIdParam,
        response: { 204: { type: 'null', description: 'Deleted.' }, ...scopedProblemResponses(404, 409) },
      },
    },
    async (request, reply) => {
      await credentials.delete(request.principal!.fleetId, request.params.credentials_id);
      return reply.status(204).send(null);
    },
  );
}
