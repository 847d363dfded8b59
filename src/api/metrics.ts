import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { stateProperty } from '../domain/state-catalogue.js';
import type { EventBus } from '../services/event-bus.js';
import type { Api } from './server.js';

/** Prometheus metrics of one instance (SPEC §7 /metrics). */
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
  constructor(events: EventBus, commandsRunning: () => number) {
    new Gauge({
      name: 'fleetgate_commands_in_flight',
      help: 'Commands this instance is executing now',
      registers: [this.registry],
      collect() {
        this.set(commandsRunning());
      },
    });
    collectDefaultMetrics({ register: this.registry, prefix: 'fleetgate_' });
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

  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  instrument(app: Api): void {
    app.addHook('onResponse', async (request, reply) => {
      this.httpDuration.observe(
        {
          method: request.method,
          route: request.routeOptions.url ?? 'unmatched',
          status_code: String(reply.statusCode),
        },
        reply.elapsedTime / 1000,
      );
    });
  }
}
