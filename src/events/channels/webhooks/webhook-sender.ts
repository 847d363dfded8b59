import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { Webhook } from 'standardwebhooks';
import type { EventEnvelope } from '../../../domain/events.js';
import { guardedLookup, isPublicAddress } from './url-guard.js';

export interface SendResult {
  ok: boolean;
  /** The receiver's HTTP status; null when no answer came (refused, timed out, unsafe address). */
  http_status: number | null;
  latency_ms: number;
  error: string | null;
}

const MAX_RESPONSE_BYTES = 64 * 1024;

/**
 * One delivery: the event as the body, signed per Standard Webhooks (`webhook-id` = the event's
 * id, the same on every retry, `webhook-timestamp`, `webhook-signature`) with the
 * `standardwebhooks` library. A 2xx answer is success; anything else, redirects included (they
 * are never followed), is a failure to retry. `timeoutMs` bounds the whole request, connecting
 * and a slowly trickled answer included: the channel relies on it to end within its lease.
 */
export async function sendWebhook(
  url: string,
  secret: string,
  event: EventEnvelope,
  /** `agent`: a keep-alive agent to reuse connections (each new one is still checked by lookup). */
  options: { timeoutMs: number; allowPrivate: boolean; agent?: http.Agent },
): Promise<SendResult> {
  const started = performance.now();
  const body = JSON.stringify(event);
  const now = new Date();
  const id = event.metadata.id;
  const signature = new Webhook(secret).sign(id, now, body);
  const done = (r: Omit<SendResult, 'latency_ms'>): SendResult => ({
    ...r,
    latency_ms: Math.round(performance.now() - started),
  });
  const target = new URL(url);
  const host = target.hostname.replace(/^\[|\]$/g, '');
  // An IP literal skips the lookup: checked here instead.
  if (!options.allowPrivate && isIP(host) && !isPublicAddress(host)) {
    return done({
      ok: false,
      http_status: null,
      error: `refused: ${host} is a private, loopback or link-local address`,
    });
  }
  const client = target.protocol === 'https:' ? https : http;
  return new Promise<SendResult>((resolve) => {
    const req = client.request(
      target,
      {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          'user-agent': 'fleetgate-webhooks/1',
          'webhook-id': id,
          'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
          'webhook-signature': signature,
        },
        lookup: guardedLookup(options.allowPrivate) as never,
        agent: options.agent ?? false,
      },
      (res) => {
        let read = 0;
        res.on('data', (chunk: Buffer) => {
          read += chunk.length;
          if (read > MAX_RESPONSE_BYTES) res.destroy();
        });
        const status = res.statusCode ?? 0;
        const finish = () => {
          const ok = status >= 200 && status < 300;
          const error = ok
            ? null
            : status >= 300 && status < 400
              ? `answered ${status}; redirects are not followed`
              : `answered ${status}`;
          resolve(done({ ok, http_status: status, error }));
        };
        res.on('end', finish);
        res.on('close', finish);
        res.on('error', finish);
      },
    );
    const deadline = setTimeout(
      () => req.destroy(new Error(`no answer within ${options.timeoutMs} ms`)),
      options.timeoutMs,
    );
    req.on('close', () => clearTimeout(deadline));
    req.on('error', (err) => resolve(done({ ok: false, http_status: null, error: err.message })));
    req.end(body);
  });
}
