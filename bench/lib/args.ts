/**
 * Command lines of the bench scripts, parsed strictly (node:util parseArgs): an unknown option, a
 * missing value or a malformed number ends the script with exit code 2, the reason and the usage,
 * instead of being ignored (a mistyped `--concurency 32` used to run with the default).
 */
import { type ParseArgsConfig, parseArgs } from 'node:util';

export function exitWithUsage(usage: string, reason: string): never {
  process.stderr.write(`${reason}\nusage: ${usage}\n`);
  process.exit(2);
}

/**
 * parseArgs over `argv`, or exit with the usage. An option in `passThrough` takes the next word as
 * its value even when that starts with a dash (`--fleetgate-node-args "--cpu-prof …"`).
 */
export function parseCommandLine<T extends Omit<ParseArgsConfig, 'args' | 'strict'>>(
  usage: string,
  config: T,
  argv: string[] = process.argv.slice(2),
  passThrough: string[] = [],
) {
  const args = argv.flatMap((word, i) => {
    if (passThrough.includes(argv[i - 1] ?? '')) return [];
    if (passThrough.includes(word) && i + 1 < argv.length) return [`${word}=${argv[i + 1]}`];
    return [word];
  });
  try {
    return parseArgs({ ...config, args, strict: true });
  } catch (e) {
    exitWithUsage(usage, (e as Error).message);
  }
}

/** A whole number of at least `min` from an option's text, `fallback` when it was not given. */
export function wholeNumber(usage: string, name: string, text: string | undefined, fallback: number, min = 1): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min)
    exitWithUsage(usage, `--${name}: a whole number of at least ${min}, not '${text}'`);
  return n;
}

/** A comma-separated list of whole numbers (`--rates 400,2000`), undefined when not given. */
export function wholeNumbers(usage: string, name: string, text: string | undefined, min = 1): number[] | undefined {
  return text?.split(',').map((part) => wholeNumber(usage, name, part, 0, min));
}

/** One of `choices`. */
export function oneOf<C extends string>(usage: string, name: string, text: string, choices: readonly C[]): C {
  if (!(choices as readonly string[]).includes(text)) {
    exitWithUsage(usage, `--${name}: one of ${choices.join(', ')}, not '${text}'`);
  }
  return text as C;
}

/** The profile summaries' command line: `<file> [--top N] [--<extra> VALUE]`. */
export function profileSummaryArgs(
  usage: string,
  extra: string,
): { file: string; top: number; extra: string | undefined } {
  const { values, positionals } = parseCommandLine(usage, {
    options: { top: { type: 'string' }, [extra]: { type: 'string' } },
    allowPositionals: true,
  });
  const [file] = positionals;
  if (!file || positionals.length > 1) exitWithUsage(usage, 'one profile file, please');
  const value = values[extra];
  return {
    file,
    top: wholeNumber(usage, 'top', values.top as string | undefined, 40),
    extra: value as string | undefined,
  };
}
