import type { Vehicle } from '../../src/domain/vehicle.js';
import { startFakeSmartcar } from '../../src/sim/smartcar-fake/fake-smartcar.js';
import { SmartcarAdapter } from '../../src/telematics/smartcar/smartcar-adapter.js';
import { startAdapter } from '../helpers/adapter-context.js';
import { AdapterEventRecorder, adapterContract, makeVehicle } from './adapter.contract.js';

/**
 * The shared adapter contract against the SMARTCAR adapter, over real HTTP to the local fake of
 * Smartcar's API and a real SQLite store (token state lives in the credentials rows). Each
 * vehicle gets its own Smartcar application and account, so one vehicle's switches never touch
 * another's. How the contract's behaviours map onto Smartcar:
 * - offline: the car answers VEHICLE_STATE:ASLEEP; online: it answers normally. Smartcar tells a
 *   car's reachability only when asked, so both are observed by one state request.
 * - silent: Smartcar stops accepting the access token and its token endpoint hangs, so nothing
 *   reaches the vehicle; accept-only: the vehicle endpoints hang after receiving the request.
 * - refuse: VEHICLE_STATE:DOOR_OPEN; fail: VEHICLE_STATE:UNKNOWN.
 * - state reports: Smartcar pushes nothing; the adapter reports what it reads when it verifies a
 *   vehicle, so a report is triggered by verifying the vehicle again.
 */
adapterContract('SMARTCAR', async () => {
  const fake = await startFakeSmartcar();
  const recorder = new AdapterEventRecorder();
  const started = await startAdapter(new SmartcarAdapter({ setupTimeoutMs: 5000 }), {
    flags: { smartcarApiUrl: fake.apiUrl, smartcarAuthUrl: fake.authUrl },
    recorder,
  });
  const { adapter, store, credentials } = started;

  const appOf = new Map<string, string>();
  let serial = 0;
  const probe = (vehicle: Vehicle) =>
    adapter.execute({
      vehicle,
      command: 'REQUEST_VEHICLE_STATE',
      flowId: crypto.randomUUID(),
      deadline: new Date(Date.now() + 2000),
      signal: AbortSignal.timeout(2000),
    });

  return {
    adapter,
    recorder,
    async createVehicle(modelId) {
      const model = adapter.models.find((m) => m.id === modelId)!;
      const clientId = `contract-app-${++serial}`;
      const refreshToken = fake.addApplication({ clientId, clientSecret: `${clientId}-secret` });
      const view = await credentials.create('contract-fleet', {
        telematics_brand: 'SMARTCAR',
        client_id: clientId,
        client_secret: `${clientId}-secret`,
        refresh_token: refreshToken,
      });
      const car = fake.addVehicle({ clientId });
      appOf.set(car.id, clientId);
      const vehicle = makeVehicle(model, car.id, {
        credentials_id: view.credentials_id,
        setup_status: 'IN_PROGRESS',
        life_status: 'OFFLINE',
      });
      await store.insertVehicle(vehicle);
      await adapter.onVehicleAdded(vehicle);
      await adapter.idle();
      const stored = await store.getVehicle(vehicle.vehicle_id);
      if (stored?.setup_status !== 'SUCCEEDED')
        throw new Error(`setup did not succeed: ${stored?.setup_failure_reason}`);
      return stored;
    },
    async setBehaviour(vehicle, behaviour) {
      const unit = vehicle.telematics_unit_id;
      const clientId = appOf.get(unit)!;
      fake.clear(unit);
      switch (behaviour) {
        case 'online':
          await probe(vehicle);
          return;
        case 'offline':
          fake.set({ asleep: true }, unit);
          await probe(vehicle);
          return;
        case 'silent':
          fake.expireAccessTokens(clientId);
          fake.setAuth({ slow: true }, clientId);
          return;
        case 'accept-only':
          fake.set({ slow: true }, unit);
          return;
        case 'refuse':
          fake.set({ doorOpen: true }, unit);
          return;
        case 'fail':
          fake.set({ vehicleFailure: true }, unit);
          return;
      }
    },
    async triggerStateReport(vehicle) {
      await adapter.onVehicleAdded(vehicle);
      await adapter.idle();
    },
    async close() {
      await started.close();
      await fake.close();
    },
  };
});
