/**
 * Replay a TCG event log per bank: every event but EV_NO_ACTION is extended into its PCR
 * (PFP §10.4.3: EV_NO_ACTION events are informational and never extended), PCR 0 starting
 * at the StartupLocality value. The result is only a claim until it equals the quoted PCRs
 * (verify.ts).
 */
import type { HashName } from '../../tpm/marshal/constants.js';
import { EV } from './event-types.js';
import { bankById, extend, type Bank } from './hashes.js';
import type { TcgEventLog } from './tcg-log.js';

/** Replayed PCR values: bank -> PCR index -> value. */
export type ReplayedPcrs = ReadonlyMap<HashName, ReadonlyMap<number, Buffer>>;

export interface Replay {
  /** Values of the PCRs the log extends, in every bank it could replay them in. */
  readonly pcrs: ReplayedPcrs;
  /** PCRs some event extends: the log makes a claim about exactly these. */
  readonly extended: ReadonlySet<number>;
}

/** The banks of a log that node:crypto can compute (a log may declare others). */
export function logBanks(log: TcgEventLog): Bank[] {
  const ids = log.specId === undefined ? [0x0004] : log.specId.algorithms.map((a) => a.id);
  return ids.map(bankById).filter((b): b is Bank => b !== undefined);
}

export function replayEventLog(log: TcgEventLog): Replay {
  const out = new Map<HashName, Map<number, Buffer>>();
  const extended = new Set<number>();
  for (const e of log.events) if (e.type !== EV.NO_ACTION) extended.add(e.pcr);
  for (const b of logBanks(log)) {
    const pcrs = new Map<number, Buffer>();
    // A PCR with an event that has no digest in this bank cannot be replayed in it.
    const unknown = new Set<number>();
    for (const e of log.events) {
      if (e.type === EV.NO_ACTION || unknown.has(e.pcr)) continue;
      const digest = e.digests.get(b.id);
      if (digest === undefined) {
        unknown.add(e.pcr);
        pcrs.delete(e.pcr);
        continue;
      }
      pcrs.set(e.pcr, extend(b, pcrs.get(e.pcr) ?? initialPcr(b, e.pcr, log), digest));
    }
    out.set(b.name, pcrs);
  }
  return { pcrs: out, extended };
}

/** PCR 0 starts at the startup locality in its last byte; every other PCR at zero. */
export function initialPcr(b: Bank, pcr: number, log: TcgEventLog): Buffer {
  const v = Buffer.alloc(b.size);
  if (pcr === 0) v[b.size - 1] = log.startupLocality;
  return v;
}
