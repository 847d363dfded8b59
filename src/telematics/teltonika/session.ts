import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import {
  type AvlRecord,
  CodecError,
  decodePacket,
  encodeCommand,
  encodeRecordCountAck,
  MSG_IMEI_ACCEPTED,
  MSG_IMEI_REJECTED,
} from './codec.js';
import { DEFAULT_FRAMING_LIMITS, type FramingLimits, TeltonikaFramer } from './framing.js';

/**
 * One unit's session over any Duplex stream (a TCP socket in production, a stream pair in
 * tests). It runs the handshake of Teltonika's data sending protocol — IMEI login, answered
 * 0x01 or 0x00 — acknowledges each AVL packet with its record count once the records were
 * handed on, and sends Codec 12 commands one at a time, pairing each with the unit's answer.
 * It opens no sockets and knows nothing of vehicles.
 */

export interface SessionOptions {
  /** From connect until the IMEI is accepted; slow or silent logins are closed after it. */
  handshakeTimeoutMs: number;
  /** A logged-in unit that sends no complete frame for this long is closed. */
  idleTimeoutMs: number;
  /** A frame whose first byte arrived must be complete within this time (slowloris guard). */
  frameTimeoutMs: number;
  /**
   * After a command got no answer, a late answer may still come; the next answer within this
   * window is attributed to the expired command, not to the next one (Codec 12 has no ids).
   */
  staleAnswerWindowMs?: number;
  limits?: FramingLimits;
  /** Whether the unit with this IMEI may log in. */
  authorize(imei: string): Promise<boolean>;
  /** Records of one AVL packet; the record-count acknowledgement is sent once this resolves. */
  onRecords(imei: string, records: AvlRecord[]): Promise<void>;
}

export type SessionCloseReason =
  | 'rejected'
  | 'handshake-timeout'
  | 'idle-timeout'
  | 'frame-timeout'
  | 'framing-error'
  | 'codec-error'
  | 'unexpected-frame'
  | 'records-failed'
  | 'remote-closed'
  | 'stream-error'
  | 'replaced'
  | 'server-closed';

export type CommandAnswer =
  | { kind: 'answer'; text: string }
  /** No answer in time; `delivered` says whether the command was written to the unit. */
  | { kind: 'no-answer'; delivered: boolean }
  | { kind: 'closed'; delivered: boolean };

export type SessionState = 'handshake' | 'authorizing' | 'online' | 'closed';

interface PendingAnswer {
  resolve(text: string): void;
}

const DEFAULT_STALE_ANSWER_WINDOW_MS = 30_000;
const CLOSE_GRACE_MS = 1_000;

export class TeltonikaSession extends EventEmitter<{
  online: [imei: string];
  records: [records: AvlRecord[]];
  closed: [reason: SessionCloseReason, detail?: string];
}> {
  imei: string | undefined;
  state: SessionState = 'handshake';
  readonly connectedAt = new Date();

  private readonly framer: TeltonikaFramer;
  private readonly timers = new Map<'handshake' | 'idle' | 'frame', NodeJS.Timeout>();
  private commandChain: Promise<unknown> = Promise.resolve();
  private pending: PendingAnswer | undefined;
  /** Commands that got no answer in time, oldest first: until when a late answer is theirs. */
  private staleAnswers: Array<{ until: number; onLate?: (text: string) => void }> = [];

  constructor(
    private readonly stream: Duplex,
    private readonly options: SessionOptions,
  ) {
    super();
    this.framer = new TeltonikaFramer(options.limits ?? DEFAULT_FRAMING_LIMITS);
  }

  /** Starts reading; resolves when the stream has ended and the session is closed. */
  async run(): Promise<void> {
    this.arm('handshake', this.options.handshakeTimeoutMs, 'handshake-timeout');
    this.stream.on('error', (err) => this.close('stream-error', err.message));
    this.stream.on('close', () => this.close('remote-closed'));
    try {
      for await (const chunk of this.stream) {
        if (this.state === 'closed') break;
        await this.receive(chunk as Buffer);
      }
    } catch (err) {
      this.close('stream-error', (err as Error).message);
    }
    this.close('remote-closed');
  }

  private async receive(chunk: Buffer): Promise<void> {
    const { frames, error } = this.framer.push(chunk);
    for (const frame of frames) {
      if (this.state === 'closed') return;
      this.clear('frame');
      if (frame.kind === 'imei') await this.login(frame.imei);
      else await this.packet(frame.bytes);
    }
    if (error) return this.close('framing-error', error.message);
    if (this.state === 'closed') return;
    if (this.framer.pending > 0) {
      if (!this.timers.has('frame')) this.arm('frame', this.options.frameTimeoutMs, 'frame-timeout');
    } else {
      this.clear('frame');
    }
  }

  private async login(imei: string): Promise<void> {
    this.state = 'authorizing';
    let ok = false;
    try {
      ok = await this.options.authorize(imei);
    } catch {
      ok = false;
    }
    if ((this.state as SessionState) === 'closed') return;
    if (!ok) {
      this.write(Buffer.from([MSG_IMEI_REJECTED]));
      this.close('rejected', imei);
      return;
    }
    this.imei = imei;
    this.state = 'online';
    this.clear('handshake');
    this.arm('idle', this.options.idleTimeoutMs, 'idle-timeout');
    this.write(Buffer.from([MSG_IMEI_ACCEPTED]));
    this.emit('online', imei);
  }

  private async packet(bytes: Buffer): Promise<void> {
    if (this.state !== 'online' || !this.imei) return this.close('unexpected-frame', 'packet before login');
    this.arm('idle', this.options.idleTimeoutMs, 'idle-timeout');
    let decoded: ReturnType<typeof decodePacket>;
    try {
      decoded = decodePacket(bytes);
    } catch (err) {
      // A wrong CRC is not acknowledged: the unit keeps the records and resends them later.
      return this.close('codec-error', err instanceof CodecError ? err.message : String(err));
    }
    if (decoded.kind === 'avl') {
      try {
        await this.options.onRecords(this.imei, decoded.records);
      } catch (err) {
        // Unacknowledged records stay on the unit; it resends them after reconnecting.
        return this.close('records-failed', (err as Error).message);
      }
      this.write(encodeRecordCountAck(decoded.records.length));
      this.emit('records', decoded.records);
      return;
    }
    if (decoded.kind === 'response') return this.answer(decoded.text);
    this.close('unexpected-frame', 'unit sent a Codec 12 command');
  }

  private answer(text: string): void {
    const now = Date.now();
    this.staleAnswers = this.staleAnswers.filter((stale) => stale.until > now);
    const stale = this.staleAnswers.shift();
    if (stale) {
      stale.onLate?.(text);
      return;
    }
    const p = this.pending;
    this.pending = undefined;
    p?.resolve(text);
  }

  /**
   * Sends one Codec 12 command and waits for its answer until `signal` aborts (the command's one
   * time budget, owned by the command service). Commands queue behind each other (one in flight
   * per connection); a command whose budget runs out while queued is not sent.
   */
  sendCommand(text: string, opts: { signal: AbortSignal; onLate?: (text: string) => void }): Promise<CommandAnswer> {
    const run = this.commandChain.then(() => this.exchange(text, opts.signal, opts.onLate));
    this.commandChain = run.catch(() => undefined);
    return run;
  }

  /** `onLate`: the answer of a command that got none in time, if it comes within the stale window. */
  private exchange(text: string, signal: AbortSignal, onLate?: (text: string) => void): Promise<CommandAnswer> {
    if (this.state !== 'online') return Promise.resolve({ kind: 'closed', delivered: false });
    if (signal.aborted) return Promise.resolve({ kind: 'no-answer', delivered: false });
    return new Promise<CommandAnswer>((resolve) => {
      const finish = (answer: CommandAnswer): void => {
        signal.removeEventListener('abort', onAbort);
        this.off('closed', onClosed);
        if (this.pending === entry) this.pending = undefined;
        resolve(answer);
      };
      const onAbort = (): void => {
        const until = Date.now() + (this.options.staleAnswerWindowMs ?? DEFAULT_STALE_ANSWER_WINDOW_MS);
        this.staleAnswers.push({ until, onLate });
        finish({ kind: 'no-answer', delivered: true });
      };
      const onClosed = (): void => finish({ kind: 'closed', delivered: true });
      const entry: PendingAnswer = { resolve: (t) => finish({ kind: 'answer', text: t }) };
      signal.addEventListener('abort', onAbort, { once: true });
      this.once('closed', onClosed);
      this.pending = entry;
      this.write(encodeCommand(text));
    });
  }

  /** Resolves with the next AVL records the unit sends, or undefined once `signal` aborts. */
  nextRecords(opts: { signal: AbortSignal }): Promise<AvlRecord[] | undefined> {
    if (this.state === 'closed' || opts.signal.aborted) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const finish = (records: AvlRecord[] | undefined): void => {
        opts.signal.removeEventListener('abort', onAbort);
        this.off('records', onRecords);
        this.off('closed', onClosed);
        resolve(records);
      };
      const onRecords = (records: AvlRecord[]): void => finish(records);
      const onClosed = (): void => finish(undefined);
      const onAbort = (): void => finish(undefined);
      opts.signal.addEventListener('abort', onAbort, { once: true });
      this.on('records', onRecords);
      this.once('closed', onClosed);
    });
  }

  /** Closes the session and its stream; idempotent. */
  close(reason: SessionCloseReason, detail?: string): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    // end() lets a last byte (the 0x00 rejection) go out before the stream is destroyed; the
    // fallback timer frees a socket whose peer stopped reading.
    this.stream.end(() => this.stream.destroy());
    setTimeout(() => this.stream.destroy(), CLOSE_GRACE_MS).unref();
    this.emit('closed', reason, detail);
  }

  private write(bytes: Buffer): void {
    if (!this.stream.destroyed && this.stream.writable) this.stream.write(bytes);
  }

  private arm(name: 'handshake' | 'idle' | 'frame', ms: number, reason: SessionCloseReason): void {
    this.clear(name);
    const t = setTimeout(() => this.close(reason), ms);
    t.unref();
    this.timers.set(name, t);
  }

  private clear(name: 'handshake' | 'idle' | 'frame'): void {
    const t = this.timers.get(name);
    if (t) clearTimeout(t);
    this.timers.delete(name);
  }
}
