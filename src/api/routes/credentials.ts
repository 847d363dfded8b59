import { Type } from 'typebox';
import { Problem } from '../schemas.js';
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
const errors = { 400: Problem, 401: Problem, 403: Problem, 404: Problem };

/** Third-party credentials of the fleet (e.g. a Smartcar application and account). */
export function credentialsRoutes(app: Api, { credentials }: ApiDeps): void {
  app.post(
    '/credentials',
    {
      config: { scope: 'vehicles' },
      schema: {
        tags: ['Telematics'],
        summary: 'Store third-party credentials',
        description:
          'SMARTCAR: `{"telematics_brand": "SMARTCAR", "client_id", "client_secret", "refresh_token"}`. Secrets are encrypted at rest and never returned.',
        security: [{ bearer: [] }],
        body: Type.Object({ telematics_brand: Type.String({ maxLength: 32 }) }, { additionalProperties: true }),
        response: { 201: CredentialsView, ...errors },
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
        summary: "List the fleet's credentials",
        security: [{ bearer: [] }],
        querystring: Type.Object({
          limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }),
          page_token: Type.Optional(Type.String({ maxLength: 400 })),
        }),
        response: {
          200: Type.Object({
            items: Type.Array(CredentialsView),
            next_page_token: Type.Union([Type.String(), Type.Null()]),
          }),
          ...errors,
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
        summary: 'Get credentials (without secrets)',
        security: [{ bearer: [] }],
        params: CredentialsIdParam,
        response: { 200: CredentialsView, ...errors },
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
        summary: 'Delete credentials',
        description: 'Refused with 409 conflicting-resource while vehicles use them.',
        security: [{ bearer: [] }],
        params: CredentialsIdParam,
        response: { 204: { type: 'null' }, ...errors, 409: Problem },
      },
    },
    async (request, reply) => {
      await credentials.delete(request.principal!.fleetId, request.params.credentials_id);
      return reply.status(204).send(null);
    },
  );
}
