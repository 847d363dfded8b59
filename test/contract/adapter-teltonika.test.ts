import { reload, startTeltonikaWorld } from '../helpers/teltonika-world.js';
import { adapterContract } from './adapter.contract.js';

/**
 * The shared adapter contract against the TELTONIKA adapter: real TCP on port 0, the embedded
 * broker, a temp-dir SQLite store and simulated units speaking Codec 8E / 12 byte for byte.
 */
adapterContract('TELTONIKA (Codec 8 / 8E / 12 over TCP)', async () => {
  const w = await startTeltonikaWorld();
  const a = w.instances[0]!;
  const unitOf = (unitId: string) => {
    const unit = w.units.get(unitId);
    if (!unit) throw new Error(`no simulated unit for ${unitId}`);
    return unit;
  };
  return {
    adapter: a.adapter,
    recorder: a.recorder,
    answerTimeoutMs: 3_000,
    deliveryUnobservable: true,
    async createVehicle(modelId) {
      const vehicle = await w.addVehicle(modelId);
      await w.connectUnit(vehicle);
      return reload(w.store, vehicle);
    },
    async setBehaviour(vehicle, behaviour) {
      const unitId = vehicle.telematics_unit_id;
      const unit = unitOf(unitId);
      if (behaviour === 'offline') {
        await unit.stop();
        await a.recorder.waitForConnection(unitId, false);
        return;
      }
      if (!unit.connected) {
        await unit.connect();
        await a.recorder.waitForConnection(unitId, true);
      }
      // Codec 12 has no "accepted" message: a unit that never answers is silent either way.
      unit.behaviour = behaviour === 'online' ? 'normal' : behaviour === 'accept-only' ? 'silent' : behaviour;
    },
    async triggerStateReport(vehicle) {
      await unitOf(vehicle.telematics_unit_id).sendRecords(1);
    },
    close: () => w.close(),
  };
});
