/**
 * Reruns the two fault drills of issue 21 and prints their counts:
 *   node --import tsx scripts/fault-drills.ts [restart|flood|both]
 * restart: a private PostgreSQL stopped for 5 s during command traffic (10 vehicles answering in
 * 300 ms, 2 answering after the 3 s budget); flood: 800 connections whose token-request bodies
 * never arrive, against default settings (--request-body-timeout-ms 10000).
 */
import { rmSync } from 'node:fs';
import { postgresRestartDrill, stalledBodyFlood, startDrillApp } from './lib/fault-drills.js';

const which = process.argv[2] ?? 'both';

if (which === 'restart' || which === 'both') {
  const started = Date.now();
  const r = await postgresRestartDrill({
    vehicles: 10,
    slowVehicles: 2,
    commandTimeoutMs: 3000,
    answerDelayMs: 300,
    outageMs: 5000,
    log: (line) => console.log(`  ${line}`),
  });
  console.log(`PostgreSQL restart during traffic (${Math.round((Date.now() - started) / 1000)} s):`);
  console.log(`  answers by status: ${JSON.stringify(r.byStatus)}`);
  console.log(`  200: ${r.ok}, with a SUCCEEDED record: ${r.okRecorded}`);
  console.log(`  504: ${r.noConnection}, with a matching record: ${r.noConnectionRecorded}`);
  console.log(`  200/504 answered during the outage (record written later): ${r.duringOutage}`);
  console.log(
    `  mismatches: ${r.mismatches.length}${r.mismatches.length ? `\n    ${r.mismatches.join('\n    ')}` : ''}`,
  );
}

if (which === 'flood' || which === 'both') {
  const { app, dir } = await startDrillApp(undefined, 15_000);
  try {
    const r = await stalledBodyFlood(app.url, 800, 30_000);
    console.log('Stalled-body flood (800 connections, default --request-body-timeout-ms 10000):');
    console.log(`  connected: ${r.sent}`);
    console.log(`  answered: ${JSON.stringify(r.answered)}`);
    console.log(`  closed without an answer: ${r.closedWithoutAnswer}`);
    console.log(`  still held after 30 s: ${r.held}`);
    console.log(`  /health/live during the flood: ${r.probeStatus}`);
    console.log(`  all settled after ${(r.elapsedMs / 1000).toFixed(1)} s`);
  } finally {
    await app.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
