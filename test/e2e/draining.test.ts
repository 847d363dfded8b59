import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FleetgateProcess, startFleetgateProcess } from '../../scripts/lib/fleetgate-process.js';
import { createApiClient } from '../../src/services/auth-service.js';
import { FleetgateUnit } from '../../src/sim/fleetgate-unit.js';
import { createStore } from '../../src/store/registry.js';
import { eventually } from '../helpers/eventually.js';

// Issue 21 item 2, SPEC §7: SIGTERM drains with readiness 503 from the first signal; after the
// second, every request that reached the server gets an answer, and running commands answer
// as docs/deploy.md says. A real `fleetgate serve` process (SQLite, embedded broker).
const KEY = 'draining-test-secret-key-long-enough-0123456789';
const BUDGET_MS = 4000;

let dir: string;
let proc: FleetgateProcess | undefined;
let token: string;
const units: FleetgateUnit[] = [];

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'fleetgate-drain-'));
  const store = await createStore({ dataDir: dir, databaseUrl: undefined });
  await store.migrate();
  const client = await createApiClient(store, { fleetId: 'fleet-drain', scopes: ['vehicles', 'vehicle-commands'] });
  await store.close();
  proc = await startFleetgateProcess({
    instanceId: 'fg-drain',
    settings: {
      'data-dir': dir,
      'secret-key': KEY,
      'mqtt-port': 0,
      'teltonika-port': 0,
      'command-timeout-ms': BUDGET_MS,
      'log-level': 'warn',
    },
  });
  const res = await fetch(`${proc.url}/auth/oauth/token?grant_type=client_credentials`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`,
    },
  });
  token = ((await res.json()) as { access_token: string }).access_token;
}, 60_000);

afterAll(async () => {
  await Promise.allSettled(units.map((u) => u.stop()));
  await proc?.stop(5_000);
  rmSync(dir, { recursive: true, force: true });
});

const api = (method: string, urlPath: string, body?: unknown) =>
  fetch(`${proc!.url}${urlPath}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });

async function addVehicle(answerDelayMs: number): Promise<string> {
  const unitId = `drain-${Math.random().toString(36).slice(2, 10)}`;
  const password = `pw-${unitId}-0123456789`;
  const res = await api('POST', '/vehicles', {
    telematics_brand: 'FLEETGATE',
    telematics_unit_id: unitId,
    vehicle_model_id: 'fleetgate-car-v1',
    password,
  });
  const vehicleId = ((await res.json()) as { vehicle_id: string }).vehicle_id;
  const unit = new FleetgateUnit({
    mqttUrl: mqttUrlOf(proc!),
    unitId,
    password,
    model: 'fleetgate-car-v1',
    answerDelayMs,
    reportIntervalMs: 600_000,
    drive: false,
  });
  units.push(unit);
  await unit.start();
  await eventually(
    async () => ((await (await api('GET', `/vehicles/${vehicleId}`)).json()) as any).setup_status === 'SUCCEEDED',
    10_000,
    'setup',
  );
  return vehicleId;
}

function mqttUrlOf(p: FleetgateProcess): string {
  return /^ {2}MQTT broker +(mqtt:\/\/\S+)/m.exec(p.output())![1]!;
}

/**
 * One request on a connection of its own (no pooled keep-alive socket from before the signal):
 * its status, or the error code when no HTTP answer came.
 */
function rawRequest(method: string, urlPath: string): Promise<string> {
  return new Promise((resolve) => {
    const req = http.request(
      `${proc!.url}${urlPath}`,
      { method, agent: false, headers: { authorization: `Bearer ${token}` } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(String(res.statusCode)));
        res.on('error', (err: NodeJS.ErrnoException) => resolve(`${err.code}: ${err.message}`));
      },
    );
    // 'socket hang up': the server closed the connection without an answer; 'read ECONNRESET':
    // 'read ECONNRESET' or 'connect ECONNRESET': a reset (the kernel's, for a connection still in
    // the listen queue, or still being set up, when the listener closed).
    req.on('error', (err: NodeJS.ErrnoException) => resolve(`${err.code}: ${err.message}`));
    req.end();
  });
}

describe('SIGTERM draining', () => {
  it('readiness 503 from the first signal; after the second, every request gets an answer', async () => {
    const [slow, other] = await Promise.all([addVehicle(BUDGET_MS - 500), addVehicle(0)]);
    const pending = api('POST', `/vehicles/${slow}/commands/unlock-central-lock`).then(async (r) => ({
      status: r.status,
      body: (await r.json()) as Record<string, unknown>,
    }));
    await eventually(
      async () =>
        ((await (await api('GET', `/vehicles/${slow}/commands`)).json()) as any).items?.[0]?.status === 'IN_FLIGHT',
      3000,
      'IN_FLIGHT',
    );
    expect((await fetch(`${proc!.url}/health/ready`)).status).toBe(200);

    proc!.child.kill('SIGTERM');
    await eventually(async () => (await fetch(`${proc!.url}/health/ready`)).status === 503, 3000, 'ready 503');
    const ready = (await (await fetch(`${proc!.url}/health/ready`)).json()) as { checks: Record<string, string> };
    expect(ready.checks.instance).toMatch(/shutting down/);

    // Requests from now until the process is gone, one after another: each gets an HTTP answer,
    // or its connection is refused (it never reached the server). Never a socket closed unanswered.
    const outcomes: string[] = [];
    let exited = false;
    void proc!.exited.then(() => {
      exited = true;
    });
    const hammer = (async () => {
      for (let i = 0; !exited && i < 20_000; i++) {
        const [method, urlPath] = [
          ['GET', '/health/live'],
          ['GET', '/vehicles?limit=5'],
          ['POST', `/vehicles/${other}/commands/lock-central-lock`],
        ][i % 3]!;
        outcomes.push(await rawRequest(method!, urlPath!));
      }
    })();
    await eventually(() => outcomes.length >= 5, 3000, 'requests while draining');
    expect(outcomes.filter((o) => o === '503').length).toBeGreaterThan(0);

    proc!.child.kill('SIGTERM');
    const res = await pending;
    expect(res.status, JSON.stringify(res.body)).toBe(504);
    // docs/deploy.md: delivered, outcome unknown; the detail says the instance stopped.
    expect(res.body).toMatchObject({ type: '/problems/vehicle/no-connection', delivery: 'DELIVERED_OUTCOME_UNKNOWN' });
    expect(res.body.detail).toMatch(/instance executing the command was stopped/);
    expect(await proc!.exited).toBe(0);
    await hammer;

    const answered = (o: string) => /^\d{3}$/.test(o);
    const refused = (o: string) => o.startsWith('ECONNREFUSED');
    const lastAnswer = outcomes.findLastIndex(answered);
    // Up to the last answer the listener was open: every request was answered.
    expect(outcomes.slice(0, lastAnswer + 1).filter((o) => !answered(o))).toEqual([]);
    // After it, the listener closed: refused, except that a connection still in the kernel's
    // listen queue (or mid-handshake) at that instant is reset by the kernel (it never reached
    // fleetgate); never an accepted connection closed without an answer ('socket hang up').
    const after = outcomes.slice(lastAnswer + 1);
    const kernelReset = (o: string) => /^ECONNRESET: (read|connect) ECONNRESET/.test(o);
    expect(after.filter((o) => !refused(o) && !kernelReset(o))).toEqual([]);
    expect(after.filter((o) => !refused(o)).length).toBeLessThanOrEqual(1);
    expect(outcomes.filter((o) => /^\d{3}$/.test(o)).length).toBeGreaterThan(5);
    // The docs say what the answers say.
    const deploy = readFileSync(new URL('../../docs/deploy.md', import.meta.url), 'utf8').replace(/\s+/g, ' ');
    expect(deploy).toMatch(/readiness|\/health\/ready/);
    expect(deploy).toContain('answers 503 from the first signal');
    expect(deploy).toContain('`NOT_DELIVERED` when it had not reached the unit yet');
  }, 60_000);
});
