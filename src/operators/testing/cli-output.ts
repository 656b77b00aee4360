/** What a CLI run printed, for tests of the operators' commands. */
import type { CliOutput } from '../cli.js';

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
