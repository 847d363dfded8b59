import { Type } from 'typebox';
import { EVENT_TYPES } from '../../domain/events.js';
import { MAX_WAIT_SECONDS } from '../../services/event-service.js';
import { scopedProblemResponses } from '../schemas.js';
import type { Api, ApiDeps } from '../server.js';

/** A comment line every this often keeps proxies from closing an idle stream. */
export const STREAM_HEARTBEAT_MS = 15_000;

const EventEnvelope = Type.Object(
  {
    metadata: Type.Object({
      id: Type.String({ description: 'ULID; deduplicate by it (delivery is at least once).' }),
      type: Type.String({ enum: [...EVENT_TYPES] }),
      schema_major_version: Type.Integer(),
      occurred_at: Type.String({ format: 'date-time' }),
      flow_id: Type.String(),
      fleet_id: Type.String(),
      vehicle_id: Type.String(),
    }),
    data: Type.Object({}, { additionalProperties: true }),
  },
  { description: 'An event in the Events API envelope; `data` per type is in docs/events.md.' },
);

const Filters = {
  types: Type.Optional(
    Type.String({
      maxLength: 2000,
      description: `Comma-separated event types to include (default: all). Known: ${EVENT_TYPES.join(', ')}.`,
    }),
  ),
  vehicle_id: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' })),
};
const Cursor = Type.String({ maxLength: 64, description: 'A `next_cursor` (or an SSE `id`) from an earlier read.' });
const errors = scopedProblemResponses(410);

/** Pull (`GET /events`) and Server-Sent Events (`GET /events/stream`). */
export function eventRoutes(app: Api, { events }: ApiDeps): void {
  // Open streams and long polls end when the server closes (graceful stop).
  const shutdown = new AbortController();
  app.addHook('preClose', async () => shutdown.abort());

  app.get(
    '/events',
    {
      config: { scope: 'events.ro' },
      schema: {
        operationId: 'listEvents',
        tags: ['Events'],
        summary: "Read the fleet's events after a cursor (long polling with wait)",
        description:
          'Events in the order they happened (per vehicle, the order of the changes), from the oldest retained event when `after` is absent. Continue with `next_cursor`. `wait` (seconds, up to 30) holds the request until an event arrives. A cursor older than the retained events answers 410 `events/cursor-expired`.',
        security: [{ bearer: [] }],
        querystring: Type.Object({
          after: Type.Optional(Cursor),
          ...Filters,
          limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
          wait: Type.Integer({ minimum: 0, maximum: MAX_WAIT_SECONDS, default: 0 }),
        }),
        response: {
          200: Type.Object({ items: Type.Array(EventEnvelope), next_cursor: Type.String() }),
          ...errors,
        },
      },
    },
    async (request) => {
      const q = request.query;
      const closed = AbortSignal.any([shutdown.signal, abortedOnClose(request.raw)]);
      return events.pull(
        request.principal!,
        { after: q.after, types: q.types?.split(','), vehicle_id: q.vehicle_id, limit: q.limit, waitSeconds: q.wait },
        closed,
      );
    },
  );

  app.get(
    '/events/stream',
    {
      config: { scope: 'events.ro' },
      schema: {
        operationId: 'streamEvents',
        tags: ['Events'],
        summary: "Stream the fleet's events (Server-Sent Events)",
        description:
          'A `text/event-stream`: each event is one message whose `id` is its cursor and whose `data` is the event envelope as JSON. Reconnect with `Last-Event-ID` (EventSource does it by itself) or `?after=` to resume without gaps or duplicates; without either it starts with events committed from now on. A comment line every 15 s keeps the connection open.',
        security: [{ bearer: [] }],
        querystring: Type.Object({ after: Type.Optional(Cursor), ...Filters }),
        headers: Type.Object({ 'last-event-id': Type.Optional(Cursor) }),
        response: {
          200: {
            description: 'Server-Sent Events, one per event.',
            content: { 'text/event-stream': { schema: Type.String() } },
          },
          ...errors,
        },
      },
    },
    async (request, reply) => {
      const lastEventId = request.headers['last-event-id'];
      const resume = typeof lastEventId === 'string' && lastEventId !== '' ? lastEventId : request.query.after;
      const field = resume === request.query.after ? 'after' : 'Last-Event-ID';
      const after = resume ?? (await events.head());
      const stream = await events.open(
        request.principal!,
        { after: after ?? undefined, types: request.query.types?.split(','), vehicle_id: request.query.vehicle_id },
        field,
      );
      // From here on the answer is the stream: errors end it (the client reconnects and resumes).
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
        'x-flow-id': request.id,
      });
      const closed = AbortSignal.any([shutdown.signal, abortedOnClose(request.raw)]);
      let page = stream.first;
      let lastWrite = Date.now();
      try {
        res.write(': fleetgate event stream\n\n');
        for (;;) {
          for (const e of page.items) {
            if (!res.write(`id: ${e.cursor}\ndata: ${JSON.stringify(e.event)}\n\n`)) {
              await drained(res, closed);
            }
          }
          if (page.items.length > 0) lastWrite = Date.now();
          if (closed.aborted) break;
          if (Date.now() - lastWrite >= STREAM_HEARTBEAT_MS) {
            res.write(': heartbeat\n\n');
            lastWrite = Date.now();
          }
          const wait = Math.max(1, STREAM_HEARTBEAT_MS - (Date.now() - lastWrite));
          page = await stream.next(page.next_cursor, wait, closed);
        }
      } catch (err) {
        request.log.warn({ err }, 'event stream ended by an error');
      } finally {
        res.end();
      }
    },
  );
}

function abortedOnClose(req: import('node:http').IncomingMessage): AbortSignal {
  const controller = new AbortController();
  req.socket.once('close', () => controller.abort());
  return controller.signal;
}

function drained(res: import('node:http').ServerResponse, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    res.once('drain', done);
    signal.addEventListener('abort', done, { once: true });
  });
}
