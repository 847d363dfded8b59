import { Readable } from 'node:stream';
import aedesPersistence, { type AedesMemoryPersistence } from 'aedes-persistence';

// CommonJS: module.exports is the factory, which the package's types call its default export.
const memoryPersistence = aedesPersistence as unknown as typeof aedesPersistence.default;

/** The fields of a retained PUBLISH this index reads. */
type Packet = { topic: string; payload: Buffer };

/**
 * aedes' memory persistence with retained messages also indexed by topic. On every SUBSCRIBE the
 * memory store tests each retained message against each topic filter, so a unit subscribing to
 * its command topic cost one test per unit of the fleet (every unit retains its status): in the
 * 15,000-unit reconnect storm the broker thread spent 217 s of CPU, 77 % of it in that scan
 * (qlobber and aedes-persistence). A filter without wildcards matches at most the message of that
 * one topic, read from the index here; a filter with `+` or `#` (fleetgate's own subscription,
 * once per connection) is left to the store. Both are written on every retained publish.
 */
export function memoryPersistenceWithRetainedIndex(): AedesMemoryPersistence {
  const persistence = memoryPersistence();
  const byTopic = new Map<string, Packet>();
  const exact = (filter: string) => !filter.includes('+') && !filter.includes('#');
  const store = persistence.storeRetained.bind(persistence) as unknown as (packet: Packet) => Promise<void>;
  const combi = persistence.createRetainedStreamCombi.bind(persistence) as (filters: string[]) => Readable;

  const indexed = (packet: Packet) => {
    // An empty retained message deletes the topic's (MQTT 3.1.1 §3.3.1.3).
    if (packet.payload.length === 0) byTopic.delete(packet.topic);
    else byTopic.set(packet.topic, { ...packet });
  };
  const fromIndex = (filters: string[]) =>
    Readable.from(
      filters.flatMap((filter) => byTopic.get(filter) ?? []),
      { objectMode: true },
    );

  Object.assign(persistence, {
    // aedes calls it without a callback and awaits the promise (aedes.js storeRetained).
    storeRetained: (packet: Packet, cb?: (error: Error | null) => void) => {
      indexed(packet);
      const stored = store(packet);
      if (!cb) return stored;
      stored.then(() => cb(null), cb);
    },
    createRetainedStream: (filter: string) => (exact(filter) ? fromIndex([filter]) : combi([filter])),
    createRetainedStreamCombi: (filters: string[]) => (filters.every(exact) ? fromIndex(filters) : combi(filters)),
  });
  return persistence;
}
