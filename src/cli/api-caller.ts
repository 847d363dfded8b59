import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** An error the CLI prints as one line, without a stack trace. */
export class CliError extends Error {
  override name = 'CliError';
}

/** A token is reused until this long before it expires, so it never expires in flight. */
const EXPIRY_MARGIN_MS = 30_000;

interface CachedToken {
  access_token: string;
  expires_at: number;
}

/**
 * A small client of fleetgate's own API for the CLI: gets a token (cached on disk until it
 * expires, so a script of many calls does not fetch one per call and hit the token endpoint's
 * rate limit), calls, prints the answer.
 */
export class ApiCaller {
  private token: string | undefined;
  private readonly cacheFile: string | undefined;

  constructor(
    private readonly baseUrl: string,
    private readonly clientId: string,
    private readonly clientSecret: string,
    /** Directory for cached tokens (e.g. ~/.cache/fleetgate/tokens); none = no caching. */
    cacheDir?: string,
  ) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    // One file per API URL and client id; the name is a hash, so neither appears in it.
    this.cacheFile = cacheDir
      ? path.join(
          cacheDir,
          `${createHash('sha256').update(`${this.baseUrl}\n${clientId}`).digest('hex').slice(0, 32)}.json`,
        )
      : undefined;
  }

  private readCache(): string | undefined {
    if (!this.cacheFile) return undefined;
    try {
      const cached = JSON.parse(readFileSync(this.cacheFile, 'utf8')) as CachedToken;
      if (typeof cached.access_token === 'string' && cached.expires_at - EXPIRY_MARGIN_MS > Date.now()) {
        return cached.access_token;
      }
    } catch {
      // no cache yet, or unreadable: fetch a new token
    }
    return undefined;
  }

  private writeCache(token: CachedToken): void {
    if (!this.cacheFile) return;
    try {
      mkdirSync(path.dirname(this.cacheFile), { recursive: true, mode: 0o700 });
      // 0600: the token is a credential of the client until it expires.
      writeFileSync(this.cacheFile, JSON.stringify(token), { mode: 0o600 });
    } catch {
      // caching is an optimisation; a read-only home still works, one token per call
    }
  }

  private dropCache(): void {
    this.token = undefined;
    if (this.cacheFile) rmSync(this.cacheFile, { force: true });
  }

  private async accessToken(): Promise<string> {
    this.token ??= this.readCache();
    if (this.token) return this.token;
    const basic = Buffer.from(`${encodeURIComponent(this.clientId)}:${encodeURIComponent(this.clientSecret)}`).toString(
      'base64',
    );
    const res = await this.fetch('/auth/oauth/token', {
      method: 'POST',
      headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials',
    });
    const text = await res.text();
    const body = parseJson(text) as { access_token?: string; expires_in?: number } | undefined;
    if (!res.ok || !body?.access_token) throw new CliError(`token request failed: ${describeError(res, text)}`);
    this.token = body.access_token;
    this.writeCache({
      access_token: body.access_token,
      expires_at: Date.now() + (typeof body.expires_in === 'number' ? body.expires_in : 60) * 1000,
    });
    return this.token;
  }

  /** Calls the API and answers the status and parsed body. */
  async call(method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
    const res = await this.fetch(path, {
      method,
      headers: {
        authorization: `Bearer ${await this.accessToken()}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  }

  /**
   * Follows `GET /events/stream` (Server-Sent Events), calling `onEvent` with each message's id
   * and data; reconnects with Last-Event-ID when the connection drops, until `signal` aborts.
   */
  async follow(
    path: string,
    after: string | undefined,
    onEvent: (id: string, data: string) => void,
    signal: AbortSignal,
  ): Promise<void> {
    let last = after;
    while (!signal.aborted) {
      try {
        const res = await this.fetch(path, {
          headers: {
            authorization: `Bearer ${await this.accessToken()}`,
            accept: 'text/event-stream',
            ...(last ? { 'last-event-id': last } : {}),
          },
          signal,
        });
        if (!res.ok || !res.body) {
          const text = await res.text();
          throw new Error(`${res.status}: ${text}`);
        }
        let buffer = '';
        const decoder = new TextDecoder();
        for await (const chunk of res.body) {
          buffer += decoder.decode(chunk as Uint8Array, { stream: true });
          let end = buffer.indexOf('\n\n');
          while (end >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const id = /^id: (.*)$/m.exec(block)?.[1];
            const data = /^data: (.*)$/m.exec(block)?.[1];
            if (id !== undefined && data !== undefined) {
              last = id;
              onEvent(id, data);
            }
            end = buffer.indexOf('\n\n');
          }
        }
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof Error && /^4\d\d:/.test(err.message)) throw err;
        process.stderr.write(
          `stream interrupted (${err instanceof Error ? err.message : String(err)}); reconnecting\n`,
        );
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    }
  }

  /** fetch, with connection failures turned into one readable line. */
  private async fetch(urlPath: string, init: RequestInit): Promise<Response> {
    try {
      return await fetch(`${this.baseUrl}${urlPath}`, init);
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      const why =
        cause?.code === 'ECONNREFUSED'
          ? 'connection refused'
          : cause?.code === 'ENOTFOUND'
            ? 'unknown host'
            : (cause?.code ?? cause?.message ?? (e as Error).message);
      throw new CliError(
        `cannot reach ${this.baseUrl} (${why}); is fleetgate running there? Set --api-url or FLEETGATE_API_URL.`,
      );
    }
  }

  /**
   * Calls the API: prints the body of a success on stdout (pretty JSON) and a problem as one
   * line on stderr, and sets a non-zero exit code for errors.
   */
  async print(method: string, urlPath: string, body?: unknown, headers: Record<string, string> = {}): Promise<void> {
    const call = async () =>
      this.fetch(urlPath, {
        method,
        headers: {
          authorization: `Bearer ${await this.accessToken()}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...headers,
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    let res = await call();
    if (res.status === 401) {
      // A cached token the server no longer takes (client deleted, key rotated): one fresh try.
      this.dropCache();
      res = await call();
    }
    const text = await res.text();
    if (!res.ok) {
      process.stderr.write(`fleetgate: ${describeError(res, text)}\n`);
      process.exitCode = 1;
      return;
    }
    const parsed = parseJson(text);
    process.stdout.write(`${parsed === undefined ? text : JSON.stringify(parsed, null, 2)}\n`);
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** `404 resource-not-found: The vehicle … (flow_id …)`, from a problem or any error answer. */
function describeError(res: Response, text: string): string {
  const problem = parseJson(text) as
    | { type?: string; title?: string; detail?: string; flow_id?: string; error?: string; error_description?: string }
    | undefined;
  const flowId = problem?.flow_id ?? res.headers.get('x-flow-id');
  const kind = problem?.type?.replace(/^\/problems\//, '') ?? problem?.error ?? res.statusText;
  const detail = problem?.detail ?? problem?.error_description ?? problem?.title ?? text.slice(0, 200).trim();
  return `${res.status} ${kind}${detail ? `: ${detail}` : ''}${flowId ? ` (flow_id ${flowId})` : ''}`.replace(
    /\s*\n\s*/g,
    ' ',
  );
}
