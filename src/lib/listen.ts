/**
 * Starts a listener on `port`; when the port is taken and it was only the default (nobody asked
 * for it), tries the next ones, so `npm start` works beside a broker already on 1883. An explicitly
 * configured port that is taken fails at once with a message naming the setting.
 */
export async function listenWithFallback<T>(
  what: { name: string; setting: string; port: number; isDefault: boolean; onFallback: (port: number) => void },
  start: (port: number) => Promise<T>,
): Promise<T> {
  const attempts = what.isDefault && what.port !== 0 ? 20 : 1;
  for (let i = 0; i < attempts; i++) {
    try {
      const result = await start(what.port + i);
      if (i > 0) what.onFallback(what.port + i);
      return result;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    }
  }
  throw new Error(`${what.name}: port ${what.port} is already in use; choose another with ${what.setting}`);
}

/**
 * The URL a local client reaches a listener at: a wildcard bind (`0.0.0.0`, `::`) becomes the
 * loopback address, and IPv6 hosts get brackets.
 */
export function listenUrl(protocol: string, host: string, port: number): string {
  const reachable = ['0.0.0.0', '::', ''].includes(host) ? '127.0.0.1' : host;
  return `${protocol}://${reachable.includes(':') ? `[${reachable}]` : reachable}:${port}`;
}
