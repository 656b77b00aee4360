/** Test helpers: fixture paths and a writer for synthetic crypto-agile logs (tests, rig). */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { GrantorError } from '../../shared/errors.js';
import { LogMalformedError } from './errors.js';
import { EV } from './event-types.js';
import { bankByName } from './hashes.js';

export const FIXTURES = fileURLToPath(
  new URL('../../../test/fixtures/measured-boot/', import.meta.url),
);

export function fixture(path: string): Buffer {
  return readFileSync(FIXTURES + path);
}

/** How a parser or replay refused: its code, and for a malformed log the reason and field. */
export function failure(fn: () => unknown): { code: string; reason?: string; field?: string } {
  try {
    fn();
  } catch (e) {
    if (e instanceof LogMalformedError)
      return { code: e.code, reason: e.reason, field: e.location.field };
    if (e instanceof GrantorError) return { code: e.code };
    throw e;
  }
  throw new Error('expected a failure');
}

export interface SyntheticEvent {
  readonly pcr: number;
  readonly type: number;
  readonly data: Buffer;
  /** Digest per bank; by default each bank's hash of `data`. */
  readonly digests?: Readonly<Record<string, Buffer>>;
}

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
};
const u16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n);
  return b;
};

/** The Spec ID event (SHA-1 format) for `banks`. */
export function specIdEvent(banks: readonly string[], vendorInfo = Buffer.alloc(0)): Buffer {
  const algs = banks.map((n) => {
    const b = bankByName(n);
    if (b === undefined) throw new Error(`bank ${n}`);
    return Buffer.concat([u16(b.id), u16(b.size)]);
  });
  const body = Buffer.concat([
    Buffer.from('Spec ID Event03\0', 'latin1'),
    u32(0),
    Buffer.from([0, 2, 0, 2]),
    u32(banks.length),
    ...algs,
    Buffer.from([vendorInfo.length]),
    vendorInfo,
  ]);
  return Buffer.concat([u32(0), u32(EV.NO_ACTION), Buffer.alloc(20), u32(body.length), body]);
}

/** One TCG_PCR_EVENT2 record. */
export function event2(banks: readonly string[], e: SyntheticEvent): Buffer {
  const digests = banks.map((n) => {
    const b = bankByName(n);
    if (b === undefined) throw new Error(`bank ${n}`);
    const d = e.digests?.[n] ?? createHash(b.node).update(e.data).digest();
    return Buffer.concat([u16(b.id), d]);
  });
  return Buffer.concat([
    u32(e.pcr),
    u32(e.type),
    u32(digests.length),
    ...digests,
    u32(e.data.length),
    e.data,
  ]);
}

/** A crypto-agile log: the Spec ID event, then `events`. */
export function syntheticLog(banks: readonly string[], events: readonly SyntheticEvent[]): Buffer {
  return Buffer.concat([specIdEvent(banks), ...events.map((e) => event2(banks, e))]);
}

/** PCR values as hex by bank and index (the form of the shipped expected values). */
export type Pcrs = Record<string, Record<string, string>>;

/** The `pcrs:` block of tpm2_eventlog's YAML output. */
export function yamlPcrs(text: string): Pcrs {
  const out: Pcrs = {};
  const lines = text
    .slice(text.lastIndexOf('\npcrs:') + 1)
    .split('\n')
    .slice(1);
  let bank: Record<string, string> | undefined;
  for (const line of lines) {
    const b = /^ {2}([a-z0-9_]+):\s*$/.exec(line);
    const v = /^ {4}(\d+)\s*: 0x([0-9a-f]+)$/.exec(line);
    if (b?.[1] !== undefined) out[b[1]] = bank = {};
    else if (v?.[1] !== undefined && v[2] !== undefined && bank !== undefined) bank[v[1]] = v[2];
  }
  return out;
}
