import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A local fake of Smartcar's documented API v2.0 contract (docs/smartcar.md lists the sources):
 * the token endpoint with refresh-token rotation, the vehicle endpoints fleetgate uses (attributes,
 * permissions, security, location, odometer, battery, fuel, batch), Smartcar's error object and
 * headers (`SC-Request-Id`, `sc-data-age`, `sc-unit-system`, `Retry-After`), and a switch for every
 * failure fleetgate must map. It is a real HTTP server so the adapter is tested over real sockets,
 * and `fleetgate simulate` can run the whole path without a Smartcar account.
 */

/** Smartcar permission names (scope) the fake knows. */
export const SMARTCAR_PERMISSIONS = [
  'read_vehicle_info',
  'read_vin',
  'read_location',
  'read_odometer',
  'read_battery',
  'read_fuel',
  'read_security',
  'control_security',
] as const;

export type FakeEngine = 'ELECTRIC' | 'GASOLINE' | 'HYBRID';

/** Failure switches; set per vehicle or globally (all vehicles, and batch/attribute calls). */
export interface FakeSwitches {
  /** 500 SERVER:INTERNAL. */
  fail5xx?: boolean;
  /** 502 UPSTREAM:UNKNOWN_ISSUE (the OEM's backend failed). */
  upstreamError?: boolean;
  /** 200 with a body that is not what the contract documents. */
  malformed?: boolean;
  /** Answers only after `slowMs` (default 10 minutes): beyond any command budget. */
  slow?: boolean;
  /** 409 VEHICLE_STATE:ASLEEP on vehicle data and actions. */
  asleep?: boolean;
  /** 409 VEHICLE_STATE:UNREACHABLE on vehicle data and actions. */
  unreachable?: boolean;
  /** 409 VEHICLE_STATE:DOOR_OPEN when locking. */
  doorOpen?: boolean;
  /** 409 VEHICLE_STATE:UNKNOWN on actions: the vehicle tried and could not do it. */
  vehicleFailure?: boolean;
  /** Permissions withdrawn from the grant: endpoints needing them answer 403 PERMISSION. */
  permissionMissing?: string[];
  /** Endpoints (`security`, `location`, `odometer`, `battery`, `fuel`) answering 501 COMPATIBILITY. */
  incompatible?: string[];
  /** 429 RATE_LIMIT:VEHICLE with `Retry-After: retryAfterS`, for the next `times` requests (default: all). */
  rateLimit?: { retryAfterS: number; times?: number };
}

export type AuthSwitches = Pick<FakeSwitches, 'fail5xx' | 'malformed' | 'slow'>;

export interface FakeVehicleInput {
  id?: string;
  /** The application whose account the vehicle is connected to. */
  clientId: string;
  make?: string;
  model?: string;
  year?: number;
  vin?: string;
  engine?: FakeEngine;
  /** Granted permissions; default: all of SMARTCAR_PERMISSIONS. */
  permissions?: string[];
  locked?: boolean;
  latitude?: number;
  longitude?: number;
  odometerKm?: number;
  /** 0..1 as Smartcar reports it. */
  batteryPercentRemaining?: number;
  batteryRangeKm?: number;
  fuelPercentRemaining?: number;
  fuelAmountLiters?: number;
  fuelRangeKm?: number;
  /** When the car last reported its data (sc-data-age); default: now. */
  dataAt?: Date;
}

export interface FakeVehicle {
  id: string;
  clientId: string;
  make: string;
  model: string;
  year: number;
  vin: string;
  engine: FakeEngine;
  permissions: string[];
  locked: boolean;
  latitude: number;
  longitude: number;
  odometerKm: number;
  batteryPercentRemaining: number;
  batteryRangeKm: number;
  fuelPercentRemaining: number;
  fuelAmountLiters: number;
  fuelRangeKm: number;
  dataAt: Date;
  switches: FakeSwitches;
}

export interface FakeApplicationInput {
  clientId: string;
  clientSecret: string;
  /** Access token lifetime; Smartcar's is 2 hours. */
  accessTokenTtlS?: number;
  /** Refresh token lifetime; Smartcar's is 60 days. */
  refreshTokenTtlS?: number;
}

export interface FakeCounters {
  /** Successful refresh-token exchanges. */
  tokenRefreshes: number;
  /** Refused refresh-token exchanges (invalid_grant). */
  tokenRejections: number;
  /** Vehicle API requests, by `METHOD /path-template`. */
  requests: Record<string, number>;
  rateLimited: number;
}

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

interface Application {
  clientId: string;
  clientSecret: string;
  accessTokenTtlS: number;
  refreshTokenTtlS: number;
  /** The only refresh token that is currently valid (rotation invalidates the previous one). */
  refreshToken: string | undefined;
  refreshExpiresAt: number;
  accessTokens: Map<string, number>;
  authSwitches: AuthSwitches;
}

const DOC_BASE = 'https://smartcar.com/docs/errors/api-errors';

/** Smartcar error object (docs: "API errors"): every error answer has this shape. */
interface SmartcarErrorBody {
  type: string;
  code: string | null;
  description: string;
  docURL: string;
  statusCode: number;
  requestId: string;
  resolution: { type: string | null };
  suggestedUserMessage: string;
}

class HttpAnswer {
  constructor(
    readonly status: number,
    readonly body: unknown,
    readonly headers: Record<string, string> = {},
    /** Raw text instead of JSON (malformed answers). */
    readonly raw?: string,
  ) {}
}

function errorAnswer(
  requestId: string,
  status: number,
  type: string,
  code: string | null,
  description: string,
  resolution: string | null = null,
  headers: Record<string, string> = {},
): HttpAnswer {
  const page = type.toLowerCase().replaceAll('_', '-');
  const body: SmartcarErrorBody = {
    type,
    code,
    description,
    docURL: `${DOC_BASE}/${page}-errors${code ? `#${code.toLowerCase().replaceAll('_', '-')}` : ''}`,
    statusCode: status,
    requestId,
    resolution: { type: resolution },
    suggestedUserMessage: description,
  };
  return new HttpAnswer(status, body, headers);
}

const ENDPOINT_PERMISSION: Record<string, string> = {
  '': 'read_vehicle_info',
  vin: 'read_vin',
  location: 'read_location',
  odometer: 'read_odometer',
  battery: 'read_battery',
  fuel: 'read_fuel',
  'GET security': 'read_security',
  'POST security': 'control_security',
};

const KM_PER_MILE = 1.609344;
const LITERS_PER_GALLON = 3.785411784;

const token = (prefix: string): string => `${prefix}${randomBytes(18).toString('base64url')}`;

export async function startFakeSmartcar(options: { port?: number; host?: string } = {}): Promise<FakeSmartcar> {
  const host = options.host ?? '127.0.0.1';
  const apps = new Map<string, Application>();
  const vehicles = new Map<string, FakeVehicle>();
  let global: FakeSwitches = {};
  let authSwitches: AuthSwitches = {};
  let refusing = false;
  const timers = new Set<NodeJS.Timeout>();
  const sockets = new Set<Socket>();
  const counters: FakeCounters = { tokenRefreshes: 0, tokenRejections: 0, requests: {}, rateLimited: 0 };

  const fake: FakeSmartcar = {
    apiUrl: '',
    authUrl: '',
    counters,
    slowMs: 600_000,
    addApplication(app) {
      const refreshToken = token('rt_');
      apps.set(app.clientId, {
        clientId: app.clientId,
        clientSecret: app.clientSecret,
        accessTokenTtlS: app.accessTokenTtlS ?? 7200,
        refreshTokenTtlS: app.refreshTokenTtlS ?? 60 * 86400,
        refreshToken,
        refreshExpiresAt: Date.now() + (app.refreshTokenTtlS ?? 60 * 86400) * 1000,
        accessTokens: new Map(),
        authSwitches: {},
      });
      return refreshToken;
    },
    addVehicle(input) {
      if (!apps.has(input.clientId)) throw new Error(`unknown application ${input.clientId}`);
      const engine = input.engine ?? 'ELECTRIC';
      const v: FakeVehicle = {
        id: input.id ?? randomUUID(),
        clientId: input.clientId,
        make: input.make ?? 'TESLA',
        model: input.model ?? 'Model 3',
        year: input.year ?? 2022,
        vin: input.vin ?? `5YJ3E1EA${randomBytes(5).toString('hex').toUpperCase().slice(0, 9)}`,
        engine,
        permissions: input.permissions ?? [...SMARTCAR_PERMISSIONS],
        locked: input.locked ?? true,
        latitude: input.latitude ?? 52.520008,
        longitude: input.longitude ?? 13.404954,
        odometerKm: input.odometerKm ?? 12_345.6,
        batteryPercentRemaining: input.batteryPercentRemaining ?? 0.8,
        batteryRangeKm: input.batteryRangeKm ?? 320,
        fuelPercentRemaining: input.fuelPercentRemaining ?? 0.5,
        fuelAmountLiters: input.fuelAmountLiters ?? 25,
        fuelRangeKm: input.fuelRangeKm ?? 450,
        dataAt: input.dataAt ?? new Date(),
        switches: {},
      };
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

  // --- token endpoint (RFC 6749 §6 refresh with rotation, errors per §5.2) ---

  /** The application whose HTTP Basic client id and secret the request carries. */
  function basicClientApp(req: IncomingMessage): Application | undefined {
    const [scheme, encoded] = (req.headers.authorization ?? '').split(' ');
    if (scheme?.toLowerCase() !== 'basic' || !encoded) return undefined;
    const decoded = Buffer.from(encoded, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return undefined;
    const app = apps.get(decodeURIComponent(decoded.slice(0, colon)));
    return app && app.clientSecret === decodeURIComponent(decoded.slice(colon + 1)) ? app : undefined;
  }

  function tokenEndpoint(req: IncomingMessage, body: string): HttpAnswer {
    const oauthError = (status: number, error: string, description: string) =>
      new HttpAnswer(status, { error, error_description: description });
    const app = basicClientApp(req);
    if (!app) return oauthError(401, 'invalid_client', 'Invalid or missing HTTP Basic client credentials.');
    const form = new URLSearchParams(body);
    if (form.get('grant_type') !== 'refresh_token') {
      return oauthError(400, 'unsupported_grant_type', 'Only grant_type=refresh_token is supported by this fake.');
    }
    const presented = form.get('refresh_token');
    if (!presented || presented !== app.refreshToken || Date.now() > app.refreshExpiresAt) {
      counters.tokenRejections++;
      return oauthError(400, 'invalid_grant', 'Invalid or expired refresh token.');
    }
    counters.tokenRefreshes++;
    const accessToken = token('at_');
    app.accessTokens.set(accessToken, Date.now() + app.accessTokenTtlS * 1000);
    app.refreshToken = token('rt_');
    app.refreshExpiresAt = Date.now() + app.refreshTokenTtlS * 1000;
    return new HttpAnswer(200, {
      access_token: accessToken,
      token_type: 'Bearer',
      expires_in: app.accessTokenTtlS,
      refresh_token: app.refreshToken,
      refresh_expires_in: app.refreshTokenTtlS,
    });
  }

  // --- vehicle API ---

  function applicationOf(req: IncomingMessage): Application | undefined {
    const auth = req.headers.authorization ?? '';
    const match = /^Bearer (\S+)$/i.exec(auth);
    if (!match?.[1]) return undefined;
    for (const app of apps.values()) {
      const expires = app.accessTokens.get(match[1]);
      if (expires !== undefined && expires > Date.now()) return app;
    }
    return undefined;
  }

  /** Switches of a vehicle merged over the global ones (vehicle wins). */
  function switchesOf(v: FakeVehicle | undefined): FakeSwitches {
    return v ? { ...global, ...v.switches } : global;
  }

  /** Request-level failures shared by every API call (they apply to a batch as a whole). */
  function requestLevelFailure(rid: string, s: FakeSwitches): HttpAnswer | undefined {
    if (s.rateLimit && (s.rateLimit.times === undefined || s.rateLimit.times > 0)) {
      if (s.rateLimit.times !== undefined) s.rateLimit.times--;
      counters.rateLimited++;
      return errorAnswer(
        rid,
        429,
        'RATE_LIMIT',
        'VEHICLE',
        'You have reached the throttling rate limit for this vehicle.',
        'RETRY_LATER',
        { 'retry-after': String(s.rateLimit.retryAfterS) },
      );
    }
    if (s.fail5xx) return errorAnswer(rid, 500, 'SERVER', 'INTERNAL', 'Smartcar encountered an unexpected error.');
    if (s.upstreamError) {
      return errorAnswer(rid, 502, 'UPSTREAM', 'UNKNOWN_ISSUE', "The vehicle manufacturer's API failed unexpectedly.");
    }
    if (s.malformed) return new HttpAnswer(200, undefined, {}, '{"status": "succ');
    return undefined;
  }

  /** One vehicle endpoint (shared by direct calls and batch items). */
  function vehicleEndpoint(
    rid: string,
    method: string,
    v: FakeVehicle,
    endpoint: string,
    body: unknown,
    unitSystem: 'metric' | 'imperial',
  ): HttpAnswer {
    const s = switchesOf(v);
    const key = ENDPOINT_PERMISSION[`${method} ${endpoint}`] ?? ENDPOINT_PERMISSION[endpoint];
    if (endpoint === 'permissions' && method === 'GET') {
      const missing = new Set(s.permissionMissing ?? []);
      const permissions = v.permissions.filter((p) => !missing.has(p));
      return new HttpAnswer(200, { permissions, paging: { count: permissions.length, offset: 0 } });
    }
    if (key === undefined || (method === 'POST' && endpoint !== 'security')) {
      return errorAnswer(rid, 404, 'RESOURCE_NOT_FOUND', 'PATH', 'The requested resource does not exist.');
    }
    if (!v.permissions.includes(key) || s.permissionMissing?.includes(key)) {
      return errorAnswer(
        rid,
        403,
        'PERMISSION',
        null,
        `Your application does not have the ${key} permission for this vehicle.`,
        'REAUTHENTICATE',
      );
    }
    if (endpoint === '') return new HttpAnswer(200, { id: v.id, make: v.make, model: v.model, year: v.year });
    if (endpoint === 'vin') return new HttpAnswer(200, { vin: v.vin });
    const incompatible =
      s.incompatible?.includes(endpoint) ||
      (endpoint === 'battery' && v.engine === 'GASOLINE') ||
      (endpoint === 'fuel' && v.engine === 'ELECTRIC');
    if (incompatible) {
      return errorAnswer(
        rid,
        501,
        'COMPATIBILITY',
        'VEHICLE_NOT_CAPABLE',
        'The vehicle is incapable of performing your request.',
      );
    }
    if (s.asleep) {
      return errorAnswer(
        rid,
        409,
        'VEHICLE_STATE',
        'ASLEEP',
        'The vehicle is in a sleep state and temporarily unable to perform your request.',
      );
    }
    if (s.unreachable) {
      return errorAnswer(
        rid,
        409,
        'VEHICLE_STATE',
        'UNREACHABLE',
        'The vehicle was unable to perform your request because it is currently unreachable.',
        'RETRY_LATER',
      );
    }
    const age = { 'sc-data-age': v.dataAt.toISOString(), 'sc-unit-system': unitSystem };
    const dist = (km: number) => (unitSystem === 'imperial' ? km / KM_PER_MILE : km);
    switch (endpoint) {
      case 'location':
        return new HttpAnswer(
          200,
          { latitude: v.latitude, longitude: v.longitude },
          { 'sc-data-age': age['sc-data-age'] },
        );
      case 'odometer':
        return new HttpAnswer(200, { distance: dist(v.odometerKm) }, age);
      case 'battery':
        return new HttpAnswer(200, { percentRemaining: v.batteryPercentRemaining, range: dist(v.batteryRangeKm) }, age);
      case 'fuel':
        return new HttpAnswer(
          200,
          {
            percentRemaining: v.fuelPercentRemaining,
            amountRemaining: unitSystem === 'imperial' ? v.fuelAmountLiters / LITERS_PER_GALLON : v.fuelAmountLiters,
            range: dist(v.fuelRangeKm),
          },
          age,
        );
      case 'security': {
        if (method === 'GET') {
          return new HttpAnswer(
            200,
            {
              isLocked: v.locked,
              doors: ['frontLeft', 'frontRight', 'backLeft', 'backRight'].map((type) => ({
                type,
                status: v.locked ? 'LOCKED' : 'UNLOCKED',
              })),
              windows: [],
              sunroof: [],
              storage: [],
              chargingPort: [],
            },
            { 'sc-data-age': age['sc-data-age'] },
          );
        }
        const action = (body as { action?: unknown } | undefined)?.action;
        if (action !== 'LOCK' && action !== 'UNLOCK') {
          return errorAnswer(rid, 400, 'VALIDATION', 'PARAMETER', '"action" must be one of [LOCK, UNLOCK].');
        }
        if (s.vehicleFailure) {
          return errorAnswer(
            rid,
            409,
            'VEHICLE_STATE',
            'UNKNOWN',
            'The vehicle was unable to perform your request due to an unknown issue.',
            'RETRY_LATER',
          );
        }
        if (action === 'LOCK' && s.doorOpen) {
          return errorAnswer(
            rid,
            409,
            'VEHICLE_STATE',
            'DOOR_OPEN',
            'The vehicle was unable to perform your request because a door is open.',
          );
        }
        v.locked = action === 'LOCK';
        v.dataAt = new Date();
        return new HttpAnswer(200, { status: 'success', message: 'Successfully sent request to vehicle' });
      }
    }
    return errorAnswer(rid, 404, 'RESOURCE_NOT_FOUND', 'PATH', 'The requested resource does not exist.');
  }

  function count(name: string): void {
    counters.requests[name] = (counters.requests[name] ?? 0) + 1;
  }

  function apiRequest(req: IncomingMessage, path: string, rawBody: string, rid: string): HttpAnswer {
    const method = req.method ?? 'GET';
    const m = /^\/v2\.0\/vehicles\/([^/]+)(?:\/(.*))?$/.exec(path);
    if (!m?.[1]) return errorAnswer(rid, 404, 'RESOURCE_NOT_FOUND', 'PATH', 'The requested resource does not exist.');
    const endpoint = (m[2] ?? '').replace(/\/$/, '');
    count(`${method} /vehicles/{id}${endpoint ? `/${endpoint}` : ''}`);
    const app = applicationOf(req);
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
    const failure = requestLevelFailure(rid, switchesOf(v));
    if (failure) return failure;
    if (!v || v.clientId !== app.clientId) {
      return errorAnswer(rid, 404, 'RESOURCE_NOT_FOUND', 'PATH', 'The requested resource does not exist.');
    }
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
    if (endpoint !== 'batch') return vehicleEndpoint(rid, method, v, endpoint, body, unitSystem);
    if (method !== 'POST') return errorAnswer(rid, 404, 'RESOURCE_NOT_FOUND', 'PATH', 'Batch requests use POST.');
    const requests = (body as { requests?: unknown } | undefined)?.requests;
    if (
      !Array.isArray(requests) ||
      requests.length === 0 ||
      !requests.every((r) => typeof r?.path === 'string' && r.path.startsWith('/'))
    ) {
      return errorAnswer(rid, 400, 'VALIDATION', 'PARAMETER', '"requests" must be a non-empty array of {path}.');
    }
    // Smartcar batch: one answer per path, each with its own code, body and headers.
    const responses = (requests as { path: string }[]).map(({ path: p }) => {
      const answer = vehicleEndpoint(rid, 'GET', v, p.slice(1), undefined, unitSystem);
      return { path: p, code: answer.status, body: answer.body, headers: answer.headers };
    });
    return new HttpAnswer(200, { responses });
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
      const sw = { ...authSwitches, ...basicClientApp(req)?.authSwitches };
      slow = sw.slow === true;
      if (sw.fail5xx) answer = new HttpAnswer(500, { error: 'server_error', error_description: 'boom' });
      else if (sw.malformed) answer = new HttpAnswer(200, undefined, {}, '<html>gateway</html>');
      else answer = tokenEndpoint(req, rawBody);
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
