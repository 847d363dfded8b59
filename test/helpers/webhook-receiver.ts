import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import type { EventEnvelope } from '../../src/domain/events.js';

/**
 * A real HTTP webhook receiver on a loopback port that verifies every delivery's Standard
 * Webhooks signature with the `standardwebhooks` library, as a booking backend would.
 */
export class WebhookReceiver {
  /** Verified events, in arrival order (duplicates kept). */
  readonly events: EventEnvelope[] = [];
  /** Requests whose signature did not verify. */
  readonly rejected: string[] = [];
  requests = 0;
  /** The status to answer the n-th request (1-based) with; 204 by default. */
  status: (n: number, event: EventEnvelope | undefined) => number = () => 204;
  /** Awaited before the n-th request is answered: acts while that delivery is in flight. */
  beforeAnswer: ((n: number, event: EventEnvelope | undefined, req: http.IncomingMessage) => Promise<void>) | undefined;
  /** The most requests that were in flight (arrived, neither answered nor closed) at once. */
  maxInFlight = 0;
  private inFlight = 0;
  secret: string | undefined;
  private server: http.Server | undefined;
  private readonly waiters = new Set<() => void>();

  static async start(port = 0): Promise<WebhookReceiver> {
    const r = new WebhookReceiver();
    await r.listen(port);
    return r;
  }

  get port(): number {
    return (this.server!.address() as AddressInfo).port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/hooks/fleetgate`;
  }

  async listen(port: number): Promise<void> {
    this.server = http.createServer((req, res) => {
      let open = true;
      const ended = () => {
        if (open) this.inFlight--;
        open = false;
      };
      this.maxInFlight = Math.max(this.maxInFlight, ++this.inFlight);
      req.socket.once('close', ended);
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', async () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const n = ++this.requests;
        let event: EventEnvelope | undefined;
        try {
          event = new Webhook(this.secret ?? '').verify(body, req.headers as Record<string, string>) as EventEnvelope;
        } catch (e) {
          this.rejected.push(String(e));
        }
        await this.beforeAnswer?.(n, event, req);
        const status = this.status(n, event);
        if (event && status >= 200 && status < 300) this.events.push(event);
        ended();
        res.writeHead(status).end();
        for (const wake of this.waiters) wake();
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(port, '127.0.0.1', resolve));
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Resolves once `condition` holds, re-checked after every request received. */
  async until(condition: () => boolean, timeoutMs = 20_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (!condition()) {
      const left = until - Date.now();
      if (left <= 0)
        throw new Error(`receiver: condition not met within ${timeoutMs} ms (${this.events.length} events)`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left);
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.waiters.add(done);
      }).finally(() => undefined);
      this.waiters.clear();
    }
  }
}
