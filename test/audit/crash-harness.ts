/**
 * A reusable crash-consistency harness: runs the audit service in a child process
 * (crash-child.ts) under concurrent appends, kills it with SIGKILL at random moments
 * (sometimes during start-up and recovery, otherwise under load) or has it SIGKILL itself
 * at an aimed crash point (right after a batch is durable in the store, or right after its
 * extend), restarts it, and fails on the first restart whose start-up check refuses the
 * store or that misses an append that was acknowledged before a kill. It counts what each
 * start-up found (the child's `start <case>` line), so a test can require that every
 * recovery case was hit. Later issues rerun it over HTTP with their own child.
 *
 * The child is bundled once with esbuild (a tsx dependency) so that each cycle costs a
 * plain `node` start instead of a TypeScript transform; it is written under var/ two levels
 * below the repository, where the addon's relative path still resolves.
 */
import { spawn } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { repoRoot } from '../rig/sim.js';

export interface CrashChild {
  readonly command: string;
  readonly args: readonly string[];
  dispose(): Promise<void>;
}

/** Bundle crash-child.ts (or another child script) to one ESM file for fast starts. */
export async function buildCrashChild(
  entry = join(repoRoot, 'test/audit/crash-child.ts'),
): Promise<CrashChild> {
  await mkdir(join(repoRoot, 'var'), { recursive: true });
  const dir = await mkdtemp(join(repoRoot, 'var', 'crash-child-'));
  const esbuild = await import('esbuild');
  // The worker threads' files go beside the bundle, where `workerEntry` (src/shared/worker.ts)
  // looks for them; a package.json makes every .js there an ES module.
  await writeFile(join(dir, 'package.json'), '{"type":"module"}\n');
  await esbuild.build({
    entryPoints: {
      child: entry,
      'policy.worker': join(repoRoot, 'src/policy/policy.worker.ts'),
      'sign.worker.pkcs11': join(repoRoot, 'src/keys/sign.worker.pkcs11.ts'),
    },
    outdir: dir,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    logLevel: 'silent',
  });
  return {
    command: process.execPath,
    args: [join(dir, 'child.js')],
    dispose: () => rm(dir, { recursive: true, force: true }),
  };
}

export interface CrashHarnessOptions {
  readonly child: CrashChild;
  readonly cycles: number;
  /** Environment of the child (its database, TPM, anchor config...). */
  readonly env: Readonly<Record<string, string>>;
  /** A file the harness keeps the acknowledged `seq hash` lines in (CRASH_ACKS). */
  readonly acksFile: string;
  /** Longest run under load before the kill (default 40 ms). */
  readonly maxLoadMs?: number;
  /** Share of kills aimed at start-up/recovery instead of load (default 0.2). */
  readonly earlyKillShare?: number;
  /**
   * Share of kills the child makes itself at an aimed crash point, half right after a batch
   * is stored (before its extend), half right after its extend (before its increment), at
   * its 1st or 2nd batch (default 0: every kill is random).
   */
  readonly aimedKillShare?: number;
  /**
   * The CRASH_KILL_AT value of an aimed kill of `kind` (default `<kind>:<1 or 2>`); a child
   * with crash points of its own (period-crash-child.ts) names them here.
   */
  readonly aimAt?: (kind: 'stored' | 'extended', random: () => number) => string;
  readonly random?: () => number;
  /** Give up on a child that neither becomes ready nor dies (default 20 s). */
  readonly readyTimeoutMs?: number;
}

export type KillKind = 'early' | 'load' | 'stored' | 'extended';

export interface CrashReport {
  readonly kills: number;
  readonly earlyKills: number;
  /** Kills by kind: random during start-up, random under load, aimed at a crash point. */
  readonly killsByKind: Readonly<Record<KillKind, number>>;
  /** What the start-up checks found, by the child's `start <case>` lines. */
  readonly starts: Readonly<Record<string, number>>;
  /** Every acknowledged append: seq -> hash. */
  readonly acked: ReadonlyMap<number, string>;
  /** Acks seen per cycle (a cycle with 0 was killed before its first ack). */
  readonly acksPerCycle: readonly number[];
}

export class CrashHarnessError extends Error {}

interface CycleResult {
  readonly acks: [number, string][];
  readonly kind: KillKind;
  readonly start: string | undefined;
}

function killKind(options: CrashHarnessOptions, random: () => number): KillKind {
  const r = random();
  const aimed = options.aimedKillShare ?? 0;
  if (r < aimed / 2) return 'stored';
  if (r < aimed) return 'extended';
  return random() < (options.earlyKillShare ?? 0.2) ? 'early' : 'load';
}

function runCycle(options: CrashHarnessOptions, random: () => number): Promise<CycleResult> {
  const kind = killKind(options, random);
  const early = kind === 'early';
  const aim =
    kind === 'stored' || kind === 'extended'
      ? {
          CRASH_KILL_AT: options.aimAt?.(kind, random) ?? `${kind}:${1 + Math.floor(random() * 2)}`,
        }
      : {};
  return new Promise<CycleResult>((resolve, reject) => {
    const child = spawn(options.child.command, [...options.child.args], {
      env: { ...process.env, ...options.env, ...aim, CRASH_ACKS: options.acksFile },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const acks: [number, string][] = [];
    let start: string | undefined;
    let buffered = '';
    let stderr = '';
    let killed = false;
    let failure: Error | undefined;
    const kill = (): void => {
      if (killed) return;
      killed = true;
      child.kill('SIGKILL');
    };
    const guard = setTimeout(() => {
      failure ??= new CrashHarnessError('child neither became ready nor died');
      kill();
    }, options.readyTimeoutMs ?? 20_000);
    // Early kills land in the start-up check (and the recovery it runs), not in module loading.
    const earlyDelay = Math.floor(random() * 80);
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-2000);
    });
    child.stdout.on('data', (d: Buffer) => {
      buffered += d.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        const [what, a, b] = line.split(' ');
        if (what === 'ack' && a !== undefined && b !== undefined) acks.push([Number(a), b]);
        else if (what === 'boot' && early) setTimeout(kill, earlyDelay);
        else if (what === 'start') start = a;
        else if (what === 'verified' && !early && !('CRASH_KILL_AT' in aim)) {
          setTimeout(kill, Math.floor(random() * (options.maxLoadMs ?? 40)));
        } else if (what === 'refused' || what === 'lost' || what === 'error') {
          failure ??= new CrashHarnessError(`child reported: ${line}`);
        }
      }
    });
    child.on('exit', (code, signal) => {
      clearTimeout(guard);
      if (failure !== undefined) {
        reject(failure);
      } else if (signal !== 'SIGKILL') {
        reject(new CrashHarnessError(`child exited by itself (code ${code}): ${stderr}`));
      } else {
        resolve({ acks, kind, start });
      }
    });
  });
}

export async function runCrashHarness(options: CrashHarnessOptions): Promise<CrashReport> {
  const random = options.random ?? Math.random;
  const acked = new Map<number, string>();
  const acksPerCycle: number[] = [];
  const killsByKind: Record<KillKind, number> = { early: 0, load: 0, stored: 0, extended: 0 };
  const starts: Record<string, number> = {};
  for (let cycle = 0; cycle < options.cycles; cycle++) {
    const result = await runCycle(options, random);
    killsByKind[result.kind] += 1;
    if (result.start !== undefined) starts[result.start] = (starts[result.start] ?? 0) + 1;
    acksPerCycle.push(result.acks.length);
    const lines: string[] = [];
    for (const [seq, hash] of result.acks) {
      const known = acked.get(seq);
      if (known !== undefined && known !== hash) {
        throw new CrashHarnessError(`seq ${seq} acknowledged twice with different hashes`);
      }
      acked.set(seq, hash);
      lines.push(`${seq} ${hash}\n`);
    }
    // The next child checks every one of these is in the log before it appends.
    if (lines.length > 0) await appendFile(options.acksFile, lines.join(''));
  }
  return {
    kills: options.cycles,
    earlyKills: killsByKind.early,
    killsByKind,
    starts,
    acked,
    acksPerCycle,
  };
}
