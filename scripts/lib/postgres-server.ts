import { execFile } from 'node:child_process';
import { chownSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startOnFreePort } from './free-port.js';

const run = promisify(execFile);
const PG_BIN = process.env.FLEETGATE_PG_BIN ?? '/usr/lib/postgresql/15/bin';
/** initdb and the server refuse to run as root: as root, run them as this user. */
const PG_OS_USER = 'postgres';

/** A throw-away PostgreSQL cluster in a temp dir (initdb + pg_ctl), for tests that stop and start it. */
export interface PostgresServer {
  port: number;
  /** postgres://postgres@127.0.0.1:<port>/postgres */
  url: string;
  dir: string;
  /** Fast shutdown: disconnects every client, as an outage would. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops it and deletes its files. */
  close(): Promise<void>;
}

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", "'\\''")}'`;
}

/** Runs a PostgreSQL binary, through `su` when this process is root. */
async function pg(bin: string, args: string[]): Promise<void> {
  const file = path.join(PG_BIN, bin);
  if (process.getuid?.() === 0) {
    const command = [file, ...args].map(shellQuote).join(' ');
    await run('su', [PG_OS_USER, '-s', '/bin/sh', '-c', command]);
  } else {
    await run(file, args);
  }
}

export async function startPostgresServer(): Promise<PostgresServer> {
  const dir = mkdtempSync(path.join(tmpdir(), 'fleetgate-pg-'));
  const data = path.join(dir, 'data');
  if (process.getuid?.() === 0) {
    const { stdout } = await run('id', ['-u', PG_OS_USER]);
    const { stdout: gid } = await run('id', ['-g', PG_OS_USER]);
    chownSync(dir, Number(stdout.trim()), Number(gid.trim()));
  }
  const logFile = path.join(dir, 'server.log');
  const logSize = () => statSync(logFile, { throwIfNoEntry: false })?.size ?? 0;
  let port = 0;
  const start = () => {
    const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off`;
    return pg('pg_ctl', ['-D', data, '-o', options, '-l', logFile, '-w', 'start']);
  };
  const stop = () => pg('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']);
  let running = false;
  try {
    await pg('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
    let logFrom = 0;
    await startOnFreePort(
      (p) => {
        port = p;
        logFrom = logSize();
        return start();
      },
      () => readFileSync(logFile).subarray(logFrom).toString().includes('Address already in use'),
    );
    running = true;
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    port,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    dir,
    stop: async () => {
      if (!running) return;
      await stop();
      running = false;
    },
    start: async () => {
      if (running) return;
      await start();
      running = true;
    },
    close: async () => {
      if (running) await stop().catch(() => undefined);
      running = false;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
