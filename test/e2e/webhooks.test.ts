import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { EventEnvelope } from '../../src/domain/events.js';
import { Harness } from '../helpers/harness.js';
import { WebhookReceiver } from '../helpers/webhook-receiver.js';

const ids = (events: EventEnvelope[]) => events.map((e) => e.metadata.id);

/** Every event of the fleet through GET /events: the order they happened. */
async function feed(h: Harness, token: string, vehicleId?: string): Promise<EventEnvelope[]> {
  const out: EventEnvelope[] = [];
  let after = '';
  for (;;) {
    const q = `limit=500${after ? `&after=${after}` : ''}${vehicleId ? `&vehicle_id=${vehicleId}` : ''}`;
    const res = await h.request('GET', `/events?${q}`, { token });
    out.push(...res.body.items);
    after = res.body.next_cursor;
    if (res.body.items.length === 0) return out;
  }
}

function uniqueInOrder(events: EventEnvelope[]): EventEnvelope[] {
  const seen = new Set<string>();
  return events.filter((e) => !seen.has(e.metadata.id) && seen.add(e.metadata.id));
}

// SPEC §8 / issue 16 §3, §5: signed webhooks over real sockets.
describe('webhooks', () => {
  let h: Harness;
  let token: string;
  let events: string;
  let receiver: WebhookReceiver;
  const cleanups: Array<() => Promise<void>> = [];

  beforeAll(async () => {
    h = await Harness.start({ webhooksAllowPrivateUrls: 'true' });
    token = await h.token('fleet-w', ['vehicles', 'vehicle-commands']);
    events = await h.token('fleet-w', ['events']);
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  afterAll(async () => {
    await h?.close();
  });

  async function subscribe(r: WebhookReceiver, body: Record<string, unknown> = {}, t = events) {
    const res = await h.request('POST', '/webhooks', { token: t, body: { url: r.url, ...body } });
    expect(res.status).toBe(201);
    r.secret = res.body.secret;
    cleanups.push(async () => {
      await h.request('DELETE', `/webhooks/${res.body.webhook_id}`, { token: t });
    });
    return res.body as { webhook_id: string; secret: string };
  }

  it('delivers every event type the simulator and the API produce, signed (Standard Webhooks)', async () => {
    receiver = await WebhookReceiver.start();
    cleanups.push(() => receiver.stop());
    const created = await subscribe(receiver);
    expect(created.secret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
    const read = await h.request('GET', `/webhooks/${created.webhook_id}`, { token: events });
    expect(read.status).toBe(200);
    expect(read.body).not.toHaveProperty('secret');
    expect(JSON.stringify(read.body)).not.toContain(created.secret.slice(6));

    const { vehicleId, unit } = await h.vehicle(token, 'fleetgate-car-v1');
    for (const c of ['lock-central-lock', 'unlock-central-lock', 'disable-driving', 'enable-driving']) {
      expect((await h.request('POST', `/vehicles/${vehicleId}/commands/${c}`, { token })).status).toBe(200);
    }
    unit.setMoving(true);
    await receiver.until(() => receiver.events.some((e) => e.metadata.type === 'IgnitionChanged'));
    unit.setMoving(false);
    expect((await h.request('PATCH', `/vehicles/${vehicleId}`, { token, body: { tags: ['x'] } })).status).toBe(200);
    expect((await h.request('DELETE', `/vehicles/${vehicleId}`, { token })).status).toBe(204);
    await receiver.until(() => receiver.events.some((e) => e.metadata.type === 'VehicleRemoved'));
    expect(receiver.rejected).toEqual([]);
    const types = new Set(receiver.events.map((e) => e.metadata.type));
    for (const t of [
      'VehicleAdded',
      'VehicleChanged',
      'VehicleStateRecorded',
      'CentralLockStatusChanged',
      'DrivingEnabledChanged',
      'IgnitionChanged',
      'Trip',
      'CommandFinished',
      'VehicleRemoved',
    ]) {
      expect([t, types.has(t)]).toEqual([t, true]);
    }
    // In the order they happened, as the feed has them.
    expect(ids(uniqueInOrder(receiver.events))).toEqual(ids(await feed(h, events, vehicleId)));
    const deliveries = await h.request('GET', `/webhooks/${created.webhook_id}/deliveries?limit=500`, {
      token: events,
    });
    expect(deliveries.status).toBe(200);
    expect(deliveries.body.items[0]).toMatchObject({ status: 'succeeded', http_status: 204, trigger: 'automatic' });
    expect(deliveries.body.items[0].latency_ms).toBeGreaterThanOrEqual(0);
  });

  it('retries a receiver that answers 500 until it recovers: every event, per vehicle in order', {
    timeout: 90_000,
  }, async () => {
    const r = await WebhookReceiver.start();
    cleanups.push(() => r.stop());
    r.status = (n) => (n <= 3 ? 500 : 204);
    const created = await subscribe(r, { event_types: ['CommandFinished', 'CentralLockStatusChanged'] });
    const a = await h.vehicle(token, 'fleetgate-car-v1');
    const b = await h.vehicle(token, 'fleetgate-car-v1');
    for (let i = 0; i < 3; i++) {
      for (const v of [a, b]) {
        const c = i % 2 ? 'unlock-central-lock' : 'lock-central-lock';
        expect((await h.request('POST', `/vehicles/${v.vehicleId}/commands/${c}`, { token })).status).toBe(200);
      }
    }
    const expected = (await feed(h, events)).filter(
      (e) =>
        ['CommandFinished', 'CentralLockStatusChanged'].includes(e.metadata.type) &&
        [a.vehicleId, b.vehicleId].includes(e.metadata.vehicle_id),
    );
    await r.until(() => uniqueInOrder(r.events).length >= expected.length, 30_000);
    expect(r.rejected).toEqual([]);
    for (const v of [a, b]) {
      const got = uniqueInOrder(r.events).filter((e) => e.metadata.vehicle_id === v.vehicleId);
      expect(ids(got)).toEqual(ids(expected.filter((e) => e.metadata.vehicle_id === v.vehicleId)));
    }
    const deliveries = await h.request('GET', `/webhooks/${created.webhook_id}/deliveries?limit=500`, {
      token: events,
    });
    const failed = deliveries.body.items.filter((d: { status: string }) => d.status === 'failed');
    expect(failed).toHaveLength(3);
    expect(failed[0]).toMatchObject({ http_status: 500, error: 'answered 500' });
    expect(failed.map((d: { attempt: number }) => d.attempt).sort()).toEqual([1, 2, 3]);
    // A failed delivery retried by hand.
    const retried = await h.request(
      'POST',
      `/webhooks/${created.webhook_id}/deliveries/${failed[0].delivery_id}/retry`,
      {
        token: events,
      },
    );
    expect(retried.status).toBe(200);
    expect(retried.body).toMatchObject({ status: 'succeeded', trigger: 'manual', event_id: failed[0].event_id });
  });

  it('disables a subscription failing for the whole retry period, and says why', { timeout: 90_000 }, async () => {
    const short = await Harness.start({ webhooksAllowPrivateUrls: 'true', webhooksRetrySeconds: 1 });
    cleanups.push(() => short.close());
    const r = await WebhookReceiver.start();
    cleanups.push(() => r.stop());
    r.status = () => 503;
    const t = await short.token('fleet-d', ['events', 'vehicles']);
    const res = await short.request('POST', '/webhooks', { token: t, body: { url: r.url } });
    r.secret = res.body.secret;
    await short.vehicle(t, 'fleetgate-car-v1', { connect: false });
    await short.waitFor(async () => {
      const w = await short.request('GET', `/webhooks/${res.body.webhook_id}`, { token: t });
      return w.body.enabled === false;
    }, 15_000);
    const w = await short.request('GET', `/webhooks/${res.body.webhook_id}`, { token: t });
    expect(w.body.disabled_reason).toMatch(/failed for 1 s .*answered 503/);
    // Enabled again, with the receiver back: what it missed arrives.
    r.status = () => 204;
    expect(
      (await short.request('PATCH', `/webhooks/${res.body.webhook_id}`, { token: t, body: { enabled: true } })).body,
    ).toMatchObject({ enabled: true, disabled_reason: null });
    await r.until(() => r.events.some((e) => e.metadata.type === 'VehicleAdded'));
  });

  it('gets every event after a receiver that was down while the server restarted', { timeout: 90_000 }, async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'fleetgate-webhooks-'));
    cleanups.push(async () => rmSync(dataDir, { recursive: true, force: true }));
    const first = await Harness.start({ webhooksAllowPrivateUrls: 'true', dataDir });
    const r = await WebhookReceiver.start();
    const port = r.port;
    const t = await first.token('fleet-r', ['events', 'vehicles', 'vehicle-commands']);
    const sub = await first.request('POST', '/webhooks', { token: t, body: { url: r.url } });
    const secret = sub.body.secret;
    await r.stop();
    const { vehicleId } = await first.vehicle(t, 'fleetgate-car-v1');
    for (const c of ['lock-central-lock', 'unlock-central-lock']) {
      expect((await first.request('POST', `/vehicles/${vehicleId}/commands/${c}`, { token: t })).status).toBe(200);
    }
    const expected = ids(await feed(first, t));
    await first.close();
    const second = await Harness.start({ webhooksAllowPrivateUrls: 'true', dataDir });
    cleanups.push(() => second.close());
    const back = new WebhookReceiver();
    back.secret = secret;
    await back.listen(port);
    cleanups.push(() => back.stop());
    await back.until(() => uniqueInOrder(back.events).length >= expected.length, 40_000);
    expect(back.rejected).toEqual([]);
    expect(ids(uniqueInOrder(back.events))).toEqual(expected);
  });

  it('refuses private, loopback and link-local URLs unless allowed (SSRF)', async () => {
    const strict = await Harness.start();
    cleanups.push(() => strict.close());
    const t = await strict.token('fleet-s', ['events']);
    for (const url of [
      'http://127.0.0.1:8080/hook',
      'http://localhost/hook',
      'http://169.254.169.254/latest/meta-data',
      'http://10.1.2.3/hook',
      'http://192.168.0.10/hook',
      'http://[::1]/hook',
      'http://[fd00::1]/hook',
      'http://0.0.0.0/hook',
      'ftp://example.com/hook',
      'not a url',
    ]) {
      const res = await strict.request('POST', '/webhooks', { token: t, body: { url } });
      expect([url, res.status, res.body.type]).toEqual([url, 400, '/problems/validation-error']);
      expect(res.body.errors[0].field).toBe('url');
    }
    const ok = await strict.request('POST', '/webhooks', { token: t, body: { url: 'https://93.184.215.14/hook' } });
    expect(ok.status).toBe(201);
    const patched = await strict.request('PATCH', `/webhooks/${ok.body.webhook_id}`, {
      token: t,
      body: { url: 'http://127.0.0.1/x' },
    });
    expect([patched.status, patched.body.type]).toEqual([400, '/problems/validation-error']);
  });

  it('keeps fleets apart on every route', async () => {
    const r = await WebhookReceiver.start();
    cleanups.push(() => r.stop());
    const mine = await subscribe(r);
    const other = await h.token('fleet-other', ['events', 'vehicles']);
    const or = await WebhookReceiver.start();
    cleanups.push(() => or.stop());
    await subscribe(or, {}, other);
    const deliveries = await h.request('GET', `/webhooks/${mine.webhook_id}/deliveries`, { token: events });
    for (const [method, p] of [
      ['GET', `/webhooks/${mine.webhook_id}`],
      ['PATCH', `/webhooks/${mine.webhook_id}`],
      ['DELETE', `/webhooks/${mine.webhook_id}`],
      ['GET', `/webhooks/${mine.webhook_id}/deliveries`],
      ['POST', `/webhooks/${mine.webhook_id}/deliveries/1/retry`],
    ] as const) {
      const res = await h.request(method, p, {
        token: other,
        body: method === 'PATCH' ? { enabled: false } : undefined,
      });
      expect([method, p, res.status, res.body?.type]).toEqual([method, p, 404, '/problems/resource-not-found']);
    }
    const list = await h.request('GET', '/webhooks', { token: other });
    expect(list.body.items.map((w: { webhook_id: string }) => w.webhook_id)).not.toContain(mine.webhook_id);
    expect(deliveries.status).toBe(200);
    // fleet-w's changes never reach fleet-other's receiver.
    await h.vehicle(token, 'fleetgate-car-v1', { connect: false });
    await r.until(() => r.events.some((e) => e.metadata.type === 'VehicleAdded'));
    expect(or.events.filter((e) => e.metadata.fleet_id !== 'fleet-other')).toEqual([]);
  });

  it('answers bad input on every webhook route with its problem type', async () => {
    const ro = await h.token('fleet-w', ['events.ro']);
    const cases: Array<[string, string, unknown, number, string]> = [
      ['POST', '/webhooks', {}, 400, '/problems/validation-error'],
      ['POST', '/webhooks', { url: 'http://127.0.0.1/x', event_types: ['Nope'] }, 400, '/problems/validation-error'],
      ['POST', '/webhooks', { url: 'http://127.0.0.1/x', event_types: [] }, 400, '/problems/validation-error'],
      ['POST', '/webhooks', { url: 'http://127.0.0.1/x', secret: 'mine' }, 400, '/problems/validation-error'],
      ['PATCH', '/webhooks/wh_nope', { enabled: 'yes' }, 400, '/problems/validation-error'],
      ['GET', '/webhooks/wh_nope', undefined, 404, '/problems/resource-not-found'],
      ['DELETE', '/webhooks/wh_nope', undefined, 404, '/problems/resource-not-found'],
      ['GET', '/webhooks/wh_nope/deliveries', undefined, 404, '/problems/resource-not-found'],
      ['POST', '/webhooks/wh_nope/deliveries/x/retry', undefined, 404, '/problems/resource-not-found'],
      ['GET', '/webhooks?limit=0', undefined, 400, '/problems/validation-error'],
    ];
    for (const [method, p, body, status, type] of cases) {
      const res = await h.request(method, p, { token: events, body });
      expect([method, p, res.status, res.body?.type]).toEqual([method, p, status, type]);
    }
    const r = await WebhookReceiver.start();
    cleanups.push(() => r.stop());
    const w = await subscribe(r);
    const missing = await h.request('POST', `/webhooks/${w.webhook_id}/deliveries/999999/retry`, { token: events });
    expect([missing.status, missing.body.type]).toEqual([404, '/problems/resource-not-found']);
    const forbidden = await h.request('GET', '/webhooks', { token: ro });
    expect([forbidden.status, forbidden.body.type]).toEqual([403, '/problems/forbidden-resource']);
    expect((await h.request('GET', '/webhooks')).status).toBe(401);
  });
});
