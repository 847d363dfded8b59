import type { AdapterDefinition, TelematicsAdapter } from './adapter.js';
import { fleetgateMqttDefinition } from './fleetgate-mqtt/definition.js';
import { smartcarDefinition } from './smartcar/definition.js';
import { teltonikaDefinition } from './teltonika/definition.js';

/**
 * Every telematics brand fleetgate speaks: one line per adapter folder (STYLE: one registry
 * line). Config, `serve --help`, docs/configuration.md and `fleetgate simulate` read these.
 */
export const ADAPTER_DEFINITIONS: readonly AdapterDefinition[] = [
  fleetgateMqttDefinition,
  teltonikaDefinition,
  smartcarDefinition,
];

export function createAdapters(): Map<string, TelematicsAdapter> {
  const adapters = new Map<string, TelematicsAdapter>();
  for (const definition of ADAPTER_DEFINITIONS) {
    const adapter = definition.create();
    if (adapter.brand !== definition.brand) throw new Error(`${definition.folder} creates brand ${adapter.brand}`);
    if (adapters.has(adapter.brand)) throw new Error(`two adapters claim telematics brand ${adapter.brand}`);
    adapters.set(adapter.brand, adapter);
  }
  return adapters;
}
