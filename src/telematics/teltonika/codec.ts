/**
 * Teltonika data sending protocol codec (pure: bytes ⇄ values, no I/O).
 *
 * Source: Teltonika wiki, "Teltonika Data Sending Protocols" and "Codec" pages. Packets are
 * `preamble (4 × 0x00) | data field length (4) | data field | CRC (4, CRC-16/IBM in the low
 * two bytes)`, the CRC computed over the data field. The data field starts with the codec id:
 * Codec 8 and 8 Extended carry AVL records, Codec 12 carries text commands and their answers.
 * All integers are big-endian.
 */

export const CODEC_8 = 0x08;
export const CODEC_8_EXTENDED = 0x8e;
export const CODEC_12 = 0x0c;

/** Codec 12 message types. */
export const MSG_COMMAND = 0x05;
export const MSG_RESPONSE = 0x06;

/** The server's one-byte answer to the IMEI login. */
export const MSG_IMEI_ACCEPTED = 0x01;
export const MSG_IMEI_REJECTED = 0x00;

export const PREAMBLE_LENGTH = 4;
export const LENGTH_FIELD_LENGTH = 4;
/** Preamble and data field length. */
export const PACKET_HEADER_LENGTH = PREAMBLE_LENGTH + LENGTH_FIELD_LENGTH;
export const CRC_FIELD_LENGTH = 4;
/** The IMEI login's length prefix. */
export const IMEI_LENGTH_FIELD_LENGTH = 2;
/** The record-count acknowledgement the server sends after an AVL packet. */
export const ACK_LENGTH = 4;

/** Coordinates are sent as degrees × 10⁷ (two's complement). */
const COORDINATE_SCALE = 10_000_000;
const CRC16_IBM_POLY_REFLECTED = 0xa001;
/** Codec id, record count 1 and record count 2 frame the records of an AVL data field. */
const AVL_ENVELOPE_LENGTH = 3;
/** timestamp 8, priority 1, longitude 4, latitude 4, altitude 2, angle 2, satellites 1, speed 2. */
const GPS_ELEMENT_LENGTH = 8 + 1 + 4 + 4 + 2 + 2 + 1 + 2;
/** Codec id, quantity 1, type, command size (4), quantity 2. */
const CODEC12_OVERHEAD = 1 + 1 + 1 + 4 + 1;
const FIXED_IO_SIZES = [1, 2, 4, 8] as const;
const MAX_RECORDS_PER_PACKET = 255;

export type AvlCodec = typeof CODEC_8 | typeof CODEC_8_EXTENDED;

/** One I/O element of a record: its AVL id and its raw big-endian value bytes. */
export interface AvlIoElement {
  id: number;
  value: Buffer;
  /** Codec 8 Extended variable-length (NX) element; otherwise the value has 1, 2, 4 or 8 bytes. */
  variable?: boolean;
}

export interface AvlRecord {
  /** GPS time of the record (milliseconds since the epoch, UTC). */
  timestamp: Date;
  priority: number;
  longitude: number;
  latitude: number;
  altitude: number;
  angle: number;
  satellites: number;
  /** km/h; 0 also when the GPS has no fix. */
  speed: number;
  /** The I/O element that triggered the record, 0 for periodic records. */
  eventIoId: number;
  io: AvlIoElement[];
}

export type TeltonikaPacket =
  | { kind: 'avl'; codec: AvlCodec; records: AvlRecord[] }
  | { kind: 'command'; text: string }
  | { kind: 'response'; text: string };

export class CodecError extends Error {
  constructor(
    readonly code: 'crc' | 'truncated' | 'length' | 'codec' | 'count' | 'type' | 'trailing',
    message: string,
  ) {
    super(message);
    this.name = 'CodecError';
  }
}

/** CRC-16/IBM (a.k.a. CRC-16/ARC): reflected polynomial 0xA001, initial value 0. */
export function crc16Ibm(data: Uint8Array): number {
  let crc = 0;
  for (const byte of data) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) {
      crc = crc & 1 ? (crc >>> 1) ^ CRC16_IBM_POLY_REFLECTED : crc >>> 1;
    }
  }
  return crc;
}

/** The IMEI login message: two-byte length, then the IMEI's ASCII digits. */
export function encodeImei(imei: string): Buffer {
  const digits = Buffer.from(imei, 'ascii');
  const out = Buffer.alloc(IMEI_LENGTH_FIELD_LENGTH + digits.length);
  out.writeUInt16BE(digits.length, 0);
  digits.copy(out, IMEI_LENGTH_FIELD_LENGTH);
  return out;
}

/** The server's answer to an AVL packet: the number of records it accepted. */
export function encodeRecordCountAck(count: number): Buffer {
  const out = Buffer.alloc(ACK_LENGTH);
  out.writeUInt32BE(count, 0);
  return out;
}

export function decodeRecordCountAck(bytes: Buffer): number {
  if (bytes.length !== ACK_LENGTH) throw new CodecError('length', `acknowledgement must be ${ACK_LENGTH} bytes`);
  return bytes.readUInt32BE(0);
}

/** Wraps a data field into a packet with preamble, length and CRC. */
function wrap(dataField: Buffer): Buffer {
  const out = Buffer.alloc(PACKET_HEADER_LENGTH + dataField.length + CRC_FIELD_LENGTH);
  out.writeUInt32BE(dataField.length, PREAMBLE_LENGTH);
  dataField.copy(out, PACKET_HEADER_LENGTH);
  out.writeUInt32BE(crc16Ibm(dataField), PACKET_HEADER_LENGTH + dataField.length);
  return out;
}

/**
 * Decodes one complete packet (preamble to CRC, as the framer delivers it). Throws CodecError
 * on a wrong CRC, an unknown codec, inconsistent counts or lengths, or trailing bytes.
 */
export function decodePacket(packet: Buffer): TeltonikaPacket {
  if (packet.length < PACKET_HEADER_LENGTH + 1 + CRC_FIELD_LENGTH) {
    throw new CodecError('truncated', 'packet shorter than its header');
  }
  const length = packet.readUInt32BE(PREAMBLE_LENGTH);
  if (packet.length !== PACKET_HEADER_LENGTH + length + CRC_FIELD_LENGTH) {
    throw new CodecError('length', `data field length ${length} does not match the packet`);
  }
  const data = packet.subarray(PACKET_HEADER_LENGTH, PACKET_HEADER_LENGTH + length);
  const crc = packet.readUInt32BE(PACKET_HEADER_LENGTH + length);
  const computed = crc16Ibm(data);
  if (crc !== computed) {
    throw new CodecError('crc', `CRC mismatch: packet says ${hex4(crc)}, data gives ${hex4(computed)}`);
  }
  const codec = data[0];
  if (codec === CODEC_8 || codec === CODEC_8_EXTENDED) return { kind: 'avl', codec, records: decodeAvlData(data) };
  if (codec === CODEC_12) return decodeCodec12(data);
  throw new CodecError('codec', `unsupported codec 0x${(codec ?? 0).toString(16)}`);
}

function hex4(n: number): string {
  return `0x${n.toString(16).padStart(4, '0')}`;
}

/** A bounds-checked big-endian reader: every read past the end throws CodecError('truncated'). */
class Reader {
  offset = 0;
  constructor(private readonly buf: Buffer) {}
  private need(n: number): number {
    const at = this.offset;
    if (at + n > this.buf.length) throw new CodecError('truncated', `need ${n} bytes at offset ${at}`);
    this.offset += n;
    return at;
  }
  u8(): number {
    return this.buf.readUInt8(this.need(1));
  }
  u16(): number {
    return this.buf.readUInt16BE(this.need(2));
  }
  i16(): number {
    return this.buf.readInt16BE(this.need(2));
  }
  u32(): number {
    return this.buf.readUInt32BE(this.need(4));
  }
  i32(): number {
    return this.buf.readInt32BE(this.need(4));
  }
  u64(): bigint {
    return this.buf.readBigUInt64BE(this.need(8));
  }
  bytes(n: number): Buffer {
    const at = this.need(n);
    return Buffer.from(this.buf.subarray(at, at + n));
  }
  get remaining(): number {
    return this.buf.length - this.offset;
  }
}

function decodeAvlData(data: Buffer): AvlRecord[] {
  const r = new Reader(data);
  const codec = r.u8();
  const extended = codec === CODEC_8_EXTENDED;
  const count = r.u8();
  // Each record needs at least its GPS element; reject counts the data cannot hold before looping.
  if (count * GPS_ELEMENT_LENGTH > data.length - AVL_ENVELOPE_LENGTH) {
    throw new CodecError('count', `record count ${count} cannot fit in ${data.length} bytes`);
  }
  const records: AvlRecord[] = [];
  for (let i = 0; i < count; i++) records.push(decodeRecord(r, extended));
  const count2 = r.u8();
  if (count2 !== count) throw new CodecError('count', `record counts differ: ${count} and ${count2}`);
  if (r.remaining !== 0) throw new CodecError('trailing', `${r.remaining} bytes after the records`);
  return records;
}

function decodeRecord(r: Reader, extended: boolean): AvlRecord {
  const timestamp = new Date(Number(r.u64()));
  const priority = r.u8();
  const longitude = r.i32() / COORDINATE_SCALE;
  const latitude = r.i32() / COORDINATE_SCALE;
  const altitude = r.i16();
  const angle = r.u16();
  const satellites = r.u8();
  const speed = r.u16();
  const small = extended ? () => r.u16() : () => r.u8();
  const eventIoId = small();
  const total = small();
  const io: AvlIoElement[] = [];
  for (const size of FIXED_IO_SIZES) {
    const n = small();
    for (let j = 0; j < n; j++) {
      const id = small();
      io.push({ id, value: r.bytes(size) });
    }
  }
  if (extended) {
    const n = r.u16();
    for (let j = 0; j < n; j++) {
      const id = r.u16();
      const len = r.u16();
      io.push({ id, value: r.bytes(len), variable: true });
    }
  }
  if (io.length !== total) throw new CodecError('count', `record announces ${total} I/O elements, holds ${io.length}`);
  return { timestamp, priority, longitude, latitude, altitude, angle, satellites, speed, eventIoId, io };
}

function decodeCodec12(data: Buffer): TeltonikaPacket {
  const r = new Reader(data);
  r.u8();
  const quantity = r.u8();
  const type = r.u8();
  const size = r.u32();
  if (size !== data.length - CODEC12_OVERHEAD) {
    throw new CodecError('length', `command size ${size} does not match the data field`);
  }
  const text = r.bytes(size).toString('latin1');
  const quantity2 = r.u8();
  if (quantity !== 1 || quantity2 !== 1) throw new CodecError('count', 'Codec 12 quantities must both be 1');
  if (type === MSG_COMMAND) return { kind: 'command', text };
  if (type === MSG_RESPONSE) return { kind: 'response', text };
  throw new CodecError('type', `unknown Codec 12 type 0x${type.toString(16)}`);
}

/** A Codec 12 packet (server → unit command, or unit → server response). */
function encodeCodec12(type: number, text: string): Buffer {
  const body = Buffer.from(text, 'latin1');
  const data = Buffer.alloc(CODEC12_OVERHEAD + body.length);
  let at = data.writeUInt8(CODEC_12, 0);
  at = data.writeUInt8(1, at);
  at = data.writeUInt8(type, at);
  at = data.writeUInt32BE(body.length, at);
  at += body.copy(data, at);
  data.writeUInt8(1, at);
  return wrap(data);
}

export function encodeCommand(text: string): Buffer {
  return encodeCodec12(MSG_COMMAND, text);
}

export function encodeCommandResponse(text: string): Buffer {
  return encodeCodec12(MSG_RESPONSE, text);
}

/** Encodes records as a Codec 8 or 8 Extended packet (the simulator's side of the protocol). */
export function encodeAvlPacket(codec: AvlCodec, records: readonly AvlRecord[]): Buffer {
  if (records.length === 0 || records.length > MAX_RECORDS_PER_PACKET) {
    throw new CodecError('count', `a packet holds 1 to ${MAX_RECORDS_PER_PACKET} records`);
  }
  const extended = codec === CODEC_8_EXTENDED;
  const parts: Buffer[] = [Buffer.from([codec, records.length])];
  for (const rec of records) parts.push(encodeRecord(rec, extended));
  parts.push(Buffer.from([records.length]));
  return wrap(Buffer.concat(parts));
}

function encodeRecord(rec: AvlRecord, extended: boolean): Buffer {
  const gps = Buffer.alloc(GPS_ELEMENT_LENGTH);
  let at = gps.writeBigUInt64BE(BigInt(rec.timestamp.getTime()), 0);
  at = gps.writeUInt8(rec.priority, at);
  at = gps.writeInt32BE(Math.round(rec.longitude * COORDINATE_SCALE), at);
  at = gps.writeInt32BE(Math.round(rec.latitude * COORDINATE_SCALE), at);
  at = gps.writeInt16BE(rec.altitude, at);
  at = gps.writeUInt16BE(rec.angle, at);
  at = gps.writeUInt8(rec.satellites, at);
  gps.writeUInt16BE(rec.speed, at);

  const small = (n: number): Buffer => {
    const b = Buffer.alloc(extended ? 2 : 1);
    if (extended) b.writeUInt16BE(n, 0);
    else b.writeUInt8(n, 0);
    return b;
  };
  const parts: Buffer[] = [gps, small(rec.eventIoId), small(rec.io.length)];
  for (const size of FIXED_IO_SIZES) {
    const group = rec.io.filter((e) => !e.variable && e.value.length === size);
    parts.push(small(group.length));
    for (const e of group) parts.push(small(e.id), e.value);
  }
  const variable = rec.io.filter((e) => e.variable || !(FIXED_IO_SIZES as readonly number[]).includes(e.value.length));
  if (variable.length > 0 && !extended) throw new CodecError('codec', 'Codec 8 has no variable-length I/O elements');
  if (extended) {
    parts.push(small(variable.length));
    for (const e of variable) {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(e.value.length, 0);
      parts.push(small(e.id), len, e.value);
    }
  }
  return Buffer.concat(parts);
}

/** An I/O element's value as an unsigned number (8-byte values beyond 2⁵³ lose precision). */
export function ioUnsigned(record: AvlRecord, id: number): number | undefined {
  const e = record.io.find((x) => x.id === id);
  if (!e || e.value.length === 0 || e.value.length > 8) return undefined;
  return Number(BigInt(`0x${e.value.toString('hex')}`));
}

/** An I/O element holding `value` in `size` bytes (1, 2, 4 or 8), for building records. */
export function ioElement(id: number, size: 1 | 2 | 4 | 8, value: number | bigint): AvlIoElement {
  const full = Buffer.alloc(8);
  full.writeBigUInt64BE(BigInt(value) & ((1n << BigInt(size * 8)) - 1n), 0);
  return { id, value: full.subarray(8 - size) };
}
