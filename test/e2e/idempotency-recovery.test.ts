import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Harness } from '../helpers/harness.js';

// SPEC §1 Idempotency-Key after a crash: a key claimed by a request that died before its command
// began must not block retries forever; one whose command ended unknown answers that.
let h: Harness;
let token: string;
beforeAll(async () => {
  h = await Harness.start();
  token = await h.token('fleet-idem');
});
afterAll(async () => {
  await h?.close();
});

const send = (vehicleId: string, key: string) =>
  h.request('POST', `/vehicles/${vehicleId}/commands/unlock-central-lock`, {
    token,
    headers: { 'idempotency-key': key },
  });

/** A claim of `key` by the request of flow `flowId`, made at `createdAt`, as the store keeps it. */
const claimed = (vehicleId: string, key: string, createdAt: string, flowId = randomUUID()) =>
  h.app.store.claimIdempotencyKey({
    fleet_id: 'fleet-idem',
    key,
    vehicle_id: vehicleId,
    command: 'UNLOCK_CENTRAL_LOCK',
    flow_id: flowId,
    created_at: createdAt,
  });

it('a key claimed by a request that died before its command began is taken over once stale', async () => {
  const { vehicleId, unit } = await h.vehicle(token);
  const key = `stale-${randomUUID()}`;
  await claimed(vehicleId, key, new Date(Date.now() - 60_000).toISOString());
  const before = unit.stats.commands;
  const res = await send(vehicleId, key);
  expect(res.status, res.text).toBe(200);
  expect(unit.stats.commands - before).toBe(1);
  expect((await send(vehicleId, key)).body).toEqual(res.body);
  expect(unit.stats.commands - before).toBe(1);
});

it('a fresh claim without a command yet is still "being executed" (409)', async () => {
  const { vehicleId } = await h.vehicle(token);
  const key = `fresh-${randomUUID()}`;
  await claimed(vehicleId, key, new Date().toISOString());
  const res = await send(vehicleId, key);
  expect(res.status).toBe(409);
  expect(res.body.type).toBe('/problems/vehicle/conflicting-command');
});

it('a key whose command was expired as outcome unknown answers 504 DELIVERED_OUTCOME_UNKNOWN, without executing', async () => {
  const { vehicleId, unit } = await h.vehicle(token);
  const key = `orphan-${randomUUID()}`;
  const flowId = randomUUID();
  const long = new Date(Date.now() - 60_000).toISOString();
  await claimed(vehicleId, key, long, flowId);
  await h.app.store.beginCommand({
    flow_id: flowId,
    fleet_id: 'fleet-idem',
    client_id: 'c',
    user_id: null,
    user_email: null,
    vehicle_id: vehicleId,
    command: 'UNLOCK_CENTRAL_LOCK',
    adapter: 'FLEETGATE',
    instance_id: 'dead',
    status: 'IN_FLIGHT',
    problem_type: null,
    detail: null,
    delivery: null,
    steps: null,
    requested_at: long,
    deadline_at: new Date(Date.now() - 1000).toISOString(),
    completed_at: null,
    duration_ms: null,
  });
  await h.app.store.expireCommands(new Date().toISOString());
  const before = unit.stats.commands;
  const res = await send(vehicleId, key);
  expect(res.status, res.text).toBe(504);
  expect(res.body).toMatchObject({
    type: '/problems/vehicle/no-connection',
    delivery: 'DELIVERED_OUTCOME_UNKNOWN',
    original_flow_id: flowId,
  });
  expect(unit.stats.commands).toBe(before);
});
