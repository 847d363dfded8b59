import type { AdapterDefinition } from '../adapter.js';
import { SMARTCAR_BRAND } from './models.js';
import { SmartcarAdapter } from './smartcar-adapter.js';

/** Telematics brand SMARTCAR: connected cars through Smartcar's API v2.0 (docs/smartcar.md). */
export const smartcarDefinition: AdapterDefinition = {
  brand: SMARTCAR_BRAND,
  folder: 'smartcar',
  settings: [
    {
      name: 'apiUrl',
      flag: '--smartcar-api-url',
      kind: 'url',
      protocols: ['http:', 'https:'],
      default: 'https://api.smartcar.com/v2.0',
      description:
        "Smartcar API v2.0 base URL (documented paths such as /vehicles/{id}/security are appended); point it at `fleetgate simulate`'s fake to try SMARTCAR vehicles without an account.",
    },
    {
      name: 'authUrl',
      flag: '--smartcar-auth-url',
      kind: 'url',
      protocols: ['http:', 'https:'],
      default: 'https://auth.smartcar.com',
      description: "Base URL of Smartcar's token endpoint (`/oauth/token` is appended).",
    },
  ],
  create: () => new SmartcarAdapter(),
  simulator: {
    selectedBy: 'smartcarFake',
    summary: 'a local fake of the Smartcar API with connected cars (--smartcar-fake)',
    options: [
      {
        flags: '--smartcar-fake',
        description: 'run a local fake of the Smartcar API v2.0 with connected cars, and print how to use it',
      },
      { flags: '--smartcar-port <port>', description: 'port of the Smartcar fake (default: any free port)' },
      { flags: '--vehicles <n>', description: 'cars in the Smartcar fake', default: '3' },
    ],
    async run(opts, io) {
      const { startSmartcarSimulation } = await import('../../sim/smartcar-fake/smartcar-simulation.js');
      const sim = await startSmartcarSimulation({
        port: opts.smartcarPort === undefined ? 0 : Number(opts.smartcarPort),
        vehicles: Number(opts.vehicles),
      });
      const out = io.out;
      out.write('Smartcar fake running. Start fleetgate with:\n');
      for (const [k, v] of Object.entries(sim.env)) out.write(`  ${k}=${v}\n`);
      out.write('then POST /credentials with:\n');
      out.write(
        `  ${JSON.stringify({ telematics_brand: SMARTCAR_BRAND, client_id: sim.clientId, client_secret: sim.clientSecret, refresh_token: sim.refreshToken })}\n`,
      );
      out.write(
        `and add vehicles with telematics_brand SMARTCAR and telematics_unit_id one of: ${sim.vehicleIds.join(', ')}\n`,
      );
      await new Promise<void>((resolve) => io.signal.addEventListener('abort', () => resolve(), { once: true }));
      await sim.fake.close();
      return 0;
    },
  },
};
