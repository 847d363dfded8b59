import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stalledBodyFlood } from '../../scripts/lib/fault-drills.js';
import { Harness } from '../helpers/harness.js';

// Issue 21 item 3 (OWASP API4): no one client can hold the server's resources.
let h: Harness;

beforeAll(async () => {
  h = await Harness.start({ requestBodyTimeoutMs: 500 });
});

afterAll(async () => {
  await h?.close();
});

describe('request limits', () => {
  it('a flood of requests whose bodies never arrive is answered 408 and closed, and others are served meanwhile', async () => {
    const result = await stalledBodyFlood(h.url, 200, 8_000);
    expect(result.sent).toBe(200);
    expect(result.held).toBe(0);
    expect(result.closedWithoutAnswer).toBe(0);
    expect(result.answered).toEqual({ '408': 200 });
    expect(result.probeStatus).toBe(200);
  }, 20_000);
});
