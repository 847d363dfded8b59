import net, { type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { EventEnvelope } from '../../src/domain/events.js';
import { sendWebhook } from '../../src/events/channels/webhooks/webhook-sender.js';

const EVENT = {
  metadata: {
    id: '01KBY8WQ3J6N4S1ZC2R7XG5E9T',
    type: 'VehicleChanged',
    schema_major_version: 1,
    occurred_at: '2026-12-07T09:20:11.402Z',
    flow_id: 'f',
    fleet_id: 'fleet-s',
    vehicle_id: 'V1',
  },
  data: {},
} as unknown as EventEnvelope;
const SECRET = `whsec_${Buffer.alloc(24, 7).toString('base64')}`;

// Issue 16 §4: a delivery ends within --webhooks-timeout-ms whatever the receiver does, since the
// delivering instance's lease only covers that long.
describe('sendWebhook', () => {
  const servers: net.Server[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) {
      await new Promise((resolve) => s.close(resolve));
    }
  });

  it('gives up on a receiver that trickles its answer, at the timeout, not when it goes quiet', async () => {
    const sockets = new Set<net.Socket>();
    const server = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => undefined);
      // The status line, then a header value a byte every 50 ms: never quiet, never done.
      socket.write('HTTP/1.1 200 OK\r\nx-slow: ');
      const timer = setInterval(() => socket.write('a'), 50);
      socket.on('close', () => clearInterval(timer));
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const started = performance.now();
    try {
      const result = await sendWebhook(`http://127.0.0.1:${port}/hook`, SECRET, EVENT, {
        timeoutMs: 400,
        allowPrivate: true,
      });
      const took = performance.now() - started;
      expect(result).toMatchObject({ ok: false, http_status: null, error: 'no answer within 400 ms' });
      expect(took).toBeGreaterThanOrEqual(390);
      expect(took).toBeLessThan(2000);
    } finally {
      for (const s of sockets) s.destroy();
    }
  });

  it('answers 2xx from a prompt receiver as success', async () => {
    const server = net.createServer((socket) => {
      socket.on('error', () => undefined);
      socket.once('data', () => socket.end('HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n'));
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const result = await sendWebhook(`http://127.0.0.1:${port}/hook`, SECRET, EVENT, {
      timeoutMs: 400,
      allowPrivate: true,
    });
    expect(result).toMatchObject({ ok: true, http_status: 204, error: null });
  });
});
