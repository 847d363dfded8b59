import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserService } from '../../src/services/user-service.js';
import { createStore } from '../../src/store/registry.js';
import { Harness } from '../helpers/harness.js';

// SPEC §9: console users, sessions and what they may do, through the public API.
const run = promisify(execFile);
const PASSWORD = 'correct-horse-battery';
const CONSOLE = { 'x-fleetgate-console': '1' };
let h: Harness;

beforeAll(async () => {
  h = await Harness.start();
  await h.app.users.create({ fleetId: 'fleet-x', email: 'admin@x.example', role: 'admin', password: PASSWORD });
  await h.app.users.create({ fleetId: 'fleet-x', email: 'viewer@x.example', role: 'viewer', password: PASSWORD });
});
afterAll(async () => {
  await h?.close();
});

/** Signs in and returns the session cookie (`name=value`). */
async function signIn(email: string, password = PASSWORD): Promise<string> {
  const res = await h.request('POST', '/auth/session', { body: { email, password }, headers: CONSOLE });
  expect(res.status, res.text).toBe(200);
  const cookie = res.headers.get('set-cookie') ?? '';
  expect(cookie).toMatch(/HttpOnly/);
  expect(cookie).toMatch(/SameSite=Strict/);
  expect(cookie).toMatch(/Expires=/);
  return cookie.split(';')[0]!;
}

describe('console sessions', () => {
  it('map roles to scopes: a viewer reads, an admin also manages users and clients', async () => {
    const viewer = await signIn('VIEWER@x.example');
    const me = await h.request('GET', '/auth/session', { headers: { cookie: viewer } });
    expect(me.body).toEqual({
      user: expect.objectContaining({ email: 'viewer@x.example', role: 'viewer', fleet_id: 'fleet-x' }),
      scopes: expect.arrayContaining(['vehicles.ro', 'events.ro']),
    });
    expect(me.body.scopes).not.toContain('vehicle-commands');
    expect((await h.request('GET', '/vehicles', { headers: { cookie: viewer } })).status).toBe(200);
    const refused = await h.request('GET', '/users', { headers: { cookie: viewer } });
    expect(refused.status).toBe(403);
    expect(refused.body.detail).toMatch(/role 'viewer' lacks the scope 'admin'/);
  });

  it('refuse cookie-authenticated changes without the console header or from another origin (CSRF)', async () => {
    const admin = await signIn('admin@x.example');
    const body = { email: 'new@x.example', role: 'viewer', password: PASSWORD };
    const bare = await h.request('POST', '/users', { body, headers: { cookie: admin } });
    expect(bare.status).toBe(403);
    expect(bare.body.type).toBe('/problems/forbidden-resource');
    const foreign = await h.request('POST', '/users', {
      body,
      headers: { cookie: admin, ...CONSOLE, origin: 'https://evil.example' },
    });
    expect(foreign.status).toBe(403);
    const signInElsewhere = await h.request('POST', '/auth/session', {
      body: { email: 'admin@x.example', password: PASSWORD },
    });
    expect(signInElsewhere.status).toBe(403);
    const ok = await h.request('POST', '/users', { body, headers: { cookie: admin, ...CONSOLE, origin: h.url } });
    expect(ok.status, ok.text).toBe(201);
  });

  it('sign out ends the session on the server', async () => {
    const viewer = await signIn('viewer@x.example');
    const out = await h.request('DELETE', '/auth/session', { headers: { cookie: viewer, ...CONSOLE } });
    expect(out.status).toBe(204);
    const after = await h.request('GET', '/vehicles', { headers: { cookie: viewer } });
    expect(after.status).toBe(401);
    expect(after.body.detail).toMatch(/unknown or ended/);
  });

  it('throttle guessing per account and source, without locking the real user out elsewhere', async () => {
    await h.app.users.create({ fleetId: 'fleet-x', email: 'guessed@x.example', role: 'viewer', password: PASSWORD });
    // The same store, on a clock the test moves.
    let now = Date.parse('2026-12-07T10:00:00Z');
    const users = new UserService(h.app.store, { sessionTtlMinutes: 60, clock: () => now });
    const attempt = (password: string, source: string) =>
      users.signIn('guessed@x.example', password, source).then(
        () => 'ok',
        (e: { key: string; headers?: Record<string, string> }) =>
          e.headers?.['Retry-After'] ? `${e.key} ${e.headers['Retry-After']}s` : e.key,
      );
    for (let i = 0; i < 5; i++) expect(await attempt('wrong-password', '10.0.0.1')).toBe('invalid-credentials');
    // The guessing source now waits, even with the right password, twice as long each time…
    expect(await attempt(PASSWORD, '10.0.0.1')).toBe('too-many-requests 1s');
    now += 1000;
    expect(await attempt('wrong-password', '10.0.0.1')).toBe('invalid-credentials');
    expect(await attempt(PASSWORD, '10.0.0.1')).toBe('too-many-requests 2s');
    // …while the real user, elsewhere, signs in; that does not free the guessing source.
    expect(await attempt(PASSWORD, '192.0.2.7')).toBe('ok');
    expect(await attempt(PASSWORD, '10.0.0.1')).toBe('too-many-requests 2s');

    // Guesses from many sources, each waiting as told, slow the account down, but to 30 s at most.
    const waits: number[] = [];
    for (let i = 0; i < 40; i++) {
      const answer = await attempt('wrong-password', `10.1.0.${i}`);
      const wait = /^too-many-requests (\d+)s$/.exec(answer);
      if (wait) {
        waits.push(Number(wait[1]));
        now += Number(wait[1]) * 1000;
      }
    }
    expect(waits.slice(0, 6)).toEqual([1, 2, 4, 8, 16, 30]);
    expect(Math.max(...waits)).toBe(30);
    expect(await attempt(PASSWORD, '192.0.2.7')).toBe('too-many-requests 30s');
    now += 30_000;
    expect(await attempt(PASSWORD, '192.0.2.7')).toBe('ok');

    // Wrong email and wrong password answer alike.
    await expect(users.signIn('nobody@x.example', 'whatever-it-is', '10.0.0.2')).rejects.toMatchObject({
      key: 'invalid-credentials',
      message: 'The email or password is wrong.',
    });
    const res = await h.request('POST', '/auth/session', {
      body: { email: 'guessed@x.example', password: 'wrong-password' },
      headers: CONSOLE,
    });
    expect(res.status).toBe(401);
  }, 120_000);
});

describe('users and API clients through the API', () => {
  it('an admin adds, changes and removes users of its fleet only', async () => {
    const admin = await signIn('admin@x.example');
    const headers = { cookie: admin, ...CONSOLE };
    const created = await h.request('POST', '/users', {
      body: { email: 'Field@X.example', role: 'operator', password: PASSWORD },
      headers,
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ email: 'field@x.example', role: 'operator', fleet_id: 'fleet-x' });
    expect(created.text).not.toMatch(/password|scrypt/);
    const again = await h.request('POST', '/users', {
      body: { email: 'field@x.example', role: 'viewer', password: PASSWORD },
      headers,
    });
    expect(again.status).toBe(409);
    const short = await h.request('POST', '/users', {
      body: { email: 'short@x.example', role: 'viewer', password: 'short' },
      headers,
    });
    expect(short.status).toBe(400);

    const field = await signIn('field@x.example');
    const id = created.body.user_id as string;
    const changed = await h.request('PATCH', `/users/${id}`, { body: { password: 'another-password-1' }, headers });
    expect(changed.status).toBe(200);
    expect((await h.request('GET', '/vehicles', { headers: { cookie: field } })).status).toBe(401);

    const other = await h.app.users.create({
      fleetId: 'fleet-y',
      email: 'y@y.example',
      role: 'admin',
      password: PASSWORD,
    });
    expect((await h.request('DELETE', `/users/${other.user_id}`, { headers })).status).toBe(404);
    const list = await h.request('GET', '/users', { headers });
    expect(list.body.items.map((u: { email: string }) => u.email)).not.toContain('y@y.example');
    expect((await h.request('DELETE', `/users/${id}`, { headers })).status).toBe(204);
    expect((await h.request('GET', `/users`, { headers })).text).not.toContain('field@x.example');
  });

  it('an admin creates an API client whose secret is shown once, lists and deletes it', async () => {
    const admin = await signIn('admin@x.example');
    const headers = { cookie: admin, ...CONSOLE };
    const created = await h.request('POST', '/clients', {
      body: { name: 'booking', scopes: ['vehicles.ro', 'vehicle-commands'] },
      headers,
    });
    expect(created.status, created.text).toBe(201);
    expect(created.body).toMatchObject({ fleet_id: 'fleet-x', name: 'booking' });
    expect(created.body.client_secret.length).toBeGreaterThan(30);
    const token = await h.request('POST', '/auth/oauth/token?grant_type=client_credentials', {
      headers: {
        authorization: `Basic ${Buffer.from(`${created.body.client_id}:${created.body.client_secret}`).toString('base64')}`,
      },
    });
    expect(token.status).toBe(200);
    const list = await h.request('GET', '/clients', { headers });
    expect(list.body.items.map((c: { client_id: string }) => c.client_id)).toContain(created.body.client_id);
    expect(list.text).not.toContain(created.body.client_secret);
    expect(list.text).not.toMatch(/secret/);

    // Another fleet's admin token sees and deletes none of them.
    const otherAdmin = await h.token('fleet-z', ['admin']);
    expect((await h.request('DELETE', `/clients/${created.body.client_id}`, { token: otherAdmin })).status).toBe(404);
    expect((await h.request('DELETE', `/clients/${created.body.client_id}`, { headers })).status).toBe(204);
  });
});

describe('fleetgate users', () => {
  it('create | list | delete on the same database', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'fleetgate-cli-users-'));
    const cli = (...args: string[]) =>
      // Each run compiles the CLI with tsx: tens of seconds on a loaded machine.
      run(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'users', ...args, '--data-dir', dataDir], {
        timeout: 90_000,
      });
    try {
      const created = await cli(
        'create',
        '--fleet',
        'fleet-cli',
        '--email',
        'ops@cli.example',
        '--role',
        'operator',
        '--password',
        PASSWORD,
      );
      expect(created.stdout).toMatch(/created operator ops@cli\.example of fleet fleet-cli/);
      const listed = await cli('list', '--json');
      const users = listed.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      expect(users).toEqual([expect.objectContaining({ email: 'ops@cli.example', role: 'operator' })]);
      expect(listed.stdout).not.toMatch(/scrypt|password/);
      expect((await cli('delete', 'ops@cli.example')).stdout).toMatch(/deleted ops@cli\.example/);
      const store = await createStore({ dataDir });
      try {
        expect(await store.getUserByEmail('ops@cli.example')).toBeUndefined();
      } finally {
        await store.close();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 300_000);
});
