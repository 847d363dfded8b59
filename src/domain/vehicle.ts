import type { CommandName } from './commands.js';

export const SETUP_STATUSES = ['IN_PROGRESS', 'SUCCEEDED', 'FAILED'] as const;
export type SetupStatus = (typeof SETUP_STATUSES)[number];

export const OPERATION_STATUSES = ['OPERATING', 'NOT_OPERATING', 'MAINTENANCE', 'DECOMMISSIONED'] as const;
export type OperationStatus = (typeof OPERATION_STATUSES)[number];

export const LIFE_STATUSES = ['ONLINE', 'OFFLINE'] as const;
export type LifeStatus = (typeof LIFE_STATUSES)[number];

export const VEHICLE_TYPES = ['CAR', 'MOPED', 'KICKSCOOTER', 'BICYCLE', 'VAN', 'OTHER'] as const;
export type VehicleType = (typeof VEHICLE_TYPES)[number];

export const FUEL_TYPES = ['PETROL', 'DIESEL', 'ELECTRIC', 'HYBRID', 'PLUG_IN_HYBRID', 'HYDROGEN', 'OTHER'] as const;
export type FuelType = (typeof FUEL_TYPES)[number];

export interface Capabilities {
  commands: CommandName[];
  vehicle_state: string[];
}

/** A vehicle model a telematics brand supports; a vehicle's capabilities derive from it (SPEC §4). */
export interface VehicleModel {
  id: string;
  brand: string;
  model: string;
  vehicle_type: VehicleType;
  capabilities: Capabilities;
}

export interface MasterData {
  vin?: string;
  license_plate?: string;
  brand?: string;
  model?: string;
  fuel_type?: FuelType;
  vehicle_type?: VehicleType;
}

/** A vehicle as stored; secrets are hashed or encrypted and never leave the store layer's callers. */
export interface Vehicle {
  vehicle_id: string;
  fleet_id: string;
  telematics_brand: string;
  telematics_unit_id: string;
  vehicle_model_id: string;
  /** scrypt hash of the unit's password, for device authentication; never returned. */
  unit_password_hash: string | null;
  credentials_id: string | null;
  /** Copied from the model when the vehicle is added; a third-party setup may narrow it. */
  capabilities: Capabilities;
  master_data: MasterData;
  custom_fields: Record<string, string>;
  tags: string[];
  operation_status: OperationStatus;
  setup_status: SetupStatus;
  setup_failure_reason: string | null;
  life_status: LifeStatus;
  life_status_modified_at: string;
  /** Incremented on every change; the ETag is derived from it. */
  version: number;
  created_at: string;
  modified_at: string;
}
