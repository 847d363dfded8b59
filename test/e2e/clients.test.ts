import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createApiClient } from '../../src/services/auth-service.js';
import { Harness } from '../helpers/harness.js';

// SPEC §5: API clients belong to a fleet; deleting one revokes its tokens.
const run = promisify(execFile);
let h: Harness;
beforeAll(async () => {
  h = await Harness.start();
});
afterAll(async () => {
  await h?.close();
});

const basic = (c: { client_id: string; client_secret: string }) => ({
  authorization: `Basic ${Buffer.from(`${c.client_id}:${c.client_secret}`).toString('base64')}`,
});

it('a deleted client can get no token and its tokens are refused', async () => {
  const c = await createApiClient(h.app.store, { fleetId: 'fleet-rev', scopes: ['vehicles.ro'] });
  const res = await h.request('POST', '/auth/oauth/token?grant_type=client_credentials', { headers: basic(c) });
  expect(res.status).toBe(200);
  const token: string = res.body.access_token;
  expect(await h.app.store.deleteClient(c.client_id)).toBe(true);
  const refused = await h.request('GET', '/vehicles', { token });
  expect(refused.status).toBe(401);
  expect(refused.body).toMatchObject({ type: '/problems/invalid-credentials' });
  expect(refused.body.detail).toMatch(/no longer exists/);
  expect(
    (await h.request('POST', '/auth/oauth/token?grant_type=client_credentials', { headers: basic(c) })).status,
  ).toBe(401);
});

it('fleetgate clients create | list | delete on the same database', async () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'fleetgate-cli-'));
  const cli = (...args: string[]) =>
    run(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'clients', ...args, '--data-dir', dataDir], {
      timeout: 30_000,
    });
  try {
    const created = await cli(
      'create',
      '--fleet',
      'fleet-cli',
      '--scope',
      'vehicles',
      '--scope',
      'vehicle-commands',
      '--json',
    );
    const lastLine = created.stdout.trim().split('\n').at(-1)!;
    const client = JSON.parse(lastLine) as { client_id: string; client_secret: string };
    expect(client.client_id).toMatch(/^fgc_/);
    expect(client.client_secret.length).toBeGreaterThan(30);

    const listed = await cli('list', '--fleet', 'fleet-cli', '--json');
    const rows = listed.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(rows).toEqual([
      expect.objectContaining({
        client_id: client.client_id,
        fleet_id: 'fleet-cli',
        scopes: ['vehicles', 'vehicle-commands'],
      }),
    ]);
    expect(listed.stdout).not.toContain('secret');

    expect((await cli('delete', client.client_id)).stdout).toContain(`deleted ${client.client_id}`);
    await expect(cli('delete', client.client_id)).rejects.toMatchObject({ code: 1 });
    await expect(cli('create', '--fleet', 'bad fleet!', '--scope', 'nope')).rejects.toMatchObject({
      stderr: expect.stringMatching(/fleet id .* unknown scope/s),
    });
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

it('events a request causes carry its flow id (SPEC §2)', async () => {
  const token = await h.token('fleet-events');
  const seen: Array<{ type: string; flow_id?: string }> = [];
  const off = h.app.events.on((e) => seen.push(e as { type: string; flow_id?: string }));
  try {
    const res = await h.request('POST', '/vehicles', {
      token,
      body: {
        telematics_brand: 'FLEETGATE',
        telematics_unit_id: `ev-${Date.now()}`,
        vehicle_model_id: 'fleetgate-car-v1',
        password: 'abcdefghijklmnop',
      },
    });
    expect(res.status).toBe(201);
    expect(seen).toContainEqual(
      expect.objectContaining({ type: 'vehicle.added', flow_id: res.headers.get('x-flow-id') }),
    );
    const del = await h.request('DELETE', `/vehicles/${res.body.vehicle_id}`, { token });
    expect(seen).toContainEqual(
      expect.objectContaining({ type: 'vehicle.deleted', flow_id: del.headers.get('x-flow-id') }),
    );
  } finally {
    off();
  }
});
