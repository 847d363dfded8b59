import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Harness } from '../helpers/harness.js';

// SPEC §7 /metrics: what an operator pages on, protectable or on its own address, and valid
// Prometheus exposition format (checked by promtool where it is installed).

const promtool = spawnSync('promtool', ['--version']).status === 0;

/** The value of one sample line, e.g. `fleetgate_units_connected{telematics_brand="FLEETGATE"}`. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('metrics an operator pages on', () => {
  let h: Harness;
  let text: string;

  beforeAll(async () => {
    h = await Harness.start({ rateLimitPerMinute: 40 });
    const token = await h.token('fleet-metrics');
    await h.vehicle(token); // connected: SUCCEEDED and ONLINE
    await h.vehicle(token, 'fleetgate-car-v1', { connect: false }); // IN_PROGRESS, OFFLINE
    const wrong = await fetch(`${h.url}/auth/oauth/token?grant_type=client_credentials`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from('fgc_nobody:wrong').toString('base64')}` },
    });
    expect(wrong.status).toBe(401);
    let throttled = 0;
    for (let i = 0; i < 60 && throttled === 0; i++) {
      if ((await h.request('GET', '/vehicles', { token })).status === 429) throttled++;
    }
    expect(throttled).toBe(1);
    const res = await fetch(`${h.url}/metrics`);
    expect(res.status).toBe(200);
    text = await res.text();
  }, 180_000);
  afterAll(async () => {
    await h?.close();
  });

  it('vehicles by setup and life status, and connected units by brand (transport)', () => {
    const brand = 'telematics_brand="FLEETGATE"';
    expect(sample(text, `fleetgate_vehicles{${brand},setup_status="SUCCEEDED",life_status="ONLINE"}`)).toBe(1);
    expect(sample(text, `fleetgate_vehicles{${brand},setup_status="IN_PROGRESS",life_status="OFFLINE"}`)).toBe(1);
    expect(sample(text, `fleetgate_units_connected{${brand}}`)).toBe(1);
  });

  it('database and broker connection state', () => {
    expect(sample(text, 'fleetgate_dependency_up{dependency="database"}')).toBe(1);
    expect(sample(text, 'fleetgate_dependency_up{dependency="broker"}')).toBe(1);
  });

  it('token grants and failures, throttled requests', () => {
    expect(sample(text, 'fleetgate_token_grants_total')).toBe(1);
    expect(sample(text, 'fleetgate_token_failures_total{status_code="401"}')).toBe(1);
    expect(sample(text, 'fleetgate_http_throttled_requests_total{route="/vehicles"}')).toBe(1);
  });

  it.skipIf(!promtool)('promtool check metrics finds nothing to complain about', () => {
    const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    console.log(`promtool check metrics: exit ${check.status}, output: ${JSON.stringify(check.stdout + check.stderr)}`);
    expect(check.stdout + check.stderr).toBe('');
    expect(check.status).toBe(0);
  });
});

describe('/metrics protected by a token and served on its own address', () => {
  let h: Harness;
  const metricsToken = 'metrics-token-0123456789';

  beforeAll(async () => {
    h = await Harness.start({ metricsToken, metricsAddress: '127.0.0.1:0' });
  }, 180_000);
  afterAll(async () => {
    await h?.close();
  });

  it('the API port no longer serves /metrics; the metrics address needs the bearer token', async () => {
    expect((await h.request('GET', '/metrics')).status).toBe(404);
    expect(h.app.metricsUrl).not.toContain(new URL(h.url).port);
    const anonymous = await fetch(h.app.metricsUrl);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toContain('Bearer');
    expect(anonymous.headers.get('content-type')).toContain('application/problem+json');
    const wrong = await fetch(h.app.metricsUrl, { headers: { authorization: 'Bearer nope' } });
    expect(wrong.status).toBe(401);
    const scraped = await fetch(h.app.metricsUrl, { headers: { authorization: `Bearer ${metricsToken}` } });
    expect(scraped.status).toBe(200);
    expect(await scraped.text()).toContain('fleetgate_dependency_up{dependency="database"} 1');
  });

  it('with only a token, /metrics on the API port answers 401 problem without it', async () => {
    const only = await Harness.start({ metricsToken });
    try {
      const res = await only.request('GET', '/metrics');
      expect(res.status).toBe(401);
      expect(res.body.type).toBe('/problems/invalid-credentials');
      const ok = await only.request('GET', '/metrics', { headers: { authorization: `Bearer ${metricsToken}` } });
      expect(ok.status).toBe(200);
    } finally {
      await only.close();
    }
  });
});
