import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { freePort } from './free-port.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const READY_TIMEOUT_MS = 30_000;
const READY_POLL_MS = 100;

/** One `fleetgate serve` child process on a loopback port of its own. */
export interface FleetgateProcess {
  url: string;
  port: number;
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
 * Starts `node --import tsx src/cli/main.ts serve` with the given settings on a free port (picked
 * here, so the address is known without parsing its output) and resolves once `/health/ready`
 * answers 200. The child gets no FLEETGATE_* variables from this process: only the flags count.
 */
export async function startFleetgateProcess(options: FleetgateProcessOptions): Promise<FleetgateProcess> {
  const port = await freePort();
  const args = ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--host', '127.0.0.1', '--port', String(port)];
  args.push('--instance-id', options.instanceId);
  for (const [name, value] of Object.entries(options.settings)) args.push(`--${name}`, String(value));
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FLEETGATE_')));
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: options.detached ?? false,
  });
  let output = '';
  const collect = (chunk: Buffer) => {
    output += chunk.toString();
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

  const url = `http://127.0.0.1:${port}`;
  const proc: FleetgateProcess = {
    url,
    port,
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

  // No readiness signal crosses the process boundary but the endpoint itself: poll it, bounded.
  const started = Date.now();
  while (true) {
    if (ended) throw new Error(`fleetgate ${options.instanceId} exited during start-up:\n${output}`);
    const ready = await fetch(`${url}/health/ready`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ready) return proc;
    if (Date.now() - started > READY_TIMEOUT_MS) {
      child.kill('SIGKILL');
      throw new Error(`fleetgate ${options.instanceId} not ready within ${READY_TIMEOUT_MS} ms:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, READY_POLL_MS));
  }
}
