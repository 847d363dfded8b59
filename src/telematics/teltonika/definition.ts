import { readFileSync } from 'node:fs';
import type { AdapterDefinition } from '../adapter.js';
import { TELTONIKA_BRAND, TeltonikaAdapter } from './teltonika-adapter.js';

/** Telematics brand TELTONIKA: FMB/FMC trackers over direct TCP (docs/teltonika.md). */
export const teltonikaDefinition: AdapterDefinition = {
  brand: TELTONIKA_BRAND,
  folder: 'teltonika',
  settings: [
    {
      name: 'port',
      flag: '--teltonika-port',
      kind: 'int',
      default: '5027',
      min: 0,
      max: 65535,
      description: 'TCP port for Teltonika units, Codec 8/8E/12 (0 = any free port).',
    },
  ],
  create: () => new TeltonikaAdapter(),
  simulator: {
    selectedBy: 'teltonikaAddress',
    summary: 'Teltonika units over TCP (--teltonika-address)',
    options: [
      {
        flags: '--teltonika-address <host:port>',
        description: "fleetgate's Teltonika TCP port; --unit is then the IMEI, no password",
      },
    ],
    async run(opts, io) {
      const m = /^(.+):(\d{1,5})$/.exec(String(opts.teltonikaAddress));
      if (!m) return io.fail('--teltonika-address must be host:port');
      const units: Array<{ imei: string; model: string }> = opts.unitsFile
        ? JSON.parse(readFileSync(String(opts.unitsFile), 'utf8'))
        : opts.unit && opts.model
          ? [{ imei: String(opts.unit), model: String(opts.model) }]
          : io.fail('give --unit <imei> and --model, or --units-file with [{"imei","model"}]');
      const { runTeltonikaSimulation } = await import('../../sim/teltonika/teltonika-unit.js');
      await runTeltonikaSimulation({
        host: m[1]!,
        port: Number(m[2]),
        units,
        reportIntervalMs: Number(opts.reportIntervalMs),
        answerDelayMs: opts.answerDelayMs === undefined ? undefined : Number(opts.answerDelayMs),
        out: io.out,
        signal: io.signal,
      });
      return 0;
    },
  },
};
