import { afterAll, beforeAll, expect, it } from 'vitest';
import { type FleetgateProcess, startFleetgateProcess } from '../../scripts/lib/fleetgate-process.js';
import { COMMANDS, commandToPath } from '../../src/domain/commands.js';
import { TeltonikaUnit } from '../../src/sim/teltonika/teltonika-unit.js';
import { TELTONIKA_MODELS } from '../../src/telematics/teltonika/models.js';
import { eventually } from '../helpers/eventually.js';
import { EXPECTED_STATE } from '../helpers/expected-state.js';
import { type SharedParts, startSharedParts } from '../helpers/shared-parts.js';

// Issue 4, item 3: a command received by instance A reaches a Teltonika unit whose TCP session is
// on instance B, through the shared broker — for every command of both models.
let parts: SharedParts | undefined;
const instances: Array<{ process: FleetgateProcess; teltonikaPort: number }> = [];
const units: TeltonikaUnit[] = [];
let token: string;

beforeAll(async () => {
  parts = await startSharedParts({ commandTimeoutMs: 3000 });
  for (const id of ['tt-a', 'tt-b']) {
    const process = await startFleetgateProcess({
      settings: { ...parts.settings, 'teltonika-port': 0 },
      instanceId: id,
    });
    const teltonikaPort = Number(new URL(process.endpoints.TELTONIKA ?? 'missing:').port);
    instances.push({ process, teltonikaPort });
    expect(teltonikaPort, process.output()).toBeGreaterThan(0);
  }
  token = await parts.token('fleet-tmi', instances[0]!.process);
}, 90_000);

afterAll(async () => {
  await Promise.allSettled(units.map((u) => u.stop()));
  await Promise.allSettled(instances.map((i) => i.process.stop(5000)));
  await parts?.close();
});

async function call(on: FleetgateProcess, method: string, urlPath: string, body?: unknown) {
  const res = await fetch(`${on.url}${urlPath}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined, text };
}

for (const [i, model] of TELTONIKA_MODELS.entries()) {
  it(`${model.id}: unit on instance B, every command through instance A`, async () => {
    const [A, B] = [instances[0]!, instances[1]!];
    const imei = String(356307042442000 + i);
    const added = await call(A.process, 'POST', '/vehicles', {
      telematics_brand: 'TELTONIKA',
      telematics_unit_id: imei,
      vehicle_model_id: model.id,
    });
    expect(added.status, added.text).toBe(201);
    const vehicleId: string = added.body.vehicle_id;
    const unit = new TeltonikaUnit({
      host: '127.0.0.1',
      port: B.teltonikaPort,
      imei,
      model: model.id,
      reportIntervalMs: 0,
      answerDelayMs: 0,
    });
    units.push(unit);
    await unit.connect();
    // Online comes with the unit's login; setup ends after its first answer, a moment later.
    await eventually(
      async () => {
        const v = (await call(A.process, 'GET', `/vehicles/${vehicleId}`)).body;
        return v?.life_status?.value === 'ONLINE' && v.setup_status === 'SUCCEEDED';
      },
      5000,
      'unit online and set up as seen by A',
    );
    for (const command of COMMANDS) {
      if (!model.capabilities.commands.includes(command)) continue;
      const res = await call(A.process, 'POST', `/vehicles/${vehicleId}/commands/${commandToPath(command)}`);
      expect(res.status, `${command}: ${res.text}`).toBe(200);
      for (const [prop, value] of Object.entries(EXPECTED_STATE[command] ?? {})) {
        if (model.capabilities.vehicle_state.includes(prop.toUpperCase()))
          expect(res.body[prop]?.value, `${command} → ${prop}`).toEqual(value);
      }
    }
    const records = await call(B.process, 'GET', `/vehicles/${vehicleId}/commands?limit=1`);
    expect(records.body.items[0]).toMatchObject({ instance_id: 'tt-a', status: 'SUCCEEDED', adapter: 'TELTONIKA' });
  });
}
