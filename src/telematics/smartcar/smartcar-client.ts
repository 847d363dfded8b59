/**
 * HTTP client for Smartcar's API v2.0 and its token endpoint (docs/smartcar.md lists the
 * documents followed). Every call takes an AbortSignal; every answer is validated strictly, so a
 * body that does not match the documented contract becomes a `malformed` failure instead of
 * leaking `undefined` into vehicle state. The client translates nothing into fleetgate's terms:
 * error-mapping.ts does that.
 */

export const SMARTCAR_PROVIDER = 'Smartcar';

/** Everything that can go wrong talking to Smartcar, as data. */
export type SmartcarFailure =
  /** An error object as documented ("API errors": type, code, description, statusCode, requestId…). */
  | {
      kind: 'api';
      status: number;
      type: string;
      code: string | null;
      description: string;
      requestId?: string;
      retryAfterS?: number;
      resolution?: string | null;
    }
  /** The token endpoint refused (RFC 6749 §5.2 `error`, e.g. invalid_grant). */
  | { kind: 'oauth'; status: number; error: string; description?: string; requestId?: string }
  /** An answer that does not match the documented contract. */
  | { kind: 'malformed'; status: number; detail: string; requestId?: string }
  /** No answer before the call's deadline; the request may have reached Smartcar. */
  | { kind: 'timeout'; detail: string }
  /** Smartcar could not be reached at all (connection refused, reset, DNS); nothing was processed. */
  | { kind: 'unreachable'; detail: string };

export class SmartcarError extends Error {
  constructor(readonly failure: SmartcarFailure) {
    super(describeFailure(failure));
    this.name = 'SmartcarError';
  }
}

export function isSmartcarError(e: unknown): e is SmartcarError {
  return e instanceof SmartcarError;
}

/** One line for people: no tokens or secrets are ever part of a failure. */
export function describeFailure(f: SmartcarFailure): string {
  switch (f.kind) {
    case 'api':
      return `${f.type}${f.code ? `:${f.code}` : ''} (HTTP ${f.status}) ${f.description}`;
    case 'oauth':
      return `token endpoint answered ${f.error} (HTTP ${f.status})${f.description ? ` ${f.description}` : ''}`;
    case 'malformed':
      return `unusable answer (HTTP ${f.status}): ${f.detail}`;
    case 'timeout':
      return `no answer in time: ${f.detail}`;
    case 'unreachable':
      return `cannot be reached: ${f.detail}`;
  }
}

export interface SmartcarTokens {
  accessToken: string;
  expiresInS: number;
  refreshToken: string;
  refreshExpiresInS?: number;
}

export interface SmartcarAttributes {
  id: string;
  make: string;
  model: string;
  year: number;
}

/** One entry of a batch answer, as Smartcar documents it. */
export interface SmartcarBatchItem {
  path: string;
  code: number;
  body: unknown;
  headers: Record<string, string>;
}

export interface SmartcarClientOptions {
  /** Base that documented paths such as `/vehicles/{id}/security` are appended to. */
  apiUrl: string;
  /** Base of `/oauth/token`. */
  authUrl: string;
  /** Upper bound of one HTTP call, below the caller's own signal. Default 30 s. */
  timeoutMs?: number;
}

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `Retry-After` is delta-seconds or an HTTP date (RFC 9110 §10.2.3). */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const at = Date.parse(trimmed);
  return Number.isFinite(at) ? Math.max(0, Math.ceil((at - now) / 1000)) : undefined;
}

/** Reads a Smartcar error object; undefined when the body is not one. */
function parseErrorObject(
  body: unknown,
):
  | { type: string; code: string | null; description: string; requestId?: string; resolution?: string | null }
  | undefined {
  if (!isObject(body) || typeof body.type !== 'string' || body.type === '') return undefined;
  const code = typeof body.code === 'string' ? body.code : null;
  const description = typeof body.description === 'string' ? body.description : '(no description)';
  const resolution = isObject(body.resolution)
    ? typeof body.resolution.type === 'string'
      ? body.resolution.type
      : null
    : typeof body.resolution === 'string'
      ? body.resolution
      : undefined;
  return {
    type: body.type,
    code,
    description,
    ...(typeof body.requestId === 'string' ? { requestId: body.requestId } : {}),
    ...(resolution !== undefined ? { resolution } : {}),
  };
}

/** Turns a non-2xx answer (direct or a batch item) into a failure. */
export function failureFromAnswer(
  status: number,
  body: unknown,
  headers: { get(name: string): string | null | undefined },
): SmartcarFailure {
  const requestId = headers.get('sc-request-id') ?? undefined;
  const retryAfterS = parseRetryAfter(headers.get('retry-after'));
  const parsed = parseErrorObject(body);
  if (parsed) {
    return {
      kind: 'api',
      status,
      ...parsed,
      ...(parsed.requestId ? {} : requestId ? { requestId } : {}),
      ...(retryAfterS !== undefined ? { retryAfterS } : {}),
    };
  }
  // A 429 without an error object is still a rate limit; the header carries what matters.
  if (status === 429) {
    return {
      kind: 'api',
      status,
      type: 'RATE_LIMIT',
      code: null,
      description: 'rate limited',
      ...(requestId ? { requestId } : {}),
      ...(retryAfterS !== undefined ? { retryAfterS } : {}),
    };
  }
  return {
    kind: 'malformed',
    status,
    detail: 'error answer without a Smartcar error object',
    ...(requestId ? { requestId } : {}),
  };
}

export class SmartcarClient {
  private readonly apiUrl: string;
  private readonly authUrl: string;
  private readonly timeoutMs: number;

  constructor(options: SmartcarClientOptions) {
    this.apiUrl = options.apiUrl.replace(/\/+$/, '');
    this.authUrl = options.authUrl.replace(/\/+$/, '');
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  /** `POST {auth}/oauth/token` with grant_type=refresh_token; Smartcar rotates the refresh token. */
  async refreshToken(
    clientId: string,
    clientSecret: string,
    refreshToken: string,
    signal: AbortSignal,
  ): Promise<SmartcarTokens> {
    // RFC 6749 §2.3.1: client id and secret are form-urlencoded before Basic encoding.
    const basic = Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64');
    const { status, body, headers } = await this.send(
      `${this.authUrl}/oauth/token`,
      {
        method: 'POST',
        headers: {
          authorization: `Basic ${basic}`,
          'content-type': 'application/x-www-form-urlencoded',
          accept: 'application/json',
        },
        body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken }).toString(),
      },
      signal,
    );
    const requestId = headers.get('sc-request-id') ?? undefined;
    if (status < 200 || status >= 300) {
      if (isObject(body) && typeof body.error === 'string') {
        throw new SmartcarError({
          kind: 'oauth',
          status,
          error: body.error,
          ...(typeof body.error_description === 'string' ? { description: body.error_description } : {}),
          ...(requestId ? { requestId } : {}),
        });
      }
      throw new SmartcarError(failureFromAnswer(status, body, headers));
    }
    if (
      !isObject(body) ||
      typeof body.access_token !== 'string' ||
      body.access_token === '' ||
      typeof body.refresh_token !== 'string' ||
      body.refresh_token === '' ||
      typeof body.expires_in !== 'number' ||
      !(body.expires_in > 0) ||
      (typeof body.token_type === 'string' && body.token_type.toLowerCase() !== 'bearer')
    ) {
      throw new SmartcarError({
        kind: 'malformed',
        status,
        detail: 'token answer lacks access_token, refresh_token or expires_in',
        ...(requestId ? { requestId } : {}),
      });
    }
    return {
      accessToken: body.access_token,
      expiresInS: body.expires_in,
      refreshToken: body.refresh_token,
      ...(typeof body.refresh_expires_in === 'number' ? { refreshExpiresInS: body.refresh_expires_in } : {}),
    };
  }

  /** `GET /vehicles/{id}`: the vehicle exists under this grant (needs read_vehicle_info). */
  async attributes(accessToken: string, vehicleId: string, signal: AbortSignal): Promise<SmartcarAttributes> {
    const { body, requestId, status } = await this.api(accessToken, 'GET', vehicleId, '', undefined, signal);
    if (
      !isObject(body) ||
      typeof body.id !== 'string' ||
      typeof body.make !== 'string' ||
      typeof body.model !== 'string' ||
      typeof body.year !== 'number'
    ) {
      throw malformed(status, 'vehicle attributes lack id, make, model or year', requestId);
    }
    return { id: body.id, make: body.make, model: body.model, year: body.year };
  }

  /** `GET /vehicles/{id}/permissions`: what the owner granted this application. */
  async permissions(accessToken: string, vehicleId: string, signal: AbortSignal): Promise<string[]> {
    const { body, requestId, status } = await this.api(
      accessToken,
      'GET',
      vehicleId,
      '/permissions?limit=100',
      undefined,
      signal,
    );
    if (!isObject(body) || !Array.isArray(body.permissions) || !body.permissions.every((p) => typeof p === 'string')) {
      throw malformed(status, 'permissions answer lacks a list of permission names', requestId);
    }
    return body.permissions as string[];
  }

  /** `POST /vehicles/{id}/security` `{action}`; resolves when Smartcar answers `status: success`. */
  async security(
    accessToken: string,
    vehicleId: string,
    action: 'LOCK' | 'UNLOCK',
    signal: AbortSignal,
  ): Promise<{ requestId?: string }> {
    const { body, requestId, status } = await this.api(accessToken, 'POST', vehicleId, '/security', { action }, signal);
    if (!isObject(body) || body.status !== 'success') {
      throw malformed(status, 'security action answer is not status "success"', requestId);
    }
    return requestId ? { requestId } : {};
  }

  /** `POST /vehicles/{id}/batch`: several read endpoints in one request, one answer per path. */
  async batch(
    accessToken: string,
    vehicleId: string,
    paths: readonly string[],
    signal: AbortSignal,
  ): Promise<{ items: SmartcarBatchItem[]; requestId?: string }> {
    const { body, requestId, status } = await this.api(
      accessToken,
      'POST',
      vehicleId,
      '/batch',
      { requests: paths.map((path) => ({ path })) },
      signal,
    );
    if (!isObject(body) || !Array.isArray(body.responses)) {
      throw malformed(status, 'batch answer lacks "responses"', requestId);
    }
    const items: SmartcarBatchItem[] = [];
    for (const r of body.responses) {
      if (!isObject(r) || typeof r.path !== 'string' || typeof r.code !== 'number') {
        throw malformed(status, 'batch answer holds an entry without path or code', requestId);
      }
      const headers: Record<string, string> = {};
      if (isObject(r.headers)) {
        // Batch entries carry headers as JSON, where Retry-After may come as a number.
        for (const [k, v] of Object.entries(r.headers)) {
          if (typeof v === 'string' || typeof v === 'number') headers[k.toLowerCase()] = String(v);
        }
      }
      items.push({ path: r.path, code: r.code, body: r.body, headers });
    }
    return requestId ? { items, requestId } : { items };
  }

  private async api(
    accessToken: string,
    method: 'GET' | 'POST',
    vehicleId: string,
    path: string,
    payload: unknown,
    signal: AbortSignal,
  ): Promise<{ status: number; body: unknown; requestId?: string }> {
    const url = `${this.apiUrl}/vehicles/${encodeURIComponent(vehicleId)}${path}`;
    const { status, body, headers } = await this.send(
      url,
      {
        method,
        headers: {
          authorization: `Bearer ${accessToken}`,
          accept: 'application/json',
          // fleetgate's state catalogue is metric; ask for it (readings still get checked).
          'sc-unit-system': 'metric',
          ...(payload !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        ...(payload !== undefined ? { body: JSON.stringify(payload) } : {}),
      },
      signal,
    );
    const requestId = headers.get('sc-request-id') ?? undefined;
    if (status < 200 || status >= 300) throw new SmartcarError(failureFromAnswer(status, body, headers));
    return requestId ? { status, body, requestId } : { status, body };
  }

  private async send(
    url: string,
    init: RequestInit,
    signal: AbortSignal,
  ): Promise<{ status: number; body: unknown; headers: Headers }> {
    const what = `${init.method} ${new URL(url).pathname}`;
    const callSignal = AbortSignal.any([signal, AbortSignal.timeout(this.timeoutMs)]);
    let res: Response;
    let text: string;
    try {
      res = await fetch(url, { ...init, signal: callSignal, redirect: 'error' });
      text = await res.text();
    } catch (e) {
      if (callSignal.aborted) throw new SmartcarError({ kind: 'timeout', detail: what });
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      throw new SmartcarError({
        kind: 'unreachable',
        detail: `${what}: ${cause?.code ?? cause?.message ?? (e as Error).message}`,
      });
    }
    let body: unknown;
    if (text !== '') {
      try {
        body = JSON.parse(text);
      } catch {
        const requestId = res.headers.get('sc-request-id') ?? undefined;
        if (res.status === 429) throw new SmartcarError(failureFromAnswer(429, undefined, res.headers));
        throw malformed(res.status, `${what} answered with a body that is not JSON`, requestId);
      }
    }
    return { status: res.status, body, headers: res.headers };
  }
}

function malformed(status: number, detail: string, requestId: string | undefined): SmartcarError {
  return new SmartcarError({ kind: 'malformed', status, detail, ...(requestId ? { requestId } : {}) });
}
