import { describe, expect, it } from 'vitest';
import { COMMANDS } from '../../src/domain/commands.js';
import { STATE_CAPABILITIES } from '../../src/domain/state-catalogue.js';
import { FLEETGATE_MODELS } from '../../src/telematics/fleetgate-mqtt/models.js';
import {
  decodeCommand,
  decodeResponse,
  decodeState,
  decodeStatus,
  encodeCommand,
  encodeResponse,
  encodeState,
  encodeStatus,
  isValidUnitId,
  MAX_PAYLOAD_BYTES,
  MAX_REASON_LENGTH,
  parseUnitTopic,
  unitTopic,
} from '../../src/telematics/fleetgate-mqtt/protocol.js';

const TS = '2020-01-30T13:22:05.000Z';

describe('fleetgate/v1 topics', () => {
  it('builds and parses every unit topic', () => {
    for (const kind of ['commands', 'responses', 'state', 'status'] as const) {
      const topic = unitTopic('UNIT-42', kind);
      expect(topic).toBe(`fleetgate/v1/units/UNIT-42/${kind}`);
      expect(parseUnitTopic(topic)).toEqual({ unitId: 'UNIT-42', kind });
    }
  });

  it.each([
    'fleetgate/v1/units/',
    'fleetgate/v1/units//state',
    'fleetgate/v1/units/a/b/state',
    'fleetgate/v1/units/a/unknown',
    'fleetgate/v1/units/a/state/',
    'fleetgate/v2/units/a/state',
    'other/v1/units/a/state',
    'fleetgate/v1/units/+/state',
    'fleetgate/v1/units/#',
    'fleetgate/v1/units/a b/state',
    `fleetgate/v1/units/${'x'.repeat(129)}/state`,
  ])('rejects %s', (topic) => {
    expect(parseUnitTopic(topic)).toBeUndefined();
  });

  it('accepts only unit ids that are safe in one topic level', () => {
    expect(isValidUnitId('356307042441013')).toBe(true);
    expect(isValidUnitId('fg_car-1.a:b')).toBe(true);
    for (const bad of ['', 'a/b', 'a+', '#', '$SYS', 'a b', 'ü', 'x'.repeat(129), 'a\u0000']) {
      expect(isValidUnitId(bad)).toBe(false);
    }
  });
});

describe('fleetgate/v1 commands', () => {
  it('round-trips every command with its expiry', () => {
    for (const command of COMMANDS) {
      const encoded = encodeCommand('c0ffee', command, new Date(TS), new Date('2020-01-30T13:22:20.000Z'));
      const decoded = decodeCommand(Buffer.from(encoded));
      expect(decoded).toEqual({
        ok: true,
        value: { v: 1, id: 'c0ffee', command, issued_at: TS, expires_at: '2020-01-30T13:22:20.000Z' },
      });
    }
  });

  it('decodes the documented example exactly (docs/mqtt-protocol.md)', () => {
    const example =
      '{"v":1,"id":"6f1c2a9e-1d0b-4c53-9a55-0d1f8f3f8a11","command":"UNLOCK_CENTRAL_LOCK","issued_at":"2026-01-30T13:22:05.120Z","expires_at":"2026-01-30T13:22:20.120Z"}';
    const decoded = decodeCommand(example);
    expect(decoded.ok).toBe(true);
  });

  it('ignores unknown fields (versioning rule)', () => {
    const decoded = decodeCommand(
      JSON.stringify({ v: 1, id: 'a', command: 'DRAW_ATTENTION', issued_at: TS, expires_at: TS, extra: { x: 1 } }),
    );
    expect(decoded).toEqual({
      ok: true,
      value: { v: 1, id: 'a', command: 'DRAW_ATTENTION', issued_at: TS, expires_at: TS },
    });
  });

  it.each([
    ['no expiry', { v: 1, id: 'a', command: 'DRAW_ATTENTION', issued_at: TS }],
    ['unknown command', { v: 1, id: 'a', command: 'SELF_DESTRUCT', issued_at: TS, expires_at: TS }],
    ['wrong version', { v: 2, id: 'a', command: 'DRAW_ATTENTION', issued_at: TS, expires_at: TS }],
    ['no version', { id: 'a', command: 'DRAW_ATTENTION', issued_at: TS, expires_at: TS }],
    ['numeric id', { v: 1, id: 7, command: 'DRAW_ATTENTION', issued_at: TS, expires_at: TS }],
    ['local time', { v: 1, id: 'a', command: 'DRAW_ATTENTION', issued_at: TS, expires_at: '2020-01-30 13:22' }],
  ])('rejects a command with %s', (_name, message) => {
    expect(decodeCommand(JSON.stringify(message)).ok).toBe(false);
  });
});

describe('fleetgate/v1 responses', () => {
  it('decodes each status', () => {
    expect(decodeResponse(encodeResponse({ id: 'a', status: 'ACCEPTED' }))).toEqual({
      ok: true,
      value: { v: 1, id: 'a', status: 'ACCEPTED' },
    });
    const state = { central_lock: { timestamp: TS, value: 'UNLOCKED' } };
    expect(decodeResponse(encodeResponse({ id: 'a', status: 'SUCCEEDED', state, timestamp: TS }))).toEqual({
      ok: true,
      value: { v: 1, id: 'a', status: 'SUCCEEDED', state, timestamp: TS },
    });
    for (const status of ['REFUSED', 'FAILED', 'UNSUPPORTED'] as const) {
      const decoded = decodeResponse(encodeResponse({ id: 'a', status, reason: 'ignition is on' }));
      expect(decoded).toEqual({ ok: true, value: { v: 1, id: 'a', status, reason: 'ignition is on' } });
    }
  });

  it('truncates long reasons instead of storing them whole', () => {
    const decoded = decodeResponse(encodeResponse({ id: 'a', status: 'FAILED', reason: 'x'.repeat(5000) }));
    expect(decoded.ok && decoded.value.reason?.length).toBe(MAX_REASON_LENGTH);
  });

  it.each([
    ['SUCCEEDED without state', { v: 1, id: 'a', status: 'SUCCEEDED' }],
    ['state that is an array', { v: 1, id: 'a', status: 'SUCCEEDED', state: [] }],
    ['unknown status', { v: 1, id: 'a', status: 'MAYBE' }],
    ['lower-case status', { v: 1, id: 'a', status: 'succeeded', state: {} }],
    ['empty id', { v: 1, id: '', status: 'ACCEPTED' }],
    ['overlong id', { v: 1, id: 'x'.repeat(65), status: 'ACCEPTED' }],
    ['reason that is not a string', { v: 1, id: 'a', status: 'FAILED', reason: { a: 1 } }],
    ['bad timestamp', { v: 1, id: 'a', status: 'ACCEPTED', timestamp: 'yesterday' }],
  ])('rejects a response with %s', (_name, message) => {
    expect(decodeResponse(JSON.stringify(message)).ok).toBe(false);
  });
});

describe('fleetgate/v1 state and status', () => {
  it('decodes state reports and leaves value checks to the catalogue', () => {
    const state = { mileage_in_kilometers: { timestamp: TS, value: 12.5 }, bogus: 1 };
    expect(decodeState(encodeState(state))).toEqual({ ok: true, value: { v: 1, state } });
    expect(decodeState('{"v":1}').ok).toBe(false);
    expect(decodeState('{"v":1,"state":null}').ok).toBe(false);
  });

  it('decodes online, offline and rejects anything else', () => {
    expect(decodeStatus(encodeStatus('online', new Date(TS)))).toEqual({
      ok: true,
      value: { v: 1, status: 'online', timestamp: TS },
    });
    expect(decodeStatus('{"v":1,"status":"offline"}')).toEqual({ ok: true, value: { v: 1, status: 'offline' } });
    expect(decodeStatus('{"v":1,"status":"ONLINE"}').ok).toBe(false);
    expect(decodeStatus('').ok).toBe(false);
  });
});

describe('hostile input never throws', () => {
  const hostile: Array<string | Buffer> = [
    '',
    'null',
    '[]',
    '"text"',
    '42',
    'true',
    '{',
    '{"v":1,',
    '\u0000\u0001',
    Buffer.from([0xff, 0xfe, 0xfd, 0x00]),
    '{"v":1,"__proto__":{"polluted":true},"id":"a","status":"ACCEPTED"}',
    '{"v":1e999,"id":"a"}',
    '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]',
    `{"v":1,"state":{${'"a":1,'.repeat(10)}"b":2}}`,
  ];

  it.each(hostile.map((h, i) => [i, h]))('payload #%s', (_i, payload) => {
    for (const decode of [decodeCommand, decodeResponse, decodeState, decodeStatus]) {
      expect(() => decode(payload)).not.toThrow();
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('rejects oversized payloads before parsing them', () => {
    const big = Buffer.from(`{"v":1,"state":{"x":"${'a'.repeat(MAX_PAYLOAD_BYTES)}"}}`);
    const decoded = decodeState(big);
    expect(decoded.ok).toBe(false);
    expect(!decoded.ok && decoded.error).toMatch(/exceeds/);
  });

  it('accepts a Uint8Array view without copying the wrong bytes', () => {
    const backing = Buffer.from(`xx${encodeStatus('online', new Date(TS))}yy`);
    const view = new Uint8Array(backing.buffer, backing.byteOffset + 2, backing.length - 4);
    expect(decodeStatus(view).ok).toBe(true);
  });
});

describe('FLEETGATE models', () => {
  it('use only catalogue commands and state capabilities; natively combined commands are offered', () => {
    for (const model of FLEETGATE_MODELS) {
      for (const c of model.capabilities.commands) expect(COMMANDS).toContain(c);
      for (const s of model.capabilities.vehicle_state) expect(STATE_CAPABILITIES).toContain(s);
      for (const c of model.native_combined ?? []) expect(model.capabilities.commands).toContain(c);
    }
    const car = FLEETGATE_MODELS.find((m) => m.id === 'fleetgate-car-v1');
    expect(car?.native_combined).toEqual(['UNLOCK_AND_ENABLE_DRIVING', 'LOCK_AND_DISABLE_DRIVING']);
  });
});
