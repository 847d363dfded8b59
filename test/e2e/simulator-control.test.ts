import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runSimulation } from '../../src/sim/run-simulation.js';
import { Harness } from '../helpers/harness.js';

// Issue 2, item 5: simulated units can be told at runtime to go offline, stop answering or fail.
let h: Harness;
beforeAll(async () => {
  h = await Harness.start();
});
afterAll(async () => {
  await h?.close();
});

it('fleetgate simulate takes control lines: offline, online, fail, silent', async () => {
  const token = await h.token('fleet-sim');
  const { vehicleId, unitId, password } = await h.vehicle(token, 'fleetgate-car-v1', { connect: false });
  const input = new PassThrough();
  const out = new PassThrough();
  const printed: string[] = [];
  out.on('data', (d: Buffer) => printed.push(d.toString()));
  /** Resolves when the simulator has printed `text` (it prints each control line it applied). */
  const printedLine = (text: string) =>
    new Promise<void>((resolve) => {
      const check = () => {
        if (!printed.join('').includes(text)) return;
        out.off('data', check);
        resolve();
      };
      out.on('data', check);
      check();
    });
  const controller = new AbortController();
  const run = runSimulation({
    mqttUrl: h.app.mqttUrl,
    units: [{ unitId, password, model: 'fleetgate-car-v1' }],
    answerDelayMs: 0,
    drive: false,
    out,
    input,
    signal: controller.signal,
  });
  const life = (value: string) => async () => (await h.app.store.getVehicle(vehicleId))?.life_status === value;
  await h.waitFor(life('ONLINE'));
  const cmd = () => h.request('POST', `/vehicles/${vehicleId}/commands/unlock-central-lock`, { token });
  expect((await cmd()).status).toBe(200);

  input.write('offline\n');
  await h.waitFor(life('OFFLINE'));
  expect((await cmd()).body.delivery).toBe('NOT_DELIVERED');

  input.write(`online ${unitId}\n`);
  await h.waitFor(life('ONLINE'));
  const failApplied = printedLine('control: fail');
  input.write('fail\n');
  await failApplied;
  expect((await cmd()).body.type).toBe('/problems/telematics-unit/error');

  // `normal` returns the unit to its normal behaviour.
  const normalApplied = printedLine('control: normal');
  input.write('normal\n');
  await normalApplied;
  expect((await cmd()).status).toBe(200);

  const refused = printedLine("control: unknown 'nonsense'");
  input.write('nonsense\n');
  await refused;

  controller.abort();
  const summary = await run;
  expect(summary).toMatchObject({ units: 1, connected: 1, succeeded: 2, failed: 1 });
  expect(printed.join('')).toMatch(/summary: 1\/1 units connected/);
});
