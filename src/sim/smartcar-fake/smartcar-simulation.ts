import { randomBytes } from 'node:crypto';
import { type FakeSmartcar, startFakeSmartcar } from './fake-smartcar.js';
import type { FakeEngine } from './vehicle-endpoints.js';

/** What `fleetgate simulate` prints so an operator can try SMARTCAR vehicles without an account. */
export interface SmartcarSimulation {
  fake: FakeSmartcar;
  clientId: string;
  clientSecret: string;
  /** Give this to `POST /credentials`; the fake rotates it on first use, as Smartcar does. */
  refreshToken: string;
  /** Smartcar vehicle ids: the `telematics_unit_id` of each vehicle to add. */
  vehicleIds: string[];
  /** The settings that point fleetgate at this fake. */
  env: { FLEETGATE_SMARTCAR_API_URL: string; FLEETGATE_SMARTCAR_AUTH_URL: string };
}

const ENGINES: readonly FakeEngine[] = ['ELECTRIC', 'GASOLINE', 'HYBRID'];

/**
 * Starts the fake Smartcar with one application, its account and `vehicles` connected cars
 * (alternating electric, gasoline, hybrid) around Berlin. For `fleetgate simulate`.
 */
export async function startSmartcarSimulation(
  options: { port?: number; host?: string; vehicles?: number } = {},
): Promise<SmartcarSimulation> {
  const fake = await startFakeSmartcar({
    ...(options.port !== undefined ? { port: options.port } : {}),
    ...(options.host !== undefined ? { host: options.host } : {}),
  });
  const clientId = `sim-${randomBytes(4).toString('hex')}`;
  const clientSecret = randomBytes(18).toString('base64url');
  const refreshToken = fake.addApplication({ clientId, clientSecret });
  const vehicleIds: string[] = [];
  for (let i = 0; i < (options.vehicles ?? 3); i++) {
    const car = fake.addVehicle({
      clientId,
      engine: ENGINES[i % ENGINES.length],
      latitude: 52.52 + i * 0.001,
      longitude: 13.405 + i * 0.001,
    });
    vehicleIds.push(car.id);
  }
  return {
    fake,
    clientId,
    clientSecret,
    refreshToken,
    vehicleIds,
    env: { FLEETGATE_SMARTCAR_API_URL: fake.apiUrl, FLEETGATE_SMARTCAR_AUTH_URL: fake.authUrl },
  };
}
