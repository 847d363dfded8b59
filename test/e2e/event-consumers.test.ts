import amqplib from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Harness } from '../helpers/harness.js';
import { createTestVhost, type TestVhost } from '../helpers/rabbitmq.js';

// Issue 17 §2: `/event-consumers` (scope `events`) against the real RabbitMQ.
describe('/event-consumers', () => {
  let vh: TestVhost;
  let h: Harness;
  let token: string;

  beforeAll(async () => {
    vh = await createTestVhost();
    h = await Harness.start({ amqpUrl: vh.amqpUrl, amqpPublicUrl: 'amqp://events.example.com:5673' });
    token = await h.token('fleet-ec', ['events']);
  });
  afterAll(async () => {
    await h?.close();
    await vh?.remove();
  });

  it('creates a consumer once with its connection data, lists it with the topics, deletes it', async () => {
    const created = await h.request('POST', '/event-consumers', { token, body: { topics: ['commands', 'trips'] } });
    expect(created.status).toBe(201);
    const id: string = created.body.event_consumer_id;
    expect(Object.keys(created.body).sort()).toEqual(['amqp_url', 'event_consumer_id', 'queues']);
    const url = new URL(created.body.amqp_url);
    expect(url.protocol).toBe('amqp:');
    // The host as --amqp-public-url says; the vhost is fleetgate's.
    expect(url.host).toBe('events.example.com:5673');
    expect(decodeURIComponent(url.pathname.slice(1))).toBe(vh.vhost);
    expect(url.username).toBe(id);
    expect(created.body.queues).toEqual([
      { topic: 'commands', queue: `fleetgate.consumer.${id}.commands` },
      { topic: 'trips', queue: `fleetgate.consumer.${id}.trips` },
    ]);

    // The returned credentials work against the broker (with the real host instead of the public one).
    url.host = new URL(vh.amqpUrl).host;
    const conn = await amqplib.connect(url.toString());
    conn.on('error', () => undefined);
    const ch = await conn.createChannel();
    expect((await ch.checkQueue(created.body.queues[0].queue)).queue).toBe(created.body.queues[0].queue);

    const list = await h.request('GET', '/event-consumers', { token });
    expect(list.status).toBe(200);
    expect(list.body.topics.map((t: { topic: string }) => t.topic)).toEqual([
      'vehicle-state',
      'vehicles',
      'commands',
      'trips',
    ]);
    expect(list.body.topics[2].event_types).toEqual(['CommandFinished', 'CommandOutcomeResolved']);
    expect(list.body.event_consumers).toEqual([
      {
        event_consumer_id: id,
        topics: ['commands', 'trips'],
        queues: created.body.queues,
        created_at: expect.any(String),
      },
    ]);
    // Never the password again.
    expect(list.text).not.toContain(url.password);
    expect((await h.request('GET', `/event-consumers/${id}`, { token })).body.event_consumer_id).toBe(id);

    // Another fleet sees nothing of it and cannot delete it.
    const other = await h.token('fleet-other', ['events']);
    expect((await h.request('GET', '/event-consumers', { token: other })).body.event_consumers).toEqual([]);
    expect((await h.request('DELETE', `/event-consumers/${id}`, { token: other })).status).toBe(404);
    expect((await h.request('GET', `/event-consumers/${id}`, { token: other })).status).toBe(404);

    const closed = new Promise<void>((resolve) => conn.once('close', () => resolve()));
    expect((await h.request('DELETE', `/event-consumers/${id}`, { token })).status).toBe(204);
    await closed;
    await expect(amqplib.connect(url.toString())).rejects.toThrow(/ACCESS_REFUSED|403/);
    expect((await h.request('GET', '/event-consumers', { token })).body.event_consumers).toEqual([]);
    expect((await h.request('DELETE', `/event-consumers/${id}`, { token })).status).toBe(404);
  });

  it('answers bad input and missing scopes with problems', async () => {
    const bad = async (body: unknown) => {
      const res = await h.request('POST', '/event-consumers', { token, body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(res.body.type).toBe('/problems/validation-error');
      return res.body;
    };
    expect(JSON.stringify(await bad({ topics: ['commands', 'gossip'] }))).toContain('gossip');
    await bad({ topics: [] });
    await bad({});
    await bad({ topics: 7 });
    await bad({ topics: ['commands'], extra: true });

    const ro = await h.token('fleet-ec', ['events.ro']);
    const res = await h.request('POST', '/event-consumers', { token: ro, body: { topics: ['commands'] } });
    expect(res.status).toBe(403);
    expect(res.body.type).toBe('/problems/forbidden-resource');
    expect((await h.request('GET', '/event-consumers')).status).toBe(401);
  });
});

describe('/event-consumers without --amqp-url', () => {
  it('says AMQP is not set up (503) but still lists the topics', async () => {
    const h = await Harness.start();
    try {
      const token = await h.token('fleet-x', ['events']);
      const res = await h.request('POST', '/event-consumers', { token, body: { topics: ['commands'] } });
      expect(res.status).toBe(503);
      expect(res.body.type).toBe('/problems/service-unavailable');
      expect(res.body.detail).toContain('--amqp-url');
      const list = await h.request('GET', '/event-consumers', { token });
      expect(list.status).toBe(200);
      expect(list.body.topics).toHaveLength(4);
    } finally {
      await h.close();
    }
  });
});
