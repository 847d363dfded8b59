import type { AdapterVehicleModel } from '../adapter.js';

export const FLEETGATE_BRAND = 'FLEETGATE';

/**
 * The built-in models of fleetgate/v1 units (docs/mqtt-protocol.md §10). A unit implements the
 * commands and reports the state properties of its model; capabilities of a vehicle derive from
 * it (SPEC §4). Combined commands are executed natively by the unit in one step.
 */
export const FLEETGATE_MODELS: readonly AdapterVehicleModel[] = [
  {
    id: 'fleetgate-car-v1',
    brand: FLEETGATE_BRAND,
    model: 'Car unit v1 (central lock, immobilizer)',
    vehicle_type: 'CAR',
    capabilities: {
      commands: [
        'REQUEST_VEHICLE_STATE',
        'ENABLE_DRIVING',
        'DISABLE_DRIVING',
        'UNLOCK_CENTRAL_LOCK',
        'LOCK_CENTRAL_LOCK',
        'UNLOCK_AND_ENABLE_DRIVING',
        'LOCK_AND_DISABLE_DRIVING',
        'DRAW_ATTENTION',
      ],
      vehicle_state: [
        'MILEAGE_IN_KILOMETERS',
        'STATE_OF_CHARGE_OR_FUEL_LEVEL_IN_PERCENT',
        'REMAINING_RANGE_IN_KILOMETERS',
        'POSITION',
        'CELLULAR_SIGNAL_QUALITY',
        'DRIVING_ENABLED',
        'CENTRAL_LOCK',
        'IGNITION',
        'SPEED_IN_KILOMETERS_PER_HOUR',
      ],
    },
    native_combined: ['UNLOCK_AND_ENABLE_DRIVING', 'LOCK_AND_DISABLE_DRIVING'],
  },
  {
    id: 'fleetgate-moped-v1',
    brand: FLEETGATE_BRAND,
    model: 'Moped unit v1 (immobilizer, top case)',
    vehicle_type: 'MOPED',
    capabilities: {
      commands: [
        'REQUEST_VEHICLE_STATE',
        'ENABLE_DRIVING',
        'DISABLE_DRIVING',
        'UNLOCK_TOP_CASE',
        'LOCK_TOP_CASE',
        'DRAW_ATTENTION',
      ],
      vehicle_state: [
        'MILEAGE_IN_KILOMETERS',
        'STATE_OF_CHARGE_OR_FUEL_LEVEL_IN_PERCENT',
        'REMAINING_RANGE_IN_KILOMETERS',
        'POSITION',
        'CELLULAR_SIGNAL_QUALITY',
        'DRIVING_ENABLED',
        'IGNITION',
        'SPEED_IN_KILOMETERS_PER_HOUR',
        'TOP_CASE_LOCK',
        'TOP_CASE_LID',
      ],
    },
  },
  {
    id: 'fleetgate-kickscooter-v1',
    brand: FLEETGATE_BRAND,
    model: 'Kickscooter unit v1 (immobilizer, battery compartment)',
    vehicle_type: 'KICKSCOOTER',
    capabilities: {
      commands: [
        'REQUEST_VEHICLE_STATE',
        'ENABLE_DRIVING',
        'DISABLE_DRIVING',
        'UNLOCK_BATTERY_COMPARTMENT',
        'DRAW_ATTENTION',
      ],
      vehicle_state: [
        'MILEAGE_IN_KILOMETERS',
        'STATE_OF_CHARGE_OR_FUEL_LEVEL_IN_PERCENT',
        'REMAINING_RANGE_IN_KILOMETERS',
        'POSITION',
        'CELLULAR_SIGNAL_QUALITY',
        'DRIVING_ENABLED',
        'SPEED_IN_KILOMETERS_PER_HOUR',
        'BATTERY_COMPARTMENT_LOCK',
      ],
    },
  },
];

const BY_ID = new Map(FLEETGATE_MODELS.map((m) => [m.id, m]));

export function fleetgateModel(id: string): AdapterVehicleModel | undefined {
  return BY_ID.get(id);
}
