import { describe, expect, it } from 'vitest';
import { outcomeFromFailure } from '../../src/telematics/smartcar/error-mapping.js';
import { parseRetryAfter } from '../../src/telematics/smartcar/smartcar-client.js';
import { stateFromBatch } from '../../src/telematics/smartcar/state-mapping.js';

const AT = '2025-04-01T08:00:00.000Z';
const received = new Date('2025-04-01T09:00:00.000Z');

describe('Smartcar batch → state catalogue', () => {
  it('converts an imperial answer to kilometres and keeps the sc-data-age timestamp', () => {
    const { state, failures } = stateFromBatch(
      [
        {
          path: '/odometer',
          code: 200,
          body: { distance: 100 },
          headers: { 'sc-data-age': AT, 'sc-unit-system': 'imperial' },
        },
        {
          path: '/fuel',
          code: 200,
          body: { percentRemaining: 0.5, range: 10, amountRemaining: 5 },
          headers: { 'sc-unit-system': 'imperial' },
        },
      ],
      received,
    );
    expect(failures).toEqual([]);
    expect(state.mileage_in_kilometers).toEqual({ timestamp: AT, value: 160.934 });
    // No sc-data-age: the time the answer arrived.
    expect(state.remaining_range_in_kilometers).toEqual({ timestamp: received.toISOString(), value: 16.093 });
    expect(state.state_of_charge_or_fuel_level_in_percent?.value).toBe(50);
  });

  it('drops readings that do not match the documented shape', () => {
    const { state, failures } = stateFromBatch(
      [
        { path: '/location', code: 200, body: { latitude: 123, longitude: 0 }, headers: {} },
        { path: '/battery', code: 200, body: { percentRemaining: 80 }, headers: {} },
        { path: '/security', code: 200, body: { isLocked: 'yes' }, headers: {} },
      ],
      received,
      'rid-1',
    );
    expect(state).toEqual({});
    expect(failures.map((f) => [f.path, f.failure.kind])).toEqual([
      ['/location', 'malformed'],
      ['/battery', 'malformed'],
      ['/security', 'malformed'],
    ]);
    expect(outcomeFromFailure(failures[0]!.failure)).toMatchObject({ kind: 'third-party-error', request_id: 'rid-1' });
  });

  it('reads a per-path rate limit with its Retry-After and request id', () => {
    const { failures } = stateFromBatch(
      [
        {
          path: '/odometer',
          code: 429,
          body: { type: 'RATE_LIMIT', code: 'VEHICLE', description: 'throttled', statusCode: 429, requestId: 'r-9' },
          headers: { 'retry-after': String(999) },
        },
      ],
      received,
    );
    expect(outcomeFromFailure(failures[0]!.failure)).toMatchObject({
      kind: 'third-party-error',
      retry_after_s: 999,
      request_id: 'r-9',
    });
  });

  it('parses Retry-After as seconds or an HTTP date', () => {
    expect(parseRetryAfter('7')).toBe(7);
    expect(parseRetryAfter('Tue, 01 Apr 2025 09:00:30 GMT', received.getTime())).toBe(30);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter(null)).toBeUndefined();
  });
});
