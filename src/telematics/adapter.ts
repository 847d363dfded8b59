import type { MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { CommandName } from '../domain/commands.js';
import type { VehicleState } from '../domain/state-catalogue.js';
import type { Capabilities, Vehicle, VehicleModel } from '../domain/vehicle.js';
import type { SecretBox } from '../lib/secrets.js';
import type { Store } from '../store/store.js';

/**
 * What an adapter reports back for one command. Adapters translate the unit's or vendor's
 * answer into one of these and nothing more: the command service maps them to answers and
 * problems, records them and enforces timeouts, single flight and idempotency for all adapters.
 */
export type CommandOutcome =
  | { kind: 'succeeded'; state: VehicleState }
  /** fleetgate's own broker (or other shared part) is unreachable; nothing was sent. */
  | { kind: 'unavailable'; reason: string }
  /** The unit is not connected; nothing was sent. */
  | { kind: 'not-connected'; reason?: string }
  /** No final answer before the deadline; `delivered` says whether the unit received it. */
  | { kind: 'no-answer'; delivered: boolean }
  /** The unit refused because of the vehicle's state (lock while moving, ignition on…). */
  | { kind: 'refused'; reason: string }
  /** The unit tried and failed. */
  | { kind: 'failed'; reason: string }
  /** The unit or vendor says it cannot do this command at all. */
  | { kind: 'not-supported'; reason: string }
  /** A third-party API answered with an error or garbage. */
  | { kind: 'third-party-error'; provider: string; reason: string; request_id?: string; retry_after_s?: number };

export interface CommandRequest {
  vehicle: Vehicle;
  command: CommandName;
  flowId: string;
  /** The absolute moment the answer is due; the unit must not act on the command after it. */
  deadline: Date;
  /** Aborted when the deadline passes or the server shuts down. */
  signal: AbortSignal;
}

/** A model of the brand's catalogue, with what only the adapter needs to know. */
export interface AdapterVehicleModel extends VehicleModel {
  /** Combined commands the unit executes natively in one step; others run as ordered steps. */
  native_combined?: CommandName[];
}

/** Provisions device credentials and permissions in the MQTT broker (embedded or external). */
export interface BrokerProvisioner {
  provisionUnit(username: string, password: string, topicPrefix: string): Promise<void>;
  removeUnit(username: string): Promise<void>;
}

/** One field of a brand's third-party credentials; all are required non-empty strings. */
export interface CredentialsField {
  name: string;
  /** Secret fields are sealed and never returned; others appear in the credentials view. */
  secret: boolean;
  description: string;
}

/** What the composition root hands every adapter. */
export interface AdapterContext {
  logger: Logger;
  /** fleetgate's own connected MQTT client (embedded or external broker). */
  mqtt: MqttClient;
  broker: BrokerProvisioner;
  /** A unit of this brand reported state; the service validates, merges and stores it. */
  onStateReport(unitId: string, state: unknown): Promise<void>;
  /** A unit of this brand came online or went offline (the first ONLINE completes setup). */
  onConnectionChange(unitId: string, online: boolean, at: Date): Promise<void>;
  /**
   * Ends a vehicle's setup: SUCCEEDED (optionally with narrowed capabilities) or FAILED with a
   * reason. `force` also moves a vehicle whose setup already ended (e.g. revoked authorization).
   */
  setSetupResult(
    vehicleId: string,
    result: { ok: true; capabilities?: Capabilities } | { ok: false; reason: string },
    force?: boolean,
  ): Promise<void>;
  /** For adapters that keep third-party credentials and token state (sealed with `secrets`). */
  store: Store;
  secrets: SecretBox;
  config: Readonly<Config>;
}

/**
 * A telematics adapter: one per telematics brand, in telematics/<brand>/, registered by one
 * line in telematics/registry.ts. It translates generic commands to the unit's own and the
 * unit's reports back to the state catalogue; nothing else.
 */
export interface TelematicsAdapter {
  /** The `telematics_brand` value, e.g. `FLEETGATE`. */
  readonly brand: string;
  readonly displayName: string;
  readonly models: readonly AdapterVehicleModel[];
  /** Whether vehicles of this brand need a per-unit `password` when they are added. */
  readonly requiresUnitPassword: boolean;
  /** Whether vehicles of this brand need a fleet `credentials_id` (third-party clouds). */
  readonly requiresCredentials?: boolean;
  /** The fields `POST /credentials` takes for this brand (besides `telematics_brand` and `name`). */
  readonly credentialsFields?: readonly CredentialsField[];

  /** Where units connect when the adapter listens itself (e.g. `tcp://0.0.0.0:5027`); shown at start. */
  readonly endpoint?: string;

  start(ctx: AdapterContext): Promise<void>;
  stop(): Promise<void>;

  /** Called once a vehicle was stored; provisions the unit's access. Setup completes later. */
  onVehicleAdded(vehicle: Vehicle, secrets: { password?: string }): Promise<void>;
  onVehicleRemoved(vehicle: Vehicle): Promise<void>;

  /** Executes one command (a combined one only when the model lists it in native_combined). */
  execute(request: CommandRequest): Promise<CommandOutcome>;
}
