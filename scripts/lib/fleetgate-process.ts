import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { SERVE_NODE_FLAGS } from '../../src/cli/node-flags.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const READY_TIMEOUT_MS = 30_000;
const READY_POLL_MS = 100;

/** One `fleetgate serve` child process on a loopback port of its own. */
export interface FleetgateProcess {
  url: string;
  port: number;
  /** The adapters' own listeners as `serve` printed them, e.g. { TELTONIKA: 'tcp://127.0.0.1:41234' }. */
  endpoints: Record<string, string>;
  instanceId: string;
  child: ChildProcess;
  /** Resolves with the exit code (or the signal's name) once the process ended. */
  exited: Promise<number | string>;
  /** Everything it wrote to stdout and stderr so far (for failure messages). */
  output(): string;
  /** SIGTERM (it drains running commands) and wait for exit; SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<number | string>;
}

export interface FleetgateProcessOptions {
  /** Settings as CLI flags without the leading dashes, e.g. { 'database-url': '…' }. */
  settings: Record<string, string | number>;
  instanceId: string;
  /** Where its output goes besides output(): e.g. process.stderr for the cluster. */
  echo?: NodeJS.WritableStream;
  /**
   * Own process group, so a terminal's Ctrl-C reaches only the parent, which then stops its
   * children in order (the cluster: instances drain before the broker goes).
   */
  detached?: boolean;
}

/**
 * What `serve` prints once it listens (src/cli/main.ts): the API's URL, the MQTT broker's, and
 * each adapter's endpoint.
 */
export function parseServeBanner(
  output: string,
): { url: string; mqttUrl: string; endpoints: Record<string, string> } | undefined {
  const api = /^ {2}API +(http:\/\/\S+)/m.exec(output);
  const mqtt = /^ {2}MQTT broker +(mqtts?:\/\/\S+)/m.exec(output);
  // The database line ends the list: only then have all the adapters' lines arrived.
  if (!api || !mqtt || !/^ {2}database /m.test(output)) return undefined;
  const endpoints: Record<string, string> = {};
  for (const m of output.matchAll(/^ {2}([A-Z][A-Z0-9_]*) +(tcp:\/\/\S+)$/gm)) endpoints[m[1]!] = m[2]!;
  return { url: api[1]!, mqttUrl: mqtt[1]!, endpoints };
}

/**
 * Starts `node --import tsx src/cli/main.ts serve` with the given settings, on port 0 unless the
 * settings name a port: the child binds its own free port (no window in which another process can
 * take a port picked here) and its start-up banner tells the address. Resolves once
 * `/health/ready` answers 200. The child gets no FLEETGATE_* variables from this process: only the
 * flags count.
 */
export async function startFleetgateProcess(options: FleetgateProcessOptions): Promise<FleetgateProcess> {
  const settings: Record<string, string | number> = { host: '127.0.0.1', port: 0, ...options.settings };
  const args = [
    ...SERVE_NODE_FLAGS,
    '--import',
    'tsx',
    'src/cli/main.ts',
    'serve',
    '--instance-id',
    options.instanceId,
  ];
  for (const [name, value] of Object.entries(settings)) args.push(`--${name}`, String(value));
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FLEETGATE_')));
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: options.detached ?? false,
  });
  let output = '';
  let banner: ReturnType<typeof parseServeBanner>;
  const collect = (chunk: Buffer) => {
    output += chunk.toString();
    banner ??= parseServeBanner(output);
    if (output.length > 200_000) output = output.slice(-100_000);
    options.echo?.write(chunk);
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
  });
  let ended = false;
  void exited.then(() => {
    ended = true;
  });

  const proc: FleetgateProcess = {
    url: '',
    port: 0,
    endpoints: {},
    instanceId: options.instanceId,
    child,
    exited,
    output: () => output,
    stop: async (graceMs = 20_000) => {
      if (!ended) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };

  // The banner says where it listens; readiness is the endpoint itself. Poll both, bounded.
  const started = Date.now();
  while (true) {
    if (ended) throw new Error(`fleetgate ${options.instanceId} exited during start-up:\n${output}`);
    if (banner) {
      proc.url = banner.url;
      proc.port = Number(new URL(banner.url).port);
      proc.endpoints = banner.endpoints;
      const ready = await fetch(`${banner.url}/health/ready`).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ready) return proc;
    }
    if (Date.now() - started > READY_TIMEOUT_MS) {
      child.kill('SIGKILL');
      throw new Error(`fleetgate ${options.instanceId} not ready within ${READY_TIMEOUT_MS} ms:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, READY_POLL_MS));
  }
}
