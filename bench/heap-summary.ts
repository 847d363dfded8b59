/**
 * `npx tsx bench/heap-summary.ts <file.heapprofile> [--top N] [--callers NAME]`: what a sampling
 * heap profile from bench/heap-sample.mjs says about allocation — bytes allocated (garbage
 * included) by function, in % of the total; `--callers NAME` lists the call paths of the
 * functions whose label starts with NAME.
 */
import { readFileSync } from 'node:fs';
import { profileSummaryArgs } from './lib/args.js';
import { type CallFrame, frameLabel } from './lib/call-frame.js';

interface HeapNode {
  callFrame: CallFrame;
  selfSize: number;
  children: HeapNode[];
}

const USAGE = 'npx tsx bench/heap-summary.ts <file.heapprofile> [--top N] [--callers NAME]';
const { file, top, extra } = profileSummaryArgs(USAGE, 'callers');
const callersOf = extra;
const root = (JSON.parse(readFileSync(file, 'utf8')) as { head: HeapNode }).head;

const bySelf = new Map<string, number>();
const paths = new Map<string, number>();
let total = 0;
const walk = (n: HeapNode, stack: string[]) => {
  const name = frameLabel(n.callFrame);
  total += n.selfSize;
  bySelf.set(name, (bySelf.get(name) ?? 0) + n.selfSize);
  if (callersOf && n.selfSize > 0 && name.startsWith(callersOf)) {
    const key = stack.slice(-3).reverse().join(' < ');
    paths.set(key, (paths.get(key) ?? 0) + n.selfSize);
  }
  for (const c of n.children) walk(c, [...stack, name]);
};
walk(root, []);

const pct = (v: number) => `${((v / total) * 100).toFixed(1).padStart(5)} %`;
const sorted = (m: Map<string, number>) => [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
process.stdout.write(`allocated ${(total / 1e6).toFixed(0)} MB (sampled)\n\n`);
if (callersOf) {
  process.stdout.write(`call paths of ${callersOf}\n`);
  for (const [k, v] of sorted(paths)) process.stdout.write(`${pct(v)}  ${k}\n`);
} else {
  process.stdout.write('allocated by function\n');
  for (const [k, v] of sorted(bySelf)) process.stdout.write(`${pct(v)}  ${k}\n`);
}
