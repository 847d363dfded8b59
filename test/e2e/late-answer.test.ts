import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EventEnvelope } from '../../src/domain/events.js';
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
  afterAll(async () => {
    await h?.close();
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
