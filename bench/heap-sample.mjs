/**
 * Preload that records where a process allocates, garbage included:
 *   npm run bench -- … --fleetgate-node-args "--import ./bench/heap-sample.mjs"
 * V8's sampling heap profiler, with objects collected by minor and major GCs kept in the samples
 * (a plain `--heap-prof` keeps only what is still alive at exit, which hides the garbage that
 * drives GC time). Written at exit to `$HEAP_SAMPLE_DIR` (default the working directory) as
 * `heap-<pid>.heapprofile`; `npx tsx bench/heap-summary.ts <file>` summarises it. With
 * `HEAP_SAMPLE_SURVIVORS=1`, only objects that outlived a minor GC (scavenge) are kept: what each
 * scavenge has to copy, and later what major GCs collect.
 * Plain JavaScript: it runs before tsx is loaded.
 */
import { writeFileSync } from 'node:fs';
import inspector from 'node:inspector';
import path from 'node:path';

const session = new inspector.Session();
session.connect();
session.post('HeapProfiler.enable');
session.post(
  'HeapProfiler.startSampling',
  {
    samplingInterval: 8192,
    includeObjectsCollectedByMajorGC: true,
    // HEAP_SAMPLE_SURVIVORS=1: only what outlived a scavenge, which is what makes scavenges cost.
    includeObjectsCollectedByMinorGC: process.env.HEAP_SAMPLE_SURVIVORS !== '1',
  },
  (err) => {
    if (err) process.stderr.write(`heap-sample: ${err.message}\n`);
  },
);
// A session in the same thread answers synchronously, so this completes inside 'exit'.
process.on('exit', () => {
  session.post('HeapProfiler.stopSampling', (err, result) => {
    if (err) return process.stderr.write(`heap-sample: ${err.message}\n`);
    const file = path.join(process.env.HEAP_SAMPLE_DIR ?? process.cwd(), `heap-${process.pid}.heapprofile`);
    writeFileSync(file, JSON.stringify(result.profile));
  });
});
