import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../helpers/eventually.js';

// Processes under supervisors: a supervisor signals the process it started — `npm start` or the
// production entry `node bin/fleetgate.js serve` — and expects the whole tree to stop, serving
// nothing afterwards. Real processes, real signals, the tree read from /proc.

const run = promisify(execFile);

/** Every live descendant of `pid` (Linux /proc). */
function descendants(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // Fields after the command name, which is in parentheses and may hold spaces.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parent.set(Number(name), Number(fields[1]));
    } catch {
      // the process ended while we read
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [child, pp] of parent) {
      if (pp === p) {
        out.push(child);
        walk(child);
      }
    }
  };
  walk(pid);
  return out;
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
  } catch {
    return false;
  }
};

interface Started {
  child: ChildProcess;
  url: string;
  tree: number[];
  dataDir: string;
}

/** Starts `command args` in its own process group and waits for the API URL it prints. */
async function start(command: string, args: string[]): Promise<Started> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'fleetgate-signals-'));
  const child = spawn(command, args, {
    cwd: process.cwd(),
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      FLEETGATE_PORT: '0',
      FLEETGATE_MQTT_PORT: '0',
      FLEETGATE_TELTONIKA_PORT: '0',
      FLEETGATE_DATA_DIR: dataDir,
      FLEETGATE_LOG_LEVEL: 'warn',
    },
  });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  child.stderr!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  await eventually(() => /API\s+(http:\/\/\S+)/.test(out), 120_000, `${command} ${args.join(' ')} printing its URL`);
  const url = /API\s+(http:\/\/\S+)/.exec(out)![1]!;
  expect((await fetch(`${url}/health/live`)).status).toBe(200);
  return { child, url, tree: [child.pid!, ...descendants(child.pid!)], dataDir };
}

async function answers(url: string): Promise<boolean> {
  try {
    await fetch(`${url}/health/live`, { signal: AbortSignal.timeout(2000) });
    return true;
  } catch {
    return false;
  }
}

function cleanup(s: Started | undefined): void {
  if (!s) return;
  try {
    process.kill(-s.child.pid!, 'SIGKILL');
  } catch {
    // the group is gone, as it should be
  }
  rmSync(s.dataDir, { recursive: true, force: true });
}

describe('processes under supervisors', () => {
  beforeAll(async () => {
    // The production entry runs the compiled build.
    await run('npm', ['run', 'build'], { cwd: process.cwd() });
  }, 900_000);

  it('npm run build compiles the CLI to dist/', () => {
    expect(existsSync('dist/cli/main.js')).toBe(true);
    expect(existsSync('dist/broker/embedded-broker-thread.js')).toBe(true);
  });

  for (const [name, command, args] of [
    ['npm start', 'npm', ['start']],
    ['node bin/fleetgate.js serve', process.execPath, ['bin/fleetgate.js', 'serve']],
  ] as const) {
    it(`SIGTERM to \`${name}\` alone stops the whole process tree`, async () => {
      let s: Started | undefined;
      try {
        s = await start(command, [...args]);
        const { child, url, tree } = s;
        expect(tree.length).toBeGreaterThanOrEqual(1);
        console.log(`${name}: process tree before SIGTERM: ${tree.join(', ')}`);
        process.kill(child.pid!, 'SIGTERM');
        await eventually(() => tree.every((pid) => !alive(pid)), 30_000, 'every process of the tree gone');
        console.log(`${name}: alive after SIGTERM: ${tree.filter(alive).length}`);
        expect(await answers(url)).toBe(false);
      } finally {
        cleanup(s);
      }
    }, 180_000);
  }
});
