import { EventEmitter, once } from 'node:events';
import net from 'node:net';
import {
  ACK_LENGTH,
  type AvlCodec,
  type AvlIoElement,
  type AvlRecord,
  CODEC_8_EXTENDED,
  CRC_FIELD_LENGTH,
  decodePacket,
  encodeAvlPacket,
  encodeCommandResponse,
  encodeImei,
  ioElement,
  MSG_IMEI_ACCEPTED,
  PACKET_HEADER_LENGTH,
  PREAMBLE_LENGTH,
} from '../../telematics/teltonika/codec.js';
import { type TeltonikaModel, teltonikaModel } from '../../telematics/teltonika/models.js';

/**
 * A simulated Teltonika unit speaking the real protocol byte for byte over TCP: IMEI login,
 * periodic Codec 8 Extended records while it drives around, Codec 12 answers following its
 * model's command table (models.ts), and reconnects after a dropped connection. Behaviours let
 * tests make it refuse, fail or stay silent.
 */

export type TeltonikaUnitBehaviour = 'normal' | 'refuse' | 'fail' | 'silent';

export interface TeltonikaUnitOptions {
  host: string;
  port: number;
  imei: string;
  /** A model id of the Teltonika catalogue, e.g. `teltonika-tst-scooter`. */
  model: string;
  /** Records while connected; 0 = only on request (getrecord) and by `sendRecords()`. */
  reportIntervalMs?: number;
  answerDelayMs?: number;
  /** Reconnect after the connection dropped (not after a rejected login or stop()). */
  reconnect?: boolean;
  reconnectDelayMs?: number;
  codec?: AvlCodec;
  start?: { lat: number; lon: number };
}

/** What the simulated vehicle is doing. */
export interface SimulatedVehicle {
  lat: number;
  lon: number;
  speed: number;
  ignition: boolean;
  drivingEnabled: boolean;
  locked: boolean;
  odometerMeters: number;
  fuelPercent: number;
  gsm: number;
}

const DEFAULT_START = { lat: 52.520008, lon: 13.404954 };
const CAR_SPEED_KMH = 35;
const SCOOTER_SPEED_KMH = 18;

export class TeltonikaUnit extends EventEmitter<{
  connected: [];
  rejected: [];
  disconnected: [];
  command: [text: string];
  ack: [count: number];
}> {
  behaviour: TeltonikaUnitBehaviour = 'normal';
  readonly vehicle: SimulatedVehicle;
  readonly model: TeltonikaModel;
  /** Commands answered, records acknowledged. */
  readonly stats = { commands: 0, recordsAcked: 0, connects: 0 };

  private socket: net.Socket | undefined;
  private inbox = Buffer.alloc(0);
  private loggedIn = false;
  private stopped = false;
  private reportTimer: NodeJS.Timeout | undefined;
  /** Set by the first accepted login: from then on a lost connection is re-established. */
  private keepOnline = false;

  constructor(private readonly options: TeltonikaUnitOptions) {
    super();
    const model = teltonikaModel(options.model);
    if (!model) throw new Error(`unknown Teltonika model '${options.model}'`);
    this.model = model;
    const start = options.start ?? DEFAULT_START;
    this.vehicle = {
      lat: start.lat,
      lon: start.lon,
      speed: 0,
      ignition: false,
      drivingEnabled: false,
      locked: true,
      odometerMeters: 12_345_000,
      fuelPercent: 80,
      gsm: 4,
    };
  }

  get connected(): boolean {
    return this.loggedIn;
  }

  get imei(): string {
    return this.options.imei;
  }

  /** Connects and logs in; resolves true when accepted, false when the server rejects the IMEI. */
  async connect(): Promise<boolean> {
    this.stopped = false;
    const socket = net.createConnection({ host: this.options.host, port: this.options.port, noDelay: true });
    socket.setNoDelay(true);
    this.socket = socket;
    this.inbox = Buffer.alloc(0);
    this.loggedIn = false;
    socket.on('data', (chunk) => this.receive(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => this.onClose(socket));
    await once(socket, 'connect');
    socket.write(encodeImei(this.options.imei));
    const [accepted] = (await Promise.race([
      once(this, 'connected').then(() => [true]),
      once(this, 'rejected').then(() => [false]),
      once(socket, 'close').then(() => [false]),
    ])) as [boolean];
    return accepted;
  }

  /** Sends `count` records now; resolves with the server's acknowledged count. */
  async sendRecords(count = 1): Promise<number> {
    const socket = this.socket;
    if (!socket || !this.loggedIn) throw new Error('not logged in');
    const now = Date.now();
    const records = Array.from({ length: count }, (_, i) => this.record(new Date(now - (count - 1 - i) * 1000)));
    const ack = once(this, 'ack') as Promise<[number]>;
    socket.write(encodeAvlPacket(this.options.codec ?? CODEC_8_EXTENDED, records));
    const [n] = await ack;
    return n;
  }

  /** Writes raw bytes (tests use this for hostile input). */
  writeRaw(bytes: Buffer): void {
    this.socket?.write(bytes);
  }

  /** Drops the TCP connection as a lost radio link would; reconnects when enabled. */
  dropConnection(): void {
    this.socket?.destroy();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.reportTimer);
    const socket = this.socket;
    if (socket && !socket.destroyed) {
      const closed = once(socket, 'close');
      socket.destroy();
      await closed;
    }
  }

  private onClose(socket: net.Socket): void {
    if (socket !== this.socket) return;
    const wasIn = this.loggedIn;
    this.loggedIn = false;
    clearInterval(this.reportTimer);
    if (wasIn) this.emit('disconnected');
    if (this.stopped || !this.keepOnline || this.options.reconnect === false) return;
    setTimeout(() => {
      if (!this.stopped) this.connect().catch(() => undefined);
    }, this.options.reconnectDelayMs ?? 1_000).unref();
  }

  private receive(chunk: Buffer): void {
    this.inbox = Buffer.concat([this.inbox, chunk]);
    if (!this.loggedIn) {
      if (this.inbox.length < 1) return;
      const answer = this.inbox[0];
      this.inbox = this.inbox.subarray(1);
      if (answer !== MSG_IMEI_ACCEPTED) {
        this.stopped = true;
        this.keepOnline = false;
        this.emit('rejected');
        this.socket?.destroy();
        return;
      }
      this.loggedIn = true;
      this.keepOnline = true;
      this.stats.connects++;
      this.startReporting();
      this.emit('connected');
    }
    for (;;) {
      if (this.inbox.length < ACK_LENGTH) return;
      const first = this.inbox.readUInt32BE(0);
      // We always send at least one record, so a non-zero word is an acknowledgement and a
      // zero word is the preamble of a Codec 12 packet.
      if (first !== 0) {
        this.inbox = this.inbox.subarray(ACK_LENGTH);
        this.stats.recordsAcked += first;
        this.emit('ack', first);
        continue;
      }
      if (this.inbox.length < PACKET_HEADER_LENGTH) return;
      const total = PACKET_HEADER_LENGTH + this.inbox.readUInt32BE(PREAMBLE_LENGTH) + CRC_FIELD_LENGTH;
      if (this.inbox.length < total) return;
      const packet = this.inbox.subarray(0, total);
      this.inbox = this.inbox.subarray(total);
      try {
        const decoded = decodePacket(Buffer.from(packet));
        if (decoded.kind === 'command') this.onCommand(decoded.text);
      } catch {
        this.socket?.destroy();
        return;
      }
    }
  }

  private onCommand(text: string): void {
    this.emit('command', text);
    if (this.behaviour === 'silent') return;
    const spec = Object.values(this.model.commands).find((c) => c?.text === text);
    let answer: string;
    if (text === 'getinfo')
      answer =
        'INI:2019/7/22 7:22 RTC:2019/7/22 7:53 RST:2 ERR:1 SR:0 BR:0 CF:0 FG:0 FL:0 TU:0/0 UT:0 SMS:0 NOGPS:0:30 GPS:1 SAT:0 RS:3 RF:65 SF:1 MD:0';
    else if (!spec) answer = `Unknown command: ${text}`;
    else if (this.behaviour === 'refuse') answer = spec.answers.refused ?? spec.answers.failure;
    else if (this.behaviour === 'fail') answer = spec.answers.failure;
    else {
      answer = spec.answers.success;
      this.apply(spec.resultingState ?? {});
    }
    const delay = this.options.answerDelayMs ?? 0;
    const send = (): void => {
      if (!this.loggedIn || !this.socket) return;
      this.stats.commands++;
      this.socket.write(encodeCommandResponse(answer));
      if (spec?.awaitRecord && this.behaviour === 'normal') void this.sendRecords(1).catch(() => undefined);
    };
    if (delay > 0) setTimeout(send, delay).unref();
    else send();
  }

  private apply(state: Record<string, unknown>): void {
    if (typeof state.driving_enabled === 'boolean') this.vehicle.drivingEnabled = state.driving_enabled;
    if (state.central_lock === 'LOCKED') this.vehicle.locked = true;
    if (state.central_lock === 'UNLOCKED') this.vehicle.locked = false;
  }

  private startReporting(): void {
    clearInterval(this.reportTimer);
    const every = this.options.reportIntervalMs ?? 10_000;
    if (every <= 0) return;
    this.reportTimer = setInterval(() => {
      this.move(every);
      void this.sendRecords(1).catch(() => undefined);
    }, every);
    this.reportTimer.unref();
  }

  /** Drives while driving is enabled (and, for cars, unlocked): a slow random walk. */
  private move(elapsedMs: number): void {
    const v = this.vehicle;
    const isCar = this.model.vehicle_type === 'CAR';
    const driving = v.drivingEnabled && (!isCar || !v.locked);
    v.ignition = driving;
    v.speed = driving ? (isCar ? CAR_SPEED_KMH : SCOOTER_SPEED_KMH) : 0;
    if (!driving) return;
    const meters = (v.speed / 3.6) * (elapsedMs / 1000);
    const heading = Math.random() * 2 * Math.PI;
    v.lat += (meters * Math.cos(heading)) / 111_320;
    v.lon += (meters * Math.sin(heading)) / (111_320 * Math.cos((v.lat * Math.PI) / 180));
    v.odometerMeters += Math.round(meters);
    v.fuelPercent = Math.max(0, v.fuelPercent - meters / 50_000);
  }

  /** One AVL record of the current vehicle state, with the model's I/O element ids. */
  record(at: Date = new Date()): AvlRecord {
    const v = this.vehicle;
    const io = this.model.io;
    const elements: AvlIoElement[] = [];
    if (io.ignition !== undefined) elements.push(ioElement(io.ignition, 1, v.ignition ? 1 : 0));
    if (io.movement !== undefined) elements.push(ioElement(io.movement, 1, v.speed > 0 ? 1 : 0));
    if (io.gsmSignal !== undefined) elements.push(ioElement(io.gsmSignal, 1, v.gsm));
    if (typeof io.speed === 'number') elements.push(ioElement(io.speed, 2, v.speed));
    if (io.externalVoltage !== undefined) elements.push(ioElement(io.externalVoltage, 2, 12_600));
    if (io.batteryVoltage !== undefined) elements.push(ioElement(io.batteryVoltage, 2, 4_100));
    io.digitalOutputs?.forEach((id, i) => {
      const high = i + 1 === io.immobilizerOutput ? !v.drivingEnabled : false;
      elements.push(ioElement(id, 1, high ? 1 : 0));
    });
    if (io.mileage)
      elements.push(ioElement(io.mileage.id, 4, Math.round(v.odometerMeters / 1000 / io.mileage.toKilometers)));
    if (io.fuelOrCharge !== undefined) elements.push(ioElement(io.fuelOrCharge, 1, Math.round(v.fuelPercent)));
    return {
      timestamp: new Date(Math.floor(at.getTime() / 1000) * 1000),
      priority: 0,
      longitude: v.lon,
      latitude: v.lat,
      altitude: 34,
      angle: 0,
      satellites: 9,
      speed: v.speed,
      eventIoId: 0,
      io: elements,
    };
  }
}

export interface TeltonikaSimulationOptions {
  host: string;
  port: number;
  units: Array<{ imei: string; model: string }>;
  reportIntervalMs?: number;
  answerDelayMs?: number;
  out?: NodeJS.WritableStream;
  signal?: AbortSignal;
}

/**
 * Runs simulated Teltonika units against fleetgate's Teltonika port until `signal` aborts,
 * printing logins, rejections and a summary to `out`. Used by `fleetgate simulate`.
 */
export async function runTeltonikaSimulation(options: TeltonikaSimulationOptions): Promise<void> {
  const print = (line: string): void => void options.out?.write(`${line}\n`);
  const units = options.units.map(
    (u) =>
      new TeltonikaUnit({
        host: options.host,
        port: options.port,
        imei: u.imei,
        model: u.model,
        reportIntervalMs: options.reportIntervalMs ?? 10_000,
        answerDelayMs: options.answerDelayMs ?? 300,
      }),
  );
  for (const unit of units) {
    unit.on('command', (text) =>
      print(
        `teltonika ${unit.model.id} ${(unit as unknown as { options: TeltonikaUnitOptions }).options.imei}: command '${text}'`,
      ),
    );
  }
  const results = await Promise.all(units.map((u) => u.connect().catch(() => false)));
  units.forEach((u, i) => {
    const imei = u.imei;
    print(
      results[i]
        ? `teltonika unit ${imei} logged in`
        : `teltonika unit ${imei} was refused (no vehicle with this IMEI?)`,
    );
  });
  if (!options.signal?.aborted) {
    await new Promise<void>((resolve) => options.signal?.addEventListener('abort', () => resolve(), { once: true }));
  }
  await Promise.all(units.map((u) => u.stop()));
  const commands = units.reduce((n, u) => n + u.stats.commands, 0);
  const acked = units.reduce((n, u) => n + u.stats.recordsAcked, 0);
  print(
    `teltonika simulation ended: ${units.length} units, ${commands} commands answered, ${acked} records acknowledged`,
  );
}
