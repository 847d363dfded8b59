import path from 'node:path';
import Database from 'better-sqlite3';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Harness } from '../helpers/harness.js';

// SPEC §9 / issue 18: the console in a real browser (Debian's Chromium), against a real
// fleetgate with simulated vehicles over MQTT.
const CHROMIUM = '/usr/bin/chromium';
const PASSWORD = 'correct-horse-battery';

let h: Harness;
let browser: Browser;
let operatorToken: string;
let vehicleId: string;
let unitId: string;
const contexts: BrowserContext[] = [];

beforeAll(async () => {
  h = await Harness.start({ commandTimeoutMs: 2500 });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  operatorToken = await h.token('fleet-a', ['vehicles', 'vehicle-commands']);
  ({ vehicleId, unitId } = await h.vehicle(operatorToken));
  for (const [email, role, fleetId] of [
    ['operator@a.example', 'operator', 'fleet-a'],
    ['viewer@a.example', 'viewer', 'fleet-a'],
    ['someone@b.example', 'admin', 'fleet-b'],
  ] as const) {
    await h.app.users.create({ fleetId, email, role, password: PASSWORD });
  }
});

afterEach(async () => {
  await Promise.all(contexts.splice(0).map((c) => c.close()));
});

afterAll(async () => {
  await browser?.close();
  await h?.close();
});

async function signedIn(email: string, password = PASSWORD): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  contexts.push(context);
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  await page.goto(`${h.url}/console`);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  return page;
}

/** The latest-state table's row of a property, e.g. `Central lock UNLOCKED 0 s ago`. */
const stateRow = (page: Page, property: string, value: string) =>
  page.getByRole('row', { name: new RegExp(`^${property} ${value} `) });

describe('console', () => {
  it('an operator signs in, finds a simulated vehicle, unlocks it after confirming and sees UNLOCKED', async () => {
    const page = await signedIn('operator@a.example');
    await page.getByLabel('Search').fill(unitId);
    await page.getByRole('link', { name: vehicleId }).click();
    await stateRow(page, 'Central lock', 'LOCKED').waitFor();

    await page.getByRole('button', { name: 'Unlock central lock' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.waitFor();
    await dialog.getByRole('button', { name: 'Confirm' }).click();
    await stateRow(page, 'Central lock', 'UNLOCKED').waitFor();
    await page.getByText('Unlock central lock: done.').waitFor();

    // The command record names the person who sent it.
    const history = await h.request('GET', `/vehicles/${vehicleId}/commands`, { token: operatorToken });
    expect(history.body.items[0]).toMatchObject({
      command: 'UNLOCK_CENTRAL_LOCK',
      status: 'SUCCEEDED',
      client_id: 'console',
      user_email: 'operator@a.example',
    });
    await page.getByRole('row', { name: /Unlock central lock SUCCEEDED operator@a\.example/ }).waitFor();
    // And so does its CommandFinished event, which the page lists among the vehicle's events.
    const events = await h.request('GET', `/events?vehicle_id=${vehicleId}&types=CommandFinished`, {
      token: await h.token('fleet-a', ['events.ro']),
    });
    expect(events.body.items.at(-1).data).toMatchObject({
      command: 'UNLOCK_CENTRAL_LOCK',
      client_id: 'console',
      user_email: 'operator@a.example',
    });
    await page.getByRole('listitem').filter({ hasText: 'CommandFinished' }).first().waitFor();

    // A command that does not open the vehicle needs no confirmation.
    await page.getByRole('button', { name: 'Lock central lock', exact: true }).click();
    await stateRow(page, 'Central lock', 'LOCKED').waitFor();
    expect(await page.getByRole('dialog').count()).toBe(0);
  });

  it('shows a state change the simulator makes, and its life status, without reloading', async () => {
    const { vehicleId: liveId, unit } = await h.vehicle(operatorToken);
    const page = await signedIn('operator@a.example');
    await page.goto(`${h.url}/console/#/vehicles/${liveId}`);
    // Exactly: a string filter is a case-insensitive substring, which "Connecting to live updates…" matches.
    await page
      .getByRole('status')
      .filter({ hasText: /^Live$/ })
      .waitFor();
    await stateRow(page, 'Ignition', 'OFF').waitFor();
    // Marks this document: a reload would lose it.
    await page.evaluate('window.notReloaded = true');

    unit.setMoving(true);
    await stateRow(page, 'Ignition', 'ON').waitFor();
    await unit.setBehaviour('offline');
    await page.getByText('OFFLINE', { exact: true }).first().waitFor();
    expect(await page.evaluate('window.notReloaded')).toBe(true);
  });

  it('shows state stored after the page loaded but before its event stream was live', async () => {
    const { vehicleId: lateId, unit } = await h.vehicle(operatorToken, 'fleetgate-car-v1', { connect: false });
    const page = await signedIn('operator@a.example');
    await page.getByRole('button', { name: 'Sign out' }).waitFor();
    // The next document's stream is held until the unit's first report is stored, so it starts
    // after the report's events (the race of a report landing between the page's load and its
    // stream opening, made certain): only a reload once the stream is live shows the state.
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    await page.route('**/events/stream**', async (route) => {
      await held;
      await route.continue();
    });
    await page.goto(`${h.url}/console/#/vehicles/${lateId}`);
    await page.reload();
    await page.getByText('No state reported yet.').waitFor();

    await unit.start();
    await h.waitFor(async () => Object.keys(await h.app.store.getState(lateId)).length > 0);
    release();
    await page
      .getByRole('status')
      .filter({ hasText: /^Live$/ })
      .waitFor();
    await stateRow(page, 'Ignition', 'OFF').waitFor();
  });

  it('shows a lost event stream, resumes by itself and shows what changed meanwhile', async () => {
    const { vehicleId: liveId, unit } = await h.vehicle(operatorToken);
    const page = await signedIn('viewer@a.example');
    await page.goto(`${h.url}/console/#/vehicles/${liveId}`);
    await page
      .getByRole('status')
      .filter({ hasText: /^Live$/ })
      .waitFor();
    await stateRow(page, 'Ignition', 'OFF').waitFor();
    await page.evaluate('window.notReloaded = true');

    // The server drops every connection, and the browser's attempts to reconnect fail for a while.
    await page.route('**/events/stream**', (route) => route.abort('connectionrefused'));
    h.app.api.server.closeAllConnections();
    await page.getByText('Live updates lost — reconnecting…').waitFor();
    unit.setMoving(true);
    await page.unroute('**/events/stream**');

    await page
      .getByRole('status')
      .filter({ hasText: /^Live$/ })
      .waitFor({ timeout: 15_000 });
    await stateRow(page, 'Ignition', 'ON').waitFor();
    expect(await page.evaluate('window.notReloaded')).toBe(true);
  });

  it('shows the problem of a failed command: its title, detail and delivery', async () => {
    const { vehicleId: silentId, unit } = await h.vehicle(operatorToken);
    await unit.setBehaviour('silent');
    const page = await signedIn('operator@a.example');
    await page.goto(`${h.url}/console/#/vehicles/${silentId}`);
    await page.getByRole('button', { name: 'Draw attention' }).click();
    const alert = page.getByRole('alert').filter({ hasText: 'No connection to vehicle' });
    await alert.waitFor({ timeout: 15_000 });
    expect(await alert.textContent()).toMatch(/Delivery: (not delivered|delivered, outcome unknown)/);
  });

  it('a viewer sees no command buttons, and the API refuses its session a command', async () => {
    const page = await signedIn('viewer@a.example');
    await page.getByRole('link', { name: vehicleId }).click();
    await page.getByRole('heading', { name: 'Latest state' }).waitFor();
    expect(await page.getByRole('button', { name: /central lock/i }).count()).toBe(0);
    expect(await page.getByRole('heading', { name: 'Commands' }).count()).toBe(0);

    const status = await page.evaluate(async (id) => {
      const res = await fetch(`/vehicles/${id}/commands/unlock-central-lock`, {
        method: 'POST',
        headers: { 'x-fleetgate-console': '1' },
      });
      return { status: res.status, body: await res.json() };
    }, vehicleId);
    expect(status.status).toBe(403);
    expect(status.body).toMatchObject({ type: '/problems/forbidden-resource', required_scope: 'vehicle-commands' });
  });

  it("another fleet's user sees none of the fleet", async () => {
    const page = await signedIn('someone@b.example');
    await page.getByRole('heading', { name: 'Fleet fleet-b' }).waitFor();
    await page.getByText('0 of 0 vehicles shown').waitFor();
    expect(await page.getByRole('link', { name: vehicleId }).count()).toBe(0);

    await page.goto(`${h.url}/console/#/vehicles/${vehicleId}`);
    await page.getByRole('alert').getByText('The resource cannot be found.').waitFor();
    const res = await page.evaluate(async (id) => (await fetch(`/vehicles/${id}/state`)).status, vehicleId);
    expect(res).toBe(404);
  });

  it('refuses a wrong password with the problem, and sets an HttpOnly SameSite=Strict cookie that expires', async () => {
    const page = await signedIn('operator@a.example', 'not-the-password');
    await page.getByRole('alert').getByText('The email or password is wrong.').waitFor();
    expect(await page.context().cookies()).toEqual([]);

    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('button', { name: 'Sign out' }).waitFor();
    const [cookie] = await page.context().cookies();
    expect(cookie).toMatchObject({ name: 'fleetgate_session', httpOnly: true, sameSite: 'Strict', path: '/' });
    const hours = (cookie!.expires * 1000 - Date.now()) / 3600_000;
    expect(hours).toBeGreaterThan(11);
    expect(hours).toBeLessThanOrEqual(12);
    expect(await page.evaluate('document.cookie')).toBe('');
  });

  it('sends a user whose session expired back to sign in, saying so', async () => {
    const page = await signedIn('viewer@a.example');
    await page.getByRole('button', { name: 'Sign out' }).waitFor();
    const db = new Database(path.join(h.app.config.dataDir, 'fleetgate.db'));
    try {
      db.prepare('UPDATE console_sessions SET expires_at = ?').run(Date.now() - 1000);
    } finally {
      db.close();
    }
    // The next request (a page opened, or a live update's reload) meets the expired session.
    await page.evaluate(`location.hash = '#/vehicles/${vehicleId}'`);
    await page.getByRole('status').getByText('The console session has expired; sign in again.').waitFor();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
  });

  it('signs out: the session ends on the server too', async () => {
    const page = await signedIn('viewer@a.example');
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    expect(await page.context().cookies()).toEqual([]);
  });
});
