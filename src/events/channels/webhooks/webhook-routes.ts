import { Type } from 'typebox';
import { scopedProblemResponses } from '../../../api/schemas.js';
import type { Api } from '../../../api/server.js';
import { EVENT_TYPES } from '../../../domain/events.js';
import type { WebhookService } from './webhook-service.js';

const WebhookView = Type.Object({
  webhook_id: Type.String(),
  url: Type.String(),
  event_types: Type.Union([Type.Array(Type.String()), Type.Null()], {
    description: 'The event types delivered; null: all.',
  }),
  enabled: Type.Boolean(),
  disabled_reason: Type.Union([Type.String(), Type.Null()], {
    description: 'Why fleetgate disabled it (deliveries failed for the whole retry period).',
  }),
  created_at: Type.String({ format: 'date-time' }),
  modified_at: Type.String({ format: 'date-time' }),
});
const Delivery = Type.Object({
  delivery_id: Type.String(),
  event_id: Type.String(),
  event_type: Type.String(),
  vehicle_id: Type.String(),
  attempt: Type.Integer(),
  trigger: Type.String({ enum: ['automatic', 'manual'] }),
  status: Type.String({ enum: ['succeeded', 'failed'] }),
  http_status: Type.Union([Type.Integer(), Type.Null()]),
  latency_ms: Type.Integer(),
  error: Type.Union([Type.String(), Type.Null()]),
  attempted_at: Type.String({ format: 'date-time' }),
});
const Types = Type.Union([Type.Array(Type.String({ enum: [...EVENT_TYPES] }), { maxItems: 50 }), Type.Null()]);
const IdParam = Type.Object({ webhook_id: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }) });
const errors = scopedProblemResponses(404);
const security = [{ bearer: [] }];

/** `/webhooks` (scope `events`): subscriptions of the caller's fleet, their deliveries and retries. */
export function webhookRoutes(app: Api, webhooks: WebhookService, changed: () => void): void {
  app.post(
    '/webhooks',
    {
      config: { scope: 'events' },
      schema: {
        operationId: 'createWebhook',
        tags: ['Events'],
        summary: 'Subscribe a URL to events (Standard Webhooks)',
        description:
          'Each delivery POSTs one event, signed per Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`). The signing `secret` is in this answer only. URLs on private, loopback or link-local addresses are refused unless the server allows them.',
        security,
        body: Type.Object(
          {
            url: Type.String({ maxLength: 2000 }),
            event_types: Type.Optional(Types),
            enabled: Type.Optional(Type.Boolean()),
          },
          { additionalProperties: false },
        ),
        response: {
          201: Type.Intersect([
            WebhookView,
            Type.Object({ secret: Type.String({ description: '`whsec_` and a base64 key; shown once.' }) }),
          ]),
          ...errors,
        },
      },
    },
    async (request, reply) => {
      const created = await webhooks.create(request.principal!.fleetId, request.body);
      changed();
      return reply.status(201).header('location', `/webhooks/${created.webhook_id}`).send(created);
    },
  );

  app.get(
    '/webhooks',
    {
      config: { scope: 'events' },
      schema: {
        operationId: 'listWebhooks',
        tags: ['Events'],
        summary: "List the fleet's webhook subscriptions",
        security,
        querystring: Type.Object({
          limit: Type.Integer({ minimum: 1, maximum: 500, default: 100 }),
          page_token: Type.Optional(Type.String({ maxLength: 400 })),
        }),
        response: {
          200: Type.Object({
            items: Type.Array(WebhookView),
            next_page_token: Type.Union([Type.String(), Type.Null()]),
          }),
          ...errors,
        },
      },
    },
    async (request) => webhooks.list(request.principal!.fleetId, request.query.limit, request.query.page_token),
  );

  app.get(
    '/webhooks/:webhook_id',
    {
      config: { scope: 'events' },
      schema: {
        operationId: 'getWebhook',
        tags: ['Events'],
        summary: 'Read a webhook subscription',
        security,
        params: IdParam,
        response: { 200: WebhookView, ...errors },
      },
    },
    async (request) => webhooks.get(request.principal!.fleetId, request.params.webhook_id),
  );

  app.patch(
    '/webhooks/:webhook_id',
    {
      config: { scope: 'events' },
      schema: {
        operationId: 'updateWebhook',
        tags: ['Events'],
        summary: 'Change a webhook subscription (url, event_types, enabled)',
        description:
          'Enabling a subscription that fleetgate disabled resumes delivery where it stopped, with a fresh retry period.',
        security,
        params: IdParam,
        body: Type.Object(
          {
            url: Type.Optional(Type.String({ maxLength: 2000 })),
            event_types: Type.Optional(Types),
            enabled: Type.Optional(Type.Boolean()),
          },
          { additionalProperties: false },
        ),
        response: { 200: WebhookView, ...errors },
      },
    },
    async (request) => {
      const updated = await webhooks.update(request.principal!.fleetId, request.params.webhook_id, request.body);
      changed();
      return updated;
    },
  );

  app.delete(
    '/webhooks/:webhook_id',
    {
      config: { scope: 'events' },
      schema: {
        operationId: 'deleteWebhook',
        tags: ['Events'],
        summary: 'Delete a webhook subscription',
        security,
        params: IdParam,
        response: { 204: Type.Null({ description: 'Deleted.' }), ...errors },
      },
    },
    async (request, reply) => {
      await webhooks.remove(request.principal!.fleetId, request.params.webhook_id);
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/webhooks/:webhook_id/deliveries',
    {
      config: { scope: 'events' },
      schema: {
        operationId: 'listWebhookDeliveries',
        tags: ['Events'],
        summary: 'List delivery attempts, newest first, with status and latency',
        security,
        params: IdParam,
        querystring: Type.Object({
          limit: Type.Integer({ minimum: 1, maximum: 500, default: 100 }),
          page_token: Type.Optional(Type.String({ maxLength: 400 })),
        }),
        response: {
          200: Type.Object({ items: Type.Array(Delivery), next_page_token: Type.Union([Type.String(), Type.Null()]) }),
          ...errors,
        },
      },
    },
    async (request) =>
      webhooks.deliveries(
        request.principal!.fleetId,
        request.params.webhook_id,
        request.query.limit,
        request.query.page_token,
      ),
  );

  app.post(
    '/webhooks/:webhook_id/deliveries/:delivery_id/retry',
    {
      config: { scope: 'events' },
      schema: {
        operationId: 'retryWebhookDelivery',
        tags: ['Events'],
        summary: "Send a delivery's event again, now",
        description: 'One attempt, answered with its outcome; it is also listed under the deliveries.',
        security,
        params: Type.Object({
          webhook_id: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }),
          delivery_id: Type.String({ pattern: '^[0-9]{1,15}$' }),
        }),
        response: { 200: Delivery, ...errors },
      },
    },
    async (request) =>
      webhooks.retry(request.principal!.fleetId, request.params.webhook_id, request.params.delivery_id),
  );
}
