import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { dynsecInitialConfig } from '../../src/broker/mosquitto-dynsec.js';
import { startOnFreePort } from './free-port.js';

const MOSQUITTO_BIN = process.env.FLEETGATE_MOSQUITTO_BIN ?? '/usr/sbin/mosquitto';
/** The configuration shipped in the repo (deploy/mosquitto/mosquitto.conf). */
export const SHIPPED_MOSQUITTO_CONF = fileURLToPath(new URL('../../deploy/mosquitto/mosquitto.conf', import.meta.url));
const START_TIMEOUT_MS = 10_000;

/** A Mosquitto run from the shipped configuration in a temp dir, on a loopback port of its own. */
export interface MosquittoServer {
  port: number;
  url: string;
  /** fleetgate's dynsec admin account (random per server). */
  adminUsername: string;
  adminPassword: string;
  dir: string;
  /** Whether the broker process is running. */
  readonly running: boolean;
  /** Stops the broker (SIGTERM: it saves retained messages and the dynsec file) and waits for exit. */
  stop(): Promise<void>;
  /** Starts it again on the same port with the same files (after stop()). */
  start(): Promise<void>;
  /** Stops it and deletes its files. */
  close(): Promise<void>;
}

/**
 * The shipped mosquitto.conf with the listener on `port` and the dynsec and persistence files in
 * `dir`: every other line is used as shipped.
 */
export function renderMosquittoConf(port: number, dir: string): string {
  const shipped = readFileSync(SHIPPED_MOSQUITTO_CONF, 'utf8');
  const rewritten = shipped
    .replace(/^listener .*$/m, `listener ${port} 127.0.0.1`)
    .replace(/^plugin_opt_config_file .*$/m, `plugin_opt_config_file ${path.join(dir, 'dynamic-security.json')}`)
    .replace(/^persistence_location .*$/m, `persistence_location ${dir}/`);
  if (rewritten === shipped) throw new Error(`${SHIPPED_MOSQUITTO_CONF} has none of the lines to rewrite`);
  // `running` (an information line) is how a local start knows the broker is ready. Started as
  // root, Mosquitto would drop to the `mosquitto` user, which cannot read a temp dir of ours.
  return `${rewritten}\nlog_type information\n${process.getuid?.() === 0 ? 'user root\n' : ''}`;
}

/** `detached`: own process group, so a terminal's Ctrl-C reaches only the parent (the cluster). */
export async function startMosquittoServer(
  options: { port?: number; detached?: boolean } = {},
): Promise<MosquittoServer> {
  if (options.port !== undefined) return startMosquittoOn(options.port, options.detached);
  return startOnFreePort((port) => startMosquittoOn(port, options.detached), mosquittoPortTaken);
}

/** Whether Mosquitto failed to start because its port was taken ("Error: Address already in use"). */
export function mosquittoPortTaken(error: unknown): boolean {
  return /Address already in use/.test(String(error));
}

async function startMosquittoOn(port: number, detached = false): Promise<MosquittoServer> {
  const dir = mkdtempSync(path.join(tmpdir(), 'fleetgate-mosquitto-'));
  const adminUsername = 'fleetgate-service';
  const adminPassword = randomBytes(24).toString('base64url');
  const confFile = path.join(dir, 'mosquitto.conf');
  writeFileSync(
    path.join(dir, 'dynamic-security.json'),
    JSON.stringify(dynsecInitialConfig(adminUsername, adminPassword), null, 2),
    { mode: 0o600 },
  );
  writeFileSync(confFile, renderMosquittoConf(port, dir));

  let child: ChildProcess | undefined;
  let log = '';
  const start = async () => {
    if (child) return;
    const proc = spawn(MOSQUITTO_BIN, ['-c', confFile], {
      stdio: ['ignore', 'ignore', 'pipe'],
      detached,
    });
    child = proc;
    log = '';
    proc.once('exit', () => {
      if (child === proc) child = undefined;
    });
    // Ready when it says so (log_type notice), not after a guessed delay.
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => done(new Error(`mosquitto did not start in time:\n${log}`)), START_TIMEOUT_MS);
      const onData = (chunk: Buffer) => {
        log += chunk.toString();
        if (/mosquitto version \S+ running/.test(log)) done();
        else if (/Error/.test(log)) done(new Error(`mosquitto failed to start:\n${log}`));
      };
      const onExit = (code: number | null) => done(new Error(`mosquitto exited (${code}) at start:\n${log}`));
      const done = (err?: Error) => {
        clearTimeout(timer);
        proc.stderr!.off('data', onData);
        proc.off('exit', onExit);
        if (err) {
          proc.kill('SIGKILL');
          reject(err);
        } else resolve();
      };
      proc.stderr!.on('data', onData);
      proc.once('exit', onExit);
    });
    // Keep draining stderr so the broker never blocks on a full pipe.
    proc.stderr!.on('data', () => undefined);
  };
  const stop = async () => {
    const proc = child;
    if (!proc) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill('SIGTERM');
    await exited;
  };

  try {
    await start();
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    adminUsername,
    adminPassword,
    dir,
    get running() {
      return child !== undefined;
    },
    stop,
    start,
    close: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
