import { describe, expect, it } from 'vitest';
import { LruMap } from '../../src/lib/lru-map.js';

describe('LruMap', () => {
  it('drops the least recently used entry beyond its bound; a get counts as a use', () => {
    const m = new LruMap<string, number>(2);
    m.set('a', 1);
    m.set('b', 2);
    expect(m.get('a')).toBe(1);
    m.set('c', 3);
    expect(m.get('b')).toBeUndefined();
    expect([m.get('a'), m.get('c'), m.size]).toEqual([1, 3, 2]);
    m.set('a', 10);
    m.set('d', 4);
    expect([m.get('c'), m.get('a'), m.get('d')]).toEqual([undefined, 10, 4]);
    m.delete('a');
    m.clear();
    expect(m.size).toBe(0);
  });

  it('refuses a bound below one', () => {
    expect(() => new LruMap(0)).toThrow(RangeError);
  });
});
