import {
  CRC_FIELD_LENGTH,
  IMEI_LENGTH_FIELD_LENGTH,
  LENGTH_FIELD_LENGTH,
  PACKET_HEADER_LENGTH,
  PREAMBLE_LENGTH,
} from './codec.js';

/**
 * Incremental frame splitter for the Teltonika TCP stream (Teltonika wiki, "Teltonika Data
 * Sending Protocols"). A connection starts with one IMEI login (two-byte length + ASCII digits),
 * then carries packets (four zero bytes, four-byte data length, data, four-byte CRC). The
 * splitter buffers at most one frame, checks lengths before buffering, and never decodes data
 * fields: that is the codec's job.
 */

export interface FramingLimits {
  /** Largest accepted data field length; anything larger is refused before it is buffered. */
  maxDataLength: number;
  minImeiLength: number;
  maxImeiLength: number;
}

/**
 * Teltonika units send at most a few kilobytes per packet (FMB: ≤ 1280 bytes of AVL data, a
 * Codec 12 answer is shorter); 64 KiB leaves room for long command answers while bounding what
 * one connection can make us hold. IMEIs are 15 digits (16 for IMEISV); shorter ids are allowed
 * down to 8 digits for test and bench units.
 */
export const DEFAULT_FRAMING_LIMITS: FramingLimits = { maxDataLength: 64 * 1024, minImeiLength: 8, maxImeiLength: 17 };

/** The smallest data field: a codec id plus at least one byte. */
const MIN_DATA_LENGTH = 2;
const DIGITS = /^[0-9]+$/;

export type Frame = { kind: 'imei'; imei: string } | { kind: 'packet'; bytes: Buffer };

export type FramingErrorCode = 'imei-length' | 'imei-format' | 'preamble' | 'length';

export class FramingError extends Error {
  constructor(
    readonly code: FramingErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'FramingError';
  }
}

export type FramingResult = { frames: Frame[]; error?: FramingError };

export class TeltonikaFramer {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private loggedIn = false;
  private failed = false;

  constructor(private readonly limits: FramingLimits = DEFAULT_FRAMING_LIMITS) {}

  /** Bytes received but not yet part of a complete frame. */
  get pending(): number {
    return this.buffered;
  }

  /**
   * Adds received bytes; returns every complete frame, and an error once the stream is
   * unusable (after which the connection must be closed: nothing more is parsed).
   */
  push(chunk: Buffer): FramingResult {
    if (this.failed) return { frames: [], error: new FramingError('length', 'stream already failed') };
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: Frame[] = [];
    for (;;) {
      let next: Frame | undefined;
      try {
        next = this.loggedIn ? this.nextPacket() : this.nextImei();
      } catch (err) {
        this.failed = true;
        this.chunks = [];
        this.buffered = 0;
        return { frames, error: err as FramingError };
      }
      if (!next) return { frames };
      frames.push(next);
    }
  }

  private nextImei(): Frame | undefined {
    if (this.buffered < IMEI_LENGTH_FIELD_LENGTH) return undefined;
    const length = this.peek(IMEI_LENGTH_FIELD_LENGTH).readUInt16BE(0);
    if (length < this.limits.minImeiLength || length > this.limits.maxImeiLength) {
      throw new FramingError(
        'imei-length',
        `IMEI length ${length} outside ${this.limits.minImeiLength}–${this.limits.maxImeiLength}`,
      );
    }
    const total = IMEI_LENGTH_FIELD_LENGTH + length;
    if (this.buffered < total) return undefined;
    const imei = this.take(total).subarray(IMEI_LENGTH_FIELD_LENGTH).toString('latin1');
    if (!DIGITS.test(imei)) throw new FramingError('imei-format', 'IMEI is not all digits');
    this.loggedIn = true;
    return { kind: 'imei', imei };
  }

  private nextPacket(): Frame | undefined {
    // Check the preamble as soon as its bytes arrive, so garbage is refused without waiting.
    const head = this.peek(Math.min(this.buffered, PACKET_HEADER_LENGTH));
    for (let i = 0; i < Math.min(head.length, PREAMBLE_LENGTH); i++) {
      if (head[i] !== 0) throw new FramingError('preamble', 'packet does not start with four zero bytes');
    }
    if (head.length < PACKET_HEADER_LENGTH) return undefined;
    const length = head.readUInt32BE(PREAMBLE_LENGTH);
    if (length < MIN_DATA_LENGTH || length > this.limits.maxDataLength) {
      throw new FramingError(
        'length',
        `data field length ${length} outside ${MIN_DATA_LENGTH}–${this.limits.maxDataLength}`,
      );
    }
    const total = PREAMBLE_LENGTH + LENGTH_FIELD_LENGTH + length + CRC_FIELD_LENGTH;
    if (this.buffered < total) return undefined;
    return { kind: 'packet', bytes: this.take(total) };
  }

  /** The first `n` buffered bytes (n ≤ buffered), without consuming them. */
  private peek(n: number): Buffer {
    if (this.chunks.length > 1 && (this.chunks[0]?.length ?? 0) < n) this.chunks = [Buffer.concat(this.chunks)];
    return (this.chunks[0] ?? Buffer.alloc(0)).subarray(0, n);
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks);
    const out = Buffer.from(all.subarray(0, n));
    const rest = all.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }
}
