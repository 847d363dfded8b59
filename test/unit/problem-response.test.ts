import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { problemErrorHandler } from '../../src/api/problem-response.js';
import { ProblemError } from '../../src/domain/problems.js';
import { StoreUnavailableError } from '../../src/store/store.js';

// SPEC §2: one error handler renders every error as problem+json.
async function answer(thrown: unknown) {
  const app = Fastify({ logger: false });
  app.setErrorHandler(problemErrorHandler('https://fleet.example'));
  app.get('/x', async () => {
    throw thrown;
  });
  const res = await app.inject({ method: 'GET', url: '/x' });
  await app.close();
  return { status: res.statusCode, type: res.headers['content-type'], body: res.json(), headers: res.headers };
}

describe('problem rendering', () => {
  it('a bug → 500 internal-server-error whose detail asks to quote the flow_id', async () => {
    const res = await answer(new TypeError('undefined is not a function'));
    expect(res.status).toBe(500);
    expect(res.type).toContain('application/problem+json');
    expect(res.body).toMatchObject({
      type: '/problems/internal-server-error',
      title: 'Internal Server Error',
      status: 500,
    });
    expect(res.body.detail).toContain(res.body.flow_id);
    expect(JSON.stringify(res.body)).not.toContain('undefined is not a function');
    expect(res.body.type_documentation).toBe('https://fleet.example/problems/internal-server-error');
  });

  it('database unreachable → 503 service-unavailable with Retry-After', async () => {
    const res = await answer(new StoreUnavailableError(new Error('ECONNREFUSED')));
    expect(res.status).toBe(503);
    expect(res.body.type).toBe('/problems/service-unavailable');
    expect(res.headers['retry-after']).toBe('5');
  });

  it('domain problems keep their extension members and headers', async () => {
    const res = await answer(new ProblemError('too-many-requests', 'slow down', { limit: 3 }, { 'Retry-After': '7' }));
    expect(res.status).toBe(429);
    expect(res.body).toMatchObject({ type: '/problems/too-many-requests', detail: 'slow down', limit: 3 });
    expect(res.headers['retry-after']).toBe('7');
  });

  it('extension members cannot overwrite the fixed members', async () => {
    const res = await answer(new ProblemError('resource-not-found', 'gone', { status: 200, type: 'x', title: 'y' }));
    expect(res.body).toMatchObject({
      status: 404,
      type: '/problems/resource-not-found',
      title: 'The resource cannot be found.',
    });
  });
});
