import net from 'node:net';
import type { Logger } from 'pino';
import { type SessionOptions, TeltonikaSession } from './session.js';

/**
 * The only file of the Teltonika adapter that opens sockets: a TCP server whose every
 * connection becomes a TeltonikaSession. Limits here bound what unknown peers can cost: a cap on
 * all connections, a smaller cap on connections that have not logged in yet (a flood of
 * unknown IMEIs or idle sockets cannot crowd out real units), and per-session timeouts.
 */

export interface TransportOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** All connections (STACK.md: stay well below the process's 20,000 open files). */
  maxConnections: number;
  /** Connections still in the handshake; beyond it new connections are closed at once. */
  maxUnauthenticated: number;
  /**
   * Connections in the handshake from one source address: one source (600 idle sockets) cannot
   * take the whole handshake budget and keep every other unit from logging in.
   */
  maxUnauthenticatedPerSource: number;
  session: SessionOptions;
  logger?: Logger;
  /** Called for every new session before it starts reading. */
  onSession(session: TeltonikaSession): void;
}

export interface TeltonikaTransport {
  readonly port: number;
  /** Sessions currently open, logged in or not. */
  readonly connections: number;
  close(): Promise<void>;
}

export async function startTeltonikaTransport(options: TransportOptions): Promise<TeltonikaTransport> {
  const sessions = new Set<TeltonikaSession>();
  let unauthenticated = 0;
  const pendingBySource = new Map<string, number>();

  const server = net.createServer({ noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000 }, (socket) => {
    if (unauthenticated >= options.maxUnauthenticated) {
      options.logger?.warn({ remote: socket.remoteAddress }, 'teltonika: too many connections in handshake; refused');
      socket.destroy();
      return;
    }
    const source = socket.remoteAddress ?? '';
    const pending = pendingBySource.get(source) ?? 0;
    if (pending >= options.maxUnauthenticatedPerSource) {
      options.logger?.warn(
        { remote: source },
        'teltonika: too many connections in handshake from this address; refused',
      );
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    socket.on('error', () => undefined);
    const session = new TeltonikaSession(socket, options.session);
    sessions.add(session);
    unauthenticated++;
    pendingBySource.set(source, pending + 1);
    let counted = true;
    const uncount = (): void => {
      if (counted) {
        unauthenticated--;
        const left = (pendingBySource.get(source) ?? 1) - 1;
        if (left > 0) pendingBySource.set(source, left);
        else pendingBySource.delete(source);
      }
      counted = false;
    };
    session.once('online', uncount);
    session.once('closed', (reason, detail) => {
      uncount();
      sessions.delete(session);
      options.logger?.debug(
        { imei: session.imei, remote: socket.remoteAddress, reason, detail },
        'teltonika: session closed',
      );
    });
    options.onSession(session);
    void session.run();
  });
  server.maxConnections = options.maxConnections;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;

  return {
    port,
    get connections() {
      return sessions.size;
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sessions) s.close('server-closed');
      await closed;
    },
  };
}
