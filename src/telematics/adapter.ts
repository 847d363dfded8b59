import type { MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import type { CommandName } from '../domain/commands.js';
import type { VehicleState } from '../domain/state-catalogue.js';
import type { Capabilities, Vehicle, VehicleModel } from '../domain/vehicle.js';

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

/** The vehicle behind a unit of the adapter's brand, from one cache shared by all adapters. */
export interface VehicleLookup {
  /** Cached briefly (reconnect storms and floods spare the database); dropped when the vehicle changes. */
  byUnit(unitId: string): Promise<Vehicle | undefined>;
  /** The newest capture time in the stored state of the unit's vehicle (its clock), if any. */
  lastReportedAt(unitId: string): Promise<string | undefined>;
}

/** Stored third-party credentials as an adapter sees them: opened, never sealed text. */
export interface CredentialsSnapshot {
  credentials_id: string;
  fleet_id: string;
  telematics_brand: string;
  /** Incremented by every swapState; the compare-and-swap target. */
  version: number;
  /** The brand's fields given at `POST /credentials`; undefined when this instance's secret key cannot open them. */
  secret: Record<string, string> | undefined;
  /** What the adapter last swapped in; null before the first swap, undefined when it cannot be opened. */
  state: unknown;
}

/** Read and swap credentials (e.g. rotating OAuth tokens shared by every instance). */
export interface CredentialsPort {
  read(credentialsId: string): Promise<CredentialsSnapshot | undefined>;
  /**
   * Replaces the state when the stored version equals `expectedVersion`; false (changing nothing)
   * when another writer got there first.
   */
  swapState(credentialsId: string, expectedVersion: number, state: unknown): Promise<boolean>;
}

/** The result of a vehicle's setup as an adapter verified it. */
export type SetupResult = { ok: true; capabilities?: Capabilities } | { ok: false; reason: string };

/** Where an adapter reports what units and vendors tell it; the services validate and store it. */
export interface AdapterSink {
  /** A unit reported state; the service validates, merges and stores it. */
  state(unitId: string, state: unknown): Promise<void>;
  /** A unit came online or went offline (the first ONLINE completes setup). */
  connection(unitId: string, online: boolean, at: Date): Promise<void>;
  /**
   * Ends a vehicle's setup: SUCCEEDED (optionally with narrowed capabilities) or FAILED with a
   * reason. `force` also moves a vehicle whose setup already ended.
   */
  setupResult(vehicleId: string, result: SetupResult, force?: boolean): Promise<void>;
  /** The vendor refused credentials for good: every vehicle using them ends setup FAILED with `reason`. */
  credentialsRevoked(credentialsId: string, reason: string): Promise<void>;
  /**
   * A unit's final answer to a command whose outcome this adapter had already reported as
   * `no-answer` (delivered): the service settles the record (CommandOutcomeResolved) and stores
   * the state the answer carries. `flowId` is the command request's (CommandRequest.flowId).
   */
  lateAnswer(flowId: string, outcome: CommandOutcome): Promise<void>;
}

/**
 * What the composition root hands an adapter, and nothing more: no store, no config. Built by
 * services/adapter-context.ts for every adapter alike.
 */
export interface AdapterContext<S = Readonly<Record<string, unknown>>> {
  logger: Logger;
  /** This instance's name (unique among instances sharing a database and broker). */
  instanceId: string;
  /** The address fleetgate's listeners bind to (`--host`); adapters that listen use it too. */
  listenHost: string;
  /** fleetgate's own connected MQTT client (embedded or external broker). */
  mqtt: MqttClient;
  /** Whether other fleetgate instances may share the broker (an external one), e.g. for shared subscriptions. */
  sharedBroker: boolean;
  broker: BrokerProvisioner;
  vehicles: VehicleLookup;
  credentials: CredentialsPort;
  sink: AdapterSink;
  /** The adapter's own settings, validated from its definition's `settings`. */
  settings: S;
}

/** One setting of an adapter: a CLI flag with its `FLEETGATE_*` variable, default and bounds. */
export interface AdapterSetting {
  /** The property in the adapter's `settings`, e.g. `port`. */
  name: string;
  /** The CLI flag, e.g. `--teltonika-port`; the variable is `FLEETGATE_TELTONIKA_PORT`. */
  flag: string;
  kind: 'int' | 'string' | 'url';
  default?: string;
  min?: number;
  max?: number;
  /** For `url`: the accepted schemes, e.g. `https:`. */
  protocols?: string[];
  description: string;
}

/** One option of a brand's simulator in `fleetgate simulate`. */
export interface SimulatorOption {
  /** Commander syntax, e.g. `--teltonika-address <host:port>`. */
  flags: string;
  description: string;
  default?: string;
}

/** A brand's device simulator or vendor fake, offered by `fleetgate simulate`. */
export interface SimulatorDefinition {
  /** The option whose presence selects this simulator (its `flags` list it first). */
  selectedBy: string;
  /** One line for `fleetgate simulate --help`. */
  summary: string;
  options: readonly SimulatorOption[];
  /**
   * Runs until `signal` aborts (or the simulation ends); `fail` prints a usage error and exits.
   * Resolves with the process exit code.
   */
  run(
    opts: Record<string, string | boolean | undefined>,
    io: {
      out: NodeJS.WritableStream;
      input?: NodeJS.ReadableStream;
      signal: AbortSignal;
      fail(message: string): never;
    },
  ): Promise<number>;
}

/**
 * A telematics brand as the rest of fleetgate sees it: config, `serve --help` and
 * docs/configuration.md read its settings, `fleetgate simulate` its simulator, the composition
 * root calls `create`. Each adapter folder exports one; telematics/registry.ts lists them.
 */
export interface AdapterDefinition {
  brand: string;
  /** The folder under src/telematics/ (checked by a test: every folder is registered). */
  folder: string;
  settings: readonly AdapterSetting[];
  create(): TelematicsAdapter;
  simulator?: SimulatorDefinition;
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
  /**
   * Whether, when fleetgate runs alone (no shared broker), every unit connection of this brand
   * ends in this process (the embedded broker, or the adapter's own listener): then a start
   * records the brand's vehicles OFFLINE until their units are back, whatever the database says.
   */
  readonly unitsConnectToThisProcess?: boolean;

  start(ctx: AdapterContext): Promise<void>;
  stop(): Promise<void>;

  /** Called once a vehicle was stored; provisions the unit's access. Setup completes later. */
  onVehicleAdded(vehicle: Vehicle, secrets: { password?: string }): Promise<void>;
  onVehicleRemoved(vehicle: Vehicle): Promise<void>;

  /**
   * Picks up a vehicle whose setup was still IN_PROGRESS when an instance stopped (the services
   * call it after start for each such vehicle of the brand); for adapters that verify setups themselves.
   */
  resumeSetup?(vehicle: Vehicle): void;

  /** Executes one command (a combined one only when the model lists it in native_combined). */
  execute(request: CommandRequest): Promise<CommandOutcome>;
}
