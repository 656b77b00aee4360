/**
 * The measured-boot verifier the attestation service calls: parses the request's event log
 * and IMA list (before any await), verifies them against the authentic quote, applies the
 * reference policy's `measuredBoot` rules, and keeps each runtime's verified IMA state so
 * the next attestation replays only new entries.
 *
 * The IMA state of a runtime lives in memory (a restart forgets it: the runtime is then told
 * to send its list from entry 0, ima_log_offset_invalid with `expected: 0`). It is replaced
 * only by `commit()`, after the attestation was audited, and it is dropped when the TPM was
 * reset or restarted (the PCRs, and the kernel's list, start again). A violation found in an
 * IMA entry stays a reason for every later attestation until then: a runtime cannot become
 * trusted again by sending only the entries after the bad one.
 */
import type { PcrValues } from '../../tpm/marshal/pcr-selection.js';
import {
  parseMeasuredBootRequest,
  type MeasuredBootLimits,
  type MeasuredBootRequest,
} from './evidence.js';
import { DEFAULT_IMA_LIMITS } from './ima.js';
import { EMPTY_IMA_STATE, type ImaState } from './ima-replay.js';
import { evaluateImaRules } from './ima-rules.js';
import type { MeasuredBootPolicy } from './policy.js';
import { evaluateBootRules, type MeasuredBootViolation } from './rules.js';
import { DEFAULT_EVENT_LOG_LIMITS } from './tcg-log.js';
import { verifyMeasuredBoot, type MeasuredBootEvidence } from './verify.js';

export const DEFAULT_MEASURED_BOOT_LIMITS: MeasuredBootLimits = {
  eventLog: DEFAULT_EVENT_LOG_LIMITS,
  ima: DEFAULT_IMA_LIMITS,
};

/** Limits from the two configured byte sizes (event and entry counts follow the defaults). */
export function measuredBootLimits(
  sizes: { readonly eventLogMaxBytes: number; readonly imaLogMaxBytes: number } | undefined,
): MeasuredBootLimits {
  if (sizes === undefined) return DEFAULT_MEASURED_BOOT_LIMITS;
  return {
    eventLog: { ...DEFAULT_EVENT_LOG_LIMITS, maxBytes: sizes.eventLogMaxBytes },
    ima: { ...DEFAULT_IMA_LIMITS, maxBytes: sizes.imaLogMaxBytes },
  };
}

interface RuntimeImaState {
  readonly resetCount: number;
  readonly restartCount: number;
  readonly ima: ImaState;
  /** IMA violations found so far in this boot (sticky, see the file comment). */
  readonly sticky: readonly string[];
}

export interface MeasuredBootOutcome {
  /** Reasons the attestation is untrusted: `<code> <detail>`. */
  readonly reasons: readonly string[];
  /** Facts for the audit digest and the answer. */
  readonly summary: { readonly events: number; readonly imaEntries: number } | undefined;
  /** Keep the verified IMA state (call after the attestation is audited). */
  commit(): void;
}

const MAX_RUNTIMES = 10_000;
const MAX_REASONS = 64;

/** Bounded: reasons are audited and answered; the first ones name the problem. */
function cap(reasons: readonly string[]): string[] {
  if (reasons.length <= MAX_REASONS) return [...reasons];
  const more = reasons.length - MAX_REASONS + 1;
  return [...reasons.slice(0, MAX_REASONS - 1), `measured_boot_more_reasons count=${more}`];
}

export class MeasuredBoot {
  readonly limits: MeasuredBootLimits;
  readonly #states = new Map<string, RuntimeImaState>();

  constructor(limits: MeasuredBootLimits = DEFAULT_MEASURED_BOOT_LIMITS) {
    this.limits = limits;
  }

  /** Largest request body the attestation route must accept (base64 of both logs + quote). */
  get bodyLimit(): number {
    return (
      Math.ceil(((this.limits.eventLog.maxBytes + this.limits.ima.maxBytes) * 4) / 3) + 32 * 1024
    );
  }

  /** Decode and parse the request's logs; undefined when it has none. Synchronous. */
  parse(body: MeasuredBootRequest): MeasuredBootEvidence | undefined {
    return parseMeasuredBootRequest(body, this.limits);
  }

  /**
   * Verify `evidence` against the quoted values of an authentic, fresh quote (after
   * verifyParsedQuote passed). Throws the measured-boot errors; returns the verdict reasons.
   */
  verify(
    runtimeId: string,
    evidence: MeasuredBootEvidence | undefined,
    quoted: PcrValues,
    counters: { readonly resetCount: number; readonly restartCount: number },
    policy: MeasuredBootPolicy | undefined,
  ): MeasuredBootOutcome {
    if (evidence === undefined && policy === undefined)
      return { reasons: [], summary: undefined, commit: () => undefined };
    const previous = this.#states.get(runtimeId);
    const sameBoot =
      previous !== undefined &&
      previous.resetCount === counters.resetCount &&
      previous.restartCount === counters.restartCount;
    const from = sameBoot ? previous.ima : EMPTY_IMA_STATE;
    const facts = verifyMeasuredBoot(
      evidence ?? { eventLog: undefined, ima: undefined },
      quoted,
      policy,
      from,
    );
    const violations: MeasuredBootViolation[] = [];
    if (policy !== undefined && facts.bank !== undefined)
      violations.push(...evaluateBootRules(policy, facts.events, facts.bank));
    const imaViolations =
      policy?.ima === undefined ? [] : evaluateImaRules(policy.ima, facts.imaEntries);
    const format = (v: MeasuredBootViolation) => `${v.code} ${v.detail}`;
    const sticky = cap([...(sameBoot ? previous.sticky : []), ...imaViolations.map(format)]);
    const reasons = cap([...violations.map(format), ...sticky]);
    return {
      reasons,
      summary: { events: facts.events.length, imaEntries: facts.imaState.count },
      commit: () => {
        if (evidence?.ima === undefined && sameBoot) return;
        this.#states.delete(runtimeId);
        if (this.#states.size >= MAX_RUNTIMES) {
          const oldest = this.#states.keys().next();
          if (oldest.done !== true) this.#states.delete(oldest.value);
        }
        this.#states.set(runtimeId, { ...counters, ima: facts.imaState, sticky });
      },
    };
  }

  /** Forget a runtime's IMA state (revocation). */
  forget(runtimeId: string): void {
    this.#states.delete(runtimeId);
  }
}
