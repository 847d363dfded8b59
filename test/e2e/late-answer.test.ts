import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EventEnvelope } from '../../src/domain/events.js';
import { TeltonikaUnit } from '../../src/sim/teltonika/teltonika-unit.js';
import type { TeltonikaAdapter } from '../../src/telematics/teltonika/teltonika-adapter.js';
import { Harness } from '../helpers/harness.js';

// Issue 16 §1: a unit's answer after its command ended OUTCOME_UNKNOWN settles the record.
describe('late command answers: CommandOutcomeResolved', () => {
  let h: Harness;
  let token: string;
  let reader: string;

  beforeAll(async () => {
    h = await Harness.start({ commandTimeoutMs: 1000 });
    token = await h.token('fleet-late', ['vehicles', 'vehicle-commands']);
    reader = await h.token('fleet-late', ['events.ro']);
  });
  const teltonikaUnits: TeltonikaUnit[] = [];
  afterAll(async () => {
    await Promise.allSettled(teltonikaUnits.map((u) => u.stop()));
    await h?.close();
  });

  /** The CommandOutcomeResolved event of `flow`, once it is there. */
  async function resolvedEvent(vehicleId: string, flow: string): Promise<EventEnvelope> {
    let resolved: EventEnvelope | undefined;
    await h.waitFor(async () => {
      const page = await h.request('GET', `/events?types=CommandOutcomeResolved&vehicle_id=${vehicleId}`, {
        token: reader,
      });
      resolved = page.body.items.find((e: EventEnvelope) => e.metadata.flow_id === flow);
      return resolved !== undefined;
    }, 8000);
    return resolved!;
  }

  it('a Teltonika unit whose Codec 12 answer comes after the budget: the answer settles the record', {
    timeout: 60_000,
  }, async () => {
    const imei = '356307042449001';
    const add = await h.request('POST', '/vehicles', {
      token,
      body: { telematics_brand: 'TELTONIKA', telematics_unit_id: imei, vehicle_model_id: 'teltonika-fmc-can-car' },
    });
    expect(add.status, add.text).toBe(201);
    const vehicleId: string = add.body.vehicle_id;
    const port = (h.app.adapters.get('TELTONIKA') as TeltonikaAdapter).port;
    // The simulated unit acts at once and sends its answer 1.3 s later: after the 1 s budget.
    const unit = new TeltonikaUnit({
      host: '127.0.0.1',
      port,
      imei,
      model: 'teltonika-fmc-can-car',
      reportIntervalMs: 0,
      answerDelayMs: 1300,
    });
    teltonikaUnits.push(unit);
    await unit.connect();
    await h.waitFor(async () => (await h.app.store.getVehicle(vehicleId))?.setup_status === 'SUCCEEDED');
    const res = await h.request('POST', `/vehicles/${vehicleId}/commands/unlock-central-lock`, { token });
    expect([res.status, res.body.delivery]).toEqual([504, 'DELIVERED_OUTCOME_UNKNOWN']);
    const flow = res.headers.get('x-flow-id')!;
    const resolved = await resolvedEvent(vehicleId, flow);
    expect(resolved.data).toMatchObject({
      command: 'UNLOCK_CENTRAL_LOCK',
      outcome: 'SUCCEEDED',
      previous_outcome: 'OUTCOME_UNKNOWN',
    });
    const commands = await h.request('GET', `/vehicles/${vehicleId}/commands`, { token });
    expect(commands.body.items.find((c: { flow_id: string }) => c.flow_id === flow)).toMatchObject({
      status: 'SUCCEEDED',
    });
    const state = await h.request('GET', `/vehicles/${vehicleId}/state`, { token });
    expect(state.body.central_lock.value).toBe('UNLOCKED');
  });

  it('a unit that acknowledges at once and answers after the budget: record, state and event follow', {
    timeout: 60_000,
  }, async () => {
    const { vehicleId, unit } = await h.vehicle(token, 'fleetgate-car-v1', { answerDelayMs: 0 });
    expect((await h.request('POST', `/vehicles/${vehicleId}/commands/lock-central-lock`, { token })).status).toBe(200);
    // From now on the unit answers 0.1–1 s after the budget.
    (unit as unknown as { options: { answerDelayMs: unknown } }).options.answerDelayMs = { min: 1100, max: 2000 };
    const res = await h.request('POST', `/vehicles/${vehicleId}/commands/unlock-central-lock`, { token });
    expect([res.status, res.body.delivery]).toEqual([504, 'DELIVERED_OUTCOME_UNKNOWN']);
    const flow = res.headers.get('x-flow-id')!;
    let resolved: EventEnvelope | undefined;
    await h.waitFor(async () => {
      const page = await h.request('GET', `/events?types=CommandOutcomeResolved&vehicle_id=${vehicleId}`, {
        token: reader,
      });
      resolved = page.body.items.find((e: EventEnvelope) => e.metadata.flow_id === flow);
      return resolved !== undefined;
    }, 8000);
    // The simulated unit never acts after a command's deadline (SPEC §1): its late answer is FAILED.
    expect(resolved!.data).toMatchObject({
      command: 'UNLOCK_CENTRAL_LOCK',
      outcome: 'FAILED',
      problem_type: 'telematics-unit/error',
      previous_outcome: 'OUTCOME_UNKNOWN',
    });
    expect(resolved!.data.detail).toContain('expired before it could be executed');
    const commands = await h.request('GET', `/vehicles/${vehicleId}/commands`, { token });
    expect(commands.body.items.find((c: { flow_id: string }) => c.flow_id === flow)).toMatchObject({
      status: 'FAILED',
      delivery: 'DELIVERED',
      problem_type: 'telematics-unit/error',
    });
    const state = await h.request('GET', `/vehicles/${vehicleId}/state`, { token });
    expect(state.body.central_lock.value).toBe('LOCKED');
    const finished = await h.request('GET', `/events?types=CommandFinished&vehicle_id=${vehicleId}`, { token: reader });
    expect(finished.body.items.find((e: EventEnvelope) => e.metadata.flow_id === flow)?.data.outcome).toBe(
      'OUTCOME_UNKNOWN',
    );
  });
});
