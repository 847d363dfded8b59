import { readFileSync } from 'node:fs';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort, startOnFreePort } from '../../scripts/lib/free-port.js';
import { mosquittoPortTaken, startMosquittoServer } from '../../scripts/lib/mosquitto-server.js';

// Servers that cannot bind port 0 and tell (Mosquitto, PostgreSQL) get a port picked for them;
// another process may take it before they bind it. Then they are started again on another port.
const servers: net.Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
});

function listen(port: number): Promise<net.Server> {
  const server = net.createServer();
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      servers.push(server);
      resolve(server);
    });
  });
}

const inUse = (e: unknown) => (e as NodeJS.ErrnoException).code === 'EADDRINUSE';

describe('freePort', () => {
  it("picks ports below the kernel's ephemeral range, which listen(0) never hands out", async () => {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0]);
    const picked = await Promise.all(Array.from({ length: 20 }, () => freePort()));
    for (const port of picked) {
      expect(port).toBeLessThan(low);
      expect(port).toBeGreaterThanOrEqual(1024);
    }
    // Random, not one fixed port for every server.
    expect(new Set(picked).size).toBeGreaterThan(1);
    const ephemeral = await listen(0);
    expect((ephemeral.address() as net.AddressInfo).port).toBeGreaterThanOrEqual(low);
  });
});

describe('startOnFreePort', () => {
  it('starts again on another port when the picked one was taken in between', async () => {
    const tried: number[] = [];
    const server = await startOnFreePort(async (port) => {
      tried.push(port);
      if (tried.length === 1) await listen(port); // another process takes it first
      return listen(port);
    }, inUse);
    expect(tried).toHaveLength(2);
    expect(tried[1]).not.toBe(tried[0]);
    expect((server.address() as net.AddressInfo).port).toBe(tried[1]);
  });

  it('passes any other failure on at once, and gives up after five taken ports', async () => {
    let calls = 0;
    const broken = new Error('permission denied');
    await expect(
      startOnFreePort(async () => {
        calls++;
        throw broken;
      }, inUse),
    ).rejects.toBe(broken);
    expect(calls).toBe(1);

    calls = 0;
    await expect(
      startOnFreePort(async (port) => {
        calls++;
        await listen(port);
        return listen(port);
      }, inUse),
    ).rejects.toMatchObject({ code: 'EADDRINUSE' });
    expect(calls).toBe(5);
  });

  it("recognises Mosquitto's own message for a taken port", async () => {
    const taken = await listen(0);
    const port = (taken.address() as net.AddressInfo).port;
    const failure = await startMosquittoServer({ port }).then(
      async (broker) => {
        await broker.close();
        return undefined;
      },
      (e: unknown) => e,
    );
    expect(failure).toBeInstanceOf(Error);
    expect(mosquittoPortTaken(failure), String(failure)).toBe(true);
    expect(mosquittoPortTaken(new Error('mosquitto failed to start:\nError: Unable to open config'))).toBe(false);
  });
});
