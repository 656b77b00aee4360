/**
 * Incremental replay of the IMA measurement list. The verifier keeps, per runtime, how many
 * entries it has verified and the PCR values they replay to (an `ImaState`, built only from
 * entries whose replay matched a quote); the next attestation sends only the entries after
 * those, so its cost is that of the new entries, however long the list has grown.
 *
 * Each bank extends its own hash of the entry's hash input (the kernel does the same for
 * every non-SHA-1 bank since Linux 5.8; SHA-1 extends the template hash); a violation
 * (all-zero template hash) extends all 0xFF bytes.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { HashName } from '../../tpm/marshal/constants.js';
import { ImaLogMismatchError, ImaLogOffsetError } from './errors.js';
import { bankByName, extend, type Bank } from './hashes.js';
import type { ImaEntry } from './ima.js';

export interface ImaState {
  /** Entries verified so far: the next list sent must start at this index. */
  readonly count: number;
  /** bank -> PCR -> value after those entries. */
  readonly pcrs: ReadonlyMap<HashName, ReadonlyMap<number, Buffer>>;
}

export const EMPTY_IMA_STATE: ImaState = { count: 0, pcrs: new Map() };

/**
 * Replays entries one at a time on top of a verified state, in each of `banks`. Throws
 * ima_log_offset_invalid when an entry is not the next one, ima_log_mismatch when its
 * template hash is not the hash of its fields. `templateHash`: the template hash algorithm.
 */
export class ImaReplayer {
  readonly #banks: readonly Bank[];
  readonly #pcrs = new Map<HashName, Map<number, Buffer>>();
  readonly #templateHash: Bank;
  #count: number;

  constructor(
    banks: readonly HashName[],
    from: ImaState = EMPTY_IMA_STATE,
    templateHash: HashName = 'sha1',
  ) {
    const th = bankByName(templateHash);
    if (th === undefined) throw new Error(`no template hash ${templateHash}`);
    this.#templateHash = th;
    this.#banks = banks.map(bankByName).filter((b): b is Bank => b !== undefined);
    for (const b of this.#banks) this.#pcrs.set(b.name, new Map(from.pcrs.get(b.name) ?? []));
    this.#count = from.count;
  }

  push(e: ImaEntry): void {
    if (e.index !== this.#count) throw new ImaLogOffsetError(this.#count, e.index);
    const th = this.#templateHash;
    if (!e.violation) {
      const computed = createHash(th.node).update(e.hashInput).digest();
      // The template hash is what the SHA-1 bank extends: it must be the hash of the fields
      // that policies read, or a listed digest could stand in for the measured one.
      if (computed.length !== e.templateHash.length || !timingSafeEqual(computed, e.templateHash))
        throw new ImaLogMismatchError(
          `IMA entry ${e.index}: template hash does not match its fields`,
          {
            reason: 'template_hash',
            entry: e.index,
            pcr: e.pcr,
          },
        );
    }
    for (const b of this.#banks) {
      const pcrs = this.#pcrs.get(b.name);
      if (pcrs === undefined) continue;
      const digest = e.violation
        ? Buffer.alloc(b.size, 0xff)
        : b.name === th.name
          ? e.templateHash
          : createHash(b.node).update(e.hashInput).digest();
      pcrs.set(e.pcr, extend(b, pcrs.get(e.pcr) ?? Buffer.alloc(b.size), digest));
    }
    this.#count += 1;
  }

  /** The current value of a PCR in a bank (zero if no entry extended it). */
  value(bank: HashName, pcr: number): Buffer | undefined {
    const b = this.#banks.find((x) => x.name === bank);
    return b === undefined ? undefined : (this.#pcrs.get(bank)?.get(pcr) ?? Buffer.alloc(b.size));
  }

  /** A copy of the state reached. */
  state(): ImaState {
    return { count: this.#count, pcrs: new Map([...this.#pcrs].map(([k, v]) => [k, new Map(v)])) };
  }
}

/** Replay `entries` on top of `from` in each of `banks` (see ImaReplayer). */
export function replayIma(
  entries: readonly ImaEntry[],
  banks: readonly HashName[],
  from: ImaState = EMPTY_IMA_STATE,
  templateHash: HashName = 'sha1',
): ImaState {
  const r = new ImaReplayer(banks, from, templateHash);
  for (const e of entries) r.push(e);
  return r.state();
}
