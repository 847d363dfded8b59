import { EventEmitter } from 'node:events';
import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { enableNoDelay } from '../broker/mqtt-connection.js';
import type { CommandName } from '../domain/commands.js';
import type { VehicleState } from '../domain/state-catalogue.js';
import { reconnectWithBackoff } from '../lib/mqtt-backoff.js';
import type { AdapterVehicleModel } from '../telematics/adapter.js';
import { fleetgateModel } from '../telematics/fleetgate-mqtt/models.js';
import {
  type CommandMessage,
  decodeCommand,
  encodeResponse,
  encodeState,
  encodeStatus,
  QOS_RESPONSES,
  QOS_STATE,
  QOS_STATUS,
  type ResponseMessage,
  type ResponseStatus,
  TOPIC_COMMANDS,
  TOPIC_RESPONSES,
  TOPIC_STATE,
  TOPIC_STATUS,
  unitTopic,
} from '../telematics/fleetgate-mqtt/protocol.js';

/** MQTT 3.1.1 §3.2.2.3: the broker cannot take the login now; try again later. */
const CONNACK_SERVER_UNAVAILABLE = 3;
/** Reconnect periods: drawn from 1–2 s at first, growing to 30–60 s (docs/mqtt-protocol.md §2). */
const RECONNECT_MIN_MS = 2_000;
const RECONNECT_MAX_MS = 60_000;

/**
 * How a simulated unit behaves, settable at runtime:
 * - `online`: connected, answers every command;
 * - `offline`: connection dropped without DISCONNECT (the broker publishes its last will);
 * - `silent`: connected, takes no notice of commands (no ACCEPTED, no answer);
 * - `accept-only`: answers ACCEPTED, never a final answer;
 * - `refuse`: answers REFUSED to every command (as if the vehicle's state conflicted);
 * - `fail`: answers FAILED to every command.
 */
export type UnitBehaviour = 'online' | 'offline' | 'silent' | 'accept-only' | 'refuse' | 'fail';

export interface FleetgateUnitOptions {
  mqttUrl: string;
  unitId: string;
  password: string;
  /** A model of the FLEETGATE catalogue, by id or as the model itself. */
  model: string | AdapterVehicleModel;
  /** Periodic state reports; default 30 s. Changes are reported at once as well. */
  reportIntervalMs?: number;
  /** Delay between ACCEPTED and the final answer; default a realistic 300–800 ms, tests use 0. */
  answerDelayMs?: number | { min: number; max: number };
  /** Takes trips on its own while driving is enabled (position, mileage, speed, charge move). */
  drive?: boolean;
  /** Where the vehicle stands at first; default somewhere in central Berlin. */
  position?: { lat: number; lon: number };
  logger?: Logger;
}

export interface UnitStats {
  connects: number;
  commands: number;
  succeeded: number;
  refused: number;
  failed: number;
  unsupported: number;
  /** Commands dropped because they arrived after `expires_at` (SPEC §1: never queued). */
  expired: number;
  stateReports: number;
}

/** Every counter at zero (a new unit; the start of a sum over units). */
export function emptyStats(): UnitStats {
  return {
    connects: 0,
    commands: 0,
    succeeded: 0,
    refused: 0,
    failed: 0,
    unsupported: 0,
    expired: 0,
    stateReports: 0,
  };
}

const DEFAULT_REPORT_INTERVAL_MS = 30_000;
const DEFAULT_ANSWER_DELAY = { min: 300, max: 800 };
const DRIVE_TICK_MS = 1_000;
const BATTERY_RELOCK_MS = 30_000;
const SECURING_COMMANDS: ReadonlySet<CommandName> = new Set([
  'LOCK_CENTRAL_LOCK',
  'LOCK_AND_DISABLE_DRIVING',
  'DISABLE_DRIVING',
  'LOCK_TOP_CASE',
]);

/**
 * One simulated fleetgate/v1 unit (docs/mqtt-protocol.md): logs in with its credentials and a
 * last will, publishes a retained `online`, reports state periodically and on change, answers
 * commands (ACCEPTED at once, the final answer after a delay), refuses to secure a moving vehicle
 * and drops commands that arrive after their `expires_at`.
 */
export class FleetgateUnit extends EventEmitter {
  readonly unitId: string;
  readonly model: AdapterVehicleModel;
  readonly stats: UnitStats = emptyStats();

  private client: MqttClient | undefined;
  private mode: UnitBehaviour = 'online';
  private readonly properties: Set<string>;
  private readonly values = new Map<string, unknown>();
  private readonly stamps = new Map<string, string>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private reportTimer: NodeJS.Timeout | undefined;
  private driveTimer: NodeJS.Timeout | undefined;
  private tripEndsAt = 0;
  private heading = Math.random() * 2 * Math.PI;
  private stopped = false;
  private readonly topics: { commands: string; responses: string; state: string; status: string };

  constructor(private readonly options: FleetgateUnitOptions) {
    super();
    const model = typeof options.model === 'string' ? fleetgateModel(options.model) : options.model;
    if (!model) throw new Error(`unknown FLEETGATE vehicle model '${String(options.model)}'`);
    this.unitId = options.unitId;
    this.model = model;
    this.properties = new Set(model.capabilities.vehicle_state.map((c) => c.toLowerCase()));
    this.topics = {
      commands: unitTopic(this.unitId, TOPIC_COMMANDS),
      responses: unitTopic(this.unitId, TOPIC_RESPONSES),
      state: unitTopic(this.unitId, TOPIC_STATE),
      status: unitTopic(this.unitId, TOPIC_STATUS),
    };
    this.initialState();
  }

  get behaviour(): UnitBehaviour {
    return this.mode;
  }

  get connected(): boolean {
    return this.client?.connected === true;
  }

  /** Connects; resolves once the unit is subscribed to its commands and announced `online`. */
  async start(): Promise<void> {
    this.stopped = false;
    await this.connect();
    const interval = this.options.reportIntervalMs ?? DEFAULT_REPORT_INTERVAL_MS;
    this.reportTimer = setInterval(() => this.reportState(true), interval);
    this.reportTimer.unref();
    if (this.options.drive) {
      this.driveTimer = setInterval(() => this.driveTick(), DRIVE_TICK_MS);
      this.driveTimer.unref();
    }
  }

  /** Changes the behaviour; `offline` resolves once the link is cut, `online` once it is back. */
  async setBehaviour(behaviour: UnitBehaviour): Promise<void> {
    const previous = this.mode;
    this.mode = behaviour;
    if (behaviour === 'offline' && previous !== 'offline') {
      const client = this.client;
      this.client = undefined;
      // Forced: no DISCONNECT packet, so the broker publishes the last will, as on a lost link.
      if (client) await new Promise<void>((resolve) => client.end(true, {}, () => resolve()));
    } else if (behaviour !== 'offline' && previous === 'offline' && !this.stopped) {
      await this.connect();
    }
  }

  /** Puts the vehicle in motion (ignition on, driving) or parks it, and reports the change. */
  setMoving(moving: boolean): void {
    const now = new Date().toISOString();
    const changed: string[] = [];
    if (this.set('ignition', moving ? 'ON' : 'OFF', now)) changed.push('ignition');
    const speed = moving ? 15 + Math.round(Math.random() * 30) : 0;
    if (this.set('speed_in_kilometers_per_hour', speed, now)) changed.push('speed_in_kilometers_per_hour');
    this.tripEndsAt = moving ? Number.POSITIVE_INFINITY : 0;
    if (changed.length > 0) this.reportChanged(changed);
  }

  /** The current state: every property of the model with its capture time. */
  snapshot(): VehicleState {
    const out: VehicleState = {};
    for (const name of this.properties) {
      const value = this.values.get(name);
      const timestamp = this.stamps.get(name);
      if (value !== undefined && timestamp !== undefined) out[name] = { timestamp, value };
    }
    return out;
  }

  /** Publishes a full state report; `resample` refreshes every capture time first. */
  reportState(resample = false): void {
    if (resample) {
      const now = new Date().toISOString();
      for (const name of this.properties) this.stamps.set(name, now);
    }
    this.publishState(this.snapshot());
  }

  /** Disconnects for good, announcing `offline` first (a clean shutdown, not a lost link). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.reportTimer);
    clearInterval(this.driveTimer);
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    if (client.connected) {
      // Until the broker acknowledges, or the link turns out to be gone already (a broker that
      // just died: mqtt.js keeps an unacknowledged QoS 1 message for a reconnect that will not
      // come, and its promise would never settle).
      await Promise.race([
        client
          .publishAsync(this.topics.status, encodeStatus('offline'), { qos: QOS_STATUS, retain: true })
          .catch(() => undefined),
        new Promise<void>((resolve) => client.once('close', () => resolve())),
      ]);
    }
    await new Promise<void>((resolve) => client.end(!client.connected, {}, () => resolve()));
  }

  // -------------------------------------------------------------------------------------------
  // Connection

  private connect(): Promise<void> {
    const client = mqtt.connect(this.options.mqttUrl, {
      clientId: this.unitId,
      username: this.unitId,
      password: this.options.password,
      clean: true,
      protocolVersion: 4,
      keepalive: 30,
      // Replaced at once by reconnectWithBackoff: 1–2 s, doubling up to 30–60 s while the broker
      // keeps refusing or timing out (docs/mqtt-protocol.md §2), so a storm thins out.
      reconnectPeriod: 2_000,
      // A login refused with "server unavailable" (CONNACK 3: a broker busy with a storm, or not
      // ready yet) is tried again like a lost link; mqtt.js would give up for good. Refused
      // credentials end the client (a real unit backs off for long, docs/mqtt-protocol.md §2).
      // The first connect fails at once either way (start() rejects and ends the client).
      reconnectOnConnackError: true,
      connectTimeout: 10_000,
      // announce() subscribes after every connect, as docs/mqtt-protocol.md §2 asks of firmware.
      resubscribe: false,
      will: {
        topic: this.topics.status,
        payload: Buffer.from(encodeStatus('offline', new Date())),
        qos: QOS_STATUS,
        retain: true,
      },
    });
    this.client = client;
    reconnectWithBackoff(client, RECONNECT_MIN_MS, RECONNECT_MAX_MS);
    // docs/mqtt-protocol.md §2: the will carries the time of the connection it belongs to, so a
    // will published late (the broker notices a dead link after the unit is back) reads as older
    // than the unit's `online`. mqtt.js sends its options' will with every reconnect.
    client.on('reconnect', () => {
      if (client.options.will) client.options.will.payload = Buffer.from(encodeStatus('offline', new Date()));
    });
    client.on('message', (_topic, payload) => this.onCommand(payload));
    client.on('connect', () => {
      enableNoDelay(client);
      this.stats.connects++;
      this.announce(client).catch((err: unknown) =>
        this.options.logger?.warn({ err, unit: this.unitId }, 'announce failed'),
      );
    });
    client.on('error', (err) => {
      this.options.logger?.debug({ err, unit: this.unitId }, 'unit MQTT error');
      const refusal = (err as Error & { code?: unknown }).code;
      if (typeof refusal === 'number' && refusal !== CONNACK_SERVER_UNAVAILABLE) client.end(true);
    });

    return new Promise<void>((resolve, reject) => {
      const onOnline = () => {
        cleanup();
        resolve();
      };
      const onError = (err: Error) => {
        cleanup();
        if (this.client === client) this.client = undefined;
        client.end(true);
        reject(err);
      };
      const cleanup = () => {
        this.off('online', onOnline);
        client.off('error', onError);
      };
      this.on('online', onOnline);
      client.on('error', onError);
    });
  }

  /** After every (re)connect: subscribe first so no command is missed, then say `online`. */
  private async announce(client: MqttClient): Promise<void> {
    await client.subscribeAsync(this.topics.commands, { qos: 1 });
    await client.publishAsync(this.topics.status, encodeStatus('online'), { qos: QOS_STATUS, retain: true });
    this.reportState(true);
    this.emit('online');
  }

  private publish(topic: string, payload: string, qos: 0 | 1): void {
    const client = this.client;
    if (!client?.connected) return;
    client.publish(topic, payload, { qos }, (err) => {
      if (err) this.options.logger?.debug({ err, unit: this.unitId }, 'unit publish failed');
    });
  }

  // -------------------------------------------------------------------------------------------
  // Commands

  private onCommand(payload: Buffer): void {
    const decoded = decodeCommand(payload);
    if (!decoded.ok) {
      this.options.logger?.warn({ unit: this.unitId, error: decoded.error }, 'unit dropped a malformed command');
      return;
    }
    const command = decoded.value;
    this.stats.commands++;
    this.emit('command', command);
    if (this.mode === 'silent' || this.mode === 'offline') return;
    // SPEC §1: a command that arrives late is dropped unanswered, never executed.
    if (Date.now() > Date.parse(command.expires_at)) {
      this.stats.expired++;
      this.emit('expired', command);
      return;
    }
    const delay = this.mode === 'accept-only' ? Number.POSITIVE_INFINITY : this.answerDelay();
    // docs/mqtt-protocol.md §5: ACCEPTED may be left out when the final answer follows at once.
    if (delay <= 0) {
      this.execute(command);
      return;
    }
    this.answer({ id: command.id, status: 'ACCEPTED', timestamp: new Date().toISOString() });
    if (this.mode === 'accept-only') return;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      this.execute(command);
    }, delay);
    this.timers.add(timer);
  }

  private answerDelay(): number {
    const d = this.options.answerDelayMs ?? DEFAULT_ANSWER_DELAY;
    if (typeof d === 'number') return d;
    return d.min + Math.random() * (d.max - d.min);
  }

  private execute(command: CommandMessage): void {
    if (this.mode === 'silent' || this.mode === 'accept-only' || this.mode === 'offline') return;
    const refusal = this.refusalOf(command);
    if (refusal) {
      this.final(command, refusal.status, refusal.reason);
      return;
    }
    const changed = this.apply(command.command);
    this.final(command, 'SUCCEEDED');
    if (changed.length > 0) this.reportChanged(changed);
  }

  /** Why the command is not carried out, or undefined when it will be. */
  private refusalOf(
    command: CommandMessage,
  ): { status: 'FAILED' | 'REFUSED' | 'UNSUPPORTED'; reason: string } | undefined {
    // Accepted in time but not started in time: never act late (SPEC §1).
    if (Date.now() > Date.parse(command.expires_at)) {
      return { status: 'FAILED', reason: 'the command expired before it could be executed' };
    }
    if (this.mode === 'fail') return { status: 'FAILED', reason: 'simulated unit failure' };
    if (this.mode === 'refuse') return { status: 'REFUSED', reason: 'simulated conflicting vehicle state' };
    if (!this.model.capabilities.commands.includes(command.command)) {
      return { status: 'UNSUPPORTED', reason: `model ${this.model.id} has no ${command.command}` };
    }
    const conflict = this.conflictOf(command.command);
    return conflict ? { status: 'REFUSED', reason: conflict } : undefined;
  }

  private final(command: CommandMessage, status: Exclude<ResponseStatus, 'ACCEPTED'>, reason?: string): void {
    const message: Omit<ResponseMessage, 'v'> = { id: command.id, status, timestamp: new Date().toISOString() };
    if (reason !== undefined) message.reason = reason;
    if (status === 'SUCCEEDED') message.state = this.snapshot();
    if (status === 'SUCCEEDED') this.stats.succeeded++;
    else if (status === 'REFUSED') this.stats.refused++;
    else if (status === 'UNSUPPORTED') this.stats.unsupported++;
    else this.stats.failed++;
    this.answer(message);
    this.emit('answered', command, status);
  }

  private answer(message: Omit<ResponseMessage, 'v'>): void {
    this.publish(this.topics.responses, encodeResponse(message), QOS_RESPONSES);
  }

  /** Why the vehicle's state forbids the command, or undefined. */
  private conflictOf(command: CommandName): string | undefined {
    if (SECURING_COMMANDS.has(command)) {
      if (((this.values.get('speed_in_kilometers_per_hour') as number | undefined) ?? 0) > 0) {
        return 'the vehicle is moving';
      }
      if (this.values.get('ignition') === 'ON') return 'the ignition is on';
    }
    if (command === 'LOCK_TOP_CASE' && this.values.get('top_case_lid') === 'OPEN') return 'the top case lid is open';
    return undefined;
  }

  /** Carries out a command; returns the names of the properties that changed. */
  private apply(command: CommandName): string[] {
    const now = new Date().toISOString();
    const changed: string[] = [];
    const set = (name: string, value: unknown) => {
      if (this.set(name, value, now)) changed.push(name);
    };
    switch (command) {
      case 'REQUEST_VEHICLE_STATE':
        for (const name of this.properties) this.stamps.set(name, now);
        break;
      case 'ENABLE_DRIVING':
        set('driving_enabled', true);
        break;
      case 'DISABLE_DRIVING':
        set('driving_enabled', false);
        break;
      case 'UNLOCK_CENTRAL_LOCK':
        set('central_lock', 'UNLOCKED');
        break;
      case 'LOCK_CENTRAL_LOCK':
        set('central_lock', 'LOCKED');
        break;
      case 'UNLOCK_AND_ENABLE_DRIVING':
        set('central_lock', 'UNLOCKED');
        set('driving_enabled', true);
        break;
      case 'LOCK_AND_DISABLE_DRIVING':
        set('central_lock', 'LOCKED');
        set('driving_enabled', false);
        break;
      case 'UNLOCK_TOP_CASE':
        set('top_case_lock', 'UNLOCKED');
        break;
      case 'LOCK_TOP_CASE':
        set('top_case_lock', 'LOCKED');
        break;
      case 'UNLOCK_BATTERY_COMPARTMENT': {
        set('battery_compartment_lock', 'UNLOCKED');
        // The compartment latches again once the battery is swapped and the hatch closed.
        const timer = setTimeout(() => {
          this.timers.delete(timer);
          if (this.set('battery_compartment_lock', 'LOCKED', new Date().toISOString())) {
            this.reportChanged(['battery_compartment_lock']);
          }
        }, BATTERY_RELOCK_MS);
        timer.unref();
        this.timers.add(timer);
        break;
      }
      case 'DRAW_ATTENTION':
        break;
    }
    return changed;
  }

  // -------------------------------------------------------------------------------------------
  // State

  /** Sets a property the model has; true when its value changed. */
  private set(name: string, value: unknown, at: string): boolean {
    if (!this.properties.has(name)) return false;
    const same = this.values.get(name) === value;
    this.values.set(name, value);
    if (!same) this.stamps.set(name, at);
    return !same;
  }

  private reportChanged(names: string[]): void {
    const state: VehicleState = {};
    for (const name of names) {
      const value = this.values.get(name);
      const timestamp = this.stamps.get(name);
      if (value !== undefined && timestamp !== undefined) state[name] = { timestamp, value };
    }
    this.publishState(state);
  }

  private publishState(state: VehicleState): void {
    if (!this.client?.connected) return;
    this.stats.stateReports++;
    this.publish(this.topics.state, encodeState(state), QOS_STATE);
  }

  private initialState(): void {
    const now = new Date().toISOString();
    const p = this.options.position ?? {
      lat: 52.52 + (Math.random() - 0.5) * 0.08,
      lon: 13.405 + (Math.random() - 0.5) * 0.12,
    };
    const soc = 40 + Math.round(Math.random() * 60);
    const initial: Record<string, unknown> = {
      mileage_in_kilometers: 1_000 + Math.round(Math.random() * 49_000),
      state_of_charge_or_fuel_level_in_percent: soc,
      remaining_range_in_kilometers: this.rangeFor(soc),
      position: { lat: round6(p.lat), lon: round6(p.lon) },
      cellular_signal_quality: 3 + Math.floor(Math.random() * 3),
      driving_enabled: false,
      central_lock: 'LOCKED',
      ignition: 'OFF',
      speed_in_kilometers_per_hour: 0,
      top_case_lock: 'LOCKED',
      top_case_lid: 'CLOSED',
      battery_compartment_lock: 'LOCKED',
    };
    for (const [name, value] of Object.entries(initial)) this.set(name, value, now);
  }

  private rangeFor(soc: number): number {
    const fullRange = this.model.vehicle_type === 'CAR' ? 350 : this.model.vehicle_type === 'MOPED' ? 100 : 40;
    return Math.round((soc / 100) * fullRange);
  }

  /** One second of the simulated world: start, continue or end a trip. */
  private driveTick(): void {
    if (!this.client?.connected) return;
    const now = Date.now();
    const moving = ((this.values.get('speed_in_kilometers_per_hour') as number | undefined) ?? 0) > 0;
    const at = new Date(now).toISOString();
    if (!moving) {
      const canStart =
        this.values.get('driving_enabled') === true &&
        this.values.get('central_lock') !== 'LOCKED' &&
        ((this.values.get('state_of_charge_or_fuel_level_in_percent') as number | undefined) ?? 0) > 5;
      // About one trip start per 10 s of an enabled vehicle, each 20–120 s long.
      if (!canStart || Math.random() > 0.1) return;
      this.tripEndsAt = now + 20_000 + Math.random() * 100_000;
      this.set('ignition', 'ON', at);
      this.set('speed_in_kilometers_per_hour', 15 + Math.round(Math.random() * 30), at);
      this.reportChanged(['ignition', 'speed_in_kilometers_per_hour']);
      return;
    }
    if (now >= this.tripEndsAt) {
      this.set('speed_in_kilometers_per_hour', 0, at);
      this.set('ignition', 'OFF', at);
      this.reportChanged(['ignition', 'speed_in_kilometers_per_hour']);
      return;
    }
    const speed = Math.max(
      5,
      Math.min(60, (this.values.get('speed_in_kilometers_per_hour') as number) + (Math.random() - 0.5) * 8),
    );
    const km = (speed * DRIVE_TICK_MS) / 3_600_000;
    this.heading += (Math.random() - 0.5) * 0.4;
    const pos = this.values.get('position') as { lat: number; lon: number };
    const lat = pos.lat + (km / 111.32) * Math.cos(this.heading);
    const lon = pos.lon + (km / (111.32 * Math.cos((pos.lat * Math.PI) / 180))) * Math.sin(this.heading);
    const soc = Math.max(0, (this.values.get('state_of_charge_or_fuel_level_in_percent') as number) - km * 0.3);
    this.set('speed_in_kilometers_per_hour', Math.round(speed), at);
    this.set('position', { lat: round6(lat), lon: round6(lon) }, at);
    this.set(
      'mileage_in_kilometers',
      Math.round(((this.values.get('mileage_in_kilometers') as number) + km) * 1000) / 1000,
      at,
    );
    this.set('state_of_charge_or_fuel_level_in_percent', Math.round(soc * 10) / 10, at);
    this.set('remaining_range_in_kilometers', this.rangeFor(soc), at);
  }
}

function round6(n: number): number {
  return Math.round(n * 1e6) / 1e6;
}
