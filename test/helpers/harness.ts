import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type App, createApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createApiClient, type Scope } from '../../src/services/auth-service.js';
import { FleetgateUnit } from '../../src/sim/fleetgate-unit.js';

export interface HttpResult {
  status: number;
  headers: Headers;
  body: any;
  text: string;
}

/**
 * A real fleetgate on port 0 (HTTP and embedded MQTT) with a temp data dir, plus helpers to make
 * clients, tokens, vehicles and simulated units. Everything it starts, `close()` stops.
 */
export class Harness {
  readonly units: FleetgateUnit[] = [];
  private constructor(
    readonly app: App,
    private readonly dataDir: string | undefined,
  ) {}

  static async start(overrides: Record<string, string | number> = {}): Promise<Harness> {
    const dataDir = overrides.dataDir === undefined ? mkdtempSync(path.join(tmpdir(), 'fleetgate-test-')) : undefined;
    const config = loadConfig(
      {
        port: 0,
        mqttPort: 0,
        host: '127.0.0.1',
        mqttHost: '127.0.0.1',
        logLevel: 'silent',
        commandTimeoutMs: 1500,
        teltonikaPort: 0,
        secretKey: 'test-secret-key-that-is-long-enough-0123456789',
        ...(dataDir ? { dataDir } : {}),
        ...overrides,
      },
      {},
    );
    return new Harness(await createApp(config), dataDir);
  }

  get url(): string {
    return this.app.url;
  }

  async client(fleetId: string, scopes: Scope[]): Promise<{ client_id: string; client_secret: string }> {
    return createApiClient(this.app.store, { fleetId, scopes });
  }

  async token(fleetId: string, scopes: Scope[] = ['vehicles', 'vehicle-commands']): Promise<string> {
    const c = await this.client(fleetId, scopes);
    const res = await this.request('POST', '/auth/oauth/token?grant_type=client_credentials', {
      headers: { authorization: `Basic ${Buffer.from(`${c.client_id}:${c.client_secret}`).toString('base64')}` },
    });
    if (res.status !== 200) throw new Error(`token: ${res.status} ${res.text}`);
    return res.body.access_token;
  }

  async request(
    method: string,
    urlPath: string,
    options: { token?: string; body?: unknown; rawBody?: string; headers?: Record<string, string> } = {},
  ): Promise<HttpResult> {
    const headers: Record<string, string> = { ...(options.headers ?? {}) };
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    let body: string | undefined = options.rawBody;
    if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers['content-type'] ??= 'application/json';
    }
    const res = await fetch(`${this.url}${urlPath}`, { method, headers, body });
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    return { status: res.status, headers: res.headers, body: parsed, text };
  }

  /** Adds a FLEETGATE vehicle and (unless `connect: false`) starts its simulated unit and waits for setup. */
  async vehicle(
    token: string,
    model = 'fleetgate-car-v1',
    options: { connect?: boolean; unitId?: string; answerDelayMs?: number } = {},
  ): Promise<{ vehicleId: string; unit: FleetgateUnit; unitId: string; password: string }> {
    const unitId = options.unitId ?? `unit-${Math.random().toString(36).slice(2, 10)}`;
    const password = `pw-${unitId}-0123456789`;
    const res = await this.request('POST', '/vehicles', {
      token,
      body: { telematics_brand: 'FLEETGATE', telematics_unit_id: unitId, vehicle_model_id: model, password },
    });
    if (res.status !== 201) throw new Error(`add vehicle: ${res.status} ${res.text}`);
    const vehicleId: string = res.body.vehicle_id;
    const unit = new FleetgateUnit({
      mqttUrl: this.app.mqttUrl,
      unitId,
      password,
      model,
      answerDelayMs: options.answerDelayMs ?? 0,
      reportIntervalMs: 60_000,
      drive: false,
    });
    this.units.push(unit);
    if (options.connect !== false) {
      await unit.start();
      await this.waitFor(async () => (await this.app.store.getVehicle(vehicleId))?.setup_status === 'SUCCEEDED');
    }
    return { vehicleId, unit, unitId, password };
  }

  /**
   * Resolves once `condition` holds, re-checking it after every domain event (no sleeps). It
   * listens before the first check, so an event during that check is not missed.
   */
  async waitFor(condition: () => Promise<boolean> | boolean, timeoutMs = 5000): Promise<void> {
    let wake: (() => void) | undefined;
    let pending = false;
    const off = this.app.events.on(() => {
      pending = true;
      wake?.();
    });
    const until = Date.now() + timeoutMs;
    try {
      for (;;) {
        pending = false;
        if (await condition()) return;
        if (pending) continue;
        const left = until - Date.now();
        if (left <= 0) throw new Error('condition not met in time');
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = undefined;
      }
    } finally {
      off();
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.units.map((u) => u.stop()));
    await this.app.stop();
    if (this.dataDir) rmSync(this.dataDir, { recursive: true, force: true });
  }
}
