import { readFileSync } from 'node:fs';
import net from 'node:net';

/**
 * The kernel hands out ports from its ephemeral range (Linux: 32768–60999) to every `listen(0)`
 * and every outgoing connection. A test server that is stopped and started again on the same
 * port (a broker or database restart) must not sit in that range: while it is down, any other
 * test's `listen(0)` may get its port, and the restarted server then fails to bind while clients
 * reach a stranger (an HTTP server answering an AMQP client, say). So servers that cannot bind
 * port 0 themselves get a port below the range, picked at random and checked free.
 */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 2048 ? low : 32768;
  } catch {
    return 32768;
  }
}

function bindable(port: number): Promise<boolean> {
  const server = net.createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A TCP port free on 127.0.0.1 right now, outside the ephemeral range (see above). */
export async function freePort(): Promise<number> {
  const high = ephemeralLow() - 1;
  const low = Math.max(1024, high - 12_000);
  for (;;) {
    const port = low + Math.floor(Math.random() * (high - low + 1));
    if (await bindable(port)) return port;
  }
}

const ATTEMPTS = 5;

/**
 * Starts a server that cannot bind port 0 and report it (Mosquitto, PostgreSQL) on a free port.
 * Between picking the port and the server binding it, another process may take it (another test
 * picking the same port, say): then `start` fails with an error `taken` recognises, and
 * it is tried again on another port, a few times.
 */
export async function startOnFreePort<T>(
  start: (port: number) => Promise<T>,
  taken: (error: unknown) => boolean,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    try {
      return await start(port);
    } catch (e) {
      if (attempt >= ATTEMPTS || !taken(e)) throw e;
    }
  }
}
