import { Type } from 'typebox';
import { problems } from '../../domain/problems.js';
import { metricsAuthorized } from '../metrics.js';
import { problemResponses } from '../schemas.js';
import type { Api, ApiDeps } from '../server.js';

const Health = Type.Object({ status: Type.String(), checks: Type.Optional(Type.Record(Type.String(), Type.String())) });

/** Liveness, readiness (database and broker reachable) and Prometheus metrics. */
export function operationsRoutes(app: Api, { readiness, metrics, config }: ApiDeps): void {
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
      let degraded = false;
      await Promise.all(
        readiness.map(async (r) => {
          try {
            await r.check();
            checks[r.name] = 'ok';
          } catch (e) {
            if (r.optional) degraded = true;
            else ok = false;
            checks[r.name] = e instanceof Error ? e.message : String(e);
          }
        }),
      );
      const status = !ok ? 'not ready' : degraded ? 'degraded' : 'ready';
      return reply.status(ok ? 200 : 503).send({ status, checks });
    },
  );

  // With --metrics-address, /metrics lives on its own listener (app.ts) and not here.
  if (config.metricsAddress) return;
  app.get(
    '/metrics',
    {
      schema: {
        operationId: 'getMetrics',
        tags: ['Operations'],
        summary: 'Prometheus metrics',
        description: 'With `--metrics-token` set, send `Authorization: Bearer <metrics token>`.',
        response: {
          200: {
            description: 'Prometheus text exposition format.',
            content: { 'text/plain': { schema: { type: 'string' } } },
          },
          ...problemResponses('4xx'),
        },
      },
    },
    async (request, reply) => {
      if (!metricsAuthorized(request.headers.authorization, config.metricsToken)) {
        throw problems.metricsTokenRequired({ 'WWW-Authenticate': 'Bearer realm="metrics"' });
      }
      return reply.type(metrics.contentType).send(await metrics.render());
    },
  );
}
