import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { EVENT_TOPICS } from '../../src/domain/event-topics.js';
import { EVENT_TYPES } from '../../src/domain/events.js';
import { consumerPermissions, routingKey, topicBindingKeys } from '../../src/events/channels/amqp/routing.js';

describe('event topics (issue 17 §2)', () => {
  it('put every event type of the catalogue in exactly one topic', () => {
    const inTopics = Object.values(EVENT_TOPICS).flatMap((t) => [...t.event_types]);
    expect([...inTopics].sort()).toEqual([...EVENT_TYPES].sort());
  });

  it('are the table docs/events.md shows', () => {
    const doc = readFileSync(new URL('../../docs/events.md', import.meta.url), 'utf8');
    const section = doc.slice(doc.indexOf('### Topics'), doc.indexOf('### Create a consumer'));
    const rows = [...section.matchAll(/^\| `([a-z-]+)` \| (.+) \|$/gm)].map((m) => [
      m[1],
      [...m[2]!.matchAll(/`(\w+)`/g)].map((t) => t[1]),
    ]);
    expect(rows).toEqual(Object.entries(EVENT_TOPICS).map(([topic, t]) => [topic, [...t.event_types]]));
  });
});

describe('routing keys', () => {
  it('carry fleet, event type and vehicle, with dots in fleet ids escaped', () => {
    expect(routingKey('acme', 'Trip', 'V1')).toBe('acme.Trip.V1');
    expect(routingKey('acme.eu', 'Trip', 'V1')).toBe('acme%2Eeu.Trip.V1');
    expect(topicBindingKeys('acme.eu', 'commands')).toEqual([
      'acme%2Eeu.CommandFinished.*',
      'acme%2Eeu.CommandOutcomeResolved.*',
    ]);
  });

  it("limit a consumer's bindings to keys of its own fleet", () => {
    const p = consumerPermissions('fgec_x', 'acme.eu');
    const read = new RegExp(p.topic.read);
    expect(read.test('acme%2Eeu.Trip.V1')).toBe(true);
    expect(read.test('acme%2Eeu.#')).toBe(true);
    for (const key of ['acme%2Eeux.#', 'acme.#', '#', '*.Trip.*', 'other.Trip.V1'])
      expect(read.test(key), key).toBe(false);
    expect(new RegExp(p.configure).test('fleetgate.consumer.fgec_x.mine')).toBe(true);
    expect(new RegExp(p.configure).test('fleetgate.consumer.fgec_xy.mine')).toBe(false);
    expect(new RegExp(p.read).test('fleetgate.events')).toBe(true);
    expect(new RegExp(p.read).test('fleetgate.events.other')).toBe(false);
  });
});
