/** What the fake counts, for tests to assert on (FakeSmartcar.counters). */
export interface FakeCounters {
  /** Successful refresh-token exchanges. */
  tokenRefreshes: number;
  /** Refused refresh-token exchanges (invalid_grant). */
  tokenRejections: number;
  /** Vehicle API requests, by `METHOD /path-template`. */
  requests: Record<string, number>;
  rateLimited: number;
}

export function newCounters(): FakeCounters {
  return { tokenRefreshes: 0, tokenRejections: 0, requests: {}, rateLimited: 0 };
}
