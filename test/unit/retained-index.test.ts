import type { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { memoryPersistenceWithRetainedIndex } from '../../src/broker/retained-index.js';

const packet = (topic: string, payload: string) => ({
  cmd: 'publish' as const,
  topic,
  payload: Buffer.from(payload),
  qos: 1 as const,
  retain: true,
  dup: false,
  brokerId: 'b',
  brokerCounter: 1,
});

async function topics(stream: Readable): Promise<string[]> {
  const seen: string[] = [];
  for await (const p of stream) seen.push(`${(p as { topic: string }).topic}=${(p as { payload: Buffer }).payload}`);
  return seen.sort();
}

describe('embedded broker: retained messages indexed by topic (src/broker/retained-index.ts)', () => {
  it('answers exact filters from the index and wildcard filters from the store, both kept up to date', async () => {
    const p = memoryPersistenceWithRetainedIndex();
    const store = (topic: string, payload: string) =>
      (p.storeRetained as unknown as (packet: unknown) => Promise<void>)(packet(topic, payload));
    await store('u/1/status', 'online');
    await store('u/2/status', 'online');
    await store('u/2/status', 'offline'); // replaces
    await store('u/3/status', 'online');
    await store('u/3/status', ''); // an empty retained message deletes it

    expect(await topics(p.createRetainedStreamCombi(['u/1/commands']))).toEqual([]);
    expect(await topics(p.createRetainedStreamCombi(['u/2/status']))).toEqual(['u/2/status=offline']);
    expect(await topics(p.createRetainedStream('u/3/status'))).toEqual([]);
    expect(await topics(p.createRetainedStreamCombi(['u/1/status', 'u/2/status']))).toEqual([
      'u/1/status=online',
      'u/2/status=offline',
    ]);
    expect(await topics(p.createRetainedStream('u/+/status'))).toEqual(['u/1/status=online', 'u/2/status=offline']);
    expect(await topics(p.createRetainedStreamCombi(['u/#', 'x/y']))).toEqual([
      'u/1/status=online',
      'u/2/status=offline',
    ]);
    // The callback form (aedes-persistence's documented API) stores too.
    await new Promise<void>((resolve, reject) =>
      (p.storeRetained as unknown as (packet: unknown, cb: (e: Error | null) => void) => void)(
        packet('u/4/status', 'online'),
        (e) => (e ? reject(e) : resolve()),
      ),
    );
    expect(await topics(p.createRetainedStream('u/4/status'))).toEqual(['u/4/status=online']);
  });
});
