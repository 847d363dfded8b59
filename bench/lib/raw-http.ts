import net from 'node:net';

/**
 * A minimal keep-alive HTTP/1.1 client for open-loop load: one request at a time per socket,
 * TCP_NODELAY, responses framed by Content-Length (what Fastify sends for JSON). Lean on purpose,
 * so the load generator costs little of the shared CPU.
 */
export class RawHttpConnection {
  private readonly socket: net.Socket;
  private buffer: Buffer = Buffer.alloc(0);
  private waiting: ((status: number) => void) | undefined;
  private failWaiting: ((err: Error) => void) | undefined;
  /** Why the socket ended (the server closed it, say): a request on it then fails at once. */
  private ended: Error | undefined;
  readonly ready: Promise<void>;

  constructor(
    host: string,
    port: number,
    private readonly headers: string,
  ) {
    this.socket = net.connect({ host, port, noDelay: true });
    this.ready = new Promise((resolve, reject) => {
      this.socket.once('connect', () => resolve());
      this.socket.once('error', reject);
    });
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (err) => {
      this.ended ??= err;
      this.failWaiting?.(err);
    });
    this.socket.on('close', () => {
      this.ended ??= new Error('connection closed');
      this.failWaiting?.(this.ended);
    });
  }

  /** Sends `POST path` with an empty body; resolves with the status code. */
  post(path: string): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      if (this.ended) return reject(this.ended);
      this.waiting = resolve;
      this.failWaiting = reject;
      this.socket.write(`POST ${path} HTTP/1.1\r\n${this.headers}content-length: 0\r\n\r\n`);
    });
  }

  private onData(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    const end = this.buffer.indexOf('\r\n\r\n');
    if (end < 0) return;
    const head = this.buffer.toString('latin1', 0, end);
    const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    const length = m ? Number(m[1]) : 0;
    if (this.buffer.length < end + 4 + length) return;
    const status = Number(head.slice(9, 12));
    this.buffer = this.buffer.subarray(end + 4 + length);
    const resolve = this.waiting;
    this.waiting = undefined;
    this.failWaiting = undefined;
    resolve?.(status);
  }

  close(): void {
    this.socket.destroy();
  }
}
