import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  CODEC_8,
  CODEC_8_EXTENDED,
  CodecError,
  crc16Ibm,
  decodePacket,
  decodeRecordCountAck,
  encodeAvlPacket,
  encodeCommand,
  encodeCommandResponse,
  encodeImei,
  encodeRecordCountAck,
  ioUnsigned,
} from '../../src/telematics/teltonika/codec.js';

// Example frames of Teltonika's wiki, "Codec" page (test/fixtures/teltonika/README.md).
const FRAMES = JSON.parse(
  readFileSync(new URL('../fixtures/teltonika/frames.json', import.meta.url), 'utf8'),
) as Record<string, string>;
const hex = (key: string): Buffer => Buffer.from(FRAMES[key] as string, 'hex');
const upper = (b: Buffer): string => b.toString('hex').toUpperCase();

describe('CRC-16/IBM', () => {
  it('matches the CRC of every published example frame', () => {
    for (const key of Object.keys(FRAMES).filter((k) => k !== 'imei')) {
      const frame = hex(key);
      const length = frame.readUInt32BE(4);
      const data = frame.subarray(8, 8 + length);
      expect(crc16Ibm(data), key).toBe(frame.readUInt32BE(8 + length));
    }
  });

  it('gives the standard check value 0xBB3D for "123456789"', () => {
    expect(crc16Ibm(Buffer.from('123456789'))).toBe(0xbb3d);
  });
});

describe('IMEI login', () => {
  it('encodes the wiki example byte for byte', () => {
    expect(upper(encodeImei('356307042441013'))).toBe(FRAMES.imei);
  });
});

describe('Codec 8', () => {
  it('decodes example 1 as the wiki tables give it', () => {
    const p = decodePacket(hex('codec8_example1'));
    expect(p.kind).toBe('avl');
    if (p.kind !== 'avl') return;
    expect(p.codec).toBe(CODEC_8);
    expect(p.records).toHaveLength(1);
    const r = p.records[0]!;
    expect(r.timestamp.toISOString()).toBe('2019-06-10T10:04:46.000Z');
    expect(r.priority).toBe(1);
    expect([r.latitude, r.longitude, r.altitude, r.angle, r.satellites, r.speed]).toEqual([0, 0, 0, 0, 0, 0]);
    expect(r.eventIoId).toBe(1);
    expect(r.io.map((e) => [e.id, e.value.length])).toEqual([
      [0x15, 1],
      [0x01, 1],
      [0x42, 2],
      [0xf1, 4],
      [0x4e, 8],
    ]);
    expect(ioUnsigned(r, 0x15)).toBe(3);
    expect(ioUnsigned(r, 0x01)).toBe(1);
    expect(ioUnsigned(r, 0x42)).toBe(0x5e0f);
    expect(ioUnsigned(r, 0xf1)).toBe(0x601a);
    expect(ioUnsigned(r, 0x4e)).toBe(0);
  });

  it('decodes example 2 and example 3 (two records)', () => {
    const p2 = decodePacket(hex('codec8_example2'));
    expect(p2.kind === 'avl' && p2.records[0]?.timestamp.toISOString()).toBe('2019-06-10T10:05:36.000Z');
    expect(p2.kind === 'avl' && ioUnsigned(p2.records[0]!, 0x42)).toBe(0x5e10);
    const p3 = decodePacket(hex('codec8_example3'));
    expect(p3.kind === 'avl' && p3.records.map((r) => [r.timestamp.toISOString(), ioUnsigned(r, 1)])).toEqual([
      ['2019-06-10T10:01:01.000Z', 0],
      ['2019-06-10T10:01:19.000Z', 1],
    ]);
  });

  it('re-encodes every example to the same bytes', () => {
    for (const key of ['codec8_example1', 'codec8_example2', 'codec8_example3', 'codec8e_example']) {
      const p = decodePacket(hex(key));
      if (p.kind !== 'avl') throw new Error(key);
      expect(upper(encodeAvlPacket(p.codec, p.records)), key).toBe(FRAMES[key]);
    }
  });
});

describe('Codec 8 Extended', () => {
  it('decodes the wiki example with two-byte ids and counts', () => {
    const p = decodePacket(hex('codec8e_example'));
    expect(p.kind === 'avl' && p.codec).toBe(CODEC_8_EXTENDED);
    if (p.kind !== 'avl') return;
    const r = p.records[0]!;
    expect(r.timestamp.toISOString()).toBe('2019-06-10T11:36:32.000Z');
    expect(r.eventIoId).toBe(1);
    expect(r.io.map((e) => e.id)).toEqual([0x01, 0x11, 0x10, 0x0b, 0x0e]);
    expect(ioUnsigned(r, 0x11)).toBe(0x1d);
    expect(ioUnsigned(r, 0x10)).toBe(0x015e2c88);
    expect(ioUnsigned(r, 0x0b)).toBe(0x3544c87a);
    expect(ioUnsigned(r, 0x0e)).toBe(0x1dd7e06a);
  });

  it('round-trips negative coordinates and variable-length elements', () => {
    const record = {
      timestamp: new Date('2024-01-02T03:04:05.000Z'),
      priority: 1,
      longitude: -73.9856644,
      latitude: -40.7484405,
      altitude: -12,
      angle: 270,
      satellites: 11,
      speed: 42,
      eventIoId: 239,
      io: [{ id: 385, value: Buffer.from('beacon'), variable: true }],
    };
    const p = decodePacket(encodeAvlPacket(CODEC_8_EXTENDED, [record]));
    expect(p).toEqual({ kind: 'avl', codec: CODEC_8_EXTENDED, records: [record] });
  });
});

describe('Codec 12', () => {
  it('encodes the getinfo command byte for byte', () => {
    expect(upper(encodeCommand('getinfo'))).toBe(FRAMES.codec12_getinfo_command);
    expect(decodePacket(hex('codec12_getinfo_command'))).toEqual({ kind: 'command', text: 'getinfo' });
  });

  it('decodes the getinfo and getio responses', () => {
    const info = decodePacket(hex('codec12_getinfo_response'));
    expect(info.kind).toBe('response');
    expect(info.kind === 'response' && info.text).toMatch(/^INI:2019\/7\/22 7:22 RTC:2019\/7\/22 7:53 RST:2 .* MD:0$/);
    expect(decodePacket(hex('codec12_getio_response'))).toEqual({
      kind: 'response',
      text: 'DI1:1 DI2:0 DI3:0 AIN1:0 AIN2:16924 DO1:0 DO2:1',
    });
    expect(upper(encodeCommandResponse('DI1:1 DI2:0 DI3:0 AIN1:0 AIN2:16924 DO1:0 DO2:1'))).toBe(
      FRAMES.codec12_getio_response,
    );
  });
});

describe('acknowledgement', () => {
  it('is the record count as four bytes', () => {
    expect(upper(encodeRecordCountAck(2))).toBe('00000002');
    expect(decodeRecordCountAck(Buffer.from('00000001', 'hex'))).toBe(1);
  });
});

describe('hostile packets', () => {
  const expectCodecError = (bytes: Buffer, code: CodecError['code']): void => {
    let error: unknown;
    try {
      decodePacket(bytes);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(CodecError);
    expect((error as CodecError).code).toBe(code);
  };

  it('rejects a wrong CRC', () => {
    const bad = hex('codec8_example1');
    bad[bad.length - 1] = (bad[bad.length - 1] as number) ^ 0xff;
    expectCodecError(bad, 'crc');
  });

  it('rejects a flipped data byte (CRC no longer matches)', () => {
    const bad = hex('codec8e_example');
    bad[20] = (bad[20] as number) ^ 0x01;
    expectCodecError(bad, 'crc');
  });

  it('rejects a record count the data cannot hold, without looping over it', () => {
    const data = Buffer.from([CODEC_8, 200, 200]);
    const packet = Buffer.alloc(8 + data.length + 4);
    packet.writeUInt32BE(data.length, 4);
    data.copy(packet, 8);
    packet.writeUInt32BE(crc16Ibm(data), 8 + data.length);
    expectCodecError(packet, 'count');
  });

  it('rejects truncated records, differing counts, unknown codecs and length mismatches', () => {
    const withData = (data: Buffer): Buffer => {
      const packet = Buffer.alloc(8 + data.length + 4);
      packet.writeUInt32BE(data.length, 4);
      data.copy(packet, 8);
      packet.writeUInt32BE(crc16Ibm(data), 8 + data.length);
      return packet;
    };
    const good = hex('codec8_example2');
    const data = good.subarray(8, good.length - 4);
    expectCodecError(withData(data.subarray(0, data.length - 5)), 'truncated');
    const counts = Buffer.from(data);
    counts[counts.length - 1] = 2;
    expectCodecError(withData(counts), 'count');
    expectCodecError(withData(Buffer.from([0x10, 0x01, 0x01])), 'codec');
    expectCodecError(good.subarray(0, good.length - 1), 'length');
    expectCodecError(withData(Buffer.concat([data, Buffer.from([0])])), 'trailing');
  });
});
