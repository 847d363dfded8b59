import { Aedes } from 'aedes';
import { describe, expect, it } from 'vitest';
import { AEDES_MESSAGE_QUEUE } from '../../src/broker/aedes-settings.js';

type Done = () => void;
interface Emitter {
  on(topic: string, notify: (packet: unknown, done: Done) => void): void;
  emit(packet: { topic: string; payload: Buffer }, cb?: (err?: Error) => void): void;
}

/**
 * A reconnect storm in small: deliveries held back (sockets busy) while thousands of messages
 * arrive, then all finishing at once. aedes's default emitter queues what is beyond 100 in flight
 * and starts each queued message from inside the previous one's completion.
 */
async function storm(options: Record<string, unknown>): Promise<{ delivered: number; error?: unknown }> {
  const broker = await Aedes.createBroker(options);
  const mq = (broker as unknown as { mq: Emitter }).mq;
  const held: Done[] = [];
  let delivered = 0;
  let holding = true;
  mq.on('units/+/status', (_packet, done) => {
    delivered++;
    if (holding) held.push(done);
    else done();
  });
  for (let i = 0; i < 100; i++) mq.emit({ topic: `units/${i}/status`, payload: Buffer.from('online') });
  const queued = 50_000;
  for (let i = 0; i < queued; i++) mq.emit({ topic: `units/q${i}/status`, payload: Buffer.from('offline') });
  holding = false;
  let error: unknown;
  try {
    for (const done of held.splice(0)) done();
  } catch (e) {
    error = e;
  }
  await new Promise<void>((resolve) => broker.close(() => resolve()));
  return { delivered, error };
}

describe('embedded broker: message queue', () => {
  it('delivers a storm of messages without overflowing the stack (aedes default: it overflows)', async () => {
    expect(await storm(AEDES_MESSAGE_QUEUE)).toEqual({ delivered: 50_100 });
    const stock = await storm({});
    expect(stock.error).toBeInstanceOf(RangeError);
  });
});
