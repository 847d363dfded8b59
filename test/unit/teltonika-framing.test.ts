import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DEFAULT_FRAMING_LIMITS, TeltonikaFramer } from '../../src/telematics/teltonika/framing.js';

const FRAMES = JSON.parse(
  readFileSync(new URL('../fixtures/teltonika/frames.json', import.meta.url), 'utf8'),
) as Record<string, string>;
const hex = (key: string): Buffer => Buffer.from(FRAMES[key] as string, 'hex');

describe('Teltonika framer', () => {
  it('splits an IMEI login and packets arriving in one chunk', () => {
    const f = new TeltonikaFramer();
    const r = f.push(Buffer.concat([hex('imei'), hex('codec8_example1'), hex('codec12_getio_response')]));
    expect(r.error).toBeUndefined();
    expect(r.frames.map((x) => x.kind)).toEqual(['imei', 'packet', 'packet']);
    expect(r.frames[0]).toEqual({ kind: 'imei', imei: '356307042441013' });
    expect(r.frames[1]?.kind === 'packet' && r.frames[1].bytes.equals(hex('codec8_example1'))).toBe(true);
    expect(f.pending).toBe(0);
  });

  it('reassembles frames delivered one byte at a time', () => {
    const f = new TeltonikaFramer();
    const all = Buffer.concat([hex('imei'), hex('codec8e_example')]);
    const frames = [];
    for (const byte of all) {
      const r = f.push(Buffer.from([byte]));
      expect(r.error).toBeUndefined();
      frames.push(...r.frames);
    }
    expect(frames.map((x) => x.kind)).toEqual(['imei', 'packet']);
    expect(frames[1]?.kind === 'packet' && frames[1].bytes.equals(hex('codec8e_example'))).toBe(true);
  });

  it('keeps a partial frame pending', () => {
    const f = new TeltonikaFramer();
    f.push(hex('imei'));
    const p = hex('codec8_example1');
    expect(f.push(p.subarray(0, 20)).frames).toEqual([]);
    expect(f.pending).toBe(20);
    expect(f.push(p.subarray(20)).frames).toHaveLength(1);
  });

  it('refuses IMEI lengths outside the bounds before buffering them', () => {
    expect(new TeltonikaFramer().push(Buffer.from([0xff, 0xff])).error?.code).toBe('imei-length');
    expect(new TeltonikaFramer().push(Buffer.from([0x00, 0x03, 0x31])).error?.code).toBe('imei-length');
  });

  it('refuses an IMEI that is not digits', () => {
    const login = Buffer.concat([Buffer.from([0x00, 0x0f]), Buffer.from('35630704244101X')]);
    expect(new TeltonikaFramer().push(login).error?.code).toBe('imei-format');
  });

  it('refuses an absurd data length at once, without waiting for the data', () => {
    const f = new TeltonikaFramer();
    f.push(hex('imei'));
    const r = f.push(Buffer.from('00000000FFFFFFFF', 'hex'));
    expect(r.error?.code).toBe('length');
    expect(f.pending).toBe(0);
    const tooBig = DEFAULT_FRAMING_LIMITS.maxDataLength + 1;
    const g = new TeltonikaFramer();
    g.push(hex('imei'));
    const header = Buffer.alloc(8);
    header.writeUInt32BE(tooBig, 4);
    expect(g.push(header).error?.code).toBe('length');
  });

  it('refuses a packet without the zero preamble from its first byte', () => {
    const f = new TeltonikaFramer();
    f.push(hex('imei'));
    expect(f.push(Buffer.from([0x47])).error?.code).toBe('preamble');
  });

  it('stays failed after an error', () => {
    const f = new TeltonikaFramer();
    f.push(Buffer.from([0xff, 0xff]));
    expect(f.push(hex('imei')).error).toBeDefined();
  });
});
