import { Type } from 'typebox';
import { EVENT_TOPIC_NAMES } from '../../domain/event-topics.js';
import { problemResponses, scopedProblemResponses } from '../schemas.js';
import type { Api, ApiDeps } from '../server.js';

const Queue = Type.Object({
  topic: Type.String({ description: 'The subscribed topic.' }),
  queue: Type.String({ description: 'The RabbitMQ queue that receives its events.' }),
});
const ConsumerView = Type.Object({
  event_consumer_id: Type.String(),
  topics: Type.Array(Type.String()),
  queues: Type.Array(Queue),
  created_at: Type.String({ format: 'date-time' }),
});
const ConsumerIdParam = Type.Object({ event_consumer_id: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }) });
const errors = scopedProblemResponses(404);

/** AMQP event consumers of the fleet (docs/events.md, "AMQP"). */
export function eventConsumerRoutes(app: Api, { eventConsumers }: ApiDeps): void {
  app.post(
    '/event-consumers',
    {
      config: { scope: 'events' },
      schema: {
        operationId: 'createEventConsumer',
        tags: ['Events'],
        summary: 'Create an AMQP event consumer',
        description:
          "Makes a RabbitMQ user that may read only this fleet's events, and one queue per topic. The answer holds the password inside `amqp_url`, shown only now. Queues unread for longer than the event retention expire. 503 when this fleetgate publishes no events over AMQP.",
        body: Type.Object(
          {
            topics: Type.Array(Type.String({ maxLength: 64 }), {
              minItems: 1,
              maxItems: EVENT_TOPIC_NAMES.length,
              description: `Topics to subscribe to: ${EVENT_TOPIC_NAMES.join(', ')}.`,
            }),
          },
          { additionalProperties: false },
        ),
        response: {
          201: Type.Object({
            event_consumer_id: Type.String(),
            amqp_url: Type.String({ description: '`amqp://<user>:<password>@<host>:<port>/<vhost>`' }),
            queues: Type.Array(Queue),
          }),
          ...errors,
          ...problemResponses(409),
        },
      },
    },
    async (request, reply) =>
      reply.status(201).send(await eventConsumers.create(request.principal!.fleetId, request.body.topics)),
  );

  app.get(
    '/event-consumers',
    {
      config: { scope: 'events' },
      schema: {
        operationId: 'listEventConsumers',
        tags: ['Events'],
        summary: "List the topics and the fleet's event consumers",
        response: {
          200: Type.Object({
            topics: Type.Array(
              Type.Object({ topic: Type.String(), description: Type.String(), event_types: Type.Array(Type.String()) }),
            ),
            event_consumers: Type.Array(ConsumerView),
          }),
          ...errors,
        },
      },
    },
    async (request) => ({
      topics: eventConsumers.topics(),
      event_consumers: await eventConsumers.list(request.principal!.fleetId),
    }),
  );

  app.get(
    '/event-consumers/:event_consumer_id',
    {
      config: { scope: 'events' },
      schema: {
        operationId: 'getEventConsumer',
        tags: ['Events'],
        summary: 'Get an event consumer (without its password)',
        params: ConsumerIdParam,
        response: { 200: ConsumerView, ...errors },
      },
    },
    async (request) => eventConsumers.get(request.principal!.fleetId, request.params.event_consumer_id),
  );

  app.delete(
    '/event-consumers/:event_consumer_id',
    {
      config: { scope: 'events' },
      schema: {
        operationId: 'deleteEventConsumer',
        tags: ['Events'],
        summary: 'Delete an event consumer',
        description: 'Removes its RabbitMQ user (closing its connections) and its queues.',
        params: ConsumerIdParam,
        response: { 204: { type: 'null' }, ...errors },
      },
    },
    async (request, reply) => {
      await eventConsumers.delete(request.principal!.fleetId, request.params.event_consumer_id);
      return reply.status(204).send(null);
    },
  );
}
