import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { CommandName } from '../../domain/commands.js';
import { filterState, mergeState, type VehicleState } from '../../domain/state-catalogue.js';
import type { Vehicle } from '../../domain/vehicle.js';
import type { AdapterContext, CommandOutcome, CommandRequest, TelematicsAdapter } from '../adapter.js';
import type { AvlRecord } from './codec.js';
import type { FramingLimits } from './framing.js';
import {
  judgeAnswer,
  recordsToState,
  TELTONIKA_MODELS,
  type TeltonikaCommandSpec,
  type TeltonikaModel,
  teltonikaModel,
} from './models.js';
import type { TeltonikaSession } from './session.js';
import { startTeltonikaTransport, type TeltonikaTransport } from './transport.js';

export const TELTONIKA_BRAND = 'TELTONIKA';

/**
 * Internal topics on fleetgate's own broker (docs/teltonika.md "Several instances"): a unit's TCP
 * connection lives on one instance, so a command received elsewhere travels to the holder.
 */
export const INTERNAL_ROOT = 'fleetgate/internal/teltonika/';
const unitTopic = (imei: string, leaf: 'commands' | 'claim' | 'evict'): string => `${INTERNAL_ROOT}${imei}/${leaf}`;
const replyTopic = (instance: string): string => `${INTERNAL_ROOT}replies/${instance}`;

export interface TeltonikaAdapterOptions {
  /** Listen address; default fleetgate's listen host. */
  host?: string;
  handshakeTimeoutMs?: number;
  idleTimeoutMs?: number;
  frameTimeoutMs?: number;
  maxConnections?: number;
  maxUnauthenticated?: number;
  /** Handshakes in progress from one source address (docs/teltonika.md). */
  maxUnauthenticatedPerSource?: number;
  /** How long to wait for the instance holding a unit to accept a routed command. */
  routeAcceptTimeoutMs?: number;
  staleAnswerWindowMs?: number;
  limits?: FramingLimits;
}

const DEFAULTS = {
  handshakeTimeoutMs: 10_000,
  // FMB units send a record at least hourly when parked, and keep the link open between.
  idleTimeoutMs: 75 * 60_000,
  frameTimeoutMs: 30_000,
  // STACK.md: each process may open 20,000 files; leave room for the database, broker and HTTP.
  maxConnections: 15_000,
  maxUnauthenticated: 512,
  // A login takes one round trip; 32 at once from one address leaves room for units behind a
  // shared NAT logging in together after an outage, and 480 handshake slots for everyone else.
  maxUnauthenticatedPerSource: 32,
  routeAcceptTimeoutMs: 2_000,
};

/** A routed command (internal topic `<imei>/commands`). */
interface RoutedCommand {
  correlation_id: string;
  reply_to: string;
  from: string;
  command: CommandName;
  vehicle_model_id: string;
  flow_id: string;
  expires_at: string;
}

/** The holder's replies: first `accepted`, then the outcome. */
type RoutedReply =
  | { correlation_id: string; stage: 'accepted' }
  | { correlation_id: string; stage: 'outcome'; outcome: CommandOutcome };

interface RemotePending {
  onAccepted(): void;
  onOutcome(outcome: CommandOutcome): void;
}

type MessageHandler = (topic: string, payload: Buffer) => void;

/**
 * Direct TCP adapter for Teltonika units (telematics brand TELTONIKA, SPEC §6): IMEI login,
 * Codec 8 / 8 Extended records → state, generic commands → Codec 12 text commands per model
 * (models.ts). A unit logs in only when a vehicle of this brand has its IMEI as
 * `telematics_unit_id`.
 */
export class TeltonikaAdapter implements TelematicsAdapter {
  readonly brand = TELTONIKA_BRAND;
  readonly displayName = 'Teltonika (direct TCP, Codec 8 / 8E / 12)';
  readonly models = TELTONIKA_MODELS;
  readonly requiresUnitPassword = false;
  readonly unitsConnectToThisProcess = true;

  private ctx: AdapterContext | undefined;
  private logger: Logger | undefined;
  private transport: TeltonikaTransport | undefined;
  private handler: MessageHandler | undefined;
  private readonly options: typeof DEFAULTS & TeltonikaAdapterOptions;
  /** Logged-in sessions of this instance by IMEI. */
  private readonly sessions = new Map<string, TeltonikaSession>();
  /** Sessions closed because the unit is now held elsewhere: no offline report for them. */
  private readonly handedOver = new WeakSet<TeltonikaSession>();
  private readonly lastState = new Map<string, VehicleState>();
  private readonly remote = new Map<string, RemotePending>();

  constructor(options: TeltonikaAdapterOptions = {}) {
    this.options = { ...DEFAULTS, ...options };
  }

  /** The bound TCP port (after start). */
  get port(): number {
    if (!this.transport) throw new Error('Teltonika adapter not started');
    return this.transport.port;
  }

  /** IMEIs with a logged-in session on this instance. */
  get endpoint(): string | undefined {
    if (!this.transport || !this.ctx) return undefined;
    const host = this.options.host ?? this.ctx.listenHost;
    return `tcp://${host.includes(':') ? `[${host}]` : host}:${this.transport.port}`;
  }

  get connectedUnits(): string[] {
    return [...this.sessions.keys()];
  }

  async start(ctx: AdapterContext): Promise<void> {
    this.ctx = ctx;
    this.logger = ctx.logger.child({ adapter: TELTONIKA_BRAND });
    const handler: MessageHandler = (topic, payload) => {
      if (!topic.startsWith(INTERNAL_ROOT)) return;
      try {
        this.onInternalMessage(topic, payload);
      } catch (err) {
        this.logger?.warn({ err, topic }, 'teltonika: bad internal message');
      }
    };
    this.handler = handler;
    ctx.mqtt.on('message', handler);
    await ctx.mqtt.subscribeAsync(replyTopic(ctx.instanceId), { qos: 1 });
    const o = this.options;
    this.transport = await startTeltonikaTransport({
      host: o.host ?? ctx.listenHost,
      port: Number(ctx.settings.port ?? 0),
      maxConnections: o.maxConnections,
      maxUnauthenticated: o.maxUnauthenticated,
      maxUnauthenticatedPerSource: o.maxUnauthenticatedPerSource,
      logger: this.logger,
      session: {
        handshakeTimeoutMs: o.handshakeTimeoutMs,
        idleTimeoutMs: o.idleTimeoutMs,
        frameTimeoutMs: o.frameTimeoutMs,
        staleAnswerWindowMs: o.staleAnswerWindowMs,
        limits: o.limits,
        authorize: (imei) => this.authorize(imei),
        onRecords: (imei, records) => this.onRecords(imei, records),
      },
      onSession: (session) => this.track(session),
    });
    this.logger.info({ port: this.transport.port }, 'teltonika: listening for units');
  }

  async stop(): Promise<void> {
    const ctx = this.ctx;
    if (!ctx) return;
    await this.transport?.close();
    this.transport = undefined;
    if (this.handler) ctx.mqtt.off('message', this.handler);
    this.handler = undefined;
    for (const p of this.remote.values()) p.onOutcome({ kind: 'no-answer', delivered: true });
    this.remote.clear();
    this.ctx = undefined;
  }

  async onVehicleAdded(_vehicle: Vehicle): Promise<void> {
    // Nothing to provision: a unit logs in by IMEI once its vehicle exists.
  }

  async onVehicleRemoved(vehicle: Vehicle): Promise<void> {
    const imei = vehicle.telematics_unit_id;
    this.lastState.delete(imei);
    this.sessions.get(imei)?.close('server-closed', 'vehicle removed');
    await this.publish(unitTopic(imei, 'evict'), { from: this.ctx?.instanceId });
  }

  async execute(request: CommandRequest): Promise<CommandOutcome> {
    const { vehicle, command } = request;
    const model = teltonikaModel(vehicle.vehicle_model_id);
    const spec = model?.commands[command];
    if (!model || !spec) return { kind: 'not-supported', reason: `${vehicle.vehicle_model_id} has no ${command}` };
    const imei = vehicle.telematics_unit_id;
    const session = this.sessions.get(imei);
    let outcome: CommandOutcome;
    if (session) {
      outcome = await this.executeLocal(session, model, command, request.signal, request.flowId);
    } else if (vehicle.life_status === 'ONLINE') {
      outcome = await this.executeRemote(imei, request);
    } else {
      return { kind: 'not-connected', reason: 'The Teltonika unit is not connected.' };
    }
    if (outcome.kind === 'succeeded')
      return { ...outcome, state: filterState(outcome.state, vehicle.capabilities.vehicle_state) };
    return outcome;
  }

  // --- sessions ---------------------------------------------------------------------------

  private track(session: TeltonikaSession): void {
    session.once('online', (imei) => {
      const previous = this.sessions.get(imei);
      if (previous && previous !== session) {
        this.handedOver.add(previous);
        previous.close('replaced');
      }
      this.sessions.set(imei, session);
      void this.onOnline(imei, session);
    });
    session.once('closed', (reason, detail) => {
      const imei = session.imei;
      if (!imei || this.sessions.get(imei) !== session) return;
      this.sessions.delete(imei);
      this.logger?.info({ imei, reason, detail }, 'teltonika: unit disconnected');
      void this.ctx?.mqtt.unsubscribeAsync(`${INTERNAL_ROOT}${imei}/+`).catch(() => undefined);
      if (this.handedOver.has(session)) return;
      void this.ctx?.sink.connection(imei, false, new Date()).catch((err) => {
        this.logger?.error({ err, imei }, 'teltonika: recording offline failed');
      });
    });
  }

  private async onOnline(imei: string, session: TeltonikaSession): Promise<void> {
    const ctx = this.ctx;
    if (!ctx) return;
    this.logger?.info({ imei }, 'teltonika: unit logged in');
    try {
      await ctx.mqtt.subscribeAsync(`${INTERNAL_ROOT}${imei}/+`, { qos: 1 });
      // Another instance still holding an older connection of this unit drops it silently.
      await this.publish(unitTopic(imei, 'claim'), {
        from: ctx.instanceId,
        at: session.connectedAt.toISOString(),
      });
    } catch (err) {
      this.logger?.warn(
        { err, imei },
        'teltonika: internal subscription failed; routed commands will not reach this unit',
      );
    }
    await ctx.sink.connection(imei, true, new Date()).catch((err) => {
      this.logger?.error({ err, imei }, 'teltonika: recording online failed');
    });
  }

  private async authorize(imei: string): Promise<boolean> {
    const vehicle = await this.findVehicle(imei);
    return vehicle !== undefined && teltonikaModel(vehicle.vehicle_model_id) !== undefined;
  }

  /** The vehicle of a unit, from the services' shared cache. */
  private async findVehicle(imei: string): Promise<Vehicle | undefined> {
    return this.ctx?.vehicles.byUnit(imei);
  }

  private async onRecords(imei: string, records: AvlRecord[]): Promise<void> {
    const vehicle = await this.findVehicle(imei);
    const model = vehicle && teltonikaModel(vehicle.vehicle_model_id);
    if (!model) throw new Error('unit no longer belongs to a vehicle');
    const state = recordsToState(model, records);
    if (Object.keys(state).length === 0) return;
    this.lastState.set(imei, mergeState(this.lastState.get(imei) ?? {}, state));
    // Awaited: the unit gets its acknowledgement only once the state is stored.
    await this.ctx?.sink.state(imei, state);
  }

  // --- commands ---------------------------------------------------------------------------

  private async executeLocal(
    session: TeltonikaSession,
    model: TeltonikaModel,
    command: CommandName,
    signal: AbortSignal,
    flowId: string,
  ): Promise<CommandOutcome> {
    const spec = model.commands[command];
    if (!spec) return { kind: 'not-supported', reason: `${model.id} has no ${command}` };
    const imei = session.imei as string;
    // getrecord: the fresh record may arrive before the text answer, so listen first.
    const fresh = spec.awaitRecord ? session.nextRecords({ signal }) : undefined;
    // An answer after the budget settles the command through the service (CommandOutcomeResolved).
    const onLate = (text: string): void => {
      this.ctx?.sink.lateAnswer(flowId, this.judge(spec, imei, text)).catch((err: unknown) => {
        this.ctx?.logger.warn({ err, flow_id: flowId }, 'settling a late command answer failed');
      });
    };
    const answer = await session.sendCommand(spec.text, { signal, onLate });
    if (answer.kind === 'closed') {
      return answer.delivered
        ? { kind: 'no-answer', delivered: true }
        : { kind: 'not-connected', reason: 'The unit disconnected.' };
    }
    if (answer.kind === 'no-answer') return answer;
    // getrecord's state is the fresh record's: judged once that is in.
    if (judgeAnswer(spec, answer.text) === 'succeeded' && fresh && (await fresh) === undefined)
      return { kind: 'no-answer', delivered: true };
    return this.judge(spec, imei, answer.text);
  }

  /** A unit's text answer as an outcome; a success carries the state it implies. */
  private judge(spec: TeltonikaCommandSpec, imei: string, text: string): CommandOutcome {
    const verdict = judgeAnswer(spec, text);
    if (verdict === 'refused') return { kind: 'refused', reason: text };
    if (verdict === 'failed') return { kind: 'failed', reason: text || 'empty answer' };
    let state = this.lastState.get(imei) ?? {};
    if (spec.resultingState) {
      const timestamp = new Date().toISOString();
      const implied: VehicleState = {};
      for (const [name, value] of Object.entries(spec.resultingState)) implied[name] = { timestamp, value };
      state = mergeState(state, implied);
      this.lastState.set(imei, state);
    }
    return { kind: 'succeeded', state };
  }

  /**
   * The unit is online in the store but not here: hand the command to the instance holding its
   * connection. No instance accepting within routeAcceptTimeoutMs means nobody holds it (a stale
   * ONLINE, e.g. after a crash): not connected, never delivered.
   */
  private executeRemote(imei: string, request: CommandRequest): Promise<CommandOutcome> {
    const ctx = this.ctx;
    if (!ctx) return Promise.resolve({ kind: 'not-connected', reason: 'adapter stopped' });
    const correlation = randomUUID();
    const message: RoutedCommand = {
      correlation_id: correlation,
      reply_to: replyTopic(ctx.instanceId),
      from: ctx.instanceId,
      command: request.command,
      vehicle_model_id: request.vehicle.vehicle_model_id,
      flow_id: request.flowId,
      expires_at: request.deadline.toISOString(),
    };
    return new Promise<CommandOutcome>((resolve) => {
      let accepted = false;
      const finish = (outcome: CommandOutcome): void => {
        clearTimeout(acceptTimer);
        request.signal.removeEventListener('abort', onAbort);
        this.remote.delete(correlation);
        resolve(outcome);
      };
      const onAbort = (): void => finish({ kind: 'no-answer', delivered: accepted });
      const acceptTimer = setTimeout(
        () => finish({ kind: 'not-connected', reason: 'No fleetgate instance holds the unit’s connection.' }),
        Math.min(this.options.routeAcceptTimeoutMs, Math.max(0, request.deadline.getTime() - Date.now())),
      );
      request.signal.addEventListener('abort', onAbort, { once: true });
      this.remote.set(correlation, {
        onAccepted: () => {
          accepted = true;
          clearTimeout(acceptTimer);
        },
        onOutcome: finish,
      });
      this.publish(unitTopic(imei, 'commands'), message).catch(() =>
        finish({ kind: 'not-connected', reason: 'fleetgate’s broker is unreachable; the command was not routed.' }),
      );
    });
  }

  private onInternalMessage(topic: string, payload: Buffer): void {
    const ctx = this.ctx;
    if (!ctx) return;
    const body = JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
    if (topic === replyTopic(ctx.instanceId)) {
      const reply = body as unknown as RoutedReply;
      const pending = this.remote.get(String(reply.correlation_id));
      if (!pending) return;
      if (reply.stage === 'accepted') pending.onAccepted();
      else if (reply.stage === 'outcome' && reply.outcome && typeof reply.outcome.kind === 'string')
        pending.onOutcome(reply.outcome);
      return;
    }
    const [imei, leaf] = topic.slice(INTERNAL_ROOT.length).split('/');
    if (!imei) return;
    const session = this.sessions.get(imei);
    if (!session) return;
    if (leaf === 'commands') return void this.serveRouted(session, body as unknown as RoutedCommand);
    if (body.from === ctx.instanceId) return;
    if (leaf === 'claim') {
      // The unit logged in elsewhere; this connection is a stale leftover.
      this.handedOver.add(session);
      session.close('replaced', `unit now connected to ${String(body.from)}`);
    } else if (leaf === 'evict') {
      session.close('server-closed', 'vehicle removed');
    }
  }

  /** Executes a command another instance routed here and sends it the outcome. */
  private async serveRouted(session: TeltonikaSession, msg: RoutedCommand): Promise<void> {
    const deadline = Date.parse(msg.expires_at);
    const model = teltonikaModel(msg.vehicle_model_id);
    if (!model || !Number.isFinite(deadline) || deadline <= Date.now() || typeof msg.reply_to !== 'string') return;
    if (!msg.reply_to.startsWith(`${INTERNAL_ROOT}replies/`)) return;
    const reply = (r: RoutedReply): Promise<void> => this.publish(msg.reply_to, r).catch(() => undefined);
    await reply({ correlation_id: msg.correlation_id, stage: 'accepted' });
    // The routing instance's budget, carried as its deadline: this instance's one signal for it.
    const signal = AbortSignal.timeout(Math.max(0, deadline - Date.now()));
    const outcome = await this.executeLocal(session, model, msg.command, signal, msg.flow_id);
    await reply({ correlation_id: msg.correlation_id, stage: 'outcome', outcome });
  }

  private async publish(topic: string, body: unknown): Promise<void> {
    const mqtt = this.ctx?.mqtt;
    if (!mqtt) throw new Error('adapter stopped');
    await mqtt.publishAsync(topic, JSON.stringify(body), { qos: 1 });
  }
}
