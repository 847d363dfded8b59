import { describe, expect, it } from 'vitest';
import { Batcher } from '../../src/store/postgres/batcher.js';

/** A deferred promise, to hold a batch on the wire until the test lets it go. */
function deferred<T = void>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe('Batcher (coalesced store round trips)', () => {
  it('sends a lone call at once, then coalesces what arrives meanwhile into one batch', async () => {
    const batches: number[][] = [];
    const gate = deferred();
    const b = new Batcher<number, number>(
      async (items) => {
        batches.push(items);
        return items.map((i) => i * 10);
      },
      async (item) => {
        batches.push([item]);
        await gate.promise;
        return item * 10;
      },
      1,
    );
    const first = b.submit(1);
    const rest = [2, 3, 4].map((i) => b.submit(i));
    expect(batches).toEqual([[1]]);
    gate.resolve();
    expect(await first).toBe(10);
    expect(await Promise.all(rest)).toEqual([20, 30, 40]);
    expect(batches).toEqual([[1], [2, 3, 4]]);
  });

  it('falls back to one call per item when a batch fails, so one bad item fails alone', async () => {
    const gate = deferred();
    let singles = 0;
    const b = new Batcher<number, number>(
      async () => {
        throw new Error('batch failed');
      },
      async (item) => {
        singles++;
        if (item === 1) await gate.promise;
        if (item === 3) throw new Error('item 3 is bad');
        return item;
      },
      1,
    );
    const first = b.submit(1);
    const others = [2, 3, 4].map((i) =>
      b.submit(i).then(
        (v) => ({ v }),
        (e: Error) => ({ e: e.message }),
      ),
    );
    gate.resolve();
    await first;
    expect(await Promise.all(others)).toEqual([{ v: 2 }, { e: 'item 3 is bad' }, { v: 4 }]);
    expect(singles).toBe(4);
  });
});
