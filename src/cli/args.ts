/**
 * The CLI's argument checking: every option a command does not declare is refused by name,
 * with node's own `util.parseArgs` (strict) for the values. No dependency.
 */
import { parseArgs } from 'node:util';

export interface OptionSpec {
  readonly type: 'string' | 'boolean';
  readonly multiple?: boolean;
  readonly short?: string;
  /** One line for the help. */
  readonly help: string;
  /** The value's name in the help (`--purpose <grant|audit>`). */
  readonly value?: string;
}

export type Options = Readonly<Record<string, OptionSpec>>;

/** A command line that does not fit the command: exit 2, with the command's help named. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface Parsed {
  readonly values: Readonly<Record<string, string | boolean | string[] | undefined>>;
  readonly positionals: readonly string[];
}

/**
 * Checks `args` against `options` and the positional bounds; throws UsageError naming the
 * first unknown option, a missing value or the wrong number of arguments.
 */
export function checkArgs(
  args: readonly string[],
  options: Options,
  positionals: { readonly min: number; readonly max: number },
): Parsed {
  const shorts = new Map(
    Object.entries(options).flatMap(([name, o]) =>
      o.short === undefined ? [] : [[o.short, name] as const],
    ),
  );
  for (const a of args) {
    if (a === '--') break;
    if (a.startsWith('--')) {
      const name = a.slice(2).split('=', 1)[0] ?? '';
      if (!(name in options)) throw new UsageError(`unknown option --${name}`);
    } else if (a.startsWith('-') && a.length > 1 && !/^-\d/.test(a)) {
      const short = a.slice(1, 2);
      if (!shorts.has(short)) throw new UsageError(`unknown option ${a}`);
    }
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: [...args],
      options: Object.fromEntries(
        Object.entries(options).map(([name, o]) => [
          name,
          {
            type: o.type,
            ...(o.multiple === true ? { multiple: true } : {}),
            ...(o.short === undefined ? {} : { short: o.short }),
          },
        ]),
      ),
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      const missing = args.find(
        (a, i) =>
          a.startsWith('--') &&
          options[a.slice(2)]?.type === 'string' &&
          (args[i + 1] === undefined || args[i + 1]?.startsWith('--') === true),
      );
      throw new UsageError(
        missing === undefined ? 'an option is missing its value' : `${missing} needs a value`,
      );
    }
    throw new UsageError(e instanceof Error ? e.message : 'bad arguments');
  }
  const count = parsed.positionals.length;
  if (count < positionals.min) throw new UsageError('missing argument');
  if (count > positionals.max) {
    throw new UsageError(`unexpected argument ${parsed.positionals[positionals.max] ?? ''}`);
  }
  return {
    values: parsed.values as Parsed['values'],
    positionals: parsed.positionals,
  };
}

export function stringOption(parsed: Parsed, name: string): string | undefined {
  const v = parsed.values[name];
  return typeof v === 'string' ? v : undefined;
}

export function flag(parsed: Parsed, name: string): boolean {
  return parsed.values[name] === true;
}
