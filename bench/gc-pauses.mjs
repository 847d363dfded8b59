/**
 * Preload that logs a process's garbage-collection pauses of 2 ms or more, one line each
 * (`<ISO time> <minor|major|incremental|weak> <ms> heap=<MB used>`), to
 * `$GC_PAUSES_DIR/gc-<pid>.log` (default the system's temporary directory):
 *   npm run bench -- … --fleetgate-node-args "--import ./bench/gc-pauses.mjs"
 *   NODE_OPTIONS="--import $PWD/bench/gc-pauses.mjs" npm run bench -- --scale …   (every process)
 * Lines its times against a run's measuring windows to tell a process's pauses from the rest of
 * a latency tail (docs/performance.md, Connected units). Plain JavaScript: it runs before tsx.
 */
import { appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { constants, PerformanceObserver } from 'node:perf_hooks';

const file = path.join(process.env.GC_PAUSES_DIR ?? tmpdir(), `gc-${process.pid}.log`);
const KINDS = {
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak',
};

new PerformanceObserver((list) => {
  let lines = '';
  for (const e of list.getEntries()) {
    if (e.duration < 2) continue;
    const at = new Date(performance.timeOrigin + e.startTime).toISOString();
    const heapMb = Math.round(process.memoryUsage().heapUsed / 2 ** 20);
    lines += `${at} ${KINDS[e.detail?.kind] ?? e.detail?.kind} ${e.duration.toFixed(1)} heap=${heapMb}MB\n`;
  }
  if (lines) appendFileSync(file, lines);
}).observe({ entryTypes: ['gc'] });
