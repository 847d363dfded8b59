import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MosquittoServer, startMosquittoServer } from '../../scripts/lib/mosquitto-server.js';
import { type PostgresServer, startPostgresServer } from '../../scripts/lib/postgres-server.js';
import { eventually } from '../helpers/eventually.js';
import { Harness } from '../helpers/harness.js';

// SPEC §2 and §7: when fleetgate's own database or broker goes away, requests answer 503
// service-unavailable (504 for a command to a unit), never hang; /health/ready says not ready;
// and the instance recovers by itself once they are back, without a restart. The test owns both
// servers, so it can stop and start them.
const COMMAND_TIMEOUT_MS = 1500;
// Longest any request may take: the command budget plus slack for a loaded machine.
const REQUEST_LIMIT_MS = COMMAND_TIMEOUT_MS + 3000;

let postgres: PostgresServer | undefined;
let broker: MosquittoServer | undefined;
let h: Harness;
let token: string;

beforeAll(async () => {
  [postgres, broker] = await Promise.all([startPostgresServer(), startMosquittoServer()]);
  h = await Harness.start({
    databaseUrl: postgres.url,
    mqttUrl: broker.url,
    mqttUsername: broker.adminUsername,
    mqttPassword: broker.adminPassword,
    commandTimeoutMs: COMMAND_TIMEOUT_MS,
    rateLimitPerMinute: 1_000_000,
  });
  token = await h.token('fleet-recovery');
});

afterAll(async () => {
  await h?.close();
  await Promise.allSettled([broker?.close(), postgres?.close()]);
});

interface Seen {
  status: number;
  type?: string;
  ms: number;
}

/**
 * Requests in a loop (commands and state reads on one vehicle) until stopped, each with a hard
 * time limit: status 0 means it hung or the connection failed.
 */
function traffic(vehicleId: string): { seen: Seen[]; stop: () => Promise<Seen[]> } {
  const seen: Seen[] = [];
  let stopped = false;
  const loop = (async () => {
    for (let i = 0; !stopped && i < 1000; i++) {
      const started = Date.now();
      const [method, path] =
        i % 2 === 0
          ? ['POST', `/vehicles/${vehicleId}/commands/request-vehicle-state`]
          : ['GET', `/vehicles/${vehicleId}/state`];
      const entry: Seen = await fetch(`${h.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}` },
        signal: AbortSignal.timeout(REQUEST_LIMIT_MS),
      }).then(
        async (res) => {
          const body = (await res.json().catch(() => ({}))) as { type?: string };
          return { status: res.status, type: body.type, ms: Date.now() - started };
        },
        () => ({ status: 0, ms: Date.now() - started }),
      );
      seen.push(entry);
      // Pacing, not waiting: keeps the loop from saturating both cores during the outage.
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  return {
    seen,
    stop: async () => {
      stopped = true;
      await loop;
      return seen;
    },
  };
}

async function ready(): Promise<{ status: number; checks: Record<string, string> }> {
  const res = await h.request('GET', '/health/ready');
  return { status: res.status, checks: res.body?.checks ?? {} };
}

const command = (vehicleId: string, name = 'unlock-central-lock') =>
  h.request('POST', `/vehicles/${vehicleId}/commands/${name}`, { token });

describe('failure of the shared parts', () => {
  it('database restart during traffic: 503 service-unavailable while down, ready again by itself', async () => {
    // Traffic runs on its own vehicle, so the probes below never meet it in single flight.
    const [{ vehicleId }, busy] = await Promise.all([h.vehicle(token), h.vehicle(token)]);
    expect((await command(vehicleId)).status).toBe(200);
    const load = traffic(busy.vehicleId);

    await postgres!.stop();
    await eventually(async () => (await ready()).status === 503, 5000, '/health/ready 503');
    const down = await ready();
    expect(down.checks.database).not.toBe('ok');
    expect(down.checks.broker).toBe('ok');
    const res = await command(vehicleId);
    expect(res.status, res.text).toBe(503);
    expect(res.body.type).toBe('/problems/service-unavailable');
    const list = await h.request('GET', '/vehicles', { token });
    expect(list.status).toBe(503);
    expect(list.body.type).toBe('/problems/service-unavailable');

    await postgres!.start();
    await eventually(async () => (await ready()).status === 200, 15_000, '/health/ready 200 again');
    await eventually(async () => (await command(vehicleId)).status === 200, 10_000, 'commands again');
    const seen = await load.stop();

    expect(seen.length).toBeGreaterThan(5);
    expect(seen.filter((s) => s.status === 0)).toEqual([]);
    expect(seen.some((s) => s.status === 200)).toBe(true);
    expect(seen.some((s) => s.status === 503)).toBe(true);
    for (const s of seen.filter((x) => x.status !== 200)) {
      // 409: a command that ran while the database went away could not record its outcome; its
      // IN_FLIGHT record holds the vehicle until it expires as OUTCOME_UNKNOWN (command-service.ts).
      expect([
        [503, '/problems/service-unavailable'],
        [409, '/problems/vehicle/conflicting-command'],
      ]).toContainEqual([s.status, s.type]);
    }
    // Tokens, vehicles and the unit survived: no restart of fleetgate or the unit was needed.
    expect((await h.request('GET', `/vehicles/${vehicleId}`, { token })).body.life_status.value).toBe('ONLINE');
  }, 45_000);

  it('broker restart during traffic: commands fail fast with 503, vehicles cannot be added, then all recovers', async () => {
    const [{ vehicleId, unit }, busy] = await Promise.all([h.vehicle(token), h.vehicle(token)]);
    expect((await command(vehicleId)).status).toBe(200);
    const load = traffic(busy.vehicleId);

    await broker!.stop();
    await eventually(async () => (await ready()).status === 503, 5000, '/health/ready 503');
    const down = await ready();
    expect(down.checks.broker).not.toBe('ok');
    expect(down.checks.database).toBe('ok');
    const started = Date.now();
    const res = await command(vehicleId);
    expect(Date.now() - started).toBeLessThan(REQUEST_LIMIT_MS);
    // SPEC §2: fleetgate's own broker being down is its outage (503), not the unit's; nothing was sent.
    expect(res.status, res.text).toBe(503);
    expect(res.body.type).toBe('/problems/service-unavailable');
    // Provisioning needs the broker: nothing is added (and nothing half-added).
    const add = await h.request('POST', '/vehicles', {
      token,
      body: {
        telematics_brand: 'FLEETGATE',
        telematics_unit_id: `unit-outage-${Date.now()}`,
        vehicle_model_id: 'fleetgate-car-v1',
        password: 'password-during-outage',
      },
    });
    expect(add.status, add.text).toBe(503);
    expect(add.body.type).toBe('/problems/service-unavailable');

    await broker!.start();
    await eventually(async () => (await ready()).status === 200, 20_000, '/health/ready 200 again');
    await eventually(() => unit.connected, 10_000, 'unit reconnected');
    await eventually(async () => (await command(vehicleId)).status === 200, 10_000, 'commands again');
    const seen = await load.stop();

    expect(seen.filter((s) => s.status === 0)).toEqual([]);
    for (const s of seen) expect([200, 503, 504]).toContain(s.status);
    expect(seen.some((s) => s.status !== 200)).toBe(true);
    // Provisioning works again: a new vehicle's unit logs in to the restarted broker.
    const fresh = await h.vehicle(token);
    expect((await command(fresh.vehicleId)).status).toBe(200);
  }, 60_000);
});
