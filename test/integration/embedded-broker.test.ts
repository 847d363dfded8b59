import { once } from 'node:events';
import net from 'node:net';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type BrokerThreadHost, type EmbeddedBroker, startEmbeddedBroker } from '../../src/broker/embedded-broker.js';
import { connectServiceClient } from '../../src/broker/mqtt-connection.js';
import { FleetgateMqttAdapter } from '../../src/telematics/fleetgate-mqtt/fleetgate-mqtt-adapter.js';
import {
  encodeState,
  encodeStatus,
  MAX_PAYLOAD_BYTES,
  unitTopic,
} from '../../src/telematics/fleetgate-mqtt/protocol.js';
import { AdapterEventRecorder } from '../contract/adapter.contract.js';
import { startAdapter } from '../helpers/adapter-context.js';

const logger = pino({ level: 'silent' });

/** The next `event` of an mqtt.js client (its typed emitter does not fit events.once). */
function next<T extends unknown[]>(client: MqttClient, event: 'message' | 'close' | 'connect'): Promise<T> {
  return new Promise((resolve) => client.once(event, (...args: unknown[]) => resolve(args as T)));
}

/** The QoS the broker granted, 128 for a refusal (mqtt.js reports that as an error). */
function granted(client: MqttClient, topic: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    client.subscribe(topic, { qos: 1 }, (err, grants) => {
      if (err) resolve(/Subscribe error/.test(err.message) ? 128 : undefined);
      else resolve(grants?.[0]?.qos);
    });
  });
}
const TS = new Date().toISOString();

describe('embedded MQTT broker (SPEC §5: devices authenticate too)', () => {
  const passwords = new Map([
    ['unit-a', 'secret-a'],
    ['unit-b', 'secret-b'],
    ['unit-c', 'secret-c'],
    ['unit-guessed', 'secret-guessed'],
  ]);
  const authCalls: string[] = [];
  let broker: EmbeddedBroker;
  let service: MqttClient;
  const clients: MqttClient[] = [];

  /** Connects a raw client; rejects with the broker's refusal. */
  async function connect(options: IClientOptions): Promise<MqttClient> {
    const client = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0, protocolVersion: 4, ...options }, false);
    clients.push(client);
    return client;
  }

  const unit = (id: string, extra: IClientOptions = {}) =>
    connect({ clientId: id, username: id, password: passwords.get(id), clean: true, ...extra });

  beforeAll(async () => {
    broker = await startEmbeddedBroker({
      host: '127.0.0.1',
      port: 0,
      logger,
      authenticateUnit: async (username, password) => {
        authCalls.push(username);
        return passwords.get(username) === password;
      },
    });
    service = await connectServiceClient(broker.url, broker.serviceCredentials, logger);
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
  });
  afterAll(async () => {
    await service?.endAsync();
    await broker?.close();
  });

  it('listens on a free port and names a connectable URL', () => {
    expect(broker.port).toBeGreaterThan(0);
    expect(broker.url).toBe(`mqtt://127.0.0.1:${broker.port}`);
  });

  it('refuses a wrong password', async () => {
    await expect(connect({ clientId: 'unit-a', username: 'unit-a', password: 'nope' })).rejects.toThrow(
      /Bad username or password/i,
    );
  });

  it('throttles password guessing: after 10 failures the password is no longer checked', async () => {
    const before = authCalls.filter((u) => u === 'unit-guessed').length;
    for (let i = 0; i < 12; i++) {
      await expect(
        connect({ clientId: 'unit-guessed', username: 'unit-guessed', password: `guess-${i}` }),
      ).rejects.toThrow(/Bad username or password/i);
    }
    expect(authCalls.filter((u) => u === 'unit-guessed').length - before).toBe(10);
    // Within the window even the right password is refused: the guesser learns nothing.
    await expect(unit('unit-guessed')).rejects.toThrow(/Bad username or password/i);
  });

  // Issue 21 item 3: throttling must not let anyone who knows a unit id keep the unit offline.
  it('throttles guessing per source address: the unit connecting from its own address still gets in', async () => {
    const fromSource = (localAddress: string, password: string) =>
      new Promise<MqttClient>((resolve, reject) => {
        const client = new mqtt.MqttClient(() => net.connect({ host: '127.0.0.1', port: broker.port, localAddress }), {
          clientId: 'unit-b',
          username: 'unit-b',
          password,
          clean: true,
          reconnectPeriod: 0,
          protocolVersion: 4,
        });
        clients.push(client);
        client.once('connect', () => resolve(client));
        client.once('error', reject);
      });
    // An attacker at 127.0.0.3 guesses unit-b's password until it is throttled...
    for (let i = 0; i < 15; i++) {
      await expect(fromSource('127.0.0.3', `guess-${i}`)).rejects.toThrow(/Bad username or password/i);
    }
    await expect(fromSource('127.0.0.3', 'secret-b')).rejects.toThrow(/Bad username or password/i);
    // ...while the unit itself, from its own address, logs in at once.
    const b = await fromSource('127.0.0.4', 'secret-b');
    expect(b.connected).toBe(true);
  });

  it('refuses a unit whose client id is not its username', async () => {
    await expect(
      connect({ clientId: 'unit-b', username: 'unit-a', password: 'secret-a', clean: true }),
    ).rejects.toThrow(/Identifier rejected/i);
  });

  it('refuses a username that cannot be a unit id without asking the store', async () => {
    const before = authCalls.length;
    for (const name of ['a/b', 'unit+', `u${'x'.repeat(200)}`]) {
      await expect(connect({ clientId: name, username: name, password: 'secret', clean: true })).rejects.toThrow(
        /Bad username or password/i,
      );
    }
    expect(authCalls.length).toBe(before);
  });

  // SPEC §1: commands are never queued — a persistent session would queue them.
  it('refuses a unit asking for a persistent session', async () => {
    await expect(unit('unit-a', { clean: false })).rejects.toThrow(/Not authorized/i);
  });

  it('refuses the service account with a wrong password and anonymous logins', async () => {
    await expect(
      connect({ clientId: 'x', username: broker.serviceCredentials.username, password: 'guess' }),
    ).rejects.toThrow(/Bad username or password/i);
    await expect(connect({ clientId: 'anon' })).rejects.toThrow(/Bad username or password/i);
  });

  it('lets a unit subscribe only to its own command topic', async () => {
    const a = await unit('unit-a');
    expect(await granted(a, unitTopic('unit-a', 'commands'))).toBe(1);
    expect(await granted(a, unitTopic('unit-b', 'commands'))).toBe(128);
    expect(await granted(a, 'fleetgate/v1/units/+/commands')).toBe(128);
    expect(await granted(a, 'fleetgate/v1/units/unit-a/#')).toBe(128);
    expect(await granted(a, '#')).toBe(128);
    expect(await granted(a, '$SYS/#')).toBe(128);
    expect(await granted(a, unitTopic('unit-a', 'state'))).toBe(128);
  });

  it('delivers a service command to its unit only', async () => {
    const a = await unit('unit-a');
    const b = await unit('unit-b');
    await a.subscribeAsync(unitTopic('unit-a', 'commands'), { qos: 1 });
    await b.subscribeAsync(unitTopic('unit-b', 'commands'), { qos: 1 });
    const gotB: string[] = [];
    b.on('message', (t) => gotB.push(t));
    const received = next<[string, Buffer]>(a, 'message');
    await service.publishAsync(unitTopic('unit-a', 'commands'), 'hello', { qos: 1 });
    const [topic, payload] = await received;
    expect(topic).toBe(unitTopic('unit-a', 'commands'));
    expect(payload.toString()).toBe('hello');
    expect(gotB).toEqual([]);
  });

  it('lets a unit publish to its own state, responses and status topics', async () => {
    const a = await unit('unit-a');
    const seen: string[] = [];
    const handler = (t: string) => seen.push(t);
    service.on('message', handler);
    await service.subscribeAsync('fleetgate/v1/units/unit-a/+', { qos: 1 });
    for (const kind of ['state', 'responses', 'status'] as const) {
      await a.publishAsync(unitTopic('unit-a', kind), '{}', { qos: 1 });
    }
    await a.publishAsync(unitTopic('unit-a', 'status'), encodeStatus('online'), { qos: 1, retain: true });
    await service.unsubscribeAsync('fleetgate/v1/units/unit-a/+');
    service.off('message', handler);
    expect(seen).toEqual(
      expect.arrayContaining((['state', 'responses', 'status'] as const).map((k) => unitTopic('unit-a', k))),
    );
  });

  it.each([
    ["another unit's state topic", unitTopic('unit-b', 'state'), false],
    ["another unit's status topic", unitTopic('unit-b', 'status'), false],
    ['its own command topic', unitTopic('unit-a', 'commands'), false],
    ['a topic outside the protocol', 'somewhere/else', false],
    ['$SYS', '$SYS/broker/x', false],
    ['its own state topic, retained', unitTopic('unit-a', 'state'), true],
  ])('disconnects a unit publishing to %s', async (_name, topic, retain) => {
    const a = await unit('unit-a');
    const forwarded: string[] = [];
    const handler = (t: string) => forwarded.push(t);
    service.on('message', handler);
    await service.subscribeAsync(topic.startsWith('$') ? '$SYS/broker/x' : topic, { qos: 1 });
    const closed = next(a, 'close');
    a.publish(topic, 'forged', { qos: 1, retain });
    await closed;
    await service.unsubscribeAsync(topic.startsWith('$') ? '$SYS/broker/x' : topic);
    service.off('message', handler);
    expect(forwarded).toEqual([]);
  });

  it('gives the service account full access', async () => {
    const got = new Promise<string>((resolve) => {
      const handler = (t: string) => {
        if (t === unitTopic('unit-c', 'state')) {
          service.off('message', handler);
          resolve(t);
        }
      };
      service.on('message', handler);
    });
    expect((await service.subscribeAsync('#', { qos: 1 }))[0]?.qos).toBe(1);
    await service.publishAsync(unitTopic('unit-c', 'state'), '{}', { qos: 1 });
    await got;
    await service.unsubscribeAsync('#');
  });

  it('publishes the last will as a retained offline status when a unit drops off', async () => {
    const will = {
      topic: unitTopic('unit-b', 'status'),
      payload: Buffer.from(encodeStatus('offline')),
      qos: 1 as const,
      retain: true,
    };
    const b = await unit('unit-b', { will });
    await b.publishAsync(unitTopic('unit-b', 'status'), encodeStatus('online'), { qos: 1, retain: true });
    const statuses: string[] = [];
    const handler = (t: string, p: Buffer) => t === will.topic && statuses.push(JSON.parse(p.toString()).status);
    service.on('message', handler);
    await service.subscribeAsync(will.topic, { qos: 1 });
    const offline = new Promise<void>((resolve) =>
      service.on('message', (t, p) => t === will.topic && p.toString().includes('offline') && resolve()),
    );
    b.stream.destroy(); // a lost link: no DISCONNECT packet
    await offline;
    await service.unsubscribeAsync(will.topic);
    service.off('message', handler);
    // A subscription made while the live 'online' is still being forwarded gets it twice (the
    // retained copy and the live one), which MQTT allows: repeats are collapsed.
    expect(statuses.filter((s, i) => s !== statuses[i - 1])).toEqual(['online', 'offline']);
  });

  it('remembers a successful login, and forgets it and disconnects the unit on removeUnit', async () => {
    authCalls.length = 0;
    const c1 = await unit('unit-c');
    await c1.endAsync();
    const c2 = await unit('unit-c');
    expect(authCalls).toEqual(['unit-c']);
    const closed = next(c2, 'close');
    await broker.provisioner.removeUnit('unit-c');
    await closed;
    passwords.delete('unit-c');
    await expect(unit('unit-c', { password: 'secret-c' })).rejects.toThrow(/Bad username or password/i);
    expect(authCalls).toEqual(['unit-c', 'unit-c']);
  });

  it('survives malformed and oversized state payloads; the adapter drops them and keeps working', async () => {
    const recorder = new AdapterEventRecorder();
    const started = await startAdapter(new FleetgateMqttAdapter(), {
      mqtt: service,
      broker: broker.provisioner,
      recorder,
    });
    try {
      const a = await unit('unit-a');
      const topic = unitTopic('unit-a', 'state');
      const garbage = [
        'not json',
        '{"v":1,"state":',
        '[]',
        '{"v":2,"state":{}}',
        '{"v":1,"state":"x"}',
        Buffer.from([0xff, 0x00, 0xfe]),
        `{"v":1,"state":{"x":"${'a'.repeat(MAX_PAYLOAD_BYTES)}"}}`,
      ];
      for (const g of garbage) await a.publishAsync(topic, g, { qos: 1 });
      await a.publishAsync(unitTopic('unit-a', 'status'), 'garbage', { qos: 1 });
      await a.publishAsync(unitTopic('unit-a', 'responses'), '{"v":1,"id":', { qos: 1 });
      const good = { mileage_in_kilometers: { timestamp: TS, value: 12 } };
      await a.publishAsync(topic, encodeState(good), { qos: 1 });
      expect(await recorder.waitForStateReport('unit-a')).toEqual(good);
      expect(recorder.stateReports).toHaveLength(1);
      expect(a.connected).toBe(true);
    } finally {
      await started.close();
    }
  });
});

describe('connectServiceClient', () => {
  let broker: EmbeddedBroker;
  beforeAll(async () => {
    broker = await startEmbeddedBroker({ host: '127.0.0.1', port: 0, logger, authenticateUnit: async () => false });
  });
  afterAll(async () => {
    await broker?.close();
  });

  it('sets TCP_NODELAY, reconnects after a lost link and restores its subscriptions', async () => {
    const client = await connectServiceClient(broker.url, broker.serviceCredentials, logger);
    const other = await connectServiceClient(broker.url, broker.serviceCredentials, logger);
    try {
      expect(client.options.clientId).not.toBe(other.options.clientId);
      expect(client.options.clean).toBe(true);
      await client.subscribeAsync('probe/topic', { qos: 1 });
      const reconnected = next(client, 'connect');
      client.stream.destroy(); // a lost link
      await reconnected;
      const received = next<[string, Buffer]>(client, 'message');
      await other.publishAsync('probe/topic', 'after reconnect', { qos: 1 });
      expect((await received)[1].toString()).toBe('after reconnect');
    } finally {
      await client.endAsync();
      await other.endAsync();
    }
  });

  it('rejects when the first connection is refused', async () => {
    await expect(
      connectServiceClient(broker.url, { username: 'fleetgate-service-x', password: 'no' }, logger),
    ).rejects.toThrow(/Bad username or password/i);
  });
});

/** A logger at info that keeps its records, for tests of what the broker thread logs. */
function recordingLogger() {
  const records: Array<{ level: number; unit?: string; msg: string }> = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => records.push(JSON.parse(line)) });
  return { records, logger };
}

describe('embedded broker thread', () => {
  it('fails with EADDRINUSE on a taken port, so the caller can try the next one', async () => {
    const taken = net.createServer().listen(0, '127.0.0.1');
    await once(taken, 'listening');
    const port = (taken.address() as net.AddressInfo).port;
    try {
      await expect(
        startEmbeddedBroker({ host: '127.0.0.1', port, logger, authenticateUnit: async () => true }),
      ).rejects.toMatchObject({ code: 'EADDRINUSE' });
    } finally {
      taken.close();
    }
  });

  it('refuses a login with "server unavailable" when the store check fails, and logs it', async () => {
    const { records, logger: recording } = recordingLogger();
    const broker = await startEmbeddedBroker({
      host: '127.0.0.1',
      port: 0,
      logger: recording,
      authenticateUnit: async () => {
        throw new Error('database unavailable: disk I/O error');
      },
    });
    try {
      const login = mqtt.connectAsync(
        broker.url,
        { clientId: 'unit-x', username: 'unit-x', password: 'p', reconnectPeriod: 0, protocolVersion: 4 },
        false,
      );
      await expect(login).rejects.toThrow(/Server unavailable/i);
      expect(records).toContainEqual(
        expect.objectContaining({ level: 50, unit: 'unit-x', msg: 'unit authentication failed with an error' }),
      );
    } finally {
      await broker.close();
    }
  });

  it('closes once, however often close() is called, ending every connection, and then refuses connections', async () => {
    const broker = await startEmbeddedBroker({
      host: '127.0.0.1',
      port: 0,
      logger,
      authenticateUnit: async () => true,
    });
    // Connected units, and a socket that never sent CONNECT: closing ends every connection.
    const units = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        mqtt.connectAsync(broker.url, { clientId: `u${i}`, username: `u${i}`, password: 'p', reconnectPeriod: 0 }),
      ),
    );
    const silent = net.connect(broker.port, '127.0.0.1');
    await once(silent, 'connect');
    // Ended either way: a FIN, or a reset (the thread's sockets close with it, unread data or not).
    for (const u of units) u.on('error', () => undefined);
    silent.on('error', () => undefined);
    const ended = Promise.all([
      ...units.map((u) => next(u, 'close')),
      new Promise((resolve) => silent.once('close', resolve)),
    ]);
    await Promise.all([broker.close(), broker.close()]);
    await broker.close();
    await ended;
    const socket = net.connect(broker.port, '127.0.0.1');
    await expect(once(socket, 'connect')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });
});

describe('embedded broker thread, when it dies', () => {
  it('is started again on the same port: units and the service client reconnect and commands flow', async () => {
    const { records, logger: recording } = recordingLogger();
    const broker = await startEmbeddedBroker({
      host: '127.0.0.1',
      port: 0,
      logger: recording,
      authenticateUnit: async (username, password) => username === 'unit-r' && password === 'secret-r',
    });
    const service = await connectServiceClient(broker.url, broker.serviceCredentials, logger);
    const unitClient = await mqtt.connectAsync(broker.url, {
      clientId: 'unit-r',
      username: 'unit-r',
      password: 'secret-r',
      protocolVersion: 4,
      reconnectPeriod: 50,
    });
    try {
      await unitClient.subscribeAsync(unitTopic('unit-r', 'commands'), { qos: 1 });
      const back = Promise.all([next(service, 'connect'), next(unitClient, 'connect')]);
      // What an uncaught error inside aedes would do to the thread.
      await (broker as unknown as { host: BrokerThreadHost }).host.worker!.terminate();
      await back;
      expect(records).toContainEqual(
        expect.objectContaining({ level: 50, msg: 'embedded MQTT broker thread exited; starting it again' }),
      );
      const received = next<[string, Buffer]>(unitClient, 'message');
      await service.publishAsync(unitTopic('unit-r', 'commands'), 'after the restart', { qos: 1 });
      expect((await received)[1].toString()).toBe('after the restart');
    } finally {
      await unitClient.endAsync(true);
      await service.endAsync(true);
      await broker.close();
    }
  });
});
