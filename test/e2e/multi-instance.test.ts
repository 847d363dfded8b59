import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FleetgateProcess, startFleetgateProcess } from '../../scripts/lib/fleetgate-process.js';
import { FleetgateUnit } from '../../src/sim/fleetgate-unit.js';
import { eventually } from '../helpers/eventually.js';
import { type SharedParts, startSharedParts } from '../helpers/shared-parts.js';

// SPEC §1 and §7: several fleetgate processes on one PostgreSQL and one Mosquitto. Any instance
// answers any request; single flight, setup, life status and state are shared through them.
const COMMAND_TIMEOUT_MS = 2000;
// A record outlives its budget by this grace before another instance may expire it
// (command-service.ts), and the maintenance loop runs every 5 s (app.ts).
const ORPHAN_EXPIRY_MAX_MS = COMMAND_TIMEOUT_MS + 5_000 + 5_000 + 3_000;

let parts: SharedParts | undefined;
const instances: FleetgateProcess[] = [];
const units: FleetgateUnit[] = [];
let A: FleetgateProcess;
let B: FleetgateProcess;
let C: FleetgateProcess;
let token: string;

interface Res {
  status: number;
  body: any;
}

async function call(on: FleetgateProcess, method: string, urlPath: string, body?: unknown): Promise<Res> {
  const headers: Record<string, string> = { authorization: `Bearer ${token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${on.url}${urlPath}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

const command = (on: FleetgateProcess, vehicleId: string, name: string) =>
  call(on, 'POST', `/vehicles/${vehicleId}/commands/${name}`);

/** Adds a FLEETGATE vehicle through `via`, starts its unit and waits until `seenBy` shows it set up and online. */
async function addVehicle(
  via: FleetgateProcess,
  seenBy: FleetgateProcess,
  answerDelayMs = 0,
): Promise<{ vehicleId: string; unit: FleetgateUnit }> {
  const unitId = `mi-${randomBytes(4).toString('hex')}`;
  const password = `pw-${unitId}-0123456789`;
  const added = await call(via, 'POST', '/vehicles', {
    telematics_brand: 'FLEETGATE',
    telematics_unit_id: unitId,
    vehicle_model_id: 'fleetgate-car-v1',
    password,
  });
  expect(added.status, JSON.stringify(added.body)).toBe(201);
  const unit = new FleetgateUnit({
    mqttUrl: parts!.broker.url,
    unitId,
    password,
    model: 'fleetgate-car-v1',
    answerDelayMs,
    reportIntervalMs: 60_000,
    drive: false,
  });
  units.push(unit);
  await unit.start();
  const vehicleId: string = added.body.vehicle_id;
  await eventually(
    async () => {
      const v = await call(seenBy, 'GET', `/vehicles/${vehicleId}`);
      return v.body?.setup_status === 'SUCCEEDED' && v.body.life_status?.value === 'ONLINE';
    },
    5000,
    'setup SUCCEEDED and ONLINE on the other instance',
  );
  return { vehicleId, unit };
}

async function latestRecord(on: FleetgateProcess, vehicleId: string): Promise<any> {
  const list = await call(on, 'GET', `/vehicles/${vehicleId}/commands?limit=1`);
  return list.body?.items?.[0];
}

beforeAll(async () => {
  parts = await startSharedParts({ commandTimeoutMs: COMMAND_TIMEOUT_MS });
  const settings = { ...parts.settings, 'teltonika-port': 0 };
  // One after the other: the first one migrates the empty database.
  for (const id of ['fg-a', 'fg-b', 'fg-c']) {
    instances.push(await startFleetgateProcess({ settings, instanceId: id }));
  }
  [A, B, C] = instances as [FleetgateProcess, FleetgateProcess, FleetgateProcess];
  // A token from one instance is valid on every other (shared secret key).
  token = await parts.token('fleet-mi', B);
}, 90_000);

afterAll(async () => {
  await Promise.allSettled(units.map((u) => u.stop()));
  await Promise.allSettled(instances.map((p) => p.stop(5000)));
  await parts?.close();
});

describe('several fleetgate instances on one PostgreSQL and one Mosquitto', () => {
  it('a vehicle added via A is set up, online and commandable via B; state is the same on both', async () => {
    const { vehicleId } = await addVehicle(A, B);
    const viaB = await command(B, vehicleId, 'unlock-central-lock');
    expect(viaB.status, JSON.stringify(viaB.body)).toBe(200);
    expect(viaB.body.central_lock.value).toBe('UNLOCKED');
    const stateA = await call(A, 'GET', `/vehicles/${vehicleId}/state`);
    const stateB = await call(B, 'GET', `/vehicles/${vehicleId}/state`);
    expect(stateA.body.central_lock).toEqual(viaB.body.central_lock);
    expect(stateB.body).toEqual(stateA.body);
    expect((await latestRecord(A, vehicleId)).instance_id).toBe('fg-b');
  });

  it('state a unit reports on its own and its life status are seen by every instance', async () => {
    const { vehicleId, unit } = await addVehicle(B, A);
    unit.setMoving(true);
    for (const on of [A, B, C]) {
      await eventually(
        async () => (await call(on, 'GET', `/vehicles/${vehicleId}/state`)).body?.ignition?.value === 'ON',
        5000,
        `reported state on ${on.instanceId}`,
      );
    }
    await unit.setBehaviour('offline');
    for (const on of [A, B, C]) {
      await eventually(
        async () => (await call(on, 'GET', `/vehicles/${vehicleId}`)).body?.life_status?.value === 'OFFLINE',
        5000,
        `OFFLINE on ${on.instanceId}`,
      );
    }
    // No instance sends to a unit that went offline, whichever instance saw it go.
    for (const on of [A, B, C]) {
      const res = await command(on, vehicleId, 'request-vehicle-state');
      expect(res.status).toBe(504);
      expect(res.body.delivery).toBe('NOT_DELIVERED');
    }
  });

  it('SPEC §1 single flight across instances: concurrent commands via A and B → one 200, one 409', async () => {
    const { vehicleId } = await addVehicle(A, B, 400);
    for (let round = 0; round < 3; round++) {
      const [a, b] = await Promise.all([
        command(A, vehicleId, 'unlock-central-lock'),
        command(B, vehicleId, 'lock-central-lock'),
      ]);
      expect([a.status, b.status].sort(), JSON.stringify([a.body, b.body])).toEqual([200, 409]);
      expect((a.status === 409 ? a : b).body.type).toBe('/problems/vehicle/conflicting-command');
    }
  });

  it('commands spread over all instances all succeed and every instance lists all records', async () => {
    const vehicles = await Promise.all([addVehicle(A, B), addVehicle(B, C), addVehicle(C, A)]);
    const all = [A, B, C];
    const names = ['unlock-central-lock', 'lock-central-lock', 'enable-driving', 'disable-driving'];
    await Promise.all(
      vehicles.map(async ({ vehicleId }, v) => {
        for (let i = 0; i < 8; i++) {
          const res = await command(all[(i + v) % 3]!, vehicleId, names[i % names.length]!);
          expect(res.status, JSON.stringify(res.body)).toBe(200);
        }
      }),
    );
    for (const { vehicleId } of vehicles) {
      for (const on of all) {
        const list = await call(on, 'GET', `/vehicles/${vehicleId}/commands?limit=50`);
        expect(list.body.items).toHaveLength(8);
        expect(list.body.items.every((c: { status: string }) => c.status === 'SUCCEEDED')).toBe(true);
      }
    }
  });

  it('an instance killed mid-command leaves a record that ends OUTCOME_UNKNOWN, not IN_FLIGHT forever', async () => {
    const { vehicleId } = await addVehicle(A, C, COMMAND_TIMEOUT_MS - 200);
    const pending = command(C, vehicleId, 'unlock-central-lock').catch((e: Error) => e);
    await eventually(async () => (await latestRecord(A, vehicleId))?.status === 'IN_FLIGHT', 3000, 'IN_FLIGHT');
    C.child.kill('SIGKILL');
    expect(await C.exited).toBe('SIGKILL');
    expect(await pending).toBeInstanceOf(Error);
    // Until its deadline has passed, the dead instance's command still holds the vehicle.
    expect((await command(B, vehicleId, 'lock-central-lock')).status).toBe(409);
    // The survivors' maintenance loop expires it.
    await eventually(
      async () => (await latestRecord(B, vehicleId))?.status === 'OUTCOME_UNKNOWN',
      ORPHAN_EXPIRY_MAX_MS,
      'OUTCOME_UNKNOWN',
    );
    const record = await latestRecord(A, vehicleId);
    expect(record).toMatchObject({ command: 'UNLOCK_CENTRAL_LOCK', status: 'OUTCOME_UNKNOWN' });
    expect(record.completed_at).toBeTruthy();
    // And the vehicle takes commands again.
    const next = await command(B, vehicleId, 'lock-central-lock');
    expect(next.status, JSON.stringify(next.body)).toBe(200);
  }, 30_000);

  it('SIGTERM drains: a command in flight still answers 200 and the process exits 0', async () => {
    const { vehicleId } = await addVehicle(A, B, 700);
    const pending = command(B, vehicleId, 'unlock-central-lock');
    await eventually(async () => (await latestRecord(A, vehicleId))?.status === 'IN_FLIGHT', 3000, 'IN_FLIGHT');
    B.child.kill('SIGTERM');
    const res = await pending;
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.central_lock.value).toBe('UNLOCKED');
    expect(await B.exited).toBe(0);
    expect((await latestRecord(A, vehicleId)).status).toBe('SUCCEEDED');
    // The survivors go on serving.
    expect((await command(A, vehicleId, 'lock-central-lock')).status).toBe(200);
  });

  it('a second SIGTERM ends running commands at once: 504 outcome unknown, and the process exits 0', async () => {
    const settings = { ...parts!.settings, 'teltonika-port': 0 };
    const D = await startFleetgateProcess({ settings, instanceId: 'fg-d' });
    instances.push(D);
    // The unit answers after 1.8 s, within the 2 s budget: a drain alone would answer 200.
    const { vehicleId } = await addVehicle(A, D, 1800);
    const pending = command(D, vehicleId, 'unlock-central-lock');
    await eventually(async () => (await latestRecord(A, vehicleId))?.status === 'IN_FLIGHT', 3000, 'IN_FLIGHT');
    D.child.kill('SIGTERM');
    // Signals of one kind sent before the first is handled arrive as one: wait for the drain,
    // in which new commands are refused (before any other check).
    await eventually(async () => (await command(D, vehicleId, 'lock-central-lock')).status === 503, 3000, 'draining');
    D.child.kill('SIGTERM');
    const res = await pending;
    expect(res.status, JSON.stringify(res.body)).toBe(504);
    expect(res.body).toMatchObject({ type: '/problems/vehicle/no-connection', delivery: 'DELIVERED_OUTCOME_UNKNOWN' });
    expect(await D.exited).toBe(0);
    expect((await latestRecord(A, vehicleId)).status).toBe('OUTCOME_UNKNOWN');
  });
});
