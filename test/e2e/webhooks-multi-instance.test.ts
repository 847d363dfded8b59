import type http from 'node:http';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FleetgateProcess, startFleetgateProcess } from '../../scripts/lib/fleetgate-process.js';
import type { EventEnvelope } from '../../src/domain/events.js';
import { SCAN_MS } from '../../src/events/channels/webhooks/webhook-channel.js';
import { eventually } from '../helpers/eventually.js';
import { type SharedParts, startSharedParts } from '../helpers/shared-parts.js';
import { socketOwner } from '../helpers/socket-owner.js';
import { WebhookReceiver } from '../helpers/webhook-receiver.js';

// Issue 16 §4: with PostgreSQL any instance may deliver a subscription's events, one instance at
// a time (the subscription's cursor lease), and an instance killed mid-delivery loses nothing:
// another continues once the lease ran out, sending again only what the dead one sent of the page
// it was delivering (the cursor moves a page at a time).
// Real processes: three `fleetgate serve` on one PostgreSQL and one Mosquitto, a receiver in this
// process, and the lease holder SIGKILLed while it waits for the receiver's answer to a delivery.
const LEASE_MS = 4000;
/** Generous for a loaded machine: a receiver answering later than this gets the event again. */
const TIMEOUT_MS = 3000;
const FLEET = 'fleet-wh-mi';
const VEHICLES = 24;
/** PATCHes: one VehicleChanged each. */
const TARGET = 1500;
/** The load goes on at least this long after the kill (PATCHes through the survivors). */
const AFTER_KILL = 200;
const CONCURRENCY = 4;
/** Every this many deliveries the receiver finds out which process sent one. */
const SAMPLE_EVERY = 50;

let parts: SharedParts | undefined;
const instances: FleetgateProcess[] = [];
let receiver: WebhookReceiver | undefined;
let db: pg.Client | undefined;

beforeAll(async () => {
  parts = await startSharedParts({ commandTimeoutMs: 2000 });
  const settings = {
    ...parts.settings,
    'teltonika-port': 0,
    'webhooks-allow-private-urls': 'true',
    'webhooks-lease-ms': LEASE_MS,
    'webhooks-timeout-ms': TIMEOUT_MS,
    'rate-limit-per-minute': 1_000_000,
  };
  // The first one migrates the empty database; the others start together.
  instances.push(await startFleetgateProcess({ settings, instanceId: 'fg-1' }));
  instances.push(
    ...(await Promise.all(['fg-2', 'fg-3'].map((instanceId) => startFleetgateProcess({ settings, instanceId })))),
  );
  db = new pg.Client({ connectionString: parts.databaseUrl });
  await db.connect();
  receiver = await WebhookReceiver.start();
}, 60_000);

afterAll(async () => {
  await db?.end().catch(() => undefined);
  await Promise.allSettled(instances.map((p) => p.stop(5000)));
  await receiver?.stop();
  await parts?.close();
});

interface Res {
  status: number;
  body: any;
}

async function call(on: FleetgateProcess, token: string, method: string, path: string, body?: unknown): Promise<Res> {
  const res = await fetch(`${on.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

/** A delivery as the receiver saw it: its order, when, and (sampled) which process sent it. */
interface Arrival {
  n: number;
  at: number;
  id: string;
  sender?: string;
}

describe('webhooks with three instances, the delivering one killed mid-delivery', () => {
  it('delivers every event, one instance at a time, and again only what the killed one had sent', async () => {
    const [first] = instances as [FleetgateProcess];
    const rx = receiver!;
    const vehiclesToken = await parts!.token(FLEET, first, ['vehicles']);
    const eventsToken = await parts!.token(FLEET, first, ['events']);
    const byPid = new Map(instances.map((p) => [p.child.pid!, p]));
    const live = () => instances.filter((p) => !p.child.killed && p.child.exitCode === null);
    const senderOf = async (req: http.IncomingMessage) => {
      const pid = await socketOwner(req.socket.remotePort!, rx.port, [...byPid.keys()]);
      return pid === undefined ? undefined : byPid.get(pid)?.instanceId;
    };

    const created = await call(first, eventsToken, 'POST', '/webhooks', { url: rx.url });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    rx.secret = created.body.secret;
    const cursorName = `webhook:${created.body.webhook_id}`;

    const vehicleIds: string[] = [];
    for (let i = 0; i < VEHICLES; i++) {
      const added = await call(instances[i % 3]!, vehiclesToken, 'POST', '/vehicles', {
        telematics_brand: 'FLEETGATE',
        telematics_unit_id: `whmi-${i}-${Date.now()}`,
        vehicle_model_id: 'fleetgate-car-v1',
        password: `whmi-password-${i}-0123456789`,
      });
      expect(added.status, JSON.stringify(added.body)).toBe(201);
      vehicleIds.push(added.body.vehicle_id);
    }

    // The kill: on the first delivery after half the burst was written, the process that sent it
    // (found from its socket) is SIGKILLed before the receiver answers. The receiver counts the
    // event as received, as a receiver that acted on it before its answer was lost would.
    const arrivals: Arrival[] = [];
    let written = 0;
    let kill:
      | {
          n: number;
          at: number;
          id: string;
          victim: FleetgateProcess;
          leaseOwner: string;
          /** Local time by which the lease has run out at the earliest (from the database's lease_until). */
          leaseEnds: number;
          /** ...and at the latest. */
          leaseEndsBy: number;
          writtenAtKill: number;
          socketClosed: boolean;
        }
      | undefined;
    let hookError: unknown;
    // Set at once when one delivery's hook decides to kill: other lanes' hooks run meanwhile.
    let killing = false;
    let takeoverSampled = false;
    rx.beforeAnswer = async (n, event, req) => {
      try {
        if (!event) return;
        const arrival: Arrival = { n, at: performance.now(), id: event.metadata.id };
        arrivals.push(arrival);
        const killNow = !killing && written >= TARGET / 2;
        if (killNow) killing = true;
        // The successor's first delivery: the first after the kill from a live process. A request
        // the victim wrote just before it died may still be read after the kill; its sender, a
        // process gone, is not found.
        const firstAfterKill = kill !== undefined && !takeoverSampled;
        if (n % SAMPLE_EVERY === 0 || killNow || firstAfterKill) {
          arrival.sender = await senderOf(req);
        }
        if (firstAfterKill && arrival.sender !== undefined) takeoverSampled = true;
        if (!killNow) return;
        const victim = instances.find((p) => p.instanceId === arrival.sender);
        if (!victim) throw new Error(`delivery ${n} came from no fleetgate process (${arrival.sender})`);
        const asked = performance.now();
        const { rows } = await db!.query(
          'SELECT owner, extract(epoch FROM lease_until - clock_timestamp()) * 1000 AS left_ms FROM event_cursors WHERE name = $1',
          [cursorName],
        );
        const answered = performance.now();
        const closed = new Promise<boolean>((resolve) => {
          req.socket.once('close', () => resolve(true));
          setTimeout(() => resolve(false), TIMEOUT_MS / 2).unref();
        });
        victim.child.kill('SIGKILL');
        kill = {
          n,
          at: performance.now(),
          id: event.metadata.id,
          victim,
          leaseOwner: rows[0]?.owner,
          leaseEnds: asked + Number(rows[0]?.left_ms),
          leaseEndsBy: answered + Number(rows[0]?.left_ms),
          writtenAtKill: written,
          socketClosed: false,
        };
        await victim.exited;
        // The kernel closes the dead process's connection: proof it was the one sending.
        kill.socketClosed = await closed;
      } catch (e) {
        hookError ??= e;
      }
    };

    // The burst: PATCHes (one VehicleChanged each) spread over the live instances, each vehicle's
    // one after the other; requests to the instance being killed fail, their events are in the
    // outbox or not (the database says which).
    const okBy = new Map<string, number>();
    let failed = 0;
    let afterKill = 0;
    const started = performance.now();
    const deadline = Date.now() + 40_000;
    const worker = async (w: number) => {
      for (let i = 0; ; i++) {
        if (Date.now() > deadline) throw new Error(`load: not done in time (written ${written}, killed ${!!kill})`);
        if (written >= TARGET && kill !== undefined && afterKill >= AFTER_KILL) return;
        const alive = live();
        const on = alive[(w + i) % alive.length]!;
        const vehicleId = vehicleIds[(w + CONCURRENCY * i) % VEHICLES]!;
        const res = await call(on, vehiclesToken, 'PATCH', `/vehicles/${vehicleId}`, { tags: [`t${w}-${i}`] }).catch(
          () => undefined,
        );
        if (res?.status !== 200) {
          failed++;
          continue;
        }
        written++;
        if (kill) afterKill++;
        else okBy.set(on.instanceId, (okBy.get(on.instanceId) ?? 0) + 1);
      }
    };
    // Each worker owns the vehicles ≡ w (mod CONCURRENCY): a vehicle's PATCHes never overlap.
    await Promise.all(Array.from({ length: CONCURRENCY }, (_, w) => worker(w)));
    const loadMs = performance.now() - started;

    // Every event of the fleet in the outbox, in feed order.
    const { rows } = await db!.query('SELECT id, vehicle_id FROM events WHERE fleet_id = $1 ORDER BY xid, seq', [
      FLEET,
    ]);
    const outbox = rows as Array<{ id: string; vehicle_id: string }>;
    const outboxIds = new Set(outbox.map((r) => r.id));
    await rx.until(() => new Set(rx.events.map((e) => e.metadata.id)).size >= outboxIds.size, 30_000);
    const deliveredMs = performance.now() - started;

    expect(hookError).toBeUndefined();
    expect(rx.rejected).toEqual([]);
    expect(kill, 'the kill happened').toBeDefined();
    const k = kill!;
    const received = rx.events.map((e) => e.metadata.id);
    const seen = new Set<string>();
    const duplicates = received.filter((id) => seen.has(id) || !seen.add(id));
    const takeover = arrivals.find((a) => a.at > k.at && a.sender !== undefined);
    const samples = arrivals.filter((a) => a.sender !== undefined);
    const sendersBefore = new Set(samples.filter((a) => a.at < k.at).map((a) => a.sender));
    const sendersAfter = new Set(samples.filter((a) => a.at > k.at).map((a) => a.sender));
    // The deliveries log (GET /webhooks/{id}/deliveries): each instance logs an attempt once it
    // ended (the last one just after the receiver answered); the killed one never logged the
    // attempt in flight.
    let logged: Array<{ id: string; status: string; error: string | null }> = [];
    await eventually(
      async () => {
        const { rows: logRows } = await db!.query(
          `SELECT entry->>'event_id' AS id, entry->>'status' AS status, entry->>'error' AS error
             FROM channel_logs WHERE kind = 'webhook' AND record_id = $1 ORDER BY id`,
          [created.body.webhook_id],
        );
        logged = logRows as typeof logged;
        return new Set(logged.filter((r) => r.status === 'succeeded').map((r) => r.id)).size >= outboxIds.size;
      },
      5000,
      'every delivery logged',
    );
    const retried = logged.filter((r) => r.status !== 'succeeded');
    console.log(
      `webhooks, 3 instances: ${outbox.length} events in the outbox (${written} PATCHes answered 200, ` +
        `${failed} failed; written before the kill by ${JSON.stringify(Object.fromEntries(okBy))}), ` +
        `${received.length} deliveries, duplicates ${JSON.stringify(duplicates)}, ` +
        `retries after a late answer ${retried.length}; SIGKILL of ${k.victim.instanceId} (lease owner ` +
        `${k.leaseOwner}) at delivery ${k.n} with ${k.writtenAtKill} PATCHes written; takeover by ` +
        `${takeover?.sender} ${Math.round((takeover?.at ?? Number.NaN) - k.at)} ms after the kill ` +
        `(lease ${LEASE_MS} ms, ${Math.round(k.leaseEnds - k.at)} ms of it left at the kill); senders ` +
        `sampled before ${[...sendersBefore].join(',')}, after ${[...sendersAfter].join(',')}; ` +
        `load ${Math.round(loadMs)} ms, all delivered after ${Math.round(deliveredMs)} ms; ` +
        `max in flight ${rx.maxInFlight}`,
    );

    // The kill came mid-burst, to the lease holder, while its delivery was in flight.
    expect(k.writtenAtKill).toBeLessThan(written);
    expect(k.leaseOwner).toBe(k.victim.instanceId);
    expect(k.socketClosed, 'the killed process held the delivery in flight').toBe(true);
    // Every instance wrote events; the one that delivered died, and a survivor continued.
    expect([...okBy.keys()].sort()).toEqual(instances.map((p) => p.instanceId).sort());
    expect(sendersBefore).toEqual(new Set([k.victim.instanceId]));
    expect(takeover?.sender).toBeDefined();
    expect(takeover!.sender).not.toBe(k.victim.instanceId);
    expect([...sendersAfter].every((s) => s === takeover!.sender)).toBe(true);
    // No survivor sent before the dead instance's lease ran out (by the database's lease_until);
    // one took over within a scan after.
    expect(takeover!.at).toBeGreaterThanOrEqual(k.leaseEnds - 20);
    expect(takeover!.at).toBeLessThan(k.leaseEndsBy + SCAN_MS + 2000);
    // One instance's lanes at a time (at most 8 requests, LANES); nothing lost.
    expect(rx.maxInFlight).toBeLessThanOrEqual(8);
    expect(new Set(received)).toEqual(outboxIds);
    // Sent again: only events the dead instance had sent, at most one page (200) of them, each
    // twice, the one in flight at the kill among them; what the successor sent first is one of
    // them. Any other duplicate is a retry after the receiver answered later than the timeout
    // (logged as a failed attempt).
    const sentBeforeKill = new Set(arrivals.filter((a) => a.at <= k.at).map((a) => a.id));
    const retriedIds = new Set(retried.map((r) => r.id));
    const crashDuplicates = duplicates.filter((id) => !retriedIds.has(id));
    expect(crashDuplicates).toContain(k.id);
    expect(crashDuplicates.length).toBeLessThanOrEqual(200);
    for (const id of crashDuplicates) {
      expect(sentBeforeKill.has(id) || id === k.id, `${id} was sent before the kill`).toBe(true);
      expect(received.filter((r) => r === id)).toHaveLength(2);
    }
    expect(crashDuplicates).toContain(takeover!.id);
    for (const r of retried) expect(r.error).toBe(`no answer within ${TIMEOUT_MS} ms`);
    // Each event's delivery logged as succeeded, twice only for those sent again after the crash.
    const succeeded = logged.filter((r) => r.status === 'succeeded').map((r) => r.id);
    expect(new Set(succeeded)).toEqual(outboxIds);
    const loggedTwice = new Set(succeeded.filter((id, i) => succeeded.indexOf(id) !== i));
    for (const id of loggedTwice) expect(crashDuplicates).toContain(id);
    // Each vehicle's events, first deliveries, in the order they were written.
    const firsts = new Map<string, EventEnvelope>();
    for (const e of rx.events) if (!firsts.has(e.metadata.id)) firsts.set(e.metadata.id, e);
    for (const vehicleId of vehicleIds) {
      const got = [...firsts.values()].filter((e) => e.metadata.vehicle_id === vehicleId).map((e) => e.metadata.id);
      expect(got).toEqual(outbox.filter((r) => r.vehicle_id === vehicleId).map((r) => r.id));
    }
  }, 60_000);
});
