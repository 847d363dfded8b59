import net from 'node:net';

/** A TCP port free on 127.0.0.1 right now (for servers that cannot report the port they bound). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const ATTEMPTS = 5;

/**
 * Starts a server that cannot bind port 0 and report it (Mosquitto, PostgreSQL) on a free port.
 * Between picking the port and the server binding it, another process may take it (an outgoing
 * connection's ephemeral port, say): then `start` fails with an error `taken` recognises, and
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
