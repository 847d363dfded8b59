/**
 * `npx tsx bench/store-stages.ts [--n 5000] [--concurrency 1] [--reports]`: what each store call on
 * a command's path costs, per engine, from one process (no HTTP, no MQTT): the store's share of a
 * command. `--reports` adds, after each command, a state report of the same vehicle in which one
 * property changed (mergeState), as units send on their own.
 * With `--concurrency C`, C commands run at once on distinct vehicles, so the engines group them
 * (group commit, batched statements); per-call times then include waiting for the group.
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
import { exitWithUsage, parseCommandLine, wholeNumber } from './lib/args.js';
import { cpuSecondsOf, postgresServer } from './lib/processes.js';
import { freshDatabase, seedFleet, vehicleId } from './lib/topology.js';

const USAGE = 'npx tsx bench/store-stages.ts [--n 5000] [--concurrency 1] [--reports] [--ingest]';
const { values: args } = parseCommandLine(USAGE, {
  options: {
    n: { type: 'string' },
    concurrency: { type: 'string' },
    reports: { type: 'boolean' },
    ingest: { type: 'boolean' },
  },
});
const N = wholeNumber(USAGE, 'n', args.n, 5000);
const VEHICLES = 300;
/** Commands in flight at once, each on its own vehicles (1: one after the other). */
const CONCURRENCY = wholeNumber(USAGE, 'concurrency', args.concurrency, 1);
if (CONCURRENCY > VEHICLES) exitWithUsage(USAGE, `--concurrency: at most ${VEHICLES}`);
const REPORTS = args.reports === true;
/**
 * `--ingest`: instead of commands, state reports as fleetgate's ingestion path makes them (the unit's
 * vehicle looked up, then the merge; every property with a fresh capture time, as the
 * simulator's periodic report), and the same reports without the look-up: what a unit → vehicle
 * cache would save per report.
 */
const INGEST = args.ingest === true;
const pg = postgresServer();

// The state a simulated car answers with (its full snapshot), as the service passes it on.
const unit = new FleetgateUnit({ mqttUrl: 'mqtt://unused', unitId: 'u', password: 'p', model: 'fleetgate-car-v1' });
const state = unit.snapshot();

async function stages(label: string, store: Store): Promise<Record<string, number>> {
  const totals: Record<string, number> = { startCommand: 0, completeCommand: 0, ...(REPORTS ? { mergeState: 0 } : {}) };
  const time = async (name: string, fn: () => Promise<unknown>) => {
    const t0 = performance.now();
    await fn();
    totals[name]! += performance.now() - t0;
  };
  const one = async (i: number, id: string) => {
    const flow = randomUUID();
    const now = new Date().toISOString();
    await time('startCommand', async () => {
      const { begun } = await store.startCommand({
        flow_id: flow,
        fleet_id: 'bench',
        client_id: 'c',
        user_id: null,
        user_email: null,
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
    if (REPORTS) {
      const mileage = { timestamp: new Date().toISOString(), value: i };
      await time('mergeState', () => store.mergeState(id, { mileage_in_kilometers: mileage }));
    }
  };
  const cpu0 = cpuSecondsOf(process.pid);
  const pg0 = pg.cpuSeconds();
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, worker) => {
      // Worker w uses vehicles w, w + C, w + 2C, … below VEHICLES: never two commands in flight
      // for one vehicle.
      const own = Math.floor(VEHICLES / CONCURRENCY);
      for (let round = 0; ; round++) {
        const i = next++;
        if (i >= N) return;
        await one(i, vehicleId(worker + CONCURRENCY * (round % own)));
      }
    }),
  );
  const wall = performance.now() - t0;
  const cpu = (cpuSecondsOf(process.pid) - cpu0) * 1000;
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(totals)) out[`${k}_us`] = Math.round((v / N) * 1000);
  out.total_us = Math.round((wall / N) * 1000);
  out.node_cpu_us = Math.round((cpu / N) * 1000);
  if (label.startsWith('postgres')) out.postgres_cpu_us = Math.round(((pg.cpuSeconds() - pg0) * 1_000_000) / N);
  process.stdout.write(`${label}: ${JSON.stringify(out)}\n`);
  return out;
}

async function ingest(label: string, store: Store, lookUp: boolean): Promise<void> {
  const cpu0 = cpuSecondsOf(process.pid);
  const pg0 = pg.cpuSeconds();
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, worker) => {
      const own = Math.floor(VEHICLES / CONCURRENCY);
      for (let round = 0; ; round++) {
        const i = next++;
        if (i >= N) return;
        const v = worker + CONCURRENCY * (round % own);
        const id = lookUp ? (await store.findVehicleByUnit('FLEETGATE', `u-${v}`))!.vehicle_id : vehicleId(v);
        const at = new Date().toISOString();
        const report: Record<string, { timestamp: string; value: unknown }> = {};
        for (const [name, p] of Object.entries(state)) report[name] = { timestamp: at, value: p.value };
        await store.mergeState(id, report);
      }
    }),
  );
  const out: Record<string, number> = {
    total_us: Math.round(((performance.now() - t0) / N) * 1000),
    node_cpu_us: Math.round(((cpuSecondsOf(process.pid) - cpu0) * 1_000_000) / N),
  };
  if (label.startsWith('postgres')) out.postgres_cpu_us = Math.round(((pg.cpuSeconds() - pg0) * 1_000_000) / N);
  process.stdout.write(`${label}, reports ${lookUp ? 'with' : 'without'} the unit look-up: ${JSON.stringify(out)}\n`);
}

/** Both variants twice, in turn (A B A B), so the machine's drift shows. */
async function ingestPairs(label: string, store: Store): Promise<void> {
  for (let round = 0; round < 2; round++) {
    await ingest(label, store, true);
    await ingest(label, store, false);
  }
}

const dataDir = mkdtempSync(path.join(tmpdir(), 'fleetgate-stages-'));
try {
  if (INGEST) {
    await seedFleet({ dataDir }, { count: VEHICLES, fleetId: 'bench', unitPrefix: 'u-', history: 20 });
    const sqlite = await createStore({ dataDir });
    await ingestPairs(`sqlite (${CONCURRENCY} at a time)`, sqlite);
    await sqlite.close();
    const databaseUrl = await freshDatabase('fleetgate_stages');
    await seedFleet({ dataDir, databaseUrl }, { count: VEHICLES, fleetId: 'bench', unitPrefix: 'u-', history: 20 });
    const postgres = await createStore({ dataDir, databaseUrl });
    await ingestPairs(`postgres (${CONCURRENCY} at a time)`, postgres);
    await postgres.close();
    process.exit(0);
  }
  await seedFleet({ dataDir }, { count: VEHICLES, fleetId: 'bench', unitPrefix: 'u-', history: 20 });
  const sqlite = await createStore({ dataDir });
  await stages(CONCURRENCY === 1 ? 'sqlite' : `sqlite (${CONCURRENCY} at a time)`, sqlite);
  await sqlite.close();
  const databaseUrl = await freshDatabase('fleetgate_stages');
  await seedFleet({ dataDir, databaseUrl }, { count: VEHICLES, fleetId: 'bench', unitPrefix: 'u-', history: 20 });
  const postgres = await createStore({ dataDir, databaseUrl });
  await stages(CONCURRENCY === 1 ? 'postgres (one call at a time)' : `postgres (${CONCURRENCY} at a time)`, postgres);
  await postgres.close();
} finally {
  rmSync(dataDir, { recursive: true, force: true });
}
