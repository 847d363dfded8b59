/**
 * The webhook receiver of the bench's `fleetgate + webhook` scenario, a process of its own:
 * `node --import tsx bench/webhook-receiver.ts`. As a booking backend's receiver would, it verifies
 * every delivery's Standard Webhooks signature with the `standardwebhooks` library (its CPU is the
 * receiver's), answers 204, and deduplicates by `metadata.id` (delivery is at least once). For
 * each new event it keeps when it occurred (`metadata.occurred_at`, stamped in the transaction
 * that committed it) and its latency: arrival minus occurred_at, as bench/amqp.ts measures AMQP.
 *
 * Each subscription the bench makes posts to a path of its own (`/hooks/<n>`), so that what a
 * replaced subscription still had in flight is told apart. Prints {"type":"ready","url":…} once
 * listening. Messages on stdin, one JSON per line:
 * - {"type":"secret","path":…,"secret":"whsec_…"}: a subscription's path and secret; answers
 *   {"type":"secret-set"}. Deliveries to a path without a secret are refused (503).
 * - {"type":"stats","path":…,"from":ms,"to":ms}: answers {"type":"stats"} with the path's counts
 *   so far, how many events arrived in [from, to] (epoch ms), and the latency of those that
 *   occurred in it (without from and to: the counts only).
 */
import http from 'node:http';
import { Webhook } from 'standardwebhooks';

interface Subscription {
  webhook: Webhook;
  received: number;
  duplicates: number;
  rejected: number;
}

const subscriptions = new Map<string, Subscription>();
let unknownPath = 0;
const seen = new Set<string>();
/** Per new event, in arrival order: when it occurred and when it arrived, epoch ms. */
let occurred = new Float64Array(1 << 16);
let arrived = new Float64Array(1 << 16);
let kept = 0;

function keep(occurredAt: number, arrivedAt: number): void {
  if (kept === occurred.length) {
    const grow = (a: Float64Array) => {
      const b = new Float64Array(a.length * 2);
      b.set(a);
      return b;
    };
    occurred = grow(occurred);
    arrived = grow(arrived);
  }
  occurred[kept] = occurredAt;
  arrived[kept] = arrivedAt;
  kept++;
}

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const at = Date.now();
    const sub = subscriptions.get(req.url ?? '');
    if (!sub) {
      unknownPath++;
      res.writeHead(503).end();
      return;
    }
    let event: { metadata: { id: string; occurred_at: string } };
    try {
      event = sub.webhook.verify(
        Buffer.concat(chunks).toString('utf8'),
        req.headers as Record<string, string>,
      ) as never;
    } catch {
      sub.rejected++;
      res.writeHead(400).end();
      return;
    }
    res.writeHead(204).end();
    if (seen.has(event.metadata.id)) {
      sub.duplicates++;
      return;
    }
    seen.add(event.metadata.id);
    sub.received++;
    keep(Date.parse(event.metadata.occurred_at), at);
  });
});

function stats(path: string, from: number, to: number) {
  const latencies: number[] = [];
  let arrivedInWindow = 0;
  for (let i = 0; i < kept && to >= from; i++) {
    if (occurred[i]! >= from && occurred[i]! <= to) latencies.push(arrived[i]! - occurred[i]!);
    if (arrived[i]! >= from && arrived[i]! <= to) arrivedInWindow++;
  }
  latencies.sort((a, b) => a - b);
  const n = latencies.length;
  const at = (q: number) => (n === 0 ? 0 : latencies[Math.min(n - 1, Math.ceil(q * n) - 1)]!);
  const sub = subscriptions.get(path);
  return {
    type: 'stats',
    received: sub?.received ?? 0,
    duplicates: sub?.duplicates ?? 0,
    rejected: sub?.rejected ?? 0,
    unknownPath,
    arrivedInWindow,
    occurredInWindow: { events: n, latencyMs: { p50: at(0.5), p99: at(0.99), max: n === 0 ? 0 : latencies[n - 1]! } },
  };
}

const send = (m: unknown) => process.stdout.write(`${JSON.stringify(m)}\n`);
let pending = '';
process.stdin.on('data', (chunk: Buffer) => {
  pending += chunk.toString();
  const lines = pending.split('\n');
  pending = lines.pop()!;
  for (const line of lines) {
    if (!line.trim()) continue;
    const m = JSON.parse(line) as { type: string; path: string; secret?: string; from?: number; to?: number };
    if (m.type === 'secret') {
      subscriptions.set(m.path, { webhook: new Webhook(m.secret!), received: 0, duplicates: 0, rejected: 0 });
      send({ type: 'secret-set' });
    } else if (m.type === 'stats') {
      send(stats(m.path, m.from ?? 1, m.to ?? 0));
    }
  }
});
process.on('SIGTERM', () => process.exit(0));

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as { port: number };
  send({ type: 'ready', url: `http://127.0.0.1:${port}` });
});
