import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FleetgateProcess, startFleetgateProcess } from '../../scripts/lib/fleetgate-process.js';
import { FleetgateUnit } from '../../src/sim/fleetgate-unit.js';
import { eventually } from '../helpers/eventually.js';
import { type SharedParts, startSharedParts } from '../helpers/shared-parts.js';

// "Nothing lost" across a restart of the only instance (production topology): a unit that
// connects while no fleetgate runs sends its state to no one (QoS 0, no subscriber). The instance
// that starts next finds the unit online since a moment no instance recorded, and asks it for its
// state. (The bench's 15,000-unit restart lost 4 and 48 reports this way before.)
let parts: SharedParts | undefined;
let fleetgate: FleetgateProcess | undefined;
const units: FleetgateUnit[] = [];
let token: string;

async function call(method: string, urlPath: string, body?: unknown) {
  const res = await fetch(`${fleetgate!.url}${urlPath}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

const start = () =>
  startFleetgateProcess({ settings: { ...parts!.settings, 'teltonika-port': 0 }, instanceId: 'fg-r' });

beforeAll(async () => {
  parts = await startSharedParts({ commandTimeoutMs: 2000 });
  fleetgate = await start();
  token = await parts.token('fleet-r', fleetgate);
}, 60_000);

afterAll(async () => {
  await Promise.allSettled(units.map((u) => u.stop()));
  await fleetgate?.stop(5000);
  await parts?.close();
});

/** Adds a FLEETGATE vehicle, starts its unit and waits until its first report is stored. */
async function vehicleWithUnit(): Promise<{ vehicleId: string; unit: FleetgateUnit; commands: string[] }> {
  const unitId = `rc-${Math.random().toString(36).slice(2, 10)}`;
  const password = `pw-${unitId}-0123456789`;
  const added = await call('POST', '/vehicles', {
    telematics_brand: 'FLEETGATE',
    telematics_unit_id: unitId,
    vehicle_model_id: 'fleetgate-car-v1',
    password,
  });
  expect(added.status, JSON.stringify(added.body)).toBe(201);
  const vehicleId: string = added.body.vehicle_id;
  const unit = new FleetgateUnit({
    mqttUrl: parts!.broker.url,
    unitId,
    password,
    model: 'fleetgate-car-v1',
    reportIntervalMs: 60_000,
    drive: false,
  });
  units.push(unit);
  const commands: string[] = [];
  unit.on('command', (c: { command: string }) => commands.push(c.command));
  await unit.start();
  await eventually(async () => (await ignition(vehicleId)) === 'OFF', 5000, 'the first report stored');
  return { vehicleId, unit, commands };
}

const ignition = async (vehicleId: string) => (await call('GET', `/vehicles/${vehicleId}/state`)).body?.ignition?.value;

describe('a restarted instance and the units that connected while it was down', () => {
  it('asks such a unit for its state, and only such a unit: what it reported to no one is stored after all', async () => {
    const away = await vehicleWithUnit();
    const stayed = await vehicleWithUnit();

    // The only instance stops; meanwhile one unit loses its link, is started and reconnects: the
    // full report it sends on connecting (ignition ON) has no subscriber. The other stays.
    expect(await fleetgate!.stop(5000)).toBe(0);
    await away.unit.setBehaviour('offline');
    away.unit.setMoving(true);
    await away.unit.setBehaviour('online');

    fleetgate = await start();
    await eventually(async () => (await ignition(away.vehicleId)) === 'ON', 10_000, 'the report sent to no one');
    expect(away.commands).toEqual(['REQUEST_VEHICLE_STATE']);
    // The unit that stayed connected was seen: not asked (its command is the first it gets).
    const unlocked = await call('POST', `/vehicles/${stayed.vehicleId}/commands/unlock-central-lock`);
    expect(unlocked.status, JSON.stringify(unlocked.body)).toBe(200);
    expect(stayed.commands).toEqual(['UNLOCK_CENTRAL_LOCK']);
  }, 60_000);
});
