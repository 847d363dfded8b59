import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Harness } from '../helpers/harness.js';

// A vehicle whose model a fleetgate upgrade dropped from the catalogue: the store begins its
// command (fleet, setup and capability are stored on the vehicle), then the service cannot find
// an adapter model for it. The answer is a 500, and the record must not hold the vehicle.
describe('a command to a vehicle whose model left the catalogue', () => {
  let h: Harness;
  let dataDir: string;

  beforeAll(async () => {
    dataDir = mkdtempSync(path.join(tmpdir(), 'fleetgate-retired-'));
    h = await Harness.start({ dataDir });
  });

  afterAll(async () => {
    await h?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('answers 500 and leaves no command in flight, so the next one is not refused as conflicting', async () => {
    const token = await h.token('fleet-retired');
    const { vehicleId } = await h.vehicle(token);
    const db = new Database(path.join(dataDir, 'fleetgate.db'));
    db.prepare("UPDATE vehicles SET vehicle_model_id = 'retired-model-v0' WHERE vehicle_id = ?").run(vehicleId);
    db.close();

    for (let i = 0; i < 2; i++) {
      const res = await h.request('POST', `/vehicles/${vehicleId}/commands/unlock-central-lock`, { token });
      expect(res.status).toBe(500);
      expect(res.body.type).toBe('/problems/internal-server-error');
    }
    const records = await h.app.store.listCommands(vehicleId, 10);
    expect(records.map((r) => [r.status, r.delivery])).toEqual([
      ['FAILED', 'NOT_DELIVERED'],
      ['FAILED', 'NOT_DELIVERED'],
    ]);
  });
});
