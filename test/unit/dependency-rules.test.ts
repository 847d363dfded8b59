import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { cruise } from 'dependency-cruiser';
import { describe, expect, it } from 'vitest';

// STYLE.md "Dependencies point inward", checked with dependency-cruiser and the rules in
// .dependency-cruiser.cjs (also `npm run deps`): adapters import neither store nor config,
// the domain imports nothing of ours, only the composition root and registries name concrete parts.

const root = path.resolve(import.meta.dirname, '../..');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return e.name === 'web' ? [] : sourceFiles(full);
    return /\.(ts|mts)$/.test(e.name) ? [full] : [];
  });
}

describe('dependency rules', () => {
  it('src/ keeps every rule of .dependency-cruiser.cjs', { timeout: 60_000 }, async () => {
    const { default: rules } = await import(path.join(root, '.dependency-cruiser.cjs'));
    const result = await cruise(['src'], { ...rules.options, validate: true, ruleSet: { forbidden: rules.forbidden } });
    const output = result.output as { summary: { violations: { rule: { name: string }; from: string; to: string }[] } };
    const violations = output.summary.violations.map((v) => `${v.rule.name}: ${v.from} → ${v.to}`);
    expect(violations).toEqual([]);
    expect(output.summary.violations).toHaveLength(0);
  });

  it('only src/config.ts reads process.env', () => {
    const readers = sourceFiles(path.join(root, 'src'))
      .filter((f) => /process\.env\b/.test(readFileSync(f, 'utf8')))
      .map((f) => path.relative(root, f));
    expect(readers).toEqual(['src/config.ts']);
  });
});
