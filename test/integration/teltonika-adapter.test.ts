import { once } from 'node:events';
import net from 'node:net';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CommandName } from '../../src/domain/commands.js';
import type { Vehicle } from '../../src/domain/vehicle.js';
import { runTeltonikaSimulation, TeltonikaUnit } from '../../src/sim/teltonika/teltonika-unit.js';
import type { CommandOutcome } from '../../src/telematics/adapter.js';
import { CODEC_8, encodeAvlPacket, encodeImei } from '../../src/telematics/teltonika/codec.js';
import { teltonikaModel } from '../../src/telematics/teltonika/models.js';
import {
  type Instance,
  newImei,
  reload,
  startTeltonikaWorld,
  TEST_ADAPTER_OPTIONS,
  type TeltonikaWorld,
} from '../helpers/teltonika-world.js';

let w: TeltonikaWorld;
let a: Instance;

beforeAll(async () => {
  w = await startTeltonikaWorld();
  a = w.instances[0]!;
});
afterAll(async () => {
  await w?.close();
});

const run = (vehicle: Vehicle, command: CommandName, instance = a, budgetMs = 2_000): Promise<CommandOutcome> =>
  instance.adapter.execute({
    vehicle,
    command,
    flowId: 'test-flow',
    deadline: new Date(Date.now() + budgetMs),
    signal: AbortSignal.timeout(budgetMs),
  });

/** A raw TCP peer for hostile input: resolves `closed` with everything the server sent. */
function rawPeer(port: number): { socket: net.Socket; received: Buffer[]; closed: Promise<Buffer> } {
  const socket = net.createConnection({ host: '127.0.0.1', port, noDelay: true });
  const received: Buffer[] = [];
  socket.on('data', (d) => received.push(d));
  socket.on('error', () => undefined);
  const closed = once(socket, 'close').then(() => Buffer.concat(received));
  return { socket, received, closed };
}

async function connectedCar(): Promise<{ vehicle: Vehicle; unit: TeltonikaUnit }> {
  const vehicle = await w.addVehicle('teltonika-fmc-can-car');
  const unit = await w.connectUnit(vehicle);
  return { vehicle: await reload(w.store, vehicle), unit };
}

describe('IMEI login (Teltonika data sending protocol)', () => {
  it('accepts a unit whose IMEI is a vehicle’s telematics_unit_id and reports it online', async () => {
    const { vehicle } = await connectedCar();
    expect(a.recorder.lastConnection(vehicle.telematics_unit_id)).toBe(true);
    expect(vehicle.life_status).toBe('ONLINE');
    expect(a.adapter.connectedUnits).toContain(vehicle.telematics_unit_id);
  });

  it('rejects an unknown IMEI with 0x00 and closes the connection', async () => {
    const peer = rawPeer(a.adapter.port);
    await once(peer.socket, 'connect');
    peer.socket.write(encodeImei(newImei()));
    expect((await peer.closed).toString('hex')).toBe('00');
  });

  it('lets a unit in once its vehicle is added, although it was rejected a moment before', async () => {
    const vehicle = await w.addVehicle('teltonika-tst-scooter');
    await w.removeVehicle(vehicle);
    const unit = new TeltonikaUnit({
      host: '127.0.0.1',
      port: a.adapter.port,
      imei: vehicle.telematics_unit_id,
      model: vehicle.vehicle_model_id,
      reportIntervalMs: 0,
      reconnect: false,
    });
    expect(await unit.connect()).toBe(false);
    await w.insertVehicle(vehicle);
    expect(await unit.connect()).toBe(true);
    await unit.stop();
  });
});

describe('AVL records', () => {
  it('acknowledges a Codec 8 Extended packet with its record count and reports the state with GPS times', async () => {
    const { vehicle, unit } = await connectedCar();
    unit.vehicle.lat = 54.6872;
    unit.vehicle.lon = 25.2797;
    unit.vehicle.ignition = true;
    const since = a.recorder.markStateReports();
    expect(await unit.sendRecords(3)).toBe(3);
    const report = (await a.recorder.waitForStateReport(vehicle.telematics_unit_id, since)) as Record<
      string,
      { timestamp: string; value: unknown }
    >;
    expect(report.position?.value).toEqual({ lat: 54.6872, lon: 25.2797 });
    expect(report.ignition?.value).toBe('ON');
    expect(report.driving_enabled?.value).toBe(false);
    expect(report.mileage_in_kilometers?.value).toBe(12345);
    expect(report.state_of_charge_or_fuel_level_in_percent?.value).toBe(80);
    expect(report.cellular_signal_quality?.value).toBe(4);
    // The newest of the three records (whole seconds, as the unit's GPS clock gives them).
    const newest = Math.floor(Date.now() / 1000) * 1000;
    expect(Math.abs(Date.parse(report.position!.timestamp) - newest)).toBeLessThan(2_000);
  });

  it('acknowledges Codec 8 packets too', async () => {
    const { unit } = await connectedCar();
    const records = [unit.record(), unit.record()];
    const ack = once(unit, 'ack');
    unit.writeRaw(encodeAvlPacket(CODEC_8, records));
    expect((await ack)[0]).toBe(2);
  });
});

describe('commands (Codec 12)', () => {
  it('executes every command of the car model with its text command', async () => {
    const { vehicle, unit } = await connectedCar();
    const model = teltonikaModel('teltonika-fmc-can-car')!;
    const sent: string[] = [];
    unit.on('command', (t) => sent.push(t));
    const expectations: Array<[CommandName, Record<string, unknown>]> = [
      ['REQUEST_VEHICLE_STATE', { mileage_in_kilometers: 12345 }],
      ['UNLOCK_CENTRAL_LOCK', { central_lock: 'UNLOCKED' }],
      ['ENABLE_DRIVING', { driving_enabled: true }],
      ['LOCK_CENTRAL_LOCK', { central_lock: 'LOCKED' }],
      ['DISABLE_DRIVING', { driving_enabled: false }],
    ];
    for (const [command, expected] of expectations) {
      const outcome = await run(vehicle, command);
      expect(outcome.kind, command).toBe('succeeded');
      if (outcome.kind !== 'succeeded') continue;
      for (const [k, v] of Object.entries(expected)) expect(outcome.state[k]?.value, `${command} ${k}`).toEqual(v);
    }
    expect(sent).toEqual(expectations.map(([c]) => model.commands[c]!.text));
    expect(sent).toEqual(['getrecord', 'lvcanopenalldoors', 'setdigout 0', 'lvcanclosealldoors', 'setdigout 1']);
  });

  it('executes every command of the scooter model', async () => {
    const vehicle = await reload(w.store, await w.addVehicle('teltonika-tst-scooter'));
    const unit = await w.connectUnit(vehicle);
    const sent: string[] = [];
    unit.on('command', (t) => sent.push(t));
    const rsv = await run(vehicle, 'REQUEST_VEHICLE_STATE');
    expect(rsv.kind === 'succeeded' && rsv.state.state_of_charge_or_fuel_level_in_percent?.value).toBe(80);
    const enable = await run(vehicle, 'ENABLE_DRIVING');
    expect(enable.kind === 'succeeded' && enable.state.driving_enabled?.value).toBe(true);
    const disable = await run(vehicle, 'DISABLE_DRIVING');
    expect(disable.kind === 'succeeded' && disable.state.driving_enabled?.value).toBe(false);
    expect((await run(vehicle, 'DRAW_ATTENTION')).kind).toBe('succeeded');
    expect(sent).toEqual(['getrecord', 'sclockctrl 0', 'sclockctrl 1', 'sclookfor 1']);
    // A command outside the model never reaches the unit.
    expect((await run(vehicle, 'UNLOCK_CENTRAL_LOCK')).kind).toBe('not-supported');
    expect(sent).toHaveLength(4);
  });

  // SPEC §1: refusal → 409 vehicle/conflicting-state; failure → 500 telematics-unit/error
  it('judges refusals and failures by the model’s answer patterns', async () => {
    const { vehicle, unit } = await connectedCar();
    unit.behaviour = 'refuse';
    expect(await run(vehicle, 'LOCK_CENTRAL_LOCK')).toEqual({
      kind: 'refused',
      reason: 'Close all doors: not executed, door open',
    });
    unit.behaviour = 'fail';
    expect(await run(vehicle, 'DISABLE_DRIVING')).toEqual({ kind: 'failed', reason: 'DOUT1 Is disabled from CFG' });
  });

  // SPEC §1: no answer within the budget → 504, delivered with the outcome unknown
  it('reports no-answer, delivered, for a unit that stays silent', async () => {
    const { vehicle, unit } = await connectedCar();
    unit.behaviour = 'silent';
    expect(await run(vehicle, 'LOCK_CENTRAL_LOCK', a, 200)).toEqual({ kind: 'no-answer', delivered: true });
  });

  // SPEC §1: unit not connected → 504 at once, never delivered
  it('answers not-connected at once when the unit disconnected', async () => {
    const { vehicle, unit } = await connectedCar();
    await unit.stop();
    await a.recorder.waitForConnection(vehicle.telematics_unit_id, false);
    const fresh = await reload(w.store, vehicle);
    expect(fresh.life_status).toBe('OFFLINE');
    const started = Date.now();
    expect((await run(fresh, 'UNLOCK_CENTRAL_LOCK', a, 5_000)).kind).toBe('not-connected');
    expect(Date.now() - started).toBeLessThan(100);
  });

  it('ends an in-flight command as no-answer, delivered, when the connection drops', async () => {
    const { vehicle, unit } = await connectedCar();
    unit.behaviour = 'silent';
    unit.once('command', () => unit.dropConnection());
    expect(await run(vehicle, 'UNLOCK_CENTRAL_LOCK', a, 5_000)).toEqual({ kind: 'no-answer', delivered: true });
  });
});

describe('several fleetgate instances (production topology)', () => {
  it('delivers a command received by instance A to the unit connected to instance B', async () => {
    const b = w.instances[1] ?? (await w.addInstance());
    const vehicle = await w.addVehicle('teltonika-fmc-can-car');
    const unit = await w.connectUnit(vehicle, b);
    const sent: string[] = [];
    unit.on('command', (t) => sent.push(t));
    const fresh = await reload(w.store, vehicle);
    expect(fresh.life_status).toBe('ONLINE');
    expect(a.adapter.connectedUnits).not.toContain(vehicle.telematics_unit_id);
    const outcome = await run(fresh, 'UNLOCK_CENTRAL_LOCK', a);
    expect(outcome.kind === 'succeeded' && outcome.state.central_lock?.value).toBe('UNLOCKED');
    expect(sent).toEqual(['lvcanopenalldoors']);
    unit.behaviour = 'refuse';
    expect((await run(fresh, 'LOCK_CENTRAL_LOCK', a)).kind).toBe('refused');
  });

  it('answers not-connected when the store says ONLINE but no instance holds the unit', async () => {
    const vehicle = await w.addVehicle('teltonika-fmc-can-car');
    const stale = { ...vehicle, life_status: 'ONLINE' as const };
    expect(await run(stale, 'UNLOCK_CENTRAL_LOCK', a, 5_000)).toMatchObject({ kind: 'not-connected' });
  });

  it('drops the stale connection on the old instance when the unit reconnects to another one, without reporting it offline', async () => {
    const b = w.instances[1] ?? (await w.addInstance());
    const vehicle = await w.addVehicle('teltonika-tst-scooter');
    const onA = await w.connectUnit(vehicle, a);
    const onB = new TeltonikaUnit({
      host: '127.0.0.1',
      port: b.adapter.port,
      imei: vehicle.telematics_unit_id,
      model: vehicle.vehicle_model_id,
      reportIntervalMs: 0,
      reconnect: false,
    });
    const dropped = once(onA, 'disconnected');
    expect(await onB.connect()).toBe(true);
    await dropped;
    expect(a.recorder.lastConnection(vehicle.telematics_unit_id)).toBe(true);
    expect((await run(await reload(w.store, vehicle), 'DRAW_ATTENTION', a)).kind).toBe('succeeded');
    await onB.stop();
  });
});

describe('hostile network input', () => {
  let victim: { vehicle: Vehicle; unit: TeltonikaUnit };
  beforeAll(async () => {
    victim = await connectedCar();
  });
  const victimStillWorks = async (): Promise<void> => {
    expect(victim.unit.connected).toBe(true);
    expect((await run(victim.vehicle, 'UNLOCK_CENTRAL_LOCK')).kind).toBe('succeeded');
  };

  it('closes a connection that sends a wrong CRC, without acknowledging', async () => {
    const { unit } = await connectedCar();
    const packet = encodeAvlPacket(CODEC_8, [unit.record()]);
    packet[packet.length - 1] = (packet[packet.length - 1] as number) ^ 0xff;
    const gone = once(unit, 'disconnected');
    const acks: number[] = [];
    unit.on('ack', (n) => acks.push(n));
    unit.writeRaw(packet);
    await gone;
    expect(acks).toEqual([]);
    await victimStillWorks();
  });

  it('closes a connection announcing an absurd length at once', async () => {
    const { unit } = await connectedCar();
    const gone = once(unit, 'disconnected');
    const started = performance.now();
    unit.writeRaw(Buffer.from('000000007FFFFFFF', 'hex'));
    await gone;
    // At once: on the length itself, not after waiting for a frame that never completes.
    expect(performance.now() - started).toBeLessThan(TEST_ADAPTER_OPTIONS.frameTimeoutMs!);
    await victimStillWorks();
  });

  it('closes a truncated frame that never completes (frame timeout)', async () => {
    const { unit } = await connectedCar();
    const gone = once(unit, 'disconnected');
    unit.writeRaw(encodeAvlPacket(CODEC_8, [unit.record()]).subarray(0, 20));
    await gone;
    await victimStillWorks();
  });

  it('closes garbage instead of an IMEI', async () => {
    const peer = rawPeer(a.adapter.port);
    peer.socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    expect((await peer.closed).length).toBe(0);
    await victimStillWorks();
  });

  it('closes a slowloris login after the handshake timeout', async () => {
    const peer = rawPeer(a.adapter.port);
    await once(peer.socket, 'connect');
    const started = Date.now();
    peer.socket.write(Buffer.from([0x00]));
    await peer.closed;
    expect(Date.now() - started).toBeLessThan(2_000);
    await victimStillWorks();
  });

  it('survives a flood of unknown IMEIs: each is rejected, memory stays bounded, the unit keeps working', async () => {
    const before = process.memoryUsage().heapUsed;
    const peers = Array.from({ length: 60 }, () => rawPeer(a.adapter.port));
    for (const p of peers) p.socket.on('connect', () => p.socket.write(encodeImei(newImei())));
    const command = run(victim.vehicle, 'ENABLE_DRIVING');
    const answers = await Promise.all(peers.map((p) => p.closed));
    // Each got the rejection byte, or was refused outright once the handshake cap was reached.
    for (const answer of answers) expect(['00', ''].includes(answer.toString('hex'))).toBe(true);
    expect((await command).kind).toBe('succeeded');
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(32 * 1024 * 1024);
    await victimStillWorks();
  });
});

describe('fleetgate simulate (Teltonika units)', () => {
  it('logs known units in, reports refused ones, and stops on the signal', async () => {
    const vehicle = await w.addVehicle('teltonika-tst-scooter');
    const out = new PassThrough();
    const lines: string[] = [];
    out.on('data', (d: Buffer) => lines.push(...d.toString().trim().split('\n')));
    const stop = new AbortController();
    const online = a.recorder.waitForConnection(vehicle.telematics_unit_id, true);
    const done = runTeltonikaSimulation({
      host: '127.0.0.1',
      port: a.adapter.port,
      units: [
        { imei: vehicle.telematics_unit_id, model: 'teltonika-tst-scooter' },
        { imei: newImei(), model: 'teltonika-fmc-can-car' },
      ],
      reportIntervalMs: 0,
      answerDelayMs: 0,
      out,
      signal: stop.signal,
    });
    await online;
    expect((await run(await reload(w.store, vehicle), 'DRAW_ATTENTION')).kind).toBe('succeeded');
    stop.abort();
    await done;
    expect(lines.some((l) => l.includes(`${vehicle.telematics_unit_id} logged in`))).toBe(true);
    expect(lines.some((l) => l.includes('was refused'))).toBe(true);
    expect(lines.at(-1)).toMatch(/2 units, 1 commands answered/);
  });
});
