/**
 * The `fleetgate + webhook` scenario against `fleetgate` (bench/run.ts): the command path with one
 * webhook subscription receiving every event, against the same path without one; and what the
 * receiver got: events received against committed, and the latency from commit to receiver.
 *
 * Targets: the maximum ≥ 0.9 × fleetgate's (best closed-loop runs), and p99 ≤ 1.1 × fleetgate's at
 * the lowest measured load (10 % of floor C's maximum): at 50 % fleetgate runs near or beyond
 * its own maximum (production: 0.4 of floor C's), where p99 measures queueing, not the events.
 */
import type { Measured } from './scenarios.js';

/** The open-loop step for delivery latency: its command rate commits about this many events/s. */
export const EVENTS_STEP_PER_S = 1000;

export interface CommandRuns {
  max: Measured;
  maxRuns: Measured[];
  latency: Array<Measured & { fraction: number }>;
  /** fleetgate + webhook: the step at ~EVENTS_STEP_PER_S events/s. */
  eventsStep?: Measured;
}

const round2 = (n: number) => Math.round(n * 100) / 100;

/** Commands/s that commit ~EVENTS_STEP_PER_S events/s, from the events per command seen so far. */
export function eventsStepRate(latency: Measured[]): number {
  const perCommand = latency.find((m) => m.events && m.events.eventsPerCommand > 0)?.events?.eventsPerCommand ?? 1;
  return Math.round(EVENTS_STEP_PER_S / perCommand);
}

/** Two scenarios' maxima measured in turn, A B A B A B A (bench/run.ts, full runs). */
export interface MaximaInTurn {
  /** Per scenario, its maxima in the order measured. */
  rps: Record<string, number[]>;
  errors: number;
  /** Each B run ÷ the mean of the A runs on either side, and their median. */
  ratios: number[];
  median: number;
}

export function webhookComparison(fleetgate: CommandRuns, webhook: CommandRuns, interleaved?: MaximaInTurn) {
  const maxRatio = round2(webhook.max.rps / fleetgate.max.rps);
  const p99 = webhook.latency.map((w) => {
    const f = fleetgate.latency.find((l) => l.offered === w.offered);
    const comparable = f !== undefined && !f.saturated && !w.saturated;
    return {
      offered: w.offered,
      fraction: w.fraction,
      fleetgate_p99_ms: f?.latencyMs.p99,
      webhook_p99_ms: w.latencyMs.p99,
      ratio: comparable ? round2(w.latencyMs.p99 / f.latencyMs.p99) : null,
    };
  });
  const runs = [...webhook.maxRuns, ...webhook.latency, ...(webhook.eventsStep ? [webhook.eventsStep] : [])];
  const events = runs.flatMap((m) => (m.events ? [m.events] : []));
  const sum = (k: 'committed' | 'received' | 'backlog' | 'duplicates' | 'rejected') =>
    events.reduce((n, e) => n + e[k], 0);
  const delivery = (m: Measured) =>
    m.events && {
      commands_per_s: m.offered,
      /** The commands fell behind the offered rate (bench/load.ts): fewer events than offered. */
      saturated: m.saturated === true,
      events_per_command: m.events.eventsPerCommand,
      delivered_per_s: m.events.deliveredPerS,
      latency_ms: m.events.latencyMs,
      backlog: m.events.backlog,
      drain_s: m.events.drainS,
      drained_per_s: m.events.drainedPerS,
    };
  const at10 = p99.find((x) => x.fraction === 0.1);
  return {
    max_vs_fleetgate: maxRatio,
    ...(interleaved ? { interleaved } : {}),
    p99_vs_fleetgate: p99,
    receiver: {
      runs: events.length,
      runs_fully_received: events.filter((e) => e.backlog === 0).length,
      committed: sum('committed'),
      received: sum('received'),
      /** Left undelivered when a run's backlog would have outlasted the drain limit. */
      not_awaited: sum('backlog'),
      duplicates: sum('duplicates'),
      rejected: sum('rejected'),
    },
    delivery: webhook.latency.map(delivery),
    at_events_step: webhook.eventsStep && delivery(webhook.eventsStep),
    targets: {
      max_at_least_0_9_of_fleetgate: maxRatio >= 0.9,
      ...(interleaved ? { interleaved_max_at_least_0_9_of_fleetgate: interleaved.median >= 0.9 } : {}),
      p99_at_10pct_at_most_1_1_of_fleetgate: at10?.ratio == null ? undefined : at10.ratio <= 1.1,
    },
  };
}

export type WebhookComparison = ReturnType<typeof webhookComparison>;

export function webhookLines(q: WebhookComparison, drainLimitS: number): string[] {
  const verdict = (ok: boolean | undefined) => (ok === undefined ? 'not measured' : ok ? 'met' : 'MISSED');
  const pct = (f: number | undefined) => (f === undefined ? '' : `${Math.round(f * 100)}%, `);
  const p99 = q.p99_vs_fleetgate
    .map(
      (x) =>
        `at ${pct(x.fraction)}${x.offered}/s ${x.ratio ?? 'saturated'} (${x.webhook_p99_ms} vs ${x.fleetgate_p99_ms} ms)`,
    )
    .join(', ');
  const r = q.receiver;
  const il = q.interleaved;
  const out = [
    `fleetgate + webhook ÷ fleetgate: max ${q.max_vs_fleetgate} (target ≥ 0.9 ${verdict(q.targets.max_at_least_0_9_of_fleetgate)}); p99 ${p99} (target at 10% ≤ 1.1 ${verdict(q.targets.p99_at_10pct_at_most_1_1_of_fleetgate)})`,
    ...(il
      ? [
          `maxima in turn: ${il.rps.fleetgate!.map((f, i) => (i < il.ratios.length ? `fleetgate ${f}, + webhook ${il.rps.fleetgateWebhook![i]}` : `fleetgate ${f}`)).join(', ')}${il.errors ? ` (${il.errors} errors)` : ''}; ÷ ${il.ratios.join(', ')}, median ${il.median} (target ≥ 0.9 ${verdict(il.median >= 0.9)})`,
        ]
      : []),
    `webhook receiver: ${r.received} of ${r.committed} committed events received and verified over ${r.runs} runs, ${r.duplicates} duplicates, ${r.rejected} rejected; ${r.runs_fully_received} runs fully received${r.not_awaited ? `, ${r.runs - r.runs_fully_received} not: their ${r.not_awaited} events would have taken over ${drainLimitS} s to drain (subscription replaced)` : ''}`,
  ];
  const cell = (d: NonNullable<WebhookComparison['delivery'][number]>) =>
    `${d.saturated ? 'commands SATURATED, ' : ''}${d.latency_ms.p50} / ${d.latency_ms.p99} / ${d.latency_ms.max} ms, delivered ${d.delivered_per_s}/s${d.backlog ? `, ${d.backlog} left after ${d.drain_s} s` : `, drained ${d.drain_s} s after`}${d.drained_per_s ? ` (${d.drained_per_s}/s)` : ''}`;
  const steps = q.delivery.flatMap((d) => (d ? [`at ${d.commands_per_s}/s: ${cell(d)}`] : []));
  const s = q.at_events_step;
  if (s) {
    const perS = Math.round((s.commands_per_s ?? 0) * s.events_per_command);
    steps.push(`at ~${EVENTS_STEP_PER_S} events/s (${s.commands_per_s} commands/s, ${perS} events/s): ${cell(s)}`);
  }
  out.push(
    `event delivery, commit → receiver p50 / p99 / max (${q.delivery[0]?.events_per_command ?? '—'} events per command): ${steps.join('  |  ')}`,
  );
  return out;
}
