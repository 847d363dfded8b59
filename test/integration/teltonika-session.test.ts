import { once } from 'node:events';
import { Duplex, PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type AvlRecord,
  CODEC_8_EXTENDED,
  decodePacket,
  encodeAvlPacket,
  encodeCommandResponse,
  encodeImei,
} from '../../src/telematics/teltonika/codec.js';
import { type SessionOptions, TeltonikaSession } from '../../src/telematics/teltonika/session.js';

/** Two connected in-memory streams: the session runs over any Duplex, no socket needed. */
function duplexPair(): [Duplex, Duplex] {
  const toServer = new PassThrough();
  const toUnit = new PassThrough();
  const server = Duplex.from({ readable: toServer, writable: toUnit });
  const unit = Duplex.from({ readable: toUnit, writable: toServer });
  // Destroying one side aborts the shared pipes; the unit side just ends.
  unit.on('error', () => undefined);
  server.on('error', () => undefined);
  return [server, unit];
}

const record: AvlRecord = {
  timestamp: new Date('2024-05-06T07:08:09.000Z'),
  priority: 0,
  longitude: 25.2797,
  latitude: 54.6872,
  altitude: 100,
  angle: 90,
  satellites: 8,
  speed: 12,
  eventIoId: 0,
  io: [],
};

const sessions: TeltonikaSession[] = [];
afterEach(() => {
  for (const s of sessions.splice(0)) s.close('server-closed');
});

function start(overrides: Partial<SessionOptions> = {}) {
  const [server, unit] = duplexPair();
  const received: Array<{ imei: string; records: AvlRecord[] }> = [];
  const session = new TeltonikaSession(server, {
    handshakeTimeoutMs: 1_000,
    idleTimeoutMs: 5_000,
    frameTimeoutMs: 1_000,
    authorize: async (imei) => imei === '356307042441013',
    onRecords: async (imei, records) => void received.push({ imei, records }),
    ...overrides,
  });
  sessions.push(session);
  void session.run();
  const inbox: Buffer[] = [];
  const next = async (bytes: number): Promise<Buffer> => {
    for (;;) {
      const all = Buffer.concat(inbox);
      if (all.length >= bytes) {
        inbox.splice(0, inbox.length, all.subarray(bytes));
        return all.subarray(0, bytes);
      }
      const [chunk] = (await once(unit, 'data')) as [Buffer];
      inbox.push(chunk);
    }
  };
  return { session, unit, received, next };
}

describe('Teltonika session', () => {
  it('answers the IMEI login with 0x01 and goes online', async () => {
    const { session, unit, next } = start();
    const online = once(session, 'online');
    unit.write(encodeImei('356307042441013'));
    expect((await next(1)).toString('hex')).toBe('01');
    expect(await online).toEqual(['356307042441013']);
    expect(session.state).toBe('online');
  });

  it('answers an unknown IMEI with 0x00 and closes', async () => {
    const { session, unit, next } = start();
    const closed = once(session, 'closed');
    unit.write(encodeImei('123456789012345'));
    expect((await next(1)).toString('hex')).toBe('00');
    expect((await closed)[0]).toBe('rejected');
  });

  it('hands records on, then acknowledges their count', async () => {
    const { unit, next, received } = start();
    unit.write(encodeImei('356307042441013'));
    await next(1);
    unit.write(encodeAvlPacket(CODEC_8_EXTENDED, [record, record, record]));
    expect((await next(4)).toString('hex')).toBe('00000003');
    expect(received).toHaveLength(1);
    expect(received[0]?.records).toHaveLength(3);
  });

  it('does not acknowledge records it could not hand on, and closes so the unit resends them', async () => {
    const { session, unit, next } = start({ onRecords: async () => Promise.reject(new Error('database down')) });
    unit.write(encodeImei('356307042441013'));
    await next(1);
    const closed = once(session, 'closed');
    unit.write(encodeAvlPacket(CODEC_8_EXTENDED, [record]));
    expect((await closed)[0]).toBe('records-failed');
  });

  it('sends one Codec 12 command at a time and pairs each with its answer', async () => {
    const { session, unit, next } = start();
    unit.write(encodeImei('356307042441013'));
    await next(1);
    const first = session.sendCommand('setdigout 1', { signal: AbortSignal.timeout(2_000) });
    const second = session.sendCommand('setdigout 0', { signal: AbortSignal.timeout(2_000) });
    const readPacket = async (): Promise<string> => {
      const header = await next(8);
      const body = await next(header.readUInt32BE(4) + 4);
      const p = decodePacket(Buffer.concat([header, body]));
      return p.kind === 'command' ? p.text : '';
    };
    expect(await readPacket()).toBe('setdigout 1');
    unit.write(encodeCommandResponse('DOUT1:ON Timeout:INFINITY'));
    expect(await first).toEqual({ kind: 'answer', text: 'DOUT1:ON Timeout:INFINITY' });
    expect(await readPacket()).toBe('setdigout 0');
    unit.write(encodeCommandResponse('DOUT1:OFF Timeout:INFINITY'));
    expect(await second).toEqual({ kind: 'answer', text: 'DOUT1:OFF Timeout:INFINITY' });
  });

  it('attributes a late answer to the expired command, not to the next one', async () => {
    const { session, unit, next } = start();
    unit.write(encodeImei('356307042441013'));
    await next(1);
    expect(await session.sendCommand('setdigout 1', { signal: AbortSignal.timeout(50) })).toEqual({
      kind: 'no-answer',
      delivered: true,
    });
    const second = session.sendCommand('setdigout 0', { signal: AbortSignal.timeout(2_000) });
    unit.write(encodeCommandResponse('DOUT1:ON Timeout:INFINITY'));
    unit.write(encodeCommandResponse('DOUT1:OFF Timeout:INFINITY'));
    expect(await second).toEqual({ kind: 'answer', text: 'DOUT1:OFF Timeout:INFINITY' });
  });

  it('closes a login that does not complete within the handshake timeout', async () => {
    const { session, unit } = start({ handshakeTimeoutMs: 100 });
    const closed = once(session, 'closed');
    unit.write(Buffer.from([0x00, 0x0f, 0x33]));
    expect((await closed)[0]).toBe('handshake-timeout');
  });

  it('closes an idle unit after the idle timeout', async () => {
    const { session, unit, next } = start({ idleTimeoutMs: 100 });
    unit.write(encodeImei('356307042441013'));
    await next(1);
    expect((await once(session, 'closed'))[0]).toBe('idle-timeout');
  });
});
