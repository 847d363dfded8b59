import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type App, createApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createApiClient } from '../../src/services/auth-service.js';
import { FleetgateUnit } from '../../src/sim/fleetgate-unit.js';
import { startPostgresServer } from './postgres-server.js';

/**
 * Fault drills with real parts, shared by the end-to-end tests (which assert on their counts)
 * and scripts/fault-drills.ts (which prints them): a PostgreSQL restart during command traffic,
 * and a flood of requests whose bodies never arrive.
 */

export interface RestartDrillOptions {
  /** Vehicles whose unit answers after `answerDelayMs` (within the budget): 200s. */
  vehicles: number;
  /** Vehicles whose unit answers only after the budget: 504 DELIVERED_OUTCOME_UNKNOWN. */
  slowVehicles: number;
  commandTimeoutMs: number;
  answerDelayMs: number;
  /** How long PostgreSQL stays stopped. */
  outageMs: number;
  log?: (line: string) => void;
}

interface Answer {
  vehicleId: string;
  status: number;
  flowId: string | null;
  type?: string;
  delivery?: string;
}

export interface RestartDrillResult {
  /** Answers by HTTP status (0 = hung past the budget plus 5 s, or the connection failed). */
  byStatus: Record<string, number>;
  ok: number;
  /** 200s whose record says SUCCEEDED. */
  okRecorded: number;
  noConnection: number;
  /** 504s whose record has the same problem type and delivery, and is not SUCCEEDED. */
  noConnectionRecorded: number;
  /** Answers during the outage that were 200 or 504 (their completion had to wait). */
  duringOutage: number;
  mismatches: string[];
}

const SECRET = 'drill-secret-key-that-is-long-enough-0123456789';

export async function startDrillApp(
  databaseUrl: string | undefined,
  commandTimeoutMs: number,
): Promise<{ app: App; dir: string }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'fleetgate-drill-'));
  const config = loadConfig(
    {
      port: 0,
      mqttPort: 0,
      teltonikaPort: 0,
      host: '127.0.0.1',
      mqttHost: '127.0.0.1',
      logLevel: 'silent',
      commandTimeoutMs,
      rateLimitPerMinute: 10_000_000,
      secretKey: SECRET,
      dataDir: dir,
      ...(databaseUrl ? { databaseUrl } : {}),
    },
    {},
  );
  return { app: await createApp(config), dir };
}

async function tokenFor(app: App): Promise<string> {
  const c = await createApiClient(app.store, { fleetId: 'fleet-drill', scopes: ['vehicles', 'vehicle-commands'] });
  const res = await fetch(`${app.url}/auth/oauth/token?grant_type=client_credentials`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(`${c.client_id}:${c.client_secret}`).toString('base64')}` },
  });
  return ((await res.json()) as { access_token: string }).access_token;
}

async function until(check: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * PostgreSQL (a private cluster of this drill) stopped for `outageMs` while every vehicle gets
 * one command after another; then checks that every 200 has a SUCCEEDED record and every 504 a
 * record of the same problem and delivery, once no record is in flight any more.
 */
export async function postgresRestartDrill(o: RestartDrillOptions): Promise<RestartDrillResult> {
  const log = o.log ?? (() => undefined);
  const pg = await startPostgresServer();
  const units: FleetgateUnit[] = [];
  let app: App | undefined;
  let dir: string | undefined;
  try {
    ({ app, dir } = await startDrillApp(pg.url, o.commandTimeoutMs));
    const a = app;
    const token = await tokenFor(a);
    const add = async (answerDelayMs: number) => {
      const unitId = `drill-${Math.random().toString(36).slice(2, 10)}`;
      const password = `pw-${unitId}-0123456789`;
      const res = await fetch(`${a.url}/vehicles`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          telematics_brand: 'FLEETGATE',
          telematics_unit_id: unitId,
          vehicle_model_id: 'fleetgate-car-v1',
          password,
        }),
      });
      const vehicleId = ((await res.json()) as { vehicle_id: string }).vehicle_id;
      const unit = new FleetgateUnit({
        mqttUrl: a.mqttUrl,
        unitId,
        password,
        model: 'fleetgate-car-v1',
        answerDelayMs,
        reportIntervalMs: 600_000,
        drive: false,
      });
      units.push(unit);
      await unit.start();
      await until(async () => (await a.store.getVehicle(vehicleId))?.setup_status === 'SUCCEEDED', 10_000, 'setup');
      return vehicleId;
    };
    const vehicleIds = await Promise.all([
      ...Array.from({ length: o.vehicles }, () => add(o.answerDelayMs)),
      ...Array.from({ length: o.slowVehicles }, () => add(o.commandTimeoutMs + 1_000)),
    ]);

    const answers: Answer[] = [];
    let outage: { from: number; to: number } | undefined;
    const duringOutage: Answer[] = [];
    let stopped = false;
    const loops = vehicleIds.map(async (vehicleId) => {
      for (let i = 0; !stopped && i < 10_000; i++) {
        const name = i % 2 === 0 ? 'lock-central-lock' : 'unlock-central-lock';
        const sent = Date.now();
        const answer: Answer = await fetch(`${a.url}/vehicles/${vehicleId}/commands/${name}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}` },
          signal: AbortSignal.timeout(o.commandTimeoutMs + 5_000),
        }).then(
          async (res) => {
            const body = (await res.json().catch(() => ({}))) as { type?: string; delivery?: string };
            return {
              vehicleId,
              status: res.status,
              flowId: res.headers.get('x-flow-id'),
              type: body.type,
              delivery: body.delivery,
            };
          },
          () => ({ vehicleId, status: 0, flowId: null }),
        );
        answers.push(answer);
        if (outage && sent < outage.to && Date.now() > outage.from && [200, 504].includes(answer.status)) {
          duringOutage.push(answer);
        }
        // Pacing: a 409 or 503 comes back at once; do not spin on it.
        if (answer.status !== 200 && answer.status !== 504) await new Promise((r) => setTimeout(r, 20));
      }
    });

    const okCount = () => answers.filter((x) => x.status === 200).length;
    await until(() => okCount() >= 2 * o.vehicles, 20_000, 'traffic warmed up');
    log(`PostgreSQL stopped for ${o.outageMs} ms during traffic (${answers.length} answers so far)`);
    const from = Date.now();
    outage = { from, to: Number.POSITIVE_INFINITY };
    await pg.stop();
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, o.outageMs - (Date.now() - from))));
    await pg.start();
    outage.to = Date.now();
    log('PostgreSQL started again');
    const before = okCount();
    await until(() => okCount() >= before + 2 * o.vehicles, 30_000, 'commands succeed again');
    stopped = true;
    await Promise.all(loops);

    // Wait for the records (the kept completions, or without them the expiry): none in flight.
    const flows = answers.filter((x) => (x.status === 200 || x.status === 504) && x.flowId);
    await until(
      async () => {
        for (const x of flows) if ((await a.store.getCommand(x.flowId!))?.status === 'IN_FLIGHT') return false;
        return true;
      },
      o.commandTimeoutMs + 20_000,
      'no record in flight',
    );

    const result: RestartDrillResult = {
      byStatus: {},
      ok: 0,
      okRecorded: 0,
      noConnection: 0,
      noConnectionRecorded: 0,
      duringOutage: duringOutage.length,
      mismatches: [],
    };
    for (const x of answers) result.byStatus[x.status] = (result.byStatus[x.status] ?? 0) + 1;
    for (const x of flows) {
      const record = await a.store.getCommand(x.flowId!);
      if (x.status === 200) {
        result.ok++;
        if (record?.status === 'SUCCEEDED') result.okRecorded++;
        else result.mismatches.push(`200 ${x.flowId}: record ${record?.status} ${record?.detail}`);
      } else {
        result.noConnection++;
        const matches =
          record !== undefined &&
          record.status !== 'SUCCEEDED' &&
          `/problems/${record.problem_type}` === x.type &&
          record.delivery === x.delivery;
        if (matches) result.noConnectionRecorded++;
        else result.mismatches.push(`504 ${x.delivery} ${x.flowId}: record ${record?.status} ${record?.delivery}`);
      }
    }
    return result;
  } finally {
    await Promise.allSettled(units.map((u) => u.stop()));
    await app?.stop();
    await pg.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

export interface StalledBodyResult {
  /** Connections opened, each sending headers that announce a body that never comes. */
  sent: number;
  /** Answered with an HTTP status line (408 expected), by status. */
  answered: Record<string, number>;
  /** Closed by the server without an answer. */
  closedWithoutAnswer: number;
  /** Still open when the drill gave up waiting. */
  held: number;
  /** A normal request made while the flood was held: its status. */
  probeStatus: number;
  elapsedMs: number;
}

/**
 * Opens `connections` sockets to `url`, each sending the headers of a token request (public: no
 * authentication needed) with Content-Length 1000 and 10 bytes of body, then nothing; waits up to `waitMs` for the server to answer or close each.
 */
export async function stalledBodyFlood(url: string, connections: number, waitMs: number): Promise<StalledBodyResult> {
  const { hostname, port } = new URL(url);
  const started = Date.now();
  const result: StalledBodyResult = {
    sent: 0,
    answered: {},
    closedWithoutAnswer: 0,
    held: 0,
    probeStatus: 0,
    elapsedMs: 0,
  };
  const sockets: net.Socket[] = [];
  const settled = Array.from({ length: connections }, (_, i) => {
    return new Promise<void>((resolve) => {
      const socket = net.connect({ host: hostname, port: Number(port) });
      sockets.push(socket);
      let received = '';
      let done = false;
      const finish = (outcome: 'answered' | 'closed' | 'held') => {
        if (done) return;
        done = true;
        if (outcome === 'answered') {
          const status = /^HTTP\/1\.1 (\d{3})/.exec(received)?.[1] ?? '?';
          result.answered[status] = (result.answered[status] ?? 0) + 1;
        } else if (outcome === 'closed') result.closedWithoutAnswer++;
        else result.held++;
        socket.destroy();
        resolve();
      };
      socket.on('connect', () => {
        result.sent++;
        socket.write(
          `POST /auth/oauth/token HTTP/1.1\r\nHost: ${hostname}:${port}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\nX-Drill: ${i}\r\n\r\ngrant_type`,
        );
      });
      socket.on('data', (chunk) => {
        received += chunk.toString('latin1');
        if (/^HTTP\/1\.1 \d{3}/.test(received)) finish('answered');
      });
      socket.on('error', () => finish(received ? 'answered' : 'closed'));
      socket.on('close', () => finish(received ? 'answered' : 'closed'));
      setTimeout(() => finish('held'), waitMs).unref();
    });
  });
  // While the flood holds its sockets, the API still serves others.
  await until(() => result.sent + result.closedWithoutAnswer >= connections, waitMs, 'flood connected');
  result.probeStatus = await fetch(`${url}/health/live`, { signal: AbortSignal.timeout(5_000) }).then(
    (r) => r.status,
    () => 0,
  );
  await Promise.all(settled);
  for (const s of sockets) s.destroy();
  result.elapsedMs = Date.now() - started;
  return result;
}
