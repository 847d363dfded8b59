import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Harness } from '../helpers/harness.js';

// The CLI a newcomer meets: a cached token (no token request per call), problems and connection
// errors as one line without a stack trace, and the kebab-case command for a capability name.

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

describe('fleetgate CLI against a running API', () => {
  let h: Harness;
  let cacheHome: string;
  let client: { client_id: string; client_secret: string };
  let vehicleId: string;

  const cli = (...args: string[]): Promise<Run> =>
    new Promise((resolve) => {
      execFile(
        process.execPath,
        ['--import', 'tsx', 'src/cli/main.ts', ...args],
        {
          timeout: 60_000,
          env: {
            ...process.env,
            XDG_CACHE_HOME: cacheHome,
            FLEETGATE_API_URL: h.url,
            FLEETGATE_CLIENT_ID: client.client_id,
            FLEETGATE_CLIENT_SECRET: client.client_secret,
          },
        },
        (error, stdout, stderr) =>
          resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });

  const grants = async (): Promise<number> => {
    const text = await (await fetch(`${h.url}/metrics`)).text();
    return Number(/^fleetgate_token_grants_total (\d+)/m.exec(text)?.[1] ?? 0);
  };

  beforeAll(async () => {
    h = await Harness.start();
    cacheHome = mkdtempSync(path.join(tmpdir(), 'fleetgate-cache-'));
    client = await h.client('fleet-cli-api', ['vehicles', 'vehicle-commands']);
    vehicleId = (await h.vehicle(await h.token('fleet-cli-api'))).vehicleId;
  }, 180_000);
  afterAll(async () => {
    await h?.close();
    rmSync(cacheHome, { recursive: true, force: true });
  });

  it('caches its token until expiry in a 0600 file: three calls, one token request', async () => {
    const before = await grants();
    for (let i = 0; i < 3; i++) {
      const res = await cli('vehicles', 'get', vehicleId);
      expect(res.code, res.stderr).toBe(0);
      expect(JSON.parse(res.stdout).vehicle_id).toBe(vehicleId);
    }
    expect((await grants()) - before).toBe(1);
    const dir = path.join(cacheHome, 'fleetgate', 'tokens');
    const files = readdirSync(dir);
    expect(files).toHaveLength(1);
    expect(statSync(path.join(dir, files[0]!)).mode & 0o777).toBe(0o600);
    expect(files[0]).not.toContain(client.client_id);
  }, 180_000);

  it('prints a problem as one line with its type and flow_id, never a stack trace', async () => {
    const res = await cli('vehicles', 'get', 'doesnotexist42');
    expect(res.code).toBe(1);
    expect(res.stdout).toBe('');
    const lines = res.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^fleetgate: 404 resource-not-found: .+ \(flow_id [0-9a-f-]{36}\)$/);
  }, 60_000);

  it('prints a connection error as one line', async () => {
    // A port that was free a moment ago: nothing listens there.
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    const res = await cli('vehicles', 'list', '--api-url', `http://127.0.0.1:${port}`);
    expect(res.code).toBe(1);
    const lines = res.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      new RegExp(`^fleetgate: cannot reach http://127\\.0\\.0\\.1:${port} \\(connection refused\\)`),
    );
  }, 60_000);

  it('suggests the kebab-case command for a capability name', async () => {
    const res = await cli('command', vehicleId, 'UNLOCK_CENTRAL_LOCK');
    expect(res.code).toBe(1);
    expect(res.stderr.trim()).toBe(
      `fleetgate: 'UNLOCK_CENTRAL_LOCK' is a capability name; the command is 'unlock-central-lock': fleetgate command ${vehicleId} unlock-central-lock`,
    );
    const ok = await cli('command', vehicleId, 'unlock-central-lock');
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout).central_lock.value).toBe('UNLOCKED');
  }, 120_000);
});
