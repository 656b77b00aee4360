/**
 * Readiness: each dependency the decisions need (TPM, HSM, audit store, policy) exposes one
 * probe; /readyz runs them all, each under a deadline, and is ready only if all pass.
 */
import type { ErrorCode } from './error-codes.js';

export type ProbeResult = { readonly ok: true } | { readonly ok: false; readonly reason: string };

export interface ReadinessProbe {
  /** Short component name reported to operators: `tpm`, `hsm`, `audit`, `policy`. */
  readonly name: string;
  /** The error code a failure of this component maps to (e.g. `tpm_unavailable`). */
  readonly code: ErrorCode;
  check(): Promise<ProbeResult>;
}

export interface ReadinessReport {
  readonly ready: boolean;
  readonly checks: Readonly<Record<string, ProbeResult>>;
  /** The first failing probe, in probe order. */
  readonly firstFailure?: { readonly name: string; readonly code: ErrorCode };
}

function withDeadline(p: Promise<ProbeResult>, ms: number): Promise<ProbeResult> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<ProbeResult>((res) => {
    timer = setTimeout(() => {
      res({ ok: false, reason: `no answer within ${ms} ms` });
    }, ms);
    timer.unref();
  });
  return Promise.race([
    p.catch((e: unknown) => ({
      ok: false as const,
      reason: e instanceof Error ? e.message : 'probe failed',
    })),
    deadline,
  ]).finally(() => {
    clearTimeout(timer);
  });
}

export async function runProbes(
  probes: readonly ReadinessProbe[],
  deadlineMs = 3000,
): Promise<ReadinessReport> {
  const results = await Promise.all(probes.map((p) => withDeadline(p.check(), deadlineMs)));
  const checks: Record<string, ProbeResult> = {};
  let firstFailure: { name: string; code: ErrorCode } | undefined;
  probes.forEach((p, i) => {
    const r = results[i] ?? { ok: false, reason: 'no result' };
    checks[p.name] = r;
    if (!r.ok && firstFailure === undefined) firstFailure = { name: p.name, code: p.code };
  });
  return firstFailure === undefined
    ? { ready: true, checks }
    : { ready: false, checks, firstFailure };
}
