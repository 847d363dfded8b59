import { Type } from 'typebox';
import { problemResponses } from '../schemas.js';
import type { Api, ApiDeps } from '../server.js';

const Health = Type.Object({ status: Type.String(), checks: Type.Optional(Type.Record(Type.String(), Type.String())) });

/** SPEC §7: liveness, readiness (database and broker reachable) and Prometheus metrics. */
export function operationsRoutes(app: Api, { readiness, metrics }: ApiDeps): void {
  app.get(
    '/health/live',
    {
      schema: {
        operationId: 'getLiveness',
        tags: ['Operations'],
        summary: 'Liveness',
        response: { 200: Health, ...problemResponses('4xx') },
      },
    },
    async () => ({ status: 'ok' }),
  );

  app.get(
    '/health/ready',
    {
      schema: {
        operationId: 'getReadiness',
        tags: ['Operations'],
        summary: 'Readiness: database and broker reachable',
        response: { 200: Health, 503: Health, ...problemResponses('4xx') },
      },
    },
    async (_request, reply) => {
      const checks: Record<string, string> = {};
      let ok = true;
      await Promise.all(
        readiness.map(async (r) => {
          try {
            await r.check();
            checks[r.name] = 'ok';
          } catch (e) {
            ok = false;
            checks[r.name] = e instanceof Error ? e.message : String(e);
          }
        }),
      );
      return reply.status(ok ? 200 : 503).send({ status: ok ? 'ready' : 'not ready', checks });
    },
  );

  app.get(
    '/metrics',
    {
      schema: {
        operationId: 'getMetrics',
        tags: ['Operations'],
        summary: 'Prometheus metrics',
        response: {
          200: {
            description: 'Prometheus text exposition format.',
            content: { 'text/plain': { schema: { type: 'string' } } },
          },
          ...problemResponses('4xx'),
        },
      },
    },
    async (_request, reply) => reply.type(metrics.contentType).send(await metrics.render()),
  );
}
