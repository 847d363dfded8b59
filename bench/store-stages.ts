/**
 * `npx tsx bench/store-stages.ts [--n 5000]`: what each store call on a command's path costs, per
 * engine, run in sequence from one process (no HTTP, no MQTT): the store's share of a command.
 * The same calls, with the same arguments, as CommandService.execute makes for a FLEETGATE car
 * without Idempotency-Key: startCommand (vehicle read and begin) and completeCommand (the
 * record's completion, the state merge and the merged state).
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FleetgateUnit } from '../src/sim/fleetgate-unit.js';
import { createStore } from '../src/store/registry.js';
import type { Store } from '../src/store/store.js';
import { cpuSecondsOf } from './lib/processes.js';
import { freshDatabase, seedFleet, vehicleId } from './lib/topology.js';

const argv = process.argv.slice(2);
const N = Number(argv[argv.indexOf('--n') + 1] || 5000);
const VEHICLES = 300;

// The state a simulated car answers with (its full snapshot), as the service passes it on.
const unit = new FleetgateUnit({ mqttUrl: 'mqtt://unused', unitId: 'u', password: 'p', model: 'fleetgate-car-v1' });
const state = unit.snapshot();

async function stages(label: string, store: Store): Promise<Record<string, number>> {
  const totals: Record<string, number> = { startCommand: 0, completeCommand: 0 };
  const time = async (name: string, fn: () => Promise<unknown>) => {
    const t0 = performance.now();
    await fn();
    totals[name]! += performance.now() - t0;
  };
  const cpu0 = cpuSecondsOf(process.pid);
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    const id = vehicleId(i % VEHICLES);
    const flow = randomUUID();
    const now = new Date().toISOString();
    await time('startCommand', async () => {
      const { begun } = await store.startCommand({
        flow_id: flow,
        fleet_id: 'bench',
        client_id: 'c',
        vehicle_id: id,
        command: 'UNLOCK_CENTRAL_LOCK',
        instance_id: 'bench',
        status: 'IN_FLIGHT',
        problem_type: null,
        detail: null,
        delivery: null,
        steps: null,
        requested_at: now,
        deadline_at: new Date(Date.now() + 20_000).toISOString(),
        completed_at: null,
        duration_ms: null,
      });
      if (!begun) throw new Error(`command ${i} to ${id} did not begin`);
    });
    await time('completeCommand', () =>
      store.completeCommand(
        flow,
        {
          status: 'SUCCEEDED',
          problem_type: null,
          detail: null,
          delivery: 'DELIVERED',
          steps: null,
          completed_at: new Date().toISOString(),
          duration_ms: 1,
        },
        id,
        state,
      ),
    );
  }
  const wall = performance.now() - t0;
  const cpu = (cpuSecondsOf(process.pid) - cpu0) * 1000;
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(totals)) out[`${k}_us`] = Math.round((v / N) * 1000);
  out.total_us = Math.round((wall / N) * 1000);
  out.node_cpu_us = Math.round((cpu / N) * 1000);
  process.stdout.write(`${label}: ${JSON.stringify(out)}\n`);
  return out;
}

const dataDir = mkdtempSync(path.join(tmpdir(), 'fleetgate-stages-'));
try {
  await seedFleet({ dataDir }, { count: VEHICLES, fleetId: 'bench', unitPrefix: 'u-' });
  const sqlite = await createStore({ dataDir });
  await stages('sqlite', sqlite);
  await sqlite.close();
  const databaseUrl = await freshDatabase('fleetgate_stages');
  await seedFleet({ dataDir, databaseUrl }, { count: VEHICLES, fleetId: 'bench', unitPrefix: 'u-' });
  const postgres = await createStore({ dataDir, databaseUrl });
  await stages('postgres (sequential, one connection busy at a time)', postgres);
  await postgres.close();
} finally {
  rmSync(dataDir, { recursive: true, force: true });
}
