/**
 * `grantor`: the command line, from argv to an exit code. Help, `--version`, unknown
 * commands and unknown options are answered from the command table (src/cli/commands.ts)
 * before anything is configured or opened. Exit codes: 0 done, 1 failed or refused, 2 usage.
 */
import { BUILD } from '../shared/build.js';
import { ConfigError, GrantorError } from '../shared/errors.js';
import { checkArgs, UsageError, type Parsed } from './args.js';
import {
  commandHelp,
  groupHelp,
  optionsOf,
  positionalsOf,
  resolve,
  type Command,
} from './commands.js';
import type { Io } from './io.js';

/** The package version, read the one way grantor_build_info reads it (src/shared/build.ts). */
export function version(): string {
  return BUILD.version;
}

const REMOTE_FLAGS = /^--(url|profile)(=|$)/;

function wantsHelp(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).some((a) => a === '--help' || a === '-h');
}

/** The checked arguments in the order the domain runners read them: positionals, options. */
function canonical(command: Command, parsed: Parsed): string[] {
  const out = [...parsed.positionals];
  for (const [name, value] of Object.entries(parsed.values)) {
    if (name === 'help' || value === undefined || value === false) continue;
    if (command.options[name] === undefined) continue;
    if (value === true) out.push(`--${name}`);
    else for (const v of Array.isArray(value) ? value : [value]) out.push(`--${name}`, v);
  }
  return out;
}

async function dispatch(argv: readonly string[], io: Io): Promise<number> {
  const [first, ...after] = argv;
  if (first === undefined) {
    io.err(groupHelp([]));
    return 2;
  }
  if (first === '--version' || first === '-V') {
    io.out(`grantor ${version()}`);
    return 0;
  }
  if (first === '--help' || first === '-h' || first === 'help') {
    const target = first === 'help' ? after.filter((a) => !a.startsWith('-')) : [];
    const found = resolve(target);
    if ('command' in found) {
      io.out(commandHelp(found.command));
      return 0;
    }
    if (found.unknown !== undefined) {
      io.err(`grantor: unknown command "${[...found.group, found.unknown].join(' ')}"`);
      io.err(groupHelp(found.group));
      return 2;
    }
    io.out(groupHelp(found.group));
    return 0;
  }
  const found = resolve(argv);
  if (!('command' in found)) {
    if (found.unknown !== undefined) {
      io.err(`grantor: unknown command "${[...found.group, found.unknown].join(' ')}"`);
      io.err(groupHelp(found.group));
      return 2;
    }
    const rest = argv.slice(found.group.length);
    if (found.group.length > 0 && wantsHelp(rest)) {
      io.out(groupHelp(found.group));
      return 0;
    }
    const next = rest[0];
    io.err(
      next === undefined
        ? `grantor ${found.group.join(' ')}: missing command`
        : `grantor: unknown option ${next}`,
    );
    io.err(groupHelp(found.group));
    return 2;
  }
  const { command, rest } = found;
  const name = `grantor ${command.path.join(' ')}`;
  if (wantsHelp(rest)) {
    io.out(commandHelp(command));
    return 0;
  }
  const remote =
    command.where.includes('remote') &&
    (command.where.length === 1 || rest.some((a) => REMOTE_FLAGS.test(a)));
  let parsed: Parsed;
  try {
    parsed = checkArgs(rest, optionsOf(command, remote), positionalsOf(command));
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    io.err(`${name}: ${e.message} (see ${name} --help)`);
    return 2;
  }
  if (remote) {
    const { runRemote } = await import('./remote.js');
    return runRemote(command, parsed, io);
  }
  if (command.where.includes('config')) {
    const { runDoctor } = await import('./doctor.js');
    return runDoctor(parsed, io);
  }
  if (command.path[0] === 'operators' && command.path[1] === 'token') {
    // Without loading the local runner (the TPM addon): GRANTOR_URL with a token.
    const { remoteTokensSet, runRemoteTokens } = await import('./remote-tokens.js');
    if (remoteTokensSet(process.env)) {
      return runRemoteTokens(command, parsed, canonical(command, parsed), io);
    }
  }
  const { runLocal } = await import('./local.js');
  return runLocal(command, canonical(command, parsed), io);
}

/** Runs one command line; never throws (an unexpected error is printed, without a stack). */
export async function run(argv: readonly string[], io: Io): Promise<number> {
  try {
    return await dispatch(argv, io);
  } catch (e) {
    if (e instanceof ConfigError) {
      io.err(`grantor: configuration error: ${e.message}`);
      return 1;
    }
    if (e instanceof GrantorError) {
      io.err(`grantor: ${e.code}: ${e.message}`);
      return 1;
    }
    const debug = process.env.GRANTOR_DEBUG === '1';
    io.err(
      `grantor: ${e instanceof Error ? (debug ? (e.stack ?? e.message) : e.message) : String(e)}${debug ? '' : ' (GRANTOR_DEBUG=1 shows where)'}`,
    );
    return 1;
  }
}
