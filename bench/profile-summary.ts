/**
 * `npx tsx bench/profile-summary.ts <file.cpuprofile> [--top N] [--from S]`: where a V8 CPU profile
 * (from `--fleetgate-node-args "--cpu-prof --cpu-prof-dir=DIR"`) spends its time — self time by
 * package (fleetgate's own code by folder) and by function, and total time (self and callees, within
 * one synchronous stack) by function, in % of the profile's busy time. `--from S` leaves out the
 * first S seconds (start-up: loading and compiling modules).
 */
import { readFileSync } from 'node:fs';
import { profileSummaryArgs, wholeNumber } from './lib/args.js';
import { type CallFrame, frameLabel } from './lib/call-frame.js';

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const USAGE = 'npx tsx bench/profile-summary.ts <file.cpuprofile> [--top N] [--from S]';
const { file, top, extra } = profileSummaryArgs(USAGE, 'from');
const fromUs = wholeNumber(USAGE, 'from', extra, 0, 0) * 1e6;
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));

/** The package a frame belongs to: `pkg` for node_modules, `src/<folder>` for fleetgate. */
function area(url: string, name: string): string {
  if (name === '(garbage collector)') return '(gc)';
  if (name === '(idle)' || name === '(program)') return name;
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const parts = url.slice(nm + 13).split('/');
    return parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
  }
  const src = url.indexOf('/src/');
  if (src >= 0) return `src/${url.slice(src + 5).split('/')[0]}`;
  if (url.startsWith('node:')) return 'node:' + url.slice(5).split('/')[0];
  return url === '' ? '(native)' : 'other';
}

const parentOf = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id);
const selfUs = new Map<number, number>();
let elapsed = 0;
for (let i = 0; i < profile.samples.length; i++) {
  elapsed += profile.timeDeltas[i] ?? 0;
  if (elapsed < fromUs) continue;
  const id = profile.samples[i]!;
  selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
}
const keyOf = (id: number) => frameLabel(byId.get(id)!.callFrame);
const areas = new Map<string, number>();
const functions = new Map<string, number>();
const totals = new Map<string, number>();
let busy = 0;
for (const [id, us] of selfUs) {
  const { functionName, url } = byId.get(id)!.callFrame;
  const a = area(url, functionName);
  if (a === '(idle)') continue;
  busy += us;
  areas.set(a, (areas.get(a) ?? 0) + us);
  const key = keyOf(id);
  functions.set(key, (functions.get(key) ?? 0) + us);
  // Total: each function on this sample's stack, once.
  const seen = new Set<string>();
  for (let at: number | undefined = id; at !== undefined; at = parentOf.get(at)) {
    const k = keyOf(at);
    if (seen.has(k) || k.startsWith('(root)')) continue;
    seen.add(k);
    totals.set(k, (totals.get(k) ?? 0) + us);
  }
}
const pct = (us: number) => `${((100 * us) / busy).toFixed(1).padStart(5)} %`;
const print = (title: string, m: Map<string, number>, n: number) => {
  process.stdout.write(`\n${title}\n`);
  for (const [k, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, n)) process.stdout.write(`${pct(us)}  ${k}\n`);
};
process.stdout.write(`busy ${(busy / 1e6).toFixed(2)} s of samples\n`);
print('self time by area', areas, 30);
print('self time by function', functions, top);
print('total time by function (self and callees, within one synchronous stack)', totals, top);
