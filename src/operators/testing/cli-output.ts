/** What a CLI run printed, for tests of the operators' commands. */
import { runOperatorsCli, type CliOutput } from '../cli.js';

export interface CapturedOutput {
  readonly lines: string[];
  readonly errors: string[];
  readonly out: CliOutput;
}

export function capture(): CapturedOutput {
  const lines: string[] = [];
  const errors: string[] = [];
  return {
    lines,
    errors,
    out: { log: (l: string) => lines.push(l), error: (l: string) => errors.push(l) },
  };
}

/** One run of `grantor operators ARGV` against `svc`: its exit code and what it printed. */
export async function runCli(
  svc: Parameters<typeof runOperatorsCli>[1],
  argv: string[],
): Promise<CapturedOutput & { readonly exit: number }> {
  const c = capture();
  return { ...c, exit: await runOperatorsCli(argv, svc, c.out) };
}
