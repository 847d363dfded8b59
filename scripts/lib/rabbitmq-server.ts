import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from './free-port.js';

const RABBITMQ_SERVER = process.env.FLEETGATE_RABBITMQ_SERVER ?? '/usr/lib/rabbitmq/bin/rabbitmq-server';
/** RabbitMQ boots in 5–10 s on an idle machine; a shared, loaded one took 50 s. */
const BOOT_TIMEOUT_MS = 180_000;

/**
 * A throw-away RabbitMQ node of its own (own node name, Mnesia dir, config, AMQP and
 * distribution ports on free ports; no plugins), for tests that stop and start it without
 * disturbing the machine's shared RabbitMQ. Its data survives stop/start, as a restart would.
 */
export interface RabbitmqServer {
  port: number;
  /** amqp://guest:guest@127.0.0.1:<port> (guest may connect from loopback only). */
  url: string;
  dir: string;
  /** Ends the node (SIGTERM: a clean shutdown that drops every connection) and waits for its exit. */
  stop(): Promise<void>;
  /** Starts it again on the same port with the same data; resolves once it accepts connections. */
  start(): Promise<void>;
  /** Stops it and deletes its files. */
  close(): Promise<void>;
}

/** AMQP 0-9-1 protocol header; a broker answers it with a connection.start method frame (type 1). */
const AMQP_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 0, 9, 1]);

/** Whether an AMQP broker answers on the port (not merely something listening there). */
function amqpAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const done = (answer: boolean) => {
      socket.destroy();
      resolve(answer);
    };
    socket.setTimeout(5_000, () => done(false));
    socket.once('connect', () => socket.write(AMQP_HEADER));
    socket.once('data', (d: Buffer) => done(d[0] === 1));
    socket.once('error', () => done(false));
    socket.once('close', () => done(false));
  });
}

export async function startRabbitmqServer(): Promise<RabbitmqServer> {
  const dir = mkdtempSync(path.join(tmpdir(), 'fleetgate-rabbitmq-'));
  const port = await freePort();
  const distPort = await freePort();
  const nodename = `fleetgate-test-${port}@localhost`;
  writeFileSync(path.join(dir, 'rabbitmq.conf'), `listeners.tcp.local = 127.0.0.1:${port}\n`);
  // An env file of its own, or the system's (/etc/rabbitmq/rabbitmq-env.conf) sets the node name.
  writeFileSync(path.join(dir, 'rabbitmq-env.conf'), '');
  writeFileSync(path.join(dir, 'enabled_plugins'), '[].\n');
  const env = {
    ...process.env,
    HOME: dir, // its own Erlang cookie
    RABBITMQ_CONF_ENV_FILE: path.join(dir, 'rabbitmq-env.conf'),
    RABBITMQ_CONFIG_FILE: path.join(dir, 'rabbitmq.conf'),
    RABBITMQ_ENABLED_PLUGINS_FILE: path.join(dir, 'enabled_plugins'),
    RABBITMQ_NODENAME: nodename,
    RABBITMQ_MNESIA_BASE: path.join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: path.join(dir, 'log'),
    RABBITMQ_PID_FILE: path.join(dir, 'rabbitmq.pid'),
    RABBITMQ_DIST_PORT: String(distPort),
    ERL_EPMD_ADDRESS: '127.0.0.1',
  };
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const logFile = path.join(dir, 'server.out');

  const start = async () => {
    const out = [] as Buffer[];
    child = spawn(RABBITMQ_SERVER, [], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const c = child;
    c.stdout?.on('data', (d: Buffer) => out.push(d));
    c.stderr?.on('data', (d: Buffer) => out.push(d));
    exited = new Promise<void>((resolve) =>
      c.once('exit', () => {
        writeFileSync(logFile, Buffer.concat(out));
        resolve();
      }),
    );
    let gone = false;
    void exited.then(() => {
      gone = true;
    });
    const until = Date.now() + BOOT_TIMEOUT_MS;
    while (!(await amqpAnswers(port))) {
      if (gone || Date.now() > until) {
        c.kill('SIGKILL');
        await exited;
        throw new Error(`RabbitMQ did not start on ${port}: ${readFileSync(logFile, 'utf8').slice(-2000)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  // The script runs the Erlang VM as a child; a signal to the script reaches it through the
  // shell's exec, and the pid file names the VM itself.
  const stop = async () => {
    if (!child) return;
    let vm: number | undefined;
    try {
      vm = Number(readFileSync(env.RABBITMQ_PID_FILE, 'utf8').trim()) || undefined;
    } catch {
      vm = undefined;
    }
    if (vm) process.kill(vm, 'SIGTERM');
    else child.kill('SIGTERM');
    await exited;
    child = undefined;
  };

  try {
    await start();
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    port,
    url: `amqp://guest:guest@127.0.0.1:${port}`,
    dir,
    stop,
    start: async () => {
      if (!child) await start();
    },
    close: async () => {
      await stop().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
