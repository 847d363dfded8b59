/**
 * The connected cars and the vehicle endpoints fleetgate uses: attributes, vin, permissions,
 * security (read, LOCK/UNLOCK), location, odometer, battery and fuel, with the headers Smartcar
 * sends along (`sc-data-age`, `sc-unit-system`).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { errorAnswer, HttpAnswer, notFound } from './answers.js';
import { actionFailure, type FakeSwitches, vehicleStateFailure } from './faults.js';

/** Smartcar permission names (scope) the fake knows. */
export const SMARTCAR_PERMISSIONS = [
  'read_vehicle_info',
  'read_vin',
  'read_location',
  'read_odometer',
  'read_battery',
  'read_fuel',
  'read_security',
  'control_security',
] as const;

export type FakeEngine = 'ELECTRIC' | 'GASOLINE' | 'HYBRID';

export type UnitSystem = 'metric' | 'imperial';

export interface FakeVehicleInput {
  id?: string;
  /** The application whose account the vehicle is connected to. */
  clientId: string;
  make?: string;
  model?: string;
  year?: number;
  vin?: string;
  engine?: FakeEngine;
  /** Granted permissions; default: all of SMARTCAR_PERMISSIONS. */
  permissions?: string[];
  locked?: boolean;
  latitude?: number;
  longitude?: number;
  odometerKm?: number;
  /** 0..1 as Smartcar reports it. */
  batteryPercentRemaining?: number;
  batteryRangeKm?: number;
  fuelPercentRemaining?: number;
  fuelAmountLiters?: number;
  fuelRangeKm?: number;
  /** When the car last reported its data (sc-data-age); default: now. */
  dataAt?: Date;
}

export interface FakeVehicle {
  id: string;
  clientId: string;
  make: string;
  model: string;
  year: number;
  vin: string;
  engine: FakeEngine;
  permissions: string[];
  locked: boolean;
  latitude: number;
  longitude: number;
  odometerKm: number;
  batteryPercentRemaining: number;
  batteryRangeKm: number;
  fuelPercentRemaining: number;
  fuelAmountLiters: number;
  fuelRangeKm: number;
  dataAt: Date;
  switches: FakeSwitches;
}

/** A connected car, with a Tesla Model 3 in Berlin for whatever the input leaves out. */
export function newVehicle(input: FakeVehicleInput): FakeVehicle {
  const engine = input.engine ?? 'ELECTRIC';
  return {
    id: input.id ?? randomUUID(),
    clientId: input.clientId,
    make: input.make ?? 'TESLA',
    model: input.model ?? 'Model 3',
    year: input.year ?? 2022,
    vin: input.vin ?? `5YJ3E1EA${randomBytes(5).toString('hex').toUpperCase().slice(0, 9)}`,
    engine,
    permissions: input.permissions ?? [...SMARTCAR_PERMISSIONS],
    locked: input.locked ?? true,
    latitude: input.latitude ?? 52.520008,
    longitude: input.longitude ?? 13.404954,
    odometerKm: input.odometerKm ?? 12_345.6,
    batteryPercentRemaining: input.batteryPercentRemaining ?? 0.8,
    batteryRangeKm: input.batteryRangeKm ?? 320,
    fuelPercentRemaining: input.fuelPercentRemaining ?? 0.5,
    fuelAmountLiters: input.fuelAmountLiters ?? 25,
    fuelRangeKm: input.fuelRangeKm ?? 450,
    dataAt: input.dataAt ?? new Date(),
    switches: {},
  };
}

const ENDPOINT_PERMISSION: Record<string, string> = {
  '': 'read_vehicle_info',
  vin: 'read_vin',
  location: 'read_location',
  odometer: 'read_odometer',
  battery: 'read_battery',
  fuel: 'read_fuel',
  'GET security': 'read_security',
  'POST security': 'control_security',
};

const KM_PER_MILE = 1.609344;
const LITERS_PER_GALLON = 3.785411784;

/** One vehicle endpoint (shared by direct calls and batch items); `s`: the switches in force for `v`. */
export function vehicleEndpoint(
  rid: string,
  method: string,
  v: FakeVehicle,
  endpoint: string,
  body: unknown,
  unitSystem: UnitSystem,
  s: FakeSwitches,
): HttpAnswer {
  const key = ENDPOINT_PERMISSION[`${method} ${endpoint}`] ?? ENDPOINT_PERMISSION[endpoint];
  if (endpoint === 'permissions' && method === 'GET') {
    const missing = new Set(s.permissionMissing ?? []);
    const permissions = v.permissions.filter((p) => !missing.has(p));
    return new HttpAnswer(200, { permissions, paging: { count: permissions.length, offset: 0 } });
  }
  if (key === undefined || (method === 'POST' && endpoint !== 'security')) return notFound(rid);
  if (!v.permissions.includes(key) || s.permissionMissing?.includes(key)) {
    return errorAnswer(
      rid,
      403,
      'PERMISSION',
      null,
      `Your application does not have the ${key} permission for this vehicle.`,
      'REAUTHENTICATE',
    );
  }
  if (endpoint === '') return new HttpAnswer(200, { id: v.id, make: v.make, model: v.model, year: v.year });
  if (endpoint === 'vin') return new HttpAnswer(200, { vin: v.vin });
  const incompatible =
    s.incompatible?.includes(endpoint) ||
    (endpoint === 'battery' && v.engine === 'GASOLINE') ||
    (endpoint === 'fuel' && v.engine === 'ELECTRIC');
  if (incompatible) {
    return errorAnswer(
      rid,
      501,
      'COMPATIBILITY',
      'VEHICLE_NOT_CAPABLE',
      'The vehicle is incapable of performing your request.',
    );
  }
  const unavailable = vehicleStateFailure(rid, s);
  if (unavailable) return unavailable;
  const age = { 'sc-data-age': v.dataAt.toISOString(), 'sc-unit-system': unitSystem };
  const dist = (km: number) => (unitSystem === 'imperial' ? km / KM_PER_MILE : km);
  switch (endpoint) {
    case 'location':
      return new HttpAnswer(
        200,
        { latitude: v.latitude, longitude: v.longitude },
        { 'sc-data-age': age['sc-data-age'] },
      );
    case 'odometer':
      return new HttpAnswer(200, { distance: dist(v.odometerKm) }, age);
    case 'battery':
      return new HttpAnswer(200, { percentRemaining: v.batteryPercentRemaining, range: dist(v.batteryRangeKm) }, age);
    case 'fuel':
      return new HttpAnswer(
        200,
        {
          percentRemaining: v.fuelPercentRemaining,
          amountRemaining: unitSystem === 'imperial' ? v.fuelAmountLiters / LITERS_PER_GALLON : v.fuelAmountLiters,
          range: dist(v.fuelRangeKm),
        },
        age,
      );
    case 'security':
      return method === 'GET' ? securityStatus(v, age['sc-data-age']) : lockOrUnlock(rid, v, body, s);
  }
  return notFound(rid);
}

/** `GET /vehicles/{id}/security`: every door follows the central lock. */
function securityStatus(v: FakeVehicle, dataAge: string): HttpAnswer {
  return new HttpAnswer(
    200,
    {
      isLocked: v.locked,
      doors: ['frontLeft', 'frontRight', 'backLeft', 'backRight'].map((type) => ({
        type,
        status: v.locked ? 'LOCKED' : 'UNLOCKED',
      })),
      windows: [],
      sunroof: [],
      storage: [],
      chargingPort: [],
    },
    { 'sc-data-age': dataAge },
  );
}

/** `POST /vehicles/{id}/security` with `{action: LOCK | UNLOCK}`. */
function lockOrUnlock(rid: string, v: FakeVehicle, body: unknown, s: FakeSwitches): HttpAnswer {
  const action = (body as { action?: unknown } | undefined)?.action;
  if (action !== 'LOCK' && action !== 'UNLOCK') {
    return errorAnswer(rid, 400, 'VALIDATION', 'PARAMETER', '"action" must be one of [LOCK, UNLOCK].');
  }
  const failure = actionFailure(rid, s, action);
  if (failure) return failure;
  v.locked = action === 'LOCK';
  v.dataAt = new Date();
  return new HttpAnswer(200, { status: 'success', message: 'Successfully sent request to vehicle' });
}
