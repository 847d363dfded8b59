import { redact } from '../../../config.js';

/** RabbitMQ answered a management call with an error status, or could not be reached. */
export class RabbitmqManagementError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'RabbitmqManagementError';
  }
}

const TIMEOUT_MS = 10_000;

/**
 * A small client of RabbitMQ's management HTTP API (https://www.rabbitmq.com/docs/management),
 * the documented way to manage users, permissions, queues and policies from outside the broker.
 * The URL carries the account (an `administrator`-tagged user) as `http://user:pass@host:15672`.
 */
export class RabbitmqManagement {
  private readonly base: string;
  private readonly authorization: string;
  private readonly shown: string;

  constructor(url: string) {
    const u = new URL(url);
    this.authorization = `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}`;
    this.shown = redact(url);
    u.username = '';
    u.password = '';
    this.base = u.toString().replace(/\/+$/, '');
  }

  get(path: string): Promise<unknown> {
    return this.call('GET', path);
  }

  put(path: string, body: unknown): Promise<unknown> {
    return this.call('PUT', path, body);
  }

  post(path: string, body: unknown): Promise<unknown> {
    return this.call('POST', path, body);
  }

  /** Deletes; a resource that is already gone is not an error. */
  async delete(path: string): Promise<void> {
    await this.call('DELETE', path, undefined, [404]);
  }

  private async call(method: string, path: string, body?: unknown, alsoOk: number[] = []): Promise<unknown> {
    let res: Response;
    try {
      res = await fetch(`${this.base}/api${path}`, {
        method,
        headers: {
          authorization: this.authorization,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
    } catch (err) {
      throw new RabbitmqManagementError(
        `RabbitMQ management API at ${this.shown} unreachable: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    const text = await res.text();
    if (!res.ok && !alsoOk.includes(res.status)) {
      throw new RabbitmqManagementError(
        `RabbitMQ management API ${method} ${path.split('?')[0]} answered ${res.status}: ${text.slice(0, 300)}`,
        res.status,
      );
    }
    return text === '' ? undefined : JSON.parse(text);
  }
}

/** A path segment of the management API (vhost `/` is `%2F`). */
export const seg = (value: string): string => encodeURIComponent(value);
