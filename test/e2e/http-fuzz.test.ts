import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Harness } from '../helpers/harness.js';

// RFC 9457 / SPEC §2: every error fleetgate answers is application/problem+json with a flow_id
// that matches X-Flow-ID — including errors Fastify and Node's HTTP parser raise themselves. A
// bounded, seeded fuzz over real sockets (fetch, and raw bytes for what fetch cannot send) counts
// error answers that are anything else.

const HTTP_REQUESTS = 1500;
const RAW_REQUESTS = 400;
const SEED = 0x5eed19;

/** mulberry32: a small seeded generator, so a failing case can be replayed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Verdict {
  ok: boolean;
  why?: string;
}

/** Checks one error answer: problem+json, the fixed members, flow_id = X-Flow-ID, base URL. */
function judge(
  status: number,
  headers: Record<string, string | undefined>,
  text: string,
  base: string,
  head: boolean,
  path = '',
): Verdict {
  if (status < 400) return { ok: true };
  const type = headers['content-type'] ?? '';
  // RFC 6749 §5.2: the token endpoint's errors are application/json with `error`, and carry the
  // problem members beside it (checked below like any problem).
  const oauth = path.startsWith('/auth/oauth/token') && type.startsWith('application/json');
  if (!type.startsWith('application/problem+json') && !oauth) {
    return { ok: false, why: `content-type ${headers['content-type']}` };
  }
  const flowId = headers['x-flow-id'];
  if (!flowId) return { ok: false, why: 'no X-Flow-ID' };
  if (head) return { ok: true };
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return { ok: false, why: `body is not JSON: ${text.slice(0, 80)}` };
  }
  if (oauth && typeof body.error !== 'string') return { ok: false, why: 'OAuth error without `error`' };
  if (body.status !== status) return { ok: false, why: `status member ${body.status}` };
  if (body.flow_id !== flowId) return { ok: false, why: 'flow_id differs from X-Flow-ID' };
  if (typeof body.type !== 'string' || typeof body.title !== 'string' || typeof body.detail !== 'string') {
    return { ok: false, why: 'fixed members missing' };
  }
  if (body.type_documentation !== `${base}${body.type}`) {
    return { ok: false, why: `type_documentation ${body.type_documentation}` };
  }
  return { ok: true };
}

describe('HTTP fuzz: every error answer is a problem (RFC 9110, RFC 9457)', () => {
  let h: Harness;
  let token: string;
  let vehicleId: string;

  beforeAll(async () => {
    h = await Harness.start({ rateLimitPerMinute: 1_000_000 });
    token = await h.token('fleet-fuzz');
    vehicleId = (await h.vehicle(token, 'fleetgate-car-v1', { connect: false })).vehicleId;
  }, 180_000);
  afterAll(async () => {
    await h?.close();
  });

  it(`${HTTP_REQUESTS} fuzzed requests through fetch: zero non-problem error answers`, async () => {
    const random = rng(SEED);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
    const segments = [
      () => vehicleId,
      () => 'doesnotexist42',
      () => 'A'.repeat(1 + Math.floor(random() * 1500)),
      () => '%zz',
      () => '%',
      () => '%00',
      () => '%C3%28',
      () => '..',
      () => 'ä€😀',
      () => encodeURIComponent('<script>'),
      () => 'UNLOCK_CENTRAL_LOCK',
      () => 'unlock-central-lock',
      () => '',
    ];
    const seg = () => pick(segments)();
    const paths = [
      () => '/',
      () => '/vehicles',
      () => `/vehicles/${seg()}`,
      () => `/vehicles/${seg()}/state`,
      () => `/vehicles/${seg()}/commands`,
      () => `/vehicles/${seg()}/commands/${seg()}`,
      () => '/auth/oauth/token',
      () => `/auth/oauth/token?grant_type=${seg()}`,
      () => '/credentials',
      () => `/credentials/${seg()}`,
      () => '/telematics-brands',
      () => `/problems/${seg()}`,
      () => '/health/live',
      () => '/health/ready',
      () => `/vehicles?limit=${seg()}&page_token=${seg()}`,
      () => `/${seg()}/${seg()}`,
    ];
    const methods = ['GET', 'GET', 'POST', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS', 'PROPFIND'];
    const contentTypes = [
      undefined,
      'application/json',
      'application/json; charset=utf-8',
      'text/plain',
      'application/xml',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/octet-stream',
      'garbage',
    ];
    const bodies = [
      () => undefined,
      () => '{}',
      () => '{"telematics_brand":"FLEETGATE","telematics_unit_id":"u-1"}',
      () => '{"a":',
      () => 'null',
      () => '[]',
      () => '\u0000\u0001\u0002',
      () => 'x'.repeat(70 * 1024),
      () => 'grant_type=client_credentials&client_secret=s3cret',
      () => JSON.stringify({ master_data: { vin: seg() }, tags: [seg()] }),
    ];
    const counts = { requests: 0, errors: 0, nonProblem: 0, failedRequests: 0, byStatus: {} as Record<number, number> };
    const bad: string[] = [];
    for (let i = 0; i < HTTP_REQUESTS; i++) {
      const method = pick(methods);
      const path = pick(paths)();
      const headers: Record<string, string> = {};
      const auth = random();
      if (auth < 0.6) headers.authorization = `Bearer ${token}`;
      else if (auth < 0.7) headers.authorization = `Bearer ${encodeURIComponent(seg())}`;
      else if (auth < 0.75) headers.authorization = 'Basic Zm9vOmJhcg==';
      const body = method === 'GET' || method === 'HEAD' ? undefined : pick(bodies)();
      const ct = pick(contentTypes);
      if (ct && body !== undefined) headers['content-type'] = ct;
      if (random() < 0.15) headers['if-match'] = pick(['*', '"1"', 'W/"2"', 'junk', '"x", "y"']);
      if (random() < 0.1) headers['idempotency-key'] = encodeURIComponent(seg()).slice(0, 300) || 'k';
      if (random() < 0.1) headers['x-flow-id'] = pick(['not-a-uuid', crypto.randomUUID()]);
      if (random() < 0.05) headers.accept = pick(['text/html', 'application/xml', '*/*']);
      // Non-ASCII goes percent-encoded, as any client sends it; malformed escapes stay as they are.
      const url = path.replace(/[^\x21-\x7e]/gu, (c) => encodeURIComponent(c));
      counts.requests++;
      let res: Response;
      try {
        res = await fetch(`${h.url}${url}`, { method, headers, body });
      } catch (e) {
        counts.failedRequests++;
        bad.push(`${method} ${url.slice(0, 80)}: no answer (${(e as Error).message})`);
        continue;
      }
      const text = await res.text();
      counts.byStatus[res.status] = (counts.byStatus[res.status] ?? 0) + 1;
      if (res.status >= 400) counts.errors++;
      const verdict = judge(res.status, Object.fromEntries(res.headers), text, h.url, method === 'HEAD', url);
      if (!verdict.ok) {
        counts.nonProblem++;
        bad.push(`${method} ${url.slice(0, 80)} → ${res.status}: ${verdict.why}`);
      }
    }
    console.log(`HTTP fuzz (seed ${SEED}): ${JSON.stringify(counts)}`);
    expect(bad.slice(0, 20)).toEqual([]);
    expect(counts.nonProblem).toBe(0);
    expect(counts.failedRequests).toBe(0);
    // The fuzz reached the error paths it is meant to test.
    for (const status of [400, 401, 404, 405, 413, 415]) expect(counts.byStatus[status] ?? 0).toBeGreaterThan(0);
  }, 180_000);

  it(`${RAW_REQUESTS} malformed raw-socket requests: zero non-problem answers, zero silent closes`, async () => {
    const random = rng(SEED + 1);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
    const host = new URL(h.url).host;
    const valid = [
      `GET /health/live HTTP/1.1\r\nHost: ${host}\r\n\r\n`,
      `GET /vehicles/${vehicleId} HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${token}\r\n\r\n`,
      `POST /vehicles HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`,
      `POST /vehicles/${vehicleId}/commands/lock-central-lock HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 0\r\n\r\n`,
    ];
    const mutations: Array<(r: string) => string> = [
      (r) => r.replaceAll('\r\n', '\n'),
      (r) => r.replace(/\r\n/, '\n'),
      (r) => r.replace(`Host: ${host}\r\n`, ''),
      (r) => r.replace(' HTTP/1.1', `/a\u0000b HTTP/1.1`),
      (r) => r.replace(' HTTP/1.1', '/%zz HTTP/1.1'),
      (r) => r.replace(' HTTP/1.1', `/${'B'.repeat(300)} HTTP/1.1`),
      (r) => r.replace('\r\n\r\n', `\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`),
      (r) => r.replace('\r\n\r\n', '\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n'),
      (r) => r.replace('\r\n\r\n', '\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n'),
      (r) => r.replace('\r\n\r\n', '\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'),
      (r) => r.replace('\r\n\r\n', `\r\nExpect: ${pick(['999-weird', '100-continue, foo', 'x'])}\r\n\r\n`),
      (r) => r.replace('HTTP/1.1', pick(['HTTP/1.2', 'HTTP/2.0', 'HTTP/9.9', 'HTTP/1', 'HTTPS/1.1'])),
      (r) => r.replace(/^[A-Z]+/, pick(['G@T', 'get', 'FOO BAR', '\u0016\u0003\u0001'])),
      (r) => r.replace('\r\n\r\n', '\r\nBad Header: x\r\n\r\n'),
      (r) => r.replace('\r\n\r\n', '\r\nX-A: a\u0000b\r\n\r\n'),
      (r) => r.replace('\r\n\r\n', '\r\n folded: continuation\r\n\r\n'),
      (r) => r.replace('\r\n\r\n', '\r\nContent-Length: -1\r\n\r\n'),
      (r) => {
        const at = Math.floor(random() * r.length);
        return r.slice(0, at) + pick(['\u0000', '\r', '\n', '\u007f', ' ', '\u00ff']) + r.slice(at);
      },
    ];
    const counts = {
      requests: 0,
      answers: 0,
      errors: 0,
      nonProblem: 0,
      silentCloses: 0,
      byStatus: {} as Record<number, number>,
    };
    const bad: string[] = [];
    const one = async (request: string): Promise<void> => {
      const raw = await rawExchange(h.url, request);
      counts.requests++;
      const parsed = parseFirstResponse(raw);
      if (!parsed) {
        counts.silentCloses++;
        bad.push(
          `${JSON.stringify(request.slice(0, 80))}: closed without an answer (${JSON.stringify(raw.slice(0, 60))})`,
        );
        return;
      }
      counts.answers++;
      counts.byStatus[parsed.status] = (counts.byStatus[parsed.status] ?? 0) + 1;
      if (parsed.status >= 400) counts.errors++;
      const verdict = judge(parsed.status, parsed.headers, parsed.body, h.url, false);
      if (!verdict.ok) {
        counts.nonProblem++;
        bad.push(`${JSON.stringify(request.slice(0, 80))} → ${parsed.status}: ${verdict.why}`);
      }
    };
    const requests: string[] = [];
    for (let i = 0; i < RAW_REQUESTS; i++) {
      let r = pick(valid);
      const n = 1 + Math.floor(random() * 2);
      for (let k = 0; k < n; k++) r = pick(mutations)(r);
      requests.push(r);
    }
    // A few at a time: bounded, and each exchange ends when the server closes or answers.
    for (let i = 0; i < requests.length; i += 8) await Promise.all(requests.slice(i, i + 8).map(one));
    console.log(`raw-socket fuzz (seed ${SEED + 1}): ${JSON.stringify(counts)}`);
    expect(bad.slice(0, 20)).toEqual([]);
    expect(counts.nonProblem).toBe(0);
    expect(counts.silentCloses).toBe(0);
    for (const status of [400, 417, 431]) expect(counts.byStatus[status] ?? 0).toBeGreaterThan(0);
  }, 180_000);

  it('a 20 MiB upload gets its 413 problem, not a reset', async () => {
    const res = await fetch(`${h.url}/vehicles`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: new Uint8Array(20 * 1024 * 1024),
    });
    expect(res.status).toBe(413);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    expect(((await res.json()) as { type: string }).type).toBe('/problems/content-too-large');
  });
});

/**
 * Sends raw bytes, half-closes, and collects what the server writes until it closes (or a
 * complete response with Content-Length has arrived).
 */
function rawExchange(base: string, request: string): Promise<string> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve) => {
    const socket = net.connect({ host: hostname, port: Number(port) });
    let data = Buffer.alloc(0);
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(data.toString('latin1'));
    };
    const timer = setTimeout(done, 10_000);
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      if (parseFirstResponse(data.toString('latin1'), true)) done();
    });
    socket.on('error', done);
    socket.on('close', done);
    socket.write(Buffer.from(request, 'latin1'), () => socket.end());
  });
}

/** The first final (non-1xx) response in `raw`, when it is complete. */
function parseFirstResponse(
  raw: string,
  requireComplete = false,
): { status: number; headers: Record<string, string>; body: string } | undefined {
  let rest = raw;
  for (;;) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) return undefined;
    const lines = rest.slice(0, end).split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
    if (!m) return undefined;
    const status = Number(m[1]);
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const i = line.indexOf(':');
      if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
    }
    rest = rest.slice(end + 4);
    if (status < 200) continue;
    const length = Number(headers['content-length'] ?? 'NaN');
    if (Number.isFinite(length)) {
      const body = Buffer.from(rest, 'latin1');
      if (body.length < length) return requireComplete ? undefined : { status, headers, body: body.toString('utf8') };
      return { status, headers, body: body.subarray(0, length).toString('utf8') };
    }
    return requireComplete ? undefined : { status, headers, body: rest };
  }
}
