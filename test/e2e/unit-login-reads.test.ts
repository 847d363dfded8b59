import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { FleetgateUnit } from '../../src/sim/fleetgate-unit.js';
import { Harness } from '../helpers/harness.js';

// A reconnect storm after a restart (docs/performance.md): every unit logs in, says it is online
// and sends its state. The login's password check reads the unit's vehicle; its status and report
// find that vehicle in the unit directory instead of reading it again, one read per unit in all.
describe('a unit logging in after a restart', () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'fleetgate-login-reads-'));
  const harnesses: Harness[] = [];
  const units: FleetgateUnit[] = [];
  afterAll(async () => {
    await Promise.allSettled(units.map((u) => u.stop()));
    for (const h of harnesses) await h.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('reads its vehicle once for its login, its status and its first state report', async () => {
    const first = await Harness.start({ dataDir });
    let added: Awaited<ReturnType<Harness['vehicle']>>;
    try {
      added = await first.vehicle(await first.token('fleet-login-reads'));
    } finally {
      await first.close();
    }
    const { vehicleId, unitId, password } = added;
    const restartedAt = Date.now();

    const h = await Harness.start({ dataDir });
    harnesses.push(h);
    const reads = vi.spyOn(h.app.store, 'findVehicleByUnit');
    const again = new FleetgateUnit({
      mqttUrl: h.app.mqttUrl,
      unitId,
      password,
      model: 'fleetgate-car-v1',
      answerDelayMs: 0,
      reportIntervalMs: 60_000,
      drive: false,
    });
    units.push(again);
    await again.start();
    await h.waitFor(async () => {
      const vehicle = await h.app.store.getVehicle(vehicleId);
      const state = await h.app.store.getState(vehicleId);
      const reported = state.ignition?.timestamp;
      return vehicle?.life_status === 'ONLINE' && reported !== undefined && Date.parse(reported) >= restartedAt;
    });
    // The unit's state report is stored after its status: both went through the directory.
    expect(reads.mock.calls).toEqual([['FLEETGATE', unitId]]);
  });
});
