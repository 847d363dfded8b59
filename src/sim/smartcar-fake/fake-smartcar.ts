import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { errorAnswer, type HttpAnswer, notFound } from './answers.js';
import { batchEndpoint } from './batch.js';
import { type FakeCounters, newCounters } from './counters.js';
import { type AuthSwitches, type FakeSwitches, requestLevelFailure, tokenEndpointFailure } from './faults.js';
import {
  type Application,
  basicClientApp,
  bearerApplication,
  type FakeApplicationInput,
  newApplication,
  tokenEndpoint,
} from './oauth.js';
import { type FakeVehicle, type FakeVehicleInput, newVehicle, vehicleEndpoint } from './vehicle-endpoints.js';

/**
 * A local fake of Smartcar's documented API v2.0 contract (docs/smartcar.md lists the sources):
 * the token endpoint with refresh-token rotation (oauth.ts), the vehicle endpoints fleetgate uses
 * (attributes, permissions, security, location, odometer, battery, fuel: vehicle-endpoints.ts;
 * batch: batch.ts), Smartcar's error object and headers (`SC-Request-Id`, `sc-data-age`,
 * `sc-unit-system`, `Retry-After`: answers.ts), and a switch for every failure fleetgate must map
 * (faults.ts). It is a real HTTP server so the adapter is tested over real sockets, and
 * `fleetgate simulate` can run the whole path without a Smartcar account. This file holds the
 * server, the routing and the controls tests and the simulator use.
 */
export interface FakeSmartcar {
  /** Base of the vehicle API, e.g. `http://127.0.0.1:1234/v2.0`. */
  readonly apiUrl: string;
  /** Base of the token endpoint, e.g. `http://127.0.0.1:1234`. */
  readonly authUrl: string;
  readonly counters: FakeCounters;
  /** Registers an application and its connected account; returns the account's first refresh token. */
  addApplication(app: FakeApplicationInput): string;
  addVehicle(vehicle: FakeVehicleInput): FakeVehicle;
  vehicle(id: string): FakeVehicle;
  /** Sets switches on one vehicle, or globally when `vehicleId` is omitted. */
  set(switches: FakeSwitches, vehicleId?: string): void;
  /** Clears the switches of one vehicle, or every switch everywhere when omitted. */
  clear(vehicleId?: string): void;
  /** Switches of the token endpoint for one application, or all when `clientId` is omitted. */
  setAuth(switches: AuthSwitches, clientId?: string): void;
  /** The owner revoked the application's access: every token of the account becomes invalid. */
  revokeAuthorization(clientId: string): void;
  /** Access tokens of the account stop working early (refresh token stays valid): a 401 to recover from. */
  expireAccessTokens(clientId: string): void;
  /** While on, every TCP connection is closed as soon as it opens (connection failure). */
  refuseConnections(on: boolean): void;
  /** The current (newest) refresh token of an application's account. */
  currentRefreshToken(clientId: string): string | undefined;
  /** Delay used by the `slow` switch. */
  slowMs: number;
  close(): Promise<void>;
}

export async function startFakeSmartcar(options: { port?: number; host?: string } = {}): Promise<FakeSmartcar> {
  const host = options.host ?? '127.0.0.1';
  const apps = new Map<string, Application>();
  const vehicles = new Map<string, FakeVehicle>();
  let global: FakeSwitches = {};
  let authSwitches: AuthSwitches = {};
  let refusing = false;
  const timers = new Set<NodeJS.Timeout>();
  const sockets = new Set<Socket>();
  const counters = newCounters();

  const fake: FakeSmartcar = {
    apiUrl: '',
    authUrl: '',
    counters,
    slowMs: 600_000,
    addApplication(input) {
      const app = newApplication(input);
      apps.set(app.clientId, app);
      return app.refreshToken!;
    },
    addVehicle(input) {
      if (!apps.has(input.clientId)) throw new Error(`unknown application ${input.clientId}`);
      const v = newVehicle(input);
      vehicles.set(v.id, v);
      return v;
    },
    vehicle(id) {
      const v = vehicles.get(id);
      if (!v) throw new Error(`unknown vehicle ${id}`);
      return v;
    },
    set(switches, vehicleId) {
      if (vehicleId === undefined) global = { ...global, ...switches };
      else {
        const v = fake.vehicle(vehicleId);
        v.switches = { ...v.switches, ...switches };
      }
    },
    clear(vehicleId) {
      if (vehicleId !== undefined) {
        fake.vehicle(vehicleId).switches = {};
        return;
      }
      global = {};
      authSwitches = {};
      refusing = false;
      for (const v of vehicles.values()) v.switches = {};
      for (const a of apps.values()) a.authSwitches = {};
    },
    setAuth(switches, clientId) {
      if (clientId === undefined) authSwitches = { ...authSwitches, ...switches };
      else {
        const app = apps.get(clientId);
        if (!app) throw new Error(`unknown application ${clientId}`);
        app.authSwitches = { ...app.authSwitches, ...switches };
      }
    },
    revokeAuthorization(clientId) {
      const app = apps.get(clientId);
      if (!app) throw new Error(`unknown application ${clientId}`);
      app.refreshToken = undefined;
      app.accessTokens.clear();
    },
    expireAccessTokens(clientId) {
      apps.get(clientId)?.accessTokens.clear();
    },
    refuseConnections(on) {
      refusing = on;
      if (on) for (const s of sockets) s.destroy();
    },
    currentRefreshToken(clientId) {
      return apps.get(clientId)?.refreshToken;
    },
    async close() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };

  const delay = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const t = setTimeout(() => {
        timers.delete(t);
        resolve();
      }, ms);
      timers.add(t);
    });

  /** Switches of a vehicle merged over the global ones (vehicle wins). */
  function switchesOf(v: FakeVehicle | undefined): FakeSwitches {
    return v ? { ...global, ...v.switches } : global;
  }

  function count(name: string): void {
    counters.requests[name] = (counters.requests[name] ?? 0) + 1;
  }

  function apiRequest(req: IncomingMessage, path: string, rawBody: string, rid: string): HttpAnswer {
    const method = req.method ?? 'GET';
    const m = /^\/v2\.0\/vehicles\/([^/]+)(?:\/(.*))?$/.exec(path);
    if (!m?.[1]) return notFound(rid);
    const endpoint = (m[2] ?? '').replace(/\/$/, '');
    count(`${method} /vehicles/{id}${endpoint ? `/${endpoint}` : ''}`);
    const app = bearerApplication(apps, req);
    if (!app) {
      return errorAnswer(
        rid,
        401,
        'AUTHENTICATION',
        null,
        'The authorization header is missing or malformed, or it contains invalid or expired authentication credentials.',
        'REAUTHENTICATE',
      );
    }
    const v = vehicles.get(decodeURIComponent(m[1]));
    const s = switchesOf(v);
    const failure = requestLevelFailure(rid, s, counters);
    if (failure) return failure;
    if (!v || v.clientId !== app.clientId) return notFound(rid);
    let body: unknown;
    if (method === 'POST') {
      try {
        body = JSON.parse(rawBody);
      } catch {
        return errorAnswer(rid, 400, 'VALIDATION', 'PARAMETER', 'The request body is not valid JSON.');
      }
    }
    const unitHeader = req.headers['sc-unit-system'];
    const unitSystem = unitHeader === 'imperial' ? 'imperial' : 'metric';
    if (endpoint !== 'batch') return vehicleEndpoint(rid, method, v, endpoint, body, unitSystem, s);
    if (method !== 'POST') return notFound(rid, 'Batch requests use POST.');
    return batchEndpoint(rid, v, body, unitSystem, s);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const rawBody = Buffer.concat(chunks).toString('utf8');
    const rid = randomUUID();
    const url = new URL(req.url ?? '/', 'http://fake');
    let answer: HttpAnswer;
    let slow = false;
    if (url.pathname === '/oauth/token' && req.method === 'POST') {
      const sw = { ...authSwitches, ...basicClientApp(apps, req)?.authSwitches };
      slow = sw.slow === true;
      answer = tokenEndpointFailure(sw) ?? tokenEndpoint(apps, counters, req, rawBody);
    } else {
      const m = /^\/v2\.0\/vehicles\/([^/]+)/.exec(url.pathname);
      const v = m?.[1] ? vehicles.get(decodeURIComponent(m[1])) : undefined;
      slow = switchesOf(v).slow === true;
      answer = apiRequest(req, url.pathname, rawBody, rid);
    }
    if (slow) await delay(fake.slowMs);
    if (res.destroyed) return;
    const headers: Record<string, string> = { 'sc-request-id': rid, ...answer.headers };
    headers['content-type'] = 'application/json';
    res.writeHead(answer.status, headers);
    res.end(answer.raw ?? JSON.stringify(answer.body));
  }

  const server: Server = createServer({ noDelay: true }, (req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  server.on('connection', (socket) => {
    if (refusing) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const base = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  Object.assign(fake, { authUrl: base, apiUrl: `${base}/v2.0` });
  return fake;
}
