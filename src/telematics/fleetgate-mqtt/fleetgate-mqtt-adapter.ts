import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { VehicleState } from '../../domain/state-catalogue.js';
import type { Vehicle } from '../../domain/vehicle.js';
import { LruMap } from '../../lib/lru-map.js';
import type { AdapterContext, CommandOutcome, CommandRequest, TelematicsAdapter } from '../adapter.js';
import { FLEETGATE_BRAND, FLEETGATE_MODELS } from './models.js';
import {
  decodeResponse,
  decodeState,
  decodeStatus,
  encodeCommand,
  isValidUnitId,
  parseUnitTopic,
  QOS_COMMANDS,
  QOS_STATUS,
  type ResponseMessage,
  serverSubscriptions,
  TOPIC_COMMANDS,
  TOPIC_RESPONSES,
  TOPIC_ROOT,
  TOPIC_STATE,
  TOPIC_STATUS,
  unitTopic,
  unitTopicPrefix,
} from './protocol.js';

const DROP_LOG_INTERVAL_MS = 60_000;

/** How late an answer may come and still settle its command (CommandOutcomeResolved). */
const LATE_ANSWER_MS = 10 * 60_000;
/** How long a unit has to answer a state request sent after a broker reconnect. */
const STATE_REQUEST_MS = 15_000;
/** Clocks of units and fleetgate differ: a status this much older than the gap still counts. */
const STATUS_CLOCK_SKEW_MS = 5_000;

interface Pending {
  unitId: string;
  flowId: string;
  /** The unit answered ACCEPTED: it has the command (SPEC §1, delivered vs. not). */
  delivered: boolean;
  signal: AbortSignal;
  onAbort: () => void;
  resolve: (outcome: CommandOutcome) => void;
}

type MessageHandler = (topic: string, payload: Buffer, packet: { retain?: boolean }) => void;

/**
 * Adapter for fleetgate's own device protocol, fleetgate/v1 over MQTT (docs/mqtt-protocol.md).
 * Every instance subscribes to every unit's responses, state and status; the retained status
 * topic tells any instance which units are online, and responses for commands another instance
 * sent are ignored.
 */
export class FleetgateMqttAdapter implements TelematicsAdapter {
  readonly brand = FLEETGATE_BRAND;
  readonly displayName = 'fleetgate MQTT (fleetgate/v1)';
  readonly models = FLEETGATE_MODELS;
  readonly requiresUnitPassword = true;
  readonly unitsConnectToThisProcess = true;

  private ctx: AdapterContext | undefined;
  private logger: Logger | undefined;
  private readonly pending = new Map<string, Pending>();
  /**
   * Commands that ended without their answer although the unit had them (no-answer, delivered):
   * a final answer that comes later is handed to the service (sink.lateAnswer), which settles the
   * record. Bounded; an answer later than LATE_ANSWER_MS is only logged.
   */
  private readonly ended = new LruMap<string, { flowId: string; unitId: string; at: number }>(10_000);
  /** Unit id → online, as last seen on its status topic. Absent = unknown = not online. */
  private readonly online = new Map<string, boolean>();
  private handler: MessageHandler | undefined;
  private subscriptions: string[] = [];
  private readonly lastDropLog = new Map<string, number>();
  /** Units whose retained status is being read again (readStatusAgain). */
  private readonly statusReads = new Map<string, Promise<void>>();
  /**
   * While this instance's broker connection was away, units that connected in the meantime sent
   * their first state report to no one (QoS 0, no subscriber). Set when the connection is lost;
   * after it is back, each unit whose retained `online` is newer is asked for its state.
   */
  private disconnectedAt: number | undefined;
  private catchUpSince: { from: number; until: number } | undefined;
  /** State requests sent after a reconnect: command id → unit id. */
  private readonly stateRequests = new LruMap<string, { unitId: string; until: number }>(100_000);
  /**
   * Until then, retained statuses are the replay of this instance's first subscription, and may
   * tell of units that connected while no instance ran (catchUpUnrecorded).
   */
  private firstReplayUntil = 0;
  private catchUpFailureLogged = false;
  private connectionListeners: Array<[string, () => void]> = [];

  async start(ctx: AdapterContext): Promise<void> {
    this.ctx = ctx;
    this.logger = ctx.logger.child({ adapter: FLEETGATE_BRAND });
    const handler: MessageHandler = (topic, payload, packet) => {
      // Other adapters share this client: leave their topics alone, cheaply.
      if (!topic.startsWith(TOPIC_ROOT)) return;
      try {
        this.onMessage(topic, payload, packet.retain === true);
      } catch (err) {
        this.logger?.error({ err, topic }, 'fleetgate/v1 message handling failed');
      }
    };
    this.handler = handler;
    ctx.mqtt.on('message', handler);
    const lost = (): void => {
      this.disconnectedAt ??= Date.now();
    };
    const back = (): void => {
      if (this.disconnectedAt === undefined) return;
      // The retained statuses come right after mqtt.js subscribes again.
      this.catchUpSince = { from: this.disconnectedAt - STATUS_CLOCK_SKEW_MS, until: Date.now() + STATE_REQUEST_MS };
      this.disconnectedAt = undefined;
    };
    this.connectionListeners = [
      ['close', lost],
      ['connect', back],
    ];
    for (const [event, listener] of this.connectionListeners) ctx.mqtt.on(event as 'close', listener);
    // Retained status messages of every unit arrive right after this (docs/mqtt-protocol.md §7).
    // QoS 0 on this leg: the session is clean, so QoS 1 would not survive a reconnect either, and
    // on a live TCP connection nothing is lost; it saves one PUBACK per message (~10k/s path).
    // The embedded broker serves one instance; an external one may serve many (aedes has no $share).
    this.subscriptions = serverSubscriptions(ctx.sharedBroker);
    this.firstReplayUntil = Date.now() + STATE_REQUEST_MS;
    await ctx.mqtt.subscribeAsync(this.subscriptions, { qos: 0 });
  }

  async stop(): Promise<void> {
    const ctx = this.ctx;
    if (!ctx) return;
    if (this.handler) ctx.mqtt.off('message', this.handler);
    this.handler = undefined;
    for (const [event, listener] of this.connectionListeners) ctx.mqtt.off(event as 'close', listener);
    this.connectionListeners = [];
    for (const [id, p] of this.pending) this.finish(id, p, { kind: 'no-answer', delivered: p.delivered });
    if (ctx.mqtt.connected) {
      await ctx.mqtt.unsubscribeAsync(this.subscriptions).catch(() => undefined);
    }
    this.online.clear();
    this.ctx = undefined;
  }

  async onVehicleAdded(vehicle: Vehicle, secrets: { password?: string }): Promise<void> {
    const ctx = this.requireContext();
    const unitId = vehicle.telematics_unit_id;
    if (!isValidUnitId(unitId)) {
      throw new Error(`telematics unit id '${unitId}' cannot be used in MQTT topics (1–128 of A–Z a–z 0–9 _ . : -)`);
    }
    if (!secrets.password) throw new Error('fleetgate/v1 units need a password');
    await ctx.broker.provisionUnit(unitId, secrets.password, unitTopicPrefix(unitId));
  }

  async onVehicleRemoved(vehicle: Vehicle): Promise<void> {
    const ctx = this.requireContext();
    const unitId = vehicle.telematics_unit_id;
    await ctx.broker.removeUnit(unitId);
    this.online.delete(unitId);
    // An empty retained message deletes the retained status (MQTT 3.1.1 §3.3.1.3).
    await ctx.mqtt.publishAsync(unitTopic(unitId, TOPIC_STATUS), '', { qos: QOS_STATUS, retain: true });
  }

  /** Whether the unit is online as far as this instance knows (fed by the retained status). */
  isOnline(unitId: string): boolean {
    return this.online.get(unitId) === true;
  }

  execute(request: CommandRequest): Promise<CommandOutcome> {
    return this.attempt(request, true);
  }

  /** execute(); after a status read (`mayReadStatus` false), every check runs again. */
  private attempt(request: CommandRequest, mayReadStatus: boolean): Promise<CommandOutcome> {
    const ctx = this.ctx;
    if (!ctx) return Promise.resolve({ kind: 'not-connected', reason: 'The adapter is not started.' });
    if (request.signal.aborted) return Promise.resolve({ kind: 'no-answer', delivered: false });
    const unitId = request.vehicle.telematics_unit_id;
    // Our own broker being down is fleetgate's outage (503), not the unit's (SPEC §2).
    if (!ctx.mqtt.connected) {
      return Promise.resolve({ kind: 'unavailable', reason: 'fleetgate is not connected to its MQTT broker.' });
    }
    const online = this.online.get(unitId);
    if (online === undefined && mayReadStatus) {
      // Never seen: its retained status may have been lost on the way (readStatusAgain).
      return untilAborted(this.readStatusAgain(ctx, unitId), request.signal).then(() => this.attempt(request, false));
    }
    if (online !== true) return Promise.resolve(OFFLINE);
    return this.dispatch(ctx, request, unitId);
  }

  /**
   * Reads a unit's retained status again (at most one read per unit at a time). A broker may drop
   * messages for a client that lags behind (Mosquitto beyond `max_queued_messages`, as when
   * thousands of units connect at once), and a lost `online` would otherwise leave the unit
   * unknown, so offline to this instance, until its next status. Subscribing to the unit's status
   * topic replays the retained message; the broker answers the unsubscribe after it on the same
   * connection.
   */
  private readStatusAgain(ctx: AdapterContext, unitId: string): Promise<void> {
    let read = this.statusReads.get(unitId);
    if (read === undefined) {
      const topic = unitTopic(unitId, TOPIC_STATUS);
      read = ctx.mqtt
        .subscribeAsync(topic, { qos: 0 })
        .then(() => ctx.mqtt.unsubscribeAsync(topic))
        .then(
          () => undefined,
          (err: unknown) => this.logger?.warn({ err, unit: unitId }, 'reading a unit status again failed'),
        )
        .finally(() => this.statusReads.delete(unitId));
      this.statusReads.set(unitId, read);
    }
    return read;
  }

  private dispatch(ctx: AdapterContext, request: CommandRequest, unitId: string): Promise<CommandOutcome> {
    const id = randomUUID();
    const payload = encodeCommand(id, request.command, new Date(), request.deadline);
    return new Promise<CommandOutcome>((resolve) => {
      const signal = request.signal;
      const pending: Pending = {
        unitId,
        flowId: request.flowId,
        delivered: false,
        signal,
        resolve,
        onAbort: () => this.finish(id, pending, { kind: 'no-answer', delivered: pending.delivered }),
      };
      this.pending.set(id, pending);
      signal.addEventListener('abort', pending.onAbort, { once: true });
      ctx.mqtt.publish(unitTopic(unitId, TOPIC_COMMANDS), payload, { qos: QOS_COMMANDS }, (err) => {
        if (!err) return;
        this.logger?.warn({ err, unit: unitId, flow_id: request.flowId }, 'publishing a command failed');
        this.finish(id, pending, { kind: 'unavailable', reason: 'fleetgate lost its MQTT broker connection.' });
      });
    });
  }

  private finish(id: string, pending: Pending, outcome: CommandOutcome): void {
    if (this.pending.get(id) !== pending) return;
    this.pending.delete(id);
    pending.signal.removeEventListener('abort', pending.onAbort);
    if (outcome.kind === 'no-answer' && outcome.delivered) {
      this.ended.set(id, { flowId: pending.flowId, unitId: pending.unitId, at: Date.now() });
    }
    pending.resolve(outcome);
  }

  private onMessage(topic: string, payload: Buffer, retained: boolean): void {
    const parsed = parseUnitTopic(topic);
    if (!parsed) return;
    switch (parsed.kind) {
      case TOPIC_RESPONSES:
        this.onResponse(parsed.unitId, payload);
        return;
      case TOPIC_STATE:
        this.onState(parsed.unitId, payload);
        return;
      case TOPIC_STATUS:
        this.onStatus(parsed.unitId, payload, retained);
        return;
    }
  }

  private onResponse(unitId: string, payload: Buffer): void {
    const decoded = decodeResponse(payload);
    if (!decoded.ok) {
      this.warnDropped(unitId, decoded.error, 'dropped a malformed response');
      return;
    }
    const response = decoded.value;
    const pending = this.pending.get(response.id);
    // Unknown ids: another instance's command, or one that already ended here.
    if (!pending) {
      if (this.onStateRequestAnswer(unitId, response)) return;
      this.onLateResponse(unitId, response);
      return;
    }
    if (pending.unitId !== unitId) {
      this.logger?.warn({ unit: unitId, expected: pending.unitId }, 'a unit answered for another unit; dropped');
      return;
    }
    if (response.status === 'ACCEPTED') {
      pending.delivered = true;
      return;
    }
    this.finish(response.id, pending, this.toOutcome(response));
  }

  /** A final answer to a command that ended here as no-answer (delivered): settled by the service. */
  private onLateResponse(unitId: string, response: ResponseMessage): void {
    const ended = this.ended.get(response.id);
    if (!ended || ended.unitId !== unitId || response.status === 'ACCEPTED') return;
    this.ended.delete(response.id);
    if (Date.now() - ended.at > LATE_ANSWER_MS) {
      this.logger?.warn({ unit: unitId, flow_id: ended.flowId }, 'a unit answered a command too late to settle it');
      return;
    }
    this.ctx?.sink.lateAnswer(ended.flowId, this.toOutcome(response)).catch((err: unknown) => {
      this.logger?.warn({ err, flow_id: ended.flowId }, 'settling a late command answer failed');
    });
  }

  private toOutcome(response: ResponseMessage): CommandOutcome {
    const reason = response.reason ?? '';
    switch (response.status) {
      case 'SUCCEEDED':
        // As the unit sent it (a plain object, decodeResponse): the command service validates it
        // against the catalogue and the vehicle's capabilities, once, for every adapter.
        return { kind: 'succeeded', state: (response.state ?? {}) as VehicleState };
      case 'REFUSED':
        return { kind: 'refused', reason: reason || 'The unit refused the command.' };
      case 'UNSUPPORTED':
        return { kind: 'not-supported', reason: reason || 'The unit does not support the command.' };
      default:
        return { kind: 'failed', reason: reason || 'The unit reported a failure.' };
    }
  }

  private onState(unitId: string, payload: Buffer): void {
    const decoded = decodeState(payload);
    if (!decoded.ok) {
      this.warnDropped(unitId, decoded.error, 'dropped a malformed state report');
      return;
    }
    const ctx = this.ctx;
    if (!ctx) return;
    // A unit that reports is connected. Not online here means its last `online` was lost (a broker
    // drops messages to a subscriber that lags, as in a reconnect storm): its retained status,
    // read again, says so (the 15,000-unit Mosquitto restart left a fifth of the units OFFLINE).
    if (this.online.get(unitId) !== true) void this.readStatusAgain(ctx, unitId);
    ctx.sink.state(unitId, decoded.value.state).catch((err: unknown) => {
      this.logger?.error({ err, unit: unitId }, 'storing a state report failed');
    });
  }

  private onStatus(unitId: string, payload: Buffer, retained: boolean): void {
    // An empty retained message is the status of a removed vehicle being cleared.
    if (payload.length === 0) {
      this.online.delete(unitId);
      return;
    }
    const decoded = decodeStatus(payload);
    if (!decoded.ok) {
      this.warnDropped(unitId, decoded.error, 'dropped a malformed status message');
      return;
    }
    const isOnline = decoded.value.status === 'online';
    if (retained && isOnline) {
      this.catchUp(unitId, decoded.value.timestamp);
      this.catchUpUnrecorded(unitId, decoded.value.timestamp);
    }
    const known = this.online.get(unitId);
    this.online.set(unitId, isOnline);
    if (!isOnline) this.abandonCommandsOf(unitId);
    if (known === isOnline) return;
    // A live message happens now; a retained one, replayed on subscribe, happened when it was sent
    // (a last will carries its connection's time, so it can only be earlier than the truth).
    const at =
      retained && decoded.value.timestamp
        ? new Date(Math.min(Date.parse(decoded.value.timestamp), Date.now()))
        : new Date();
    this.ctx?.sink.connection(unitId, isOnline, at).catch((err: unknown) => {
      this.logger?.error({ err, unit: unitId }, 'recording a connection change failed');
    });
  }

  /**
   * A retained `online` replayed after this instance's broker connection came back: a unit that
   * connected while the connection was away may have sent its state to no one, so it is asked
   * for its state (REQUEST_VEHICLE_STATE; not a command record, nothing the unit acts on).
   */
  private catchUp(unitId: string, timestamp: string | undefined): void {
    const since = this.catchUpSince;
    const ctx = this.ctx;
    if (!since || !ctx || !timestamp) return;
    const now = Date.now();
    if (now > since.until) {
      this.catchUpSince = undefined;
      return;
    }
    if (Date.parse(timestamp) < since.from) return;
    this.requestState(ctx, unitId);
  }

  /**
   * A retained `online` in the replay of this instance's first subscription: a unit that connected
   * while no instance ran (a single production instance restarting while units reconnect) sent the
   * state report of its connecting to no one (QoS 0, no subscriber). If no report at least as new
   * as that `online` is stored (both stamped by the unit's clock), it is asked for its state. The
   * vehicle's life status, recorded since that `online`, spares the state read for connections an
   * instance saw (a unit that reconnects while held ONLINE is not recorded again: it is read).
   */
  private catchUpUnrecorded(unitId: string, timestamp: string | undefined): void {
    const ctx = this.ctx;
    if (!ctx || !timestamp || Date.now() > this.firstReplayUntil) return;
    const online = Date.parse(timestamp);
    if (Number.isNaN(online)) return;
    const check = async (): Promise<void> => {
      const vehicle = await ctx.vehicles.byUnit(unitId);
      if (!vehicle) return;
      if (vehicle.life_status === 'ONLINE' && Date.parse(vehicle.life_status_modified_at) >= online) return;
      const reported = await ctx.vehicles.lastReportedAt(unitId);
      if (reported !== undefined && Date.parse(reported) >= online) return;
      if (this.ctx === ctx) this.requestState(ctx, unitId);
    };
    check().catch((err: unknown) => {
      // Once per start: in a storm with the database away, thousands would fail alike.
      if (this.catchUpFailureLogged) return;
      this.catchUpFailureLogged = true;
      this.logger?.warn({ err, unit: unitId }, 'checking units that connected while no instance ran failed');
    });
  }

  /** REQUEST_VEHICLE_STATE, not a command record: the answer is stored as a report (onStateRequestAnswer). */
  private requestState(ctx: AdapterContext, unitId: string): void {
    const id = randomUUID();
    const now = Date.now();
    const until = now + STATE_REQUEST_MS;
    this.stateRequests.set(id, { unitId, until });
    const payload = encodeCommand(id, 'REQUEST_VEHICLE_STATE', new Date(now), new Date(until));
    ctx.mqtt.publish(unitTopic(unitId, TOPIC_COMMANDS), payload, { qos: QOS_COMMANDS }, (err) => {
      if (err) this.stateRequests.delete(id);
    });
  }

  /** The answer to a catch-up state request: its state is stored as a report. */
  private onStateRequestAnswer(unitId: string, response: ResponseMessage): boolean {
    const request = this.stateRequests.get(response.id);
    if (!request || request.unitId !== unitId) return false;
    if (response.status === 'ACCEPTED') return true;
    this.stateRequests.delete(response.id);
    if (response.status !== 'SUCCEEDED' || !response.state || Date.now() > request.until) return true;
    this.ctx?.sink.state(unitId, response.state as VehicleState).catch((err: unknown) => {
      this.logger?.error({ err, unit: unitId }, 'storing a state report failed');
    });
    return true;
  }

  /** A unit that went offline answers nothing more: its commands end now (SPEC §1). */
  private abandonCommandsOf(unitId: string): void {
    if (this.pending.size === 0) return;
    for (const [id, p] of this.pending) {
      if (p.unitId === unitId) this.finish(id, p, { kind: 'no-answer', delivered: p.delivered });
    }
  }

  /** Logs a dropped message at most once a minute per unit: a broken unit must not flood the logs. */
  private warnDropped(unitId: string, error: string, message: string): void {
    const now = Date.now();
    if ((this.lastDropLog.get(unitId) ?? 0) > now - DROP_LOG_INTERVAL_MS) return;
    if (this.lastDropLog.size > 100_000) this.lastDropLog.clear();
    this.lastDropLog.set(unitId, now);
    this.logger?.warn({ unit: unitId, error }, message);
  }

  private requireContext(): AdapterContext {
    if (!this.ctx) throw new Error('the FLEETGATE adapter is not started');
    return this.ctx;
  }
}

const OFFLINE: CommandOutcome = { kind: 'not-connected', reason: 'Its telematics unit is offline.' };

/** `work`, or less if `signal` aborts first (what is still running goes on by itself). */
function untilAborted(work: Promise<void>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = () => {
      signal.removeEventListener('abort', done);
      resolve();
    };
    signal.addEventListener('abort', done, { once: true });
    void work.then(done);
  });
}
