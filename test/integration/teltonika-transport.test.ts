import { once } from 'node:events';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeImei } from '../../src/telematics/teltonika/codec.js';
import type { TeltonikaSession } from '../../src/telematics/teltonika/session.js';
import { startTeltonikaTransport, type TeltonikaTransport } from '../../src/telematics/teltonika/transport.js';
import { eventually } from '../helpers/eventually.js';

// Issue 21 item 3: idle connections from one address must not block every Teltonika login.
// Two sources on loopback: 127.0.0.1 floods, 127.0.0.2 is a unit (Linux routes all of 127/8).
let transport: TeltonikaTransport | undefined;
const sockets: net.Socket[] = [];

afterEach(async () => {
  for (const s of sockets) s.destroy();
  sockets.length = 0;
  await transport?.close();
});

function connect(port: number, localAddress: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress }, () => resolve(s));
    s.on('error', reject);
    sockets.push(s);
  });
}

describe('Teltonika handshake budget', () => {
  it('limits logins in progress per source address, so a flood from one cannot keep units out', async () => {
    const online: string[] = [];
    transport = await startTeltonikaTransport({
      host: '127.0.0.1',
      port: 0,
      maxConnections: 1000,
      maxUnauthenticated: 16,
      maxUnauthenticatedPerSource: 4,
      session: {
        handshakeTimeoutMs: 60_000,
        idleTimeoutMs: 60_000,
        frameTimeoutMs: 60_000,
        authorize: async () => true,
        onRecords: async () => {},
      },
      onSession: (session: TeltonikaSession) => session.once('online', () => online.push(session.imei ?? '')),
    });
    const port = transport.port;
    // The flood: 20 idle connections from one address, each sending nothing.
    const flood = await Promise.all(Array.from({ length: 20 }, () => connect(port, '127.0.0.1')));
    const closed = flood.map((s) => once(s, 'close').then(() => true));
    // Beyond its 4, the server closes them at once.
    await eventually(
      async () => (await Promise.all(closed.map((c) => Promise.race([c, false])))).filter(Boolean).length >= 16,
      5000,
      'flood refused',
    );
    expect(transport.connections).toBe(4);

    // A unit from another address still logs in.
    const unit = await connect(port, '127.0.0.2');
    const answer = once(unit, 'data');
    unit.write(encodeImei('356307042441013'));
    const [reply] = (await answer) as [Buffer];
    expect(reply[0]).toBe(0x01);
    await eventually(() => online.includes('356307042441013'), 3000, 'unit online');
  });
});
