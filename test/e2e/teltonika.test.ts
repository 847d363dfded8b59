import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMANDS, commandToPath } from '../../src/domain/commands.js';
import { TeltonikaUnit } from '../../src/sim/teltonika/teltonika-unit.js';
import { TELTONIKA_MODELS } from '../../src/telematics/teltonika/models.js';
import type { TeltonikaAdapter } from '../../src/telematics/teltonika/teltonika-adapter.js';
import { EXPECTED_STATE } from '../helpers/expected-state.js';
import { Harness } from '../helpers/harness.js';

// Issue 4: Teltonika car and scooter over real TCP, through the HTTP API.
let h: Harness;
let token: string;
const units: TeltonikaUnit[] = [];

beforeAll(async () => {
  h = await Harness.start();
  token = await h.token('fleet-tt');
});
afterAll(async () => {
  await Promise.allSettled(units.map((u) => u.stop()));
  await h?.close();
});

let imeiSeq = 356307042441000;

async function addTeltonika(model: string): Promise<{ vehicleId: string; unit: TeltonikaUnit }> {
  const imei = String(imeiSeq++);
  const res = await h.request('POST', '/vehicles', {
    token,
    body: { telematics_brand: 'TELTONIKA', telematics_unit_id: imei, vehicle_model_id: model },
  });
  expect(res.status, res.text).toBe(201);
  const port = (h.app.adapters.get('TELTONIKA') as TeltonikaAdapter).port;
  const unit = new TeltonikaUnit({ host: '127.0.0.1', port, imei, model, reportIntervalMs: 0, answerDelayMs: 0 });
  units.push(unit);
  await unit.connect();
  await h.waitFor(async () => (await h.app.store.getVehicle(res.body.vehicle_id))?.setup_status === 'SUCCEEDED');
  return { vehicleId: res.body.vehicle_id, unit };
}

describe('TELTONIKA vehicles end to end (SPEC §6)', () => {
  for (const model of TELTONIKA_MODELS) {
    it(`${model.id}: every supported command answers 200 with the expected state`, async () => {
      const { vehicleId } = await addTeltonika(model.id);
      for (const command of COMMANDS) {
        const res = await h.request('POST', `/vehicles/${vehicleId}/commands/${commandToPath(command)}`, { token });
        if (!model.capabilities.commands.includes(command)) {
          expect(res.status).toBe(409);
          expect(res.body.type).toBe('/problems/vehicle/command-not-supported');
          continue;
        }
        expect(res.status, `${command}: ${res.text}`).toBe(200);
        for (const [prop, value] of Object.entries(EXPECTED_STATE[command] ?? {})) {
          if (model.capabilities.vehicle_state.includes(prop.toUpperCase())) {
            expect(res.body[prop]?.value, `${command} → ${prop}`).toEqual(value);
          }
        }
        for (const prop of Object.keys(res.body))
          expect(model.capabilities.vehicle_state).toContain(prop.toUpperCase());
      }
      const records = await h.request('GET', `/vehicles/${vehicleId}/commands?limit=100`, { token });
      expect(records.body.items.every((r: { adapter: string }) => r.adapter === 'TELTONIKA')).toBe(true);
    });
  }

  it('a combined command run as steps lists each step and the state left behind when a step fails (SPEC §1)', async () => {
    const { vehicleId, unit } = await addTeltonika('teltonika-fmc-can-car');
    unit.behaviour = 'refuse';
    const res = await h.request('POST', `/vehicles/${vehicleId}/commands/lock-and-disable-driving`, { token });
    expect(res.status, res.text).toBe(409);
    expect(res.body.type).toBe('/problems/vehicle/conflicting-state');
    expect(res.body.steps).toEqual([
      expect.objectContaining({
        command: 'LOCK_CENTRAL_LOCK',
        outcome: 'FAILED',
        problem_type: 'vehicle/conflicting-state',
      }),
      { command: 'DISABLE_DRIVING', outcome: 'NOT_EXECUTED' },
    ]);
    expect(res.body.vehicle_state).toEqual(expect.any(Object));
    expect(res.body.detail).toMatch(/lock-central-lock/);
    unit.behaviour = 'normal';
    const ok = await h.request('POST', `/vehicles/${vehicleId}/commands/unlock-and-enable-driving`, { token });
    expect(ok.status, ok.text).toBe(200);
    const records = await h.request('GET', `/vehicles/${vehicleId}/commands?limit=2`, { token });
    expect(records.body.items[0].steps.map((s: { outcome: string }) => s.outcome)).toEqual(['SUCCEEDED', 'SUCCEEDED']);
    expect(records.body.items[1]).toMatchObject({ status: 'FAILED', problem_type: 'vehicle/conflicting-state' });
  });

  it('a unit that is not connected gives 504 at once; unknown IMEIs are refused', async () => {
    const { vehicleId, unit } = await addTeltonika('teltonika-tst-scooter');
    await unit.stop();
    await h.waitFor(async () => (await h.app.store.getVehicle(vehicleId))?.life_status === 'OFFLINE');
    const started = Date.now();
    const res = await h.request('POST', `/vehicles/${vehicleId}/commands/disable-driving`, { token });
    expect(res.status).toBe(504);
    expect(res.body).toMatchObject({ type: '/problems/vehicle/no-connection', delivery: 'NOT_DELIVERED' });
    expect(Date.now() - started).toBeLessThan(500);
  });
});
