import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FleetgateProcess, startFleetgateProcess } from '../../scripts/lib/fleetgate-process.js';
import { createApiClient } from '../../src/services/auth-service.js';
import { FleetgateUnit } from '../../src/sim/fleetgate-unit.js';
import { TeltonikaUnit } from '../../src/sim/teltonika/teltonika-unit.js';
import { createStore } from '../../src/store/registry.js';
import { eventually } from '../helpers/eventually.js';

// SPEC §4 life status, "nothing contradicted across crashes": the embedded broker and the
// Teltonika listener live in fleetgate's process, so a crash takes every unit's connection with it. After the restart the
// database must not go on saying ONLINE for a unit that is not connected; the unit's next login
// makes it ONLINE again. Real `fleetgate serve` processes (SQLite, embedded broker), SIGKILLed.
const KEY = 'embedded-restart-test-secret-key-long-enough-0123';

let dir: string;
let client: { client_id: string; client_secret: string };
const procs: FleetgateProcess[] = [];
const units: Array<FleetgateUnit | TeltonikaUnit> = [];

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'fleetgate-embedded-restart-'));
  const store = await createStore({ dataDir: dir, databaseUrl: undefined });
  await store.migrate();
  client = await createApiClient(store, { fleetId: 'fleet-restart', scopes: ['vehicles'] });
  await store.close();
}, 60_000);

afterAll(async () => {
  await Promise.allSettled(units.map((u) => u.stop()));
  await Promise.allSettled(procs.map((p) => p.stop(5_000)));
  rmSync(dir, { recursive: true, force: true });
});

async function start(): Promise<{
  proc: FleetgateProcess;
  api: (method: string, urlPath: string, body?: unknown) => Promise<Response>;
}> {
  const proc = await startFleetgateProcess({
    instanceId: `fg-restart-${procs.length}`,
    settings: { 'data-dir': dir, 'secret-key': KEY, 'mqtt-port': 0, 'teltonika-port': 0, 'log-level': 'warn' },
  });
  procs.push(proc);
  const res = await fetch(`${proc.url}/auth/oauth/token?grant_type=client_credentials`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`,
    },
  });
  const token = ((await res.json()) as { access_token: string }).access_token;
  const api = (method: string, urlPath: string, body?: unknown) =>
    fetch(`${proc.url}${urlPath}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  return { proc, api };
}

const mqttUrlOf = (p: FleetgateProcess) => /^ {2}MQTT broker +(mqtt:\/\/\S+)/m.exec(p.output())![1]!;

async function lifeStatus(api: (method: string, urlPath: string) => Promise<Response>, vehicleId: string) {
  return ((await (await api('GET', `/vehicles/${vehicleId}`)).json()) as { life_status: { value: string } }).life_status
    .value;
}

const teltonikaOf = (p: FleetgateProcess) => {
  const { hostname, port } = new URL(p.endpoints.TELTONIKA!);
  return { host: hostname, port: Number(port) };
};

describe('a lone fleetgate (embedded broker) crashes', () => {
  it('leaves no vehicle ONLINE whose unit is not connected after the restart; units back make them ONLINE', async () => {
    const first = await start();
    const unitId = 'restart-unit-1';
    const password = 'restart-unit-password-0123456789';
    const imei = '356307042449001';
    const fg = await first.api('POST', '/vehicles', {
      telematics_brand: 'FLEETGATE',
      telematics_unit_id: unitId,
      vehicle_model_id: 'fleetgate-car-v1',
      password,
    });
    const tt = await first.api('POST', '/vehicles', {
      telematics_brand: 'TELTONIKA',
      telematics_unit_id: imei,
      vehicle_model_id: 'teltonika-fmc-can-car',
    });
    const vehicleIds = [
      ((await fg.json()) as { vehicle_id: string }).vehicle_id,
      ((await tt.json()) as { vehicle_id: string }).vehicle_id,
    ];
    const unitOptions = { unitId, password, model: 'fleetgate-car-v1', reportIntervalMs: 600_000, drive: false };
    const teltonikaOptions = { imei, model: 'teltonika-fmc-can-car', reportIntervalMs: 0, answerDelayMs: 0 };
    const unit = new FleetgateUnit({ ...unitOptions, mqttUrl: mqttUrlOf(first.proc) });
    const device = new TeltonikaUnit({ ...teltonikaOptions, ...teltonikaOf(first.proc) });
    units.push(unit, device);
    await unit.start();
    expect(await device.connect()).toBe(true);
    const statuses = async (api: typeof first.api) => Promise.all(vehicleIds.map((id) => lifeStatus(api, id)));
    await eventually(async () => (await statuses(first.api)).every((s) => s === 'ONLINE'), 10_000, 'ONLINE');

    // A crash: no shutdown, no last will reaches anyone. The units cannot follow (the new
    // process listens on other ports), as units of vehicles parked out of coverage.
    first.proc.child.kill('SIGKILL');
    await first.proc.exited;
    await Promise.all([unit.stop(), device.stop()]);

    const second = await start();
    await eventually(
      async () => (await statuses(second.api)).every((s) => s === 'OFFLINE'),
      5_000,
      'OFFLINE after the restart',
    );
    for (const id of vehicleIds) {
      const v = (await (await second.api('GET', `/vehicles/${id}`)).json()) as { life_status: { modified_at: string } };
      expect(Date.parse(v.life_status.modified_at)).toBeGreaterThan(Date.now() - 60_000);
    }

    const back = new FleetgateUnit({ ...unitOptions, mqttUrl: mqttUrlOf(second.proc) });
    const deviceBack = new TeltonikaUnit({ ...teltonikaOptions, ...teltonikaOf(second.proc) });
    units.push(back, deviceBack);
    await back.start();
    expect(await deviceBack.connect()).toBe(true);
    await eventually(async () => (await statuses(second.api)).every((s) => s === 'ONLINE'), 10_000, 'ONLINE again');
  }, 60_000);
});
