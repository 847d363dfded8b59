import { randomUUID, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { PROBLEMS, type ProblemKey } from '../domain/problems.js';
import { stateProperty } from '../domain/state-catalogue.js';
import { listenUrl } from '../lib/listen.js';
import type { EventBus } from '../services/event-bus.js';
import type { VehicleCount } from '../store/store.js';
import { PROBLEM_CONTENT_TYPE, type PublicBase, problemBody } from './problem-response.js';
import type { Api, ReadinessCheck } from './server.js';

/** What the fleet-wide gauges read; the composition root wires them. */
export interface MetricSources {
  countVehicles(): Promise<VehicleCount[]>;
  /** The readiness checks (database, broker): each becomes `fleetgate_dependency_up`. */
  readiness: readonly ReadinessCheck[];
}

// A scrape counts the fleet with one GROUP BY; scrapes closer together than this share it.
const COUNT_TTL_MS = 10_000;
const DEPENDENCY_CHECK_TIMEOUT_MS = 2_000;
const TOKEN_ROUTE = '/auth/oauth/token';

/** Prometheus metrics of one instance. */
export class Metrics {
  readonly registry = new Registry();
  private readonly httpDuration = new Histogram({
    name: 'fleetgate_http_request_duration_seconds',
    help: 'HTTP request duration by route and status code',
    labelNames: ['method', 'route', 'status_code'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15],
    registers: [this.registry],
  });
  private readonly commandDuration = new Histogram({
    name: 'fleetgate_command_duration_seconds',
    help: 'Vehicle command duration by command, adapter and outcome',
    labelNames: ['command', 'adapter', 'outcome'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30],
    registers: [this.registry],
  });
  readonly stateReports = new Counter({
    name: 'fleetgate_state_reports_total',
    help: 'State reports merged from units',
    registers: [this.registry],
  });
  readonly rejectedStateValues = new Counter({
    name: 'fleetgate_state_values_rejected_total',
    help: 'State values from units refused as unknown, invalid or implausible, by property',
    labelNames: ['property'],
    registers: [this.registry],
  });
  private readonly tokenGrants = new Counter({
    name: 'fleetgate_token_grants_total',
    help: 'Access tokens issued by the token endpoint',
    registers: [this.registry],
  });
  private readonly tokenFailures = new Counter({
    name: 'fleetgate_token_failures_total',
    help: 'Token requests refused, by HTTP status (401 wrong client or secret, 400 bad request, 429 throttled)',
    labelNames: ['status_code'],
    registers: [this.registry],
  });
  private readonly throttled = new Counter({
    name: 'fleetgate_http_throttled_requests_total',
    help: 'HTTP requests answered 429 by the rate limit, by route',
    labelNames: ['route'],
    registers: [this.registry],
  });
  private counts: { at: number; value: Promise<VehicleCount[]> } | undefined;

  constructor(events: EventBus, commandsRunning: () => number, sources?: MetricSources) {
    if (sources) this.fleetGauges(sources);
    new Gauge({
      name: 'fleetgate_commands_in_flight',
      help: 'Commands this instance is executing now',
      registers: [this.registry],
      collect() {
        this.set(commandsRunning());
      },
    });
    collectDefaultMetrics({ register: this.registry, prefix: 'fleetgate_' });
    // prom-client names these gauges `_total`, which Prometheus reserves for counters (promtool
    // check metrics refuses them); the per-type gauges without the suffix carry the same counts.
    for (const name of ['active_handles_total', 'active_requests_total', 'active_resources_total']) {
      this.registry.removeSingleMetric(`fleetgate_nodejs_${name}`);
    }
    events.on((e) => {
      if (e.type === 'command.finished') {
        this.commandDuration.observe(
          { command: e.command, adapter: e.adapter, outcome: e.outcome },
          e.duration_ms / 1000,
        );
      } else if (e.type === 'vehicle.state') {
        this.stateReports.inc();
      } else if (e.type === 'state.rejected') {
        // Only catalogue names as labels: an unknown name a unit made up would grow the series.
        for (const p of e.properties) this.rejectedStateValues.inc({ property: stateProperty(p) ? p : 'unknown' });
      }
    });
  }

  private fleetGauges(sources: MetricSources): void {
    const counts = (): Promise<VehicleCount[]> => {
      const now = Date.now();
      if (!this.counts || now - this.counts.at > COUNT_TTL_MS) {
        const value = sources.countVehicles();
        value.catch(() => {
          this.counts = undefined;
        });
        this.counts = { at: now, value };
      }
      return this.counts.value;
    };
    new Gauge({
      name: 'fleetgate_vehicles',
      help: 'Vehicles of all fleets by telematics brand, setup status and life status (fleet-wide: every instance reports the same)',
      labelNames: ['telematics_brand', 'setup_status', 'life_status'],
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const c of await counts().catch(() => [])) {
          this.set(
            { telematics_brand: c.telematics_brand, setup_status: c.setup_status, life_status: c.life_status },
            c.count,
          );
        }
      },
    });
    new Gauge({
      name: 'fleetgate_units_connected',
      help: "Telematics units connected now (vehicles whose life status is ONLINE), by telematics brand, i.e. by transport: FLEETGATE over MQTT, TELTONIKA over TCP, SMARTCAR through Smartcar's API (fleet-wide)",
      labelNames: ['telematics_brand'],
      registers: [this.registry],
      async collect() {
        this.reset();
        const online = new Map<string, number>();
        for (const c of await counts().catch(() => [])) {
          online.set(
            c.telematics_brand,
            (online.get(c.telematics_brand) ?? 0) + (c.life_status === 'ONLINE' ? c.count : 0),
          );
        }
        for (const [brand, n] of online) this.set({ telematics_brand: brand }, n);
      },
    });
    new Gauge({
      name: 'fleetgate_dependency_up',
      help: '1 when this instance reaches the dependency (database, broker), 0 when not; the same checks as /health/ready',
      labelNames: ['dependency'],
      registers: [this.registry],
      async collect() {
        await Promise.all(
          sources.readiness.map(async (r) => {
            const up = await withTimeout(r.check(), DEPENDENCY_CHECK_TIMEOUT_MS).then(
              () => 1,
              () => 0,
            );
            this.set({ dependency: r.name }, up);
          }),
        );
      },
    });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  instrument(app: Api): void {
    app.addHook('onResponse', async (request, reply) => {
      const route = request.routeOptions.url ?? 'unmatched';
      const status = reply.statusCode;
      this.httpDuration.observe(
        { method: request.method, route, status_code: String(status) },
        reply.elapsedTime / 1000,
      );
      if (status === 429) this.throttled.inc({ route });
      if (route === TOKEN_ROUTE && request.method === 'POST') {
        if (status === 200) this.tokenGrants.inc();
        else this.tokenFailures.inc({ status_code: String(status) });
      }
    });
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error('timed out')), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Whether `header` is `Bearer <token>` for the configured metrics token (compared in constant time). */
export function metricsAuthorized(header: string | undefined, token: string | undefined): boolean {
  if (!token) return true;
  const m = /^Bearer +(\S+)$/i.exec(header ?? '');
  if (!m) return false;
  const given = Buffer.from(m[1]!);
  const wanted = Buffer.from(token);
  return given.length === wanted.length && timingSafeEqual(given, wanted);
}

/**
 * `/metrics` on its own listener (`--metrics-address`), e.g. an address only the monitoring
 * network reaches; the API then does not serve it.
 */
export async function startMetricsServer(
  metrics: Metrics,
  options: { host: string; port: number; token: string | undefined; base: PublicBase },
): Promise<{ url: string; close(): Promise<void> }> {
  const problem = (res: http.ServerResponse, key: ProblemKey, detail: string, headers: Record<string, string> = {}) => {
    const flowId = randomUUID();
    const body = JSON.stringify(problemBody(options.base, key, detail, flowId));
    res.writeHead(PROBLEMS[key].status, { ...headers, 'content-type': PROBLEM_CONTENT_TYPE, 'x-flow-id': flowId });
    res.end(body);
  };
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics') {
      problem(res, 'resource-not-found', 'Only /metrics is served on this address.');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      problem(res, 'method-not-allowed', 'Use GET.', { allow: 'GET, HEAD' });
      return;
    }
    if (!metricsAuthorized(req.headers.authorization, options.token)) {
      problem(res, 'invalid-credentials', 'Send `Authorization: Bearer <metrics token>`.', {
        'www-authenticate': 'Bearer realm="metrics"',
      });
      return;
    }
    metrics.render().then(
      (text) =>
        res.writeHead(200, { 'content-type': metrics.contentType }).end(req.method === 'HEAD' ? undefined : text),
      () => res.writeHead(500).end(),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  return {
    url: `${listenUrl('http', options.host, port)}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
