/**
 * The measured-boot verifier the attestation service calls: parses the request's event log
 * and IMA list (before any await), verifies them against the authentic quote, applies the
 * reference policy's `measuredBoot` rules, and keeps each runtime's verified IMA state so
 * the next attestation replays only new entries.
 *
 * The IMA state of a runtime is stored with its record (runtime-store.port.ts
 * StoredImaState): the service writes what `verify` returns after the verdict was audited,
 * so an appliance restart costs a long-running machine nothing. Only this verifier writes
 * it, and only from entries that replayed to an authentic quote. It starts again at 0 when
 * the TPM was reset or restarted (the PCRs, and the kernel's list, start again), when the
 * policy's IMA rules changed, or when it is absent or unreadable (the runtime is told to
 * send its list from entry 0, ima_log_offset_invalid with `expected: 0`, and everything is
 * verified again). A violation found in an IMA entry stays a reason for every later
 * attestation until then: a runtime cannot become trusted again by sending only the entries
 * after the bad one.
 */
import type { PcrValues } from '../../tpm/marshal/pcr-selection.js';
import {
  parseMeasuredBootRequest,
  type MeasuredBootLimits,
  type MeasuredBootRequest,
} from './evidence.js';
import { DEFAULT_IMA_LIMITS } from './ima.js';
import type { HashName } from '../../tpm/marshal/constants.js';
import type { StoredImaState } from '../runtime-store.port.js';
import { bankByName } from './hashes.js';
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

export interface MeasuredBootOutcome {
  /** Reasons the attestation is untrusted: `<code> <detail>`. */
  readonly reasons: readonly string[];
  /** Facts for the audit digest and the answer. */
  readonly summary: { readonly events: number; readonly imaEntries: number } | undefined;
  /**
   * The runtime's IMA state to store with its record once the verdict is audited;
   * undefined: keep the stored one.
   */
  readonly imaState: StoredImaState | undefined;
}

const MAX_REASONS = 64;

/** Bounded: reasons are audited and answered; the first ones name the problem. */
function cap(reasons: readonly string[]): string[] {
  if (reasons.length <= MAX_REASONS) return [...reasons];
  const more = reasons.length - MAX_REASONS + 1;
  return [...reasons.slice(0, MAX_REASONS - 1), `measured_boot_more_reasons count=${more}`];
}

export class MeasuredBoot {
  readonly limits: MeasuredBootLimits;

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
   * verifyParsedQuote passed), continuing the runtime's `stored` IMA state when it belongs
   * to the same TPM boot and the same IMA rules. Throws the measured-boot errors; returns
   * the verdict reasons and the state to store.
   */
  verify(
    evidence: MeasuredBootEvidence | undefined,
    quoted: PcrValues,
    counters: { readonly resetCount: number; readonly restartCount: number },
    policy: MeasuredBootPolicy | undefined,
    stored: StoredImaState | null | undefined,
  ): MeasuredBootOutcome {
    if (evidence === undefined && policy === undefined)
      return { reasons: [], summary: undefined, imaState: undefined };
    const rules = policy?.ima?.id ?? '';
    const previous = continuedState(stored, counters, rules);
    const facts = verifyMeasuredBoot(
      evidence ?? { eventLog: undefined, ima: undefined },
      quoted,
      policy,
      previous?.ima ?? EMPTY_IMA_STATE,
    );
    const violations: MeasuredBootViolation[] = [];
    if (policy !== undefined && facts.bank !== undefined)
      violations.push(...evaluateBootRules(policy, facts.events, facts.bank));
    const imaViolations =
      policy?.ima === undefined ? [] : evaluateImaRules(policy.ima, facts.imaEntries);
    const format = (v: MeasuredBootViolation) => `${v.code} ${v.detail}`;
    const sticky = cap([...(previous?.sticky ?? []), ...imaViolations.map(format)]);
    const reasons = cap([...violations.map(format), ...sticky]);
    // No IMA list sent and the stored state still applies: nothing new to store.
    const keep = evidence?.ima === undefined && previous !== undefined;
    return {
      reasons,
      summary: { events: facts.events.length, imaEntries: facts.imaState.count },
      imaState: keep ? undefined : toStored(counters, facts.imaState, sticky, rules),
    };
  }
}

/**
 * The stored state when it continues: same TPM boot (a reset or restart starts the PCRs and
 * the kernel's list again) and same IMA rules (other rules judge the entries again, from 0).
 * Unreadable is lost: replaying from entry 0 against the quote verifies everything again.
 */
function continuedState(
  stored: StoredImaState | null | undefined,
  counters: { readonly resetCount: number; readonly restartCount: number },
  rules: string,
): { ima: ImaState; sticky: readonly string[] } | undefined {
  if (stored === undefined || stored === null) return undefined;
  if (stored.resetCount !== counters.resetCount || stored.restartCount !== counters.restartCount)
    return undefined;
  if (stored.rules !== rules) return undefined;
  const ima = fromStored(stored);
  if (ima === undefined) return undefined;
  if (!Array.isArray(stored.sticky) || !stored.sticky.every((r) => typeof r === 'string'))
    return undefined;
  return { ima, sticky: stored.sticky };
}

const HEX_VALUE = /^(?:[0-9a-f]{2}){20,64}$/;

/** The state as read back from the store: JSON, so every member is checked. */
function fromStored(stored: StoredImaState): ImaState | undefined {
  const raw: { count: unknown; pcrs: unknown } = stored;
  const count = raw.count;
  if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0) return undefined;
  if (typeof raw.pcrs !== 'object' || raw.pcrs === null) return undefined;
  const pcrs = new Map<HashName, Map<number, Buffer>>();
  for (const [bank, values] of Object.entries(raw.pcrs as Record<string, unknown>)) {
    const b = bankByName(bank);
    if (b === undefined || typeof values !== 'object' || values === null) return undefined;
    const m = new Map<number, Buffer>();
    for (const [pcr, hex] of Object.entries(values as Record<string, unknown>)) {
      const i = Number(pcr);
      if (!Number.isInteger(i) || i < 0 || i > 23) return undefined;
      if (typeof hex !== 'string' || !HEX_VALUE.test(hex) || hex.length !== b.size * 2)
        return undefined;
      m.set(i, Buffer.from(hex, 'hex'));
    }
    pcrs.set(b.name, m);
  }
  return { count, pcrs };
}

function toStored(
  counters: { readonly resetCount: number; readonly restartCount: number },
  ima: ImaState,
  sticky: readonly string[],
  rules: string,
): StoredImaState {
  const pcrs: Record<string, Record<string, string>> = {};
  for (const [bank, values] of ima.pcrs)
    pcrs[bank] = Object.fromEntries([...values].map(([i, v]) => [String(i), v.toString('hex')]));
  return {
    resetCount: counters.resetCount,
    restartCount: counters.restartCount,
    count: ima.count,
    pcrs,
    sticky: [...sticky],
    rules,
  };
}
