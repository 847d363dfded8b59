import { readFileSync } from 'node:fs';
import type { AdapterDefinition } from '../adapter.js';
import { FleetgateMqttAdapter } from './fleetgate-mqtt-adapter.js';
import { FLEETGATE_BRAND } from './models.js';

/** Telematics brand FLEETGATE: fleetgate's own protocol over MQTT (docs/protocol.md). */
export const fleetgateMqttDefinition: AdapterDefinition = {
  brand: FLEETGATE_BRAND,
  folder: 'fleetgate-mqtt',
  settings: [],
  create: () => new FleetgateMqttAdapter(),
  simulator: {
    selectedBy: 'mqttUrl',
    summary: 'fleetgate/v1 units over MQTT (--mqtt-url)',
    options: [
      { flags: '--mqtt-url <url>', description: 'broker fleetgate/v1 units connect to, e.g. mqtt://127.0.0.1:1883' },
    ],
    async run(opts, io) {
      let units: Array<{ unitId: string; password: string; model: string }>;
      if (opts.unitsFile) {
        units = JSON.parse(readFileSync(String(opts.unitsFile), 'utf8'));
      } else if (opts.unit && opts.password && opts.model) {
        units = [{ unitId: String(opts.unit), password: String(opts.password), model: String(opts.model) }];
      } else {
        return io.fail('give --unit, --password and --model, or --units-file');
      }
      const { runSimulation } = await import('../../sim/run-simulation.js');
      const summary = await runSimulation({
        mqttUrl: String(opts.mqttUrl),
        units,
        reportIntervalMs: Number(opts.reportIntervalMs),
        answerDelayMs: opts.answerDelayMs === undefined ? undefined : Number(opts.answerDelayMs),
        drive: opts.drive !== false,
        durationMs: opts.durationS === undefined ? undefined : Number(opts.durationS) * 1000,
        out: io.out,
        // Typed commands switch units offline, silent, failing… (docs: README "Simulator").
        input: io.input,
        signal: io.signal,
      });
      return summary.refusedLogins.length > 0 ? 2 : 0;
    },
  },
};
