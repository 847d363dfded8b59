import type { CommandName } from '../../domain/commands.js';
import type { Capabilities } from '../../domain/vehicle.js';
import type { AdapterVehicleModel } from '../adapter.js';

export const SMARTCAR_BRAND = 'SMARTCAR';

/**
 * Smartcar hides the OEM behind one API, so fleetgate offers one generic model with the most
 * the API can give; each vehicle's setup narrows it to what the owner granted and what Smartcar
 * says the vehicle supports (see `deriveCapabilities`).
 */
export const SMARTCAR_CONNECTED_CAR: AdapterVehicleModel = {
  id: 'smartcar-connected-car',
  brand: SMARTCAR_BRAND,
  model: 'Connected car (any make Smartcar supports)',
  vehicle_type: 'CAR',
  capabilities: {
    commands: ['REQUEST_VEHICLE_STATE', 'LOCK_CENTRAL_LOCK', 'UNLOCK_CENTRAL_LOCK'],
    vehicle_state: [
      'POSITION',
      'MILEAGE_IN_KILOMETERS',
      'STATE_OF_CHARGE_OR_FUEL_LEVEL_IN_PERCENT',
      'REMAINING_RANGE_IN_KILOMETERS',
      'CENTRAL_LOCK',
    ],
  },
};

export const SMARTCAR_MODELS: readonly AdapterVehicleModel[] = [SMARTCAR_CONNECTED_CAR];

/** Read endpoints (batch paths), the Smartcar permission each needs, and the state they feed. */
export const READ_ENDPOINTS = [
  { path: '/location', permission: 'read_location', state: ['POSITION'] },
  { path: '/odometer', permission: 'read_odometer', state: ['MILEAGE_IN_KILOMETERS'] },
  {
    path: '/battery',
    permission: 'read_battery',
    state: ['STATE_OF_CHARGE_OR_FUEL_LEVEL_IN_PERCENT', 'REMAINING_RANGE_IN_KILOMETERS'],
  },
  {
    path: '/fuel',
    permission: 'read_fuel',
    state: ['STATE_OF_CHARGE_OR_FUEL_LEVEL_IN_PERCENT', 'REMAINING_RANGE_IN_KILOMETERS'],
  },
  { path: '/security', permission: 'read_security', state: ['CENTRAL_LOCK'] },
] as const;

export type ReadPath = (typeof READ_ENDPOINTS)[number]['path'];

/** Lock and unlock need Smartcar's `control_security` permission. */
export const CONTROL_SECURITY = 'control_security';
/** `GET /vehicles/{id}` (the existence check at setup) needs `read_vehicle_info`. */
export const READ_VEHICLE_INFO = 'read_vehicle_info';

/** Read endpoints whose permission was granted, in catalogue order. */
export function grantedReadPaths(permissions: readonly string[]): ReadPath[] {
  return READ_ENDPOINTS.filter((e) => permissions.includes(e.permission)).map((e) => e.path);
}

/**
 * A vehicle's capabilities: the model's, narrowed to what the owner granted (`permissions`) and
 * to the read endpoints Smartcar did not call incompatible for this vehicle (`incapable`).
 * REQUEST_VEHICLE_STATE needs at least one readable property.
 */
export function deriveCapabilities(permissions: readonly string[], incapable: ReadonlySet<string>): Capabilities {
  const state = new Set<string>();
  for (const e of READ_ENDPOINTS) {
    if (permissions.includes(e.permission) && !incapable.has(e.path)) for (const s of e.state) state.add(s);
  }
  const commands: CommandName[] = [];
  if (state.size > 0) commands.push('REQUEST_VEHICLE_STATE');
  // Lock control cannot be probed without acting; the grant decides (a vehicle that cannot do
  // it answers COMPATIBILITY at command time, mapped to command-not-supported).
  if (permissions.includes(CONTROL_SECURITY)) {
    commands.push('LOCK_CENTRAL_LOCK', 'UNLOCK_CENTRAL_LOCK');
  }
  return {
    commands: SMARTCAR_CONNECTED_CAR.capabilities.commands.filter((c) => commands.includes(c)),
    vehicle_state: SMARTCAR_CONNECTED_CAR.capabilities.vehicle_state.filter((s) => state.has(s)),
  };
}
