/**
 * The audit commands' options are read twice: the command table (commands.ts) is what the
 * argument parser accepts and what `--help` prints; the runners (src/audit/cli.ts,
 * src/cli/remote-export.ts, src/cli/audit-watch.ts) then read them by name. A name a runner
 * reads but the table does not declare can never be given (the parser refuses it); one the
 * table declares but no runner reads is silently ignored. Both are checked here, from the
 * runners' source, together with `--help` naming every option the parser accepts.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { COMMANDS, optionsOf, REMOTE_OPTIONS } from './commands.js';
import { run } from './main.js';

const root = join(__dirname, '..', '..');
const source = (path: string): string => readFileSync(join(root, path), 'utf8');

/**
 * Option names a runner reads: `option(rest, '--x')`, `count(args, '--x')`,
 * `rest.includes('--x')`, `stringOption(parsed, 'x')`, `flag(parsed, 'x')`,
 * `parsed.values.x`, and a loop over a list of names.
 */
function readNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const m of text.matchAll(/(?:option\(\w+, |\.includes\()'--([a-z-]+)'/g))
    names.add(m[1] ?? '');
  for (const m of text.matchAll(/(?:stringOption|flag)\(parsed, '([a-z-]+)'\)/g))
    names.add(m[1] ?? '');
  for (const m of text.matchAll(/parsed\.values\.([a-z]+)/g)) names.add(m[1] ?? '');
  // Names read in a loop: `for (const name of ['from', 'to', 'since'])` before stringOption.
  for (const m of text.matchAll(/for \(const name of \[([^\]]+)\] as const\)/g)) {
    for (const n of (m[1] ?? '').matchAll(/'([a-z-]+)'/g)) names.add(n[1] ?? '');
  }
  return names;
}

const RUNNERS: Record<string, readonly string[]> = {
  'audit export': ['src/audit/cli.ts', 'src/cli/remote-export.ts'],
  'audit verify': ['src/audit/cli.ts'],
  'audit watch': ['src/cli/audit-watch.ts'],
};

async function help(path: readonly string[]): Promise<string> {
  const out: string[] = [];
  const code = await run([...path, '--help'], { out: (l) => out.push(l), err: () => undefined });
  expect(code).toBe(0);
  return out.join('\n');
}

describe('the audit commands: help, parser and runners agree on every option', () => {
  for (const [name, files] of Object.entries(RUNNERS)) {
    it(`grantor ${name}`, async () => {
      const command = COMMANDS.find((c) => c.path.join(' ') === name);
      expect(command, name).toBeDefined();
      if (command === undefined) return;
      const accepted = Object.keys(optionsOf(command, command.where.includes('remote')));
      const text = await help(command.path);
      // --help names every option the parser accepts.
      for (const o of accepted) expect(text, `--${o}`).toMatch(new RegExp(`--${o}\\b`));
      // Every option a runner reads is accepted; every declared one is read by a runner.
      const read = new Set(files.flatMap((f) => [...readNames(source(f))]));
      const declared = Object.keys(command.options);
      for (const o of declared) expect(read.has(o), `--${o} declared but never read`).toBe(true);
      const sibling =
        name === 'audit export' ? 'audit verify' : name === 'audit verify' ? 'audit export' : '';
      const siblingOptions = Object.keys(
        COMMANDS.find((c) => c.path.join(' ') === sibling)?.options ?? {},
      );
      for (const o of read) {
        // src/audit/cli.ts serves export and verify: a name is either's.
        const known =
          declared.includes(o) || siblingOptions.includes(o) || Object.hasOwn(REMOTE_OPTIONS, o);
        expect(known, `--${o} read by a runner but not accepted by grantor ${name}`).toBe(true);
      }
    });
  }
});
