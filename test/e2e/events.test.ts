import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EventEnvelope } from '../../src/domain/events.js';
import { Harness } from '../helpers/harness.js';

/** A minimal SSE reader over a real socket: the messages as they arrive. */
function openStream(
  url: string,
  headers: Record<string, string>,
): Promise<{
  status: number;
  events: Array<{ id: string; event: EventEnvelope }>;
  close: () => void;
  text: () => string;
}> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers }, (res) => {
      let buffer = '';
      let all = '';
      const events: Array<{ id: string; event: EventEnvelope }> = [];
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        all += chunk;
        let end = buffer.indexOf('\n\n');
        while (end >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const id = /^id: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (id !== undefined && data !== undefined) events.push({ id, event: JSON.parse(data) as EventEnvelope });
          end = buffer.indexOf('\n\n');
        }
      });
      res.on('error', () => undefined);
      resolve({ status: res.statusCode ?? 0, events, close: () => req.destroy(), text: () => all });
    });
    req.on('error', reject);
  });
}

// SPEC §8: pull and stream, fleet-scoped.
describe('events: GET /events and GET /events/stream', () => {
  let h: Harness;
  let token: string;
  let reader: string;
  let otherReader: string;
  let vehicleId: string;

  beforeAll(async () => {
    h = await Harness.start();
    token = await h.token('fleet-a', ['vehicles', 'vehicle-commands']);
    reader = await h.token('fleet-a', ['events.ro']);
    otherReader = await h.token('fleet-b', ['events']);
    ({ vehicleId } = await h.vehicle(token, 'fleetgate-car-v1'));
  });
  afterAll(async () => {
    await h?.close();
  });

  async function all(t: string, query = ''): Promise<EventEnvelope[]> {
    const out: EventEnvelope[] = [];
    let after = '';
    for (;;) {
      const res = await h.request('GET', `/events?limit=5${query}${after ? `&after=${after}` : ''}`, { token: t });
      expect(res.status).toBe(200);
      out.push(...res.body.items);
      after = res.body.next_cursor;
      if (res.body.items.length === 0) return out;
    }
  }

  it('answers the fleet’s events in order from the oldest, with the request’s flow id', async () => {
    expect((await h.request('POST', `/vehicles/${vehicleId}/commands/lock-central-lock`, { token })).status).toBe(200);
    const res = await h.request('POST', `/vehicles/${vehicleId}/commands/unlock-central-lock`, { token });
    expect(res.status).toBe(200);
    const flow = res.headers.get('x-flow-id');
    await h.waitFor(async () => (await all(reader)).some((e) => e.metadata.flow_id === flow));
    const events = await all(reader);
    const types = events.map((e) => e.metadata.type);
    expect(types[0]).toBe('VehicleAdded');
    expect(types).toContain('VehicleChanged');
    expect(types).toContain('VehicleStateRecorded');
    expect(types).toContain('CentralLockStatusChanged');
    const finished = events.find((e) => e.metadata.type === 'CommandFinished' && e.metadata.flow_id === flow)!;
    expect(finished.metadata).toMatchObject({ flow_id: flow, fleet_id: 'fleet-a', vehicle_id: vehicleId });
    expect(finished.data).toMatchObject({
      command: 'UNLOCK_CENTRAL_LOCK',
      outcome: 'SUCCEEDED',
      delivery: 'DELIVERED',
    });
    // The unit reports the change itself as it acts, so the event may come from its report (a flow
    // of its own) or from the command's answer, whichever fleetgate stores first.
    const unlocked = events.findLast((e) => e.metadata.type === 'CentralLockStatusChanged');
    expect(unlocked?.data).toMatchObject({ property: 'central_lock', value: 'UNLOCKED', previous: 'LOCKED' });
    // Filters.
    const only = await all(reader, `&types=CommandFinished,CentralLockStatusChanged&vehicle_id=${vehicleId}`);
    expect(new Set(only.map((e) => e.metadata.type))).toEqual(new Set(['CommandFinished', 'CentralLockStatusChanged']));
  });

  it('never shows another fleet’s events, on pull or stream', async () => {
    expect(await all(otherReader)).toEqual([]);
    const stream = await openStream(`${h.url}/events/stream?after=0`, { authorization: `Bearer ${otherReader}` });
    expect(stream.status).toBe(200);
    const res = await h.request('POST', `/vehicles/${vehicleId}/commands/lock-central-lock`, { token });
    expect(res.status).toBe(200);
    const mine = await openStream(`${h.url}/events/stream?after=0`, { authorization: `Bearer ${reader}` });
    await h.waitFor(() => mine.events.some((e) => e.event.metadata.flow_id === res.headers.get('x-flow-id')));
    stream.close();
    mine.close();
    expect(stream.events).toEqual([]);
  });

  it('long-polls: wait holds the request until an event arrives', async () => {
    const head = await h.request('GET', '/events?limit=1000', { token: reader });
    let cursor = head.body.next_cursor;
    for (;;) {
      const page = await h.request('GET', `/events?limit=1000&after=${cursor}`, { token: reader });
      if (page.body.items.length === 0) break;
      cursor = page.body.next_cursor;
    }
    const started = Date.now();
    const pending = h.request('GET', `/events?after=${cursor}&wait=20`, { token: reader });
    const res = await h.request('PATCH', `/vehicles/${vehicleId}`, { token, body: { tags: ['long-poll'] } });
    expect(res.status).toBe(200);
    const polled = await pending;
    expect(polled.status).toBe(200);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(polled.body.items[0].metadata).toMatchObject({
      type: 'VehicleChanged',
      flow_id: res.headers.get('x-flow-id'),
    });
    expect(polled.body.items[0].data.reasons).toEqual(['TAGS_CHANGED']);
  });

  it('streams with id = cursor and resumes from Last-Event-ID without gaps or duplicates', async () => {
    const first = await openStream(`${h.url}/events/stream?after=0`, { authorization: `Bearer ${reader}` });
    expect(first.status).toBe(200);
    await h.waitFor(() => first.events.length >= 3);
    const seen = await all(reader);
    await h.waitFor(() => first.events.length >= seen.length);
    first.close();
    const lastId = first.events.at(-1)!.id;
    // Events happen while no one listens.
    for (const c of ['unlock-central-lock', 'lock-central-lock']) {
      expect((await h.request('POST', `/vehicles/${vehicleId}/commands/${c}`, { token })).status).toBe(200);
    }
    const total = (await all(reader)).length;
    const second = await openStream(`${h.url}/events/stream`, {
      authorization: `Bearer ${reader}`,
      'last-event-id': lastId,
    });
    await h.waitFor(() => first.events.length + second.events.length >= total);
    second.close();
    const ids = [...first.events, ...second.events].map((e) => e.event.metadata.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toEqual((await all(reader)).map((e) => e.metadata.id));
  });

  it('answers bad input with its problem type on every route', async () => {
    const cases: Array<[string, string, number, string]> = [
      ['GET', '/events?after=nope', 400, '/problems/validation-error'],
      ['GET', '/events?types=NoSuchEvent', 400, '/problems/validation-error'],
      ['GET', '/events?wait=31', 400, '/problems/validation-error'],
      ['GET', '/events?limit=0', 400, '/problems/validation-error'],
      ['GET', '/events/stream?after=nope', 400, '/problems/validation-error'],
      ['GET', '/events/stream?types=Nope', 400, '/problems/validation-error'],
    ];
    for (const [method, path, status, type] of cases) {
      const res = await h.request(method, path, { token: reader });
      expect([path, res.status, res.body?.type]).toEqual([path, status, type]);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
    }
    expect((await h.request('GET', '/events')).status).toBe(401);
    expect((await h.request('GET', '/events/stream')).status).toBe(401);
    const noScope = await h.request('GET', '/events', { token });
    expect([noScope.status, noScope.body.type]).toEqual([403, '/problems/forbidden-resource']);
  });

  it('answers a cursor older than the retained events with events/cursor-expired', async () => {
    const page = await h.request('GET', '/events?limit=1', { token: reader });
    const old = page.body.next_cursor;
    // Retention ran: everything up to now is gone.
    while ((await h.app.store.events.prune(new Date(Date.now() + 60_000).toISOString(), 1000)) > 0);
    const res = await h.request('GET', `/events?after=${old}`, { token: reader });
    expect([res.status, res.body.type]).toEqual([410, '/problems/events/cursor-expired']);
    const stream = await h.request('GET', `/events/stream?after=${old}`, { token: reader });
    expect([stream.status, stream.body.type]).toEqual([410, '/problems/events/cursor-expired']);
    expect((await h.request('GET', '/events', { token: reader })).status).toBe(200);
  });
});
