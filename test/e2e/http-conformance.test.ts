import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Harness } from '../helpers/harness.js';

/** A request with headers fetch refuses to set (Host, Expect). */
function rawRequest(
  base: string,
  options: { method?: string; path: string; headers?: Record<string, string> },
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: any }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: hostname, port, method: options.method ?? 'GET', path: options.path, headers: options.headers },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(text) }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

// RFC 9110 status codes and RFC 9457 problems where the framework would otherwise answer itself.
describe('HTTP conformance (RFC 9110, RFC 9457)', () => {
  let h: Harness;
  let token: string;

  beforeAll(async () => {
    h = await Harness.start();
    token = await h.token('fleet-http');
  }, 180_000);
  afterAll(async () => {
    await h?.close();
  });

  it('an id that names nothing is 404 resource-not-found whatever its characters', async () => {
    for (const id of ['doesnotexist42', 'ZZZZZZZZZZZZ', 'a'.repeat(200), '%C3%A4', 'x.y', '%20']) {
      const res = await h.request('GET', `/vehicles/${id}`, { token });
      expect(res.status, id).toBe(404);
      expect(res.body.type).toBe('/problems/resource-not-found');
      const cmd = await h.request('POST', `/vehicles/${id}/commands/unlock-central-lock`, { token });
      expect(cmd.status, id).toBe(404);
    }
  });

  it('wrong method → 405 method-not-allowed with Allow', async () => {
    const res = await h.request('DELETE', '/vehicles', { token });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, HEAD, POST');
    expect(res.body.type).toBe('/problems/method-not-allowed');
    expect(res.headers.get('content-type')).toContain('application/problem+json');
  });

  it('unknown media type → 415 with Accept-Post; oversize body → 413', async () => {
    const res = await h.request('POST', '/vehicles', {
      token,
      rawBody: '<vehicle/>',
      headers: { 'content-type': 'application/xml' },
    });
    expect(res.status).toBe(415);
    expect(res.body.type).toBe('/problems/unsupported-media-type');
    expect(res.headers.get('accept-post')).toBe('application/json');
    const plain = await h.request('POST', '/vehicles', {
      token,
      rawBody: 'x',
      headers: { 'content-type': 'text/plain' },
    });
    expect(plain.status).toBe(415);
    const big = await h.request('POST', '/vehicles', {
      token,
      rawBody: JSON.stringify({ telematics_brand: 'FLEETGATE', x: 'a'.repeat(100_000) }),
      headers: { 'content-type': 'application/json' },
    });
    expect(big.status).toBe(413);
    expect(big.body.type).toBe('/problems/content-too-large');
  });

  it('If-Match: * is honoured on an existing vehicle', async () => {
    const { vehicleId } = await h.vehicle(token, 'fleetgate-car-v1', { connect: false });
    const res = await h.request('PATCH', `/vehicles/${vehicleId}`, {
      token,
      body: { tags: ['star'] },
      headers: { 'if-match': '*' },
    });
    expect(res.status, res.text).toBe(200);
    expect(res.body.tags).toEqual(['star']);
    const stale = await h.request('PATCH', `/vehicles/${vehicleId}`, {
      token,
      body: { tags: ['old'] },
      headers: { 'if-match': '"1"' },
    });
    expect(stale.status).toBe(412);
  });

  it('Expect other than 100-continue → 417; no Host → 400; Host never reaches type_documentation', async () => {
    const expectRes = await rawRequest(h.url, { path: '/health/live', headers: { expect: '999-weird' } });
    expect(expectRes.status).toBe(417);
    expect(expectRes.headers['content-type']).toContain('application/problem+json');
    expect(expectRes.body.flow_id).toBe(expectRes.headers['x-flow-id']);
    const evil = await rawRequest(h.url, { path: '/nothing-here', headers: { host: 'evil.example' } });
    expect(evil.status).toBe(404);
    expect(evil.body.type_documentation).toBe(`${h.url}/problems/resource-not-found`);
    const bad = await rawRequest(h.url, { path: '/vehicles/%zz', headers: { host: 'evil.example' } });
    expect(bad.status).toBe(400);
    expect(bad.body.type).toBe('/problems/malformed-request');
    expect(bad.body.type_documentation).not.toContain('evil');
  });
});

describe('--public-url sets the base of type_documentation', () => {
  it('uses the configured URL, never the listen address or Host', async () => {
    const h = await Harness.start({ publicUrl: 'https://fleet.example.com/api/' });
    try {
      const res = await rawRequest(h.url, { path: '/nothing-here', headers: { host: 'evil.example' } });
      expect(res.body.type_documentation).toBe('https://fleet.example.com/api/problems/resource-not-found');
    } finally {
      await h.close();
    }
  });
});
