import type { TelematicsAdapter } from './adapter.js';
import { FleetgateMqttAdapter } from './fleetgate-mqtt/fleetgate-mqtt-adapter.js';
import { SmartcarAdapter } from './smartcar/smartcar-adapter.js';
import { TeltonikaAdapter } from './teltonika/teltonika-adapter.js';

/** Every telematics brand fleetgate speaks: one line per adapter (STYLE: one registry line). */
export const ADAPTER_FACTORIES: ReadonlyArray<() => TelematicsAdapter> = [
  () => new FleetgateMqttAdapter(),
  () => new TeltonikaAdapter(),
  () => new SmartcarAdapter(),
];

export function createAdapters(): Map<string, TelematicsAdapter> {
  const adapters = new Map<string, TelematicsAdapter>();
  for (const make of ADAPTER_FACTORIES) {
    const adapter = make();
    if (adapters.has(adapter.brand)) throw new Error(`two adapters claim telematics brand ${adapter.brand}`);
    adapters.set(adapter.brand, adapter);
  }
  return adapters;
}
