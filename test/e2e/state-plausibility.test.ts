import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventBus } from '../../src/services/event-bus.js';
import { RejectedStateLog } from '../../src/services/rejected-state.js';
import { Harness } from '../helpers/harness.js';

// Issue 21 item 5: implausible data from units is refused (SPEC §3 catalogue bounds), counted and
// logged at a bounded rate.
let h: Harness;
let token: string;

beforeAll(async () => {
  h = await Harness.start();
  token = await h.token('fleet-plausible');
});

afterAll(async () => {
  await h?.close();
});

describe('state plausibility', () => {
  it('refuses timestamps outside the window around now and values outside physical range; counts them', async () => {
    const { vehicleId, unitId } = await h.vehicle(token);
    const now = new Date().toISOString();
    await h.app.vehicles.onStateReport('FLEETGATE', unitId, {
      mileage_in_kilometers: { timestamp: now, value: 4_294_967.3 },
      central_lock: { timestamp: '0001-01-01T00:00:00Z', value: 'LOCKED' },
      ignition: { timestamp: '1970-01-01T00:00:00Z', value: 'ON' },
      driving_enabled: { timestamp: now, value: false },
    });
    const state = (await h.request('GET', `/vehicles/${vehicleId}/state`, { token })).body;
    expect(state.driving_enabled.value).toBe(false);
    expect(state.mileage_in_kilometers?.value).not.toBe(4_294_967.3);
    expect(state.central_lock?.timestamp).not.toBe('0001-01-01T00:00:00.000Z');
    expect(state.ignition?.timestamp).not.toBe('1970-01-01T00:00:00.000Z');
    const metrics = (await h.request('GET', '/metrics')).text;
    expect(metrics).toMatch(/fleetgate_state_values_rejected_total\{property="mileage_in_kilometers"\} [1-9]/);
    expect(metrics).toMatch(/fleetgate_state_values_rejected_total\{property="central_lock"\} [1-9]/);
  });

  it('logs refused values at most once a minute per vehicle, however often they come', () => {
    const lines: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => lines.push(line) });
    const events = new EventBus();
    let counted = 0;
    events.on((e) => {
      if (e.type === 'state.rejected') counted += e.properties.length;
    });
    const log = new RejectedStateLog(events, logger);
    for (let i = 0; i < 1000; i++) log.report('V1', ['mileage_in_kilometers'], 'a unit report');
    expect(counted).toBe(1000);
    expect(lines.length).toBe(1);
  });
});
