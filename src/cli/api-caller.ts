/** A small client of fleetgate's own API for the CLI: gets a token, calls, prints the answer. */
export class ApiCaller {
  private token: string | undefined;

  constructor(
    private readonly baseUrl: string,
    private readonly clientId: string,
    private readonly clientSecret: string,
  ) {}

  private async accessToken(): Promise<string> {
    if (this.token) return this.token;
    const basic = Buffer.from(`${encodeURIComponent(this.clientId)}:${encodeURIComponent(this.clientSecret)}`).toString(
      'base64',
    );
    const res = await fetch(`${this.baseUrl}/auth/oauth/token?grant_type=client_credentials`, {
      method: 'POST',
      headers: { authorization: `Basic ${basic}` },
    });
    const body = (await res.json()) as { access_token?: string; detail?: string };
    if (!res.ok || !body.access_token) throw new Error(`token request failed (${res.status}): ${body.detail ?? ''}`);
    this.token = body.access_token;
    return this.token;
  }

  /** Calls the API and answers the status and parsed body. */
  async call(method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
    const res = await fetch(`${this.baseUrl}${path}`, {
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
        const res = await fetch(`${this.baseUrl}${path}`, {
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

  /** Calls the API and prints status and body; sets a non-zero exit code for errors. */
  async print(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<void> {
    const res = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${await this.accessToken()}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    process.stderr.write(`${res.status} ${res.statusText}  flow_id ${res.headers.get('x-flow-id') ?? '-'}\n`);
    let pretty = text;
    try {
      pretty = JSON.stringify(JSON.parse(text), null, 2);
    } catch {
      // not JSON: print as is
    }
    process.stdout.write(`${pretty}\n`);
    if (!res.ok) process.exitCode = 1;
  }
}
