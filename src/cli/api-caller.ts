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
