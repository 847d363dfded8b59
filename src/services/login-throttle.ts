/**
 * Throttles guessing of one client's secret without letting a guesser lock the client out
 * (issue 21, OWASP API2): failures are counted per client id from one address, and per client id
 * over all addresses; past either limit, attempts are refused unchecked — except, for the
 * per-client limit, from an address where that client recently authenticated, so the client's
 * own backend keeps getting tokens while someone elsewhere guesses.
 */
export interface LoginThrottleOptions {
  perAddress: number;
  perClient: number;
  windowMs: number;
  /** How long an address where the client authenticated stays exempt from the per-client limit. */
  trustMs: number;
}

const DEFAULTS: LoginThrottleOptions = { perAddress: 10, perClient: 50, windowMs: 60_000, trustMs: 24 * 3600_000 };
const MAX_TRACKED = 100_000;

interface Window {
  count: number;
  ends: number;
}

export class LoginThrottle {
  private readonly failures = new Map<string, Window>();
  private readonly trusted = new Map<string, number>();
  private readonly options: LoginThrottleOptions;

  constructor(options: Partial<LoginThrottleOptions> = {}) {
    this.options = { ...DEFAULTS, ...options };
  }

  /** Seconds until `clientId` may be tried again from `address`; 0 when it may be tried now. */
  retryAfterSeconds(clientId: string, address: string, now = Date.now()): number {
    const pair = this.open(`${address}|${clientId}`, now);
    if (pair && pair.count >= this.options.perAddress) return Math.ceil((pair.ends - now) / 1000);
    const client = this.open(`client|${clientId}`, now);
    const exempt = (this.trusted.get(`${address}|${clientId}`) ?? 0) > now;
    if (client && client.count >= this.options.perClient && !exempt) return Math.ceil((client.ends - now) / 1000);
    return 0;
  }

  failed(clientId: string, address: string, now = Date.now()): void {
    if (this.failures.size >= MAX_TRACKED) this.failures.clear();
    for (const key of [`${address}|${clientId}`, `client|${clientId}`]) {
      const current = this.open(key, now) ?? { count: 0, ends: now + this.options.windowMs };
      current.count++;
      this.failures.set(key, current);
    }
  }

  succeeded(clientId: string, address: string, now = Date.now()): void {
    if (this.trusted.size >= MAX_TRACKED) this.trusted.clear();
    this.trusted.set(`${address}|${clientId}`, now + this.options.trustMs);
  }

  private open(key: string, now: number): Window | undefined {
    const w = this.failures.get(key);
    return w && w.ends > now ? w : undefined;
  }
}
