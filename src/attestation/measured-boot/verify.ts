/**
 * Measured boot against an authentic quote: the event log and the IMA list are claims by
 * the runtime, and become facts only where replaying them gives the quoted PCR values.
 * Guard clauses in order, each with its own code:
 *
 *   policy PCRs quoted (pcr_selection_incomplete) → event log present when the policy has
 *   measured-boot PCRs (event_log_required) → every quoted PCR the log extends, and every
 *   policy PCR, equals its replay in every quoted bank (event_log_mismatch, naming bank and
 *   PCR) → IMA list present when the policy has IMA rules (ima_log_required) → the IMA
 *   entries continue the runtime's verified IMA state (ima_log_offset_invalid), their
 *   template hashes match and some prefix of them replays to the quoted IMA PCR
 *   (ima_log_mismatch).
 *
 * Only events on PCRs the quote covers are returned as verified, and only the IMA prefix
 * that matched the quote is; the rules (rules.ts, ima-rules.ts) read nothing else.
 */
import { timingSafeEqual } from 'node:crypto';
import type { HashName } from '../../tpm/marshal/constants.js';
import type { PcrValues } from '../../tpm/marshal/pcr-selection.js';
import { PcrSelectionIncompleteError } from '../errors.js';
import {
  EventLogMismatchError,
  ImaLogMismatchError,
  ImaLogOffsetError,
  MeasuredBootRequiredError,
} from './errors.js';
import { EV } from './event-types.js';
import { bankByName } from './hashes.js';
import type { ImaEntry } from './ima.js';
import { ImaReplayer, type ImaState } from './ima-replay.js';
import type { MeasuredBootPolicy } from './policy.js';
import { initialPcr, replayEventLog } from './replay.js';
import type { TcgEvent, TcgEventLog } from './tcg-log.js';

export interface MeasuredBootEvidence {
  readonly eventLog: TcgEventLog | undefined;
  /** IMA entries from index `offset` of the runtime's list. */
  readonly ima: { readonly offset: number; readonly entries: readonly ImaEntry[] } | undefined;
}

export interface MeasuredBootFacts {
  /** Events of the log on PCRs whose replay matched the quote. */
  readonly events: readonly TcgEvent[];
  /** The bank the events' digests are read in (the policy's, else the first quoted). */
  readonly bank: HashName | undefined;
  /** New IMA entries verified against the quote (a prefix of those sent). */
  readonly imaEntries: readonly ImaEntry[];
  /** The IMA state after them, to keep for the next attestation. */
  readonly imaState: ImaState;
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The quoted banks, in a fixed order (the policy's bank first). */
function quotedBanks(quoted: PcrValues, first: HashName | undefined): HashName[] {
  const banks = (Object.keys(quoted) as HashName[]).filter(
    (b) => Object.keys(quoted[b] ?? {}).length > 0,
  );
  return banks.sort((a, b) => (a === first ? -1 : b === first ? 1 : a.localeCompare(b)));
}

export function verifyMeasuredBoot(
  evidence: MeasuredBootEvidence,
  quoted: PcrValues,
  policy: MeasuredBootPolicy | undefined,
  imaFrom: ImaState,
): MeasuredBootFacts {
  for (const [bank, required] of policy?.pcrs ?? []) {
    const missing = required.filter((p) => quoted[bank]?.[p] === undefined);
    if (missing.length > 0)
      throw new PcrSelectionIncompleteError(undefined, { details: { bank, missing } });
  }
  const log = evidence.eventLog;
  if (log === undefined && policy !== undefined)
    throw new MeasuredBootRequiredError('event_log_required');

  const banks = quotedBanks(quoted, policy?.bank);
  // PCRs whose replay matched the quote in the bank the rules read digests in: an event's
  // digest in another bank is not bound to the quote by a match in this one.
  const verifiedPcrs = new Set<number>();
  if (log !== undefined) {
    const replay = replayEventLog(log);
    for (const bank of banks) {
      const b = bankByName(bank);
      const values = quoted[bank] ?? {};
      for (const [index, value] of Object.entries(values)) {
        const pcr = Number(index);
        const required = policy?.pcrs.get(bank)?.includes(pcr) === true;
        // A PCR the log says nothing about is checked only when the policy needs it: then
        // the log must explain its whole value (an event removed from the log shows here).
        if (!replay.extended.has(pcr) && !required) continue;
        if (b === undefined) throw new EventLogMismatchError(bank, pcr, 'bank cannot be replayed');
        const bankValues = replay.pcrs.get(bank);
        if (bankValues === undefined && replay.extended.has(pcr))
          throw new EventLogMismatchError(bank, pcr, 'the log has no digests in this bank');
        const expected =
          bankValues?.get(pcr) ?? (replay.extended.has(pcr) ? undefined : initialPcr(b, pcr, log));
        if (expected === undefined)
          throw new EventLogMismatchError(bank, pcr, 'an event has no digest in this bank');
        if (!equal(expected, value)) throw new EventLogMismatchError(bank, pcr);
        if (bank === banks[0]) verifiedPcrs.add(pcr);
      }
    }
  }

  const ima = evidence.ima;
  const imaRules = policy?.ima;
  if (ima === undefined && imaRules !== undefined)
    throw new MeasuredBootRequiredError('ima_log_required');
  let imaState = imaFrom;
  let imaEntries: readonly ImaEntry[] = [];
  if (ima !== undefined) {
    // The runtime must continue where the last verified quote left off (0 after a reboot).
    if (ima.offset !== imaFrom.count) throw new ImaLogOffsetError(imaFrom.count, ima.offset);
    ({ state: imaState, entries: imaEntries } = matchIma(
      ima.entries,
      quoted,
      banks,
      imaFrom,
      imaRules?.pcr ?? 10,
    ));
  }

  return {
    events: log?.events.filter((e) => e.type !== EV.NO_ACTION && verifiedPcrs.has(e.pcr)) ?? [],
    bank: banks[0],
    imaEntries,
    imaState,
  };
}

/**
 * The IMA list is read after the quote, so it may hold entries the quote does not cover
 * yet: replay entry by entry and keep the longest prefix whose PCR value is the quoted
 * one (as Keylime does). None matching is ima_log_mismatch.
 */
function matchIma(
  entries: readonly ImaEntry[],
  quoted: PcrValues,
  banks: readonly HashName[],
  from: ImaState,
  pcr: number,
): { state: ImaState; entries: readonly ImaEntry[] } {
  const withPcr = banks.filter((b) => quoted[b]?.[pcr] !== undefined);
  if (withPcr.length === 0)
    throw new ImaLogMismatchError(`the quote does not cover the IMA PCR ${pcr}`, {
      reason: 'pcr_not_quoted',
      pcr,
    });
  if (entries.some((e) => e.pcr !== pcr))
    throw new ImaLogMismatchError(`IMA entries outside PCR ${pcr}`, { reason: 'pcr', pcr });
  const replayer = new ImaReplayer(withPcr, from);
  const matches = (): boolean =>
    withPcr.every((b) => {
      const v = replayer.value(b, pcr);
      const want = quoted[b]?.[pcr];
      return v !== undefined && want !== undefined && equal(v, want);
    });
  let best: { state: ImaState; n: number } | undefined = matches()
    ? { state: replayer.state(), n: 0 }
    : undefined;
  entries.forEach((e, i) => {
    replayer.push(e);
    if (matches()) best = { state: replayer.state(), n: i + 1 };
  });
  if (best === undefined)
    throw new ImaLogMismatchError(`IMA list does not replay to the quoted PCR ${pcr}`, {
      reason: 'replay',
      pcr,
    });
  return { state: best.state, entries: entries.slice(0, best.n) };
}
