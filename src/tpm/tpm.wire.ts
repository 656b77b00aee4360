/**
 * The few structures the TPM facade itself builds or reads around addon calls (PCR
 * selections and digests, TPM2B envelopes, the clock, NV public areas). Bounds-checked;
 * the full structure library for the appliance lives in ./marshal.
 */
import { TpmResponseError } from './tpm-error.js';

export type HashAlgName = 'sha1' | 'sha256' | 'sha384' | 'sha512';

export const HASH_ALGS: Readonly<Record<HashAlgName, { id: number; size: number }>> = {
  sha1: { id: 0x0004, size: 20 },
  sha256: { id: 0x000b, size: 32 },
  sha384: { id: 0x000c, size: 48 },
  sha512: { id: 0x000d, size: 64 },
};

export function hashAlgById(id: number): HashAlgName | undefined {
  return (Object.keys(HASH_ALGS) as HashAlgName[]).find((n) => HASH_ALGS[n].id === id);
}

/** Bank -> PCR indices, in the TPM's order (banks as given, PCRs ascending). */
export interface PcrBankSelection {
  readonly hash: HashAlgName;
  readonly pcrs: readonly number[];
}

class Reader {
  #off = 0;
  constructor(
    private readonly bytes: Uint8Array,
    private readonly what: string,
  ) {}
  #need(n: number): number {
    if (this.bytes.length - this.#off < n) throw new TpmResponseError(`${this.what}: truncated`);
    const o = this.#off;
    this.#off += n;
    return o;
  }
  u8(): number {
    return this.bytes[this.#need(1)] ?? 0;
  }
  u16(): number {
    const o = this.#need(2);
    return ((this.bytes[o] ?? 0) << 8) | (this.bytes[o + 1] ?? 0);
  }
  u32(): number {
    const o = this.#need(4);
    return Buffer.from(this.bytes.buffer, this.bytes.byteOffset + o, 4).readUInt32BE(0);
  }
  u64(): bigint {
    const o = this.#need(8);
    return Buffer.from(this.bytes.buffer, this.bytes.byteOffset + o, 8).readBigUInt64BE(0);
  }
  take(n: number): Buffer {
    const o = this.#need(n);
    return Buffer.from(this.bytes.subarray(o, o + n));
  }
  end(): void {
    if (this.#off !== this.bytes.length) throw new TpmResponseError(`${this.what}: trailing bytes`);
  }
}

/** The contents of a TPM2B (the 2-byte size then that many bytes, nothing after). */
export function unwrapTpm2b(bytes: Uint8Array, what: string): Buffer {
  const r = new Reader(bytes, what);
  const out = r.take(r.u16());
  r.end();
  return out;
}

export function wrapTpm2b(bytes: Uint8Array): Buffer {
  if (bytes.length > 0xffff) throw new RangeError('TPM2B contents too long');
  const out = Buffer.alloc(2 + bytes.length);
  out.writeUInt16BE(bytes.length, 0);
  out.set(bytes, 2);
  return out;
}

const PCR_SELECT_MIN = 3;

export function marshalPcrSelection(selection: readonly PcrBankSelection[]): Buffer {
  const parts: Buffer[] = [Buffer.alloc(4)];
  (parts[0] as Buffer).writeUInt32BE(selection.length, 0);
  for (const bank of selection) {
    const size = Math.max(PCR_SELECT_MIN, ...bank.pcrs.map((p) => Math.floor(p / 8) + 1));
    const b = Buffer.alloc(3 + size);
    b.writeUInt16BE(HASH_ALGS[bank.hash].id, 0);
    b.writeUInt8(size, 2);
    for (const p of bank.pcrs)
      b[3 + Math.floor(p / 8)] = (b[3 + Math.floor(p / 8)] ?? 0) | (1 << (p % 8));
    parts.push(b);
  }
  return Buffer.concat(parts);
}

/** TPML_PCR_SELECTION; unknown banks keep their numeric id as `alg`. */
export function unmarshalPcrSelection(bytes: Uint8Array): { alg: number; pcrs: number[] }[] {
  const r = new Reader(bytes, 'TPML_PCR_SELECTION');
  const count = r.u32();
  if (count > 16) throw new TpmResponseError('TPML_PCR_SELECTION: too many banks');
  const out: { alg: number; pcrs: number[] }[] = [];
  for (let i = 0; i < count; i++) {
    const alg = r.u16();
    const size = r.u8();
    const bits = r.take(size);
    const pcrs: number[] = [];
    for (let p = 0; p < size * 8; p++)
      if (((bits[p >> 3] ?? 0) & (1 << (p & 7))) !== 0) pcrs.push(p);
    out.push({ alg, pcrs });
  }
  r.end();
  return out;
}

/** TPML_DIGEST: the digests, in order. */
export function unmarshalDigestList(bytes: Uint8Array): Buffer[] {
  const r = new Reader(bytes, 'TPML_DIGEST');
  const count = r.u32();
  if (count > 8) throw new TpmResponseError('TPML_DIGEST: too many digests');
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) out.push(r.take(r.u16()));
  r.end();
  return out;
}

/** TPML_DIGEST_VALUES for PCR_Extend. */
export function marshalDigestValues(
  digests: readonly { hash: HashAlgName; digest: Uint8Array }[],
): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(digests.length, 0);
  const parts = [head];
  for (const d of digests) {
    const alg = Buffer.alloc(2);
    alg.writeUInt16BE(HASH_ALGS[d.hash].id, 0);
    parts.push(alg, Buffer.from(d.digest));
  }
  return Buffer.concat(parts);
}

export interface TimeInfo {
  /** Milliseconds since the last TPM reset or restart (TPM2_Startup). */
  readonly time: bigint;
  /** Milliseconds the TPM has been powered, monotonic across resets. */
  readonly clock: bigint;
  readonly resetCount: number;
  readonly restartCount: number;
  readonly safe: boolean;
}

export function unmarshalTimeInfo(bytes: Uint8Array): TimeInfo {
  const r = new Reader(bytes, 'TPMS_TIME_INFO');
  const time = r.u64();
  const clock = r.u64();
  const resetCount = r.u32();
  const restartCount = r.u32();
  const safe = r.u8() !== 0;
  r.end();
  return { time, clock, resetCount, restartCount, safe };
}

/** What NV_DefineSpace needs to know about a new index (TPMS_NV_PUBLIC). */
export interface NvSpace {
  readonly index: number;
  readonly nameAlg: HashAlgName;
  /** TPMA_NV bits, including the TPM_NT type in bits 4-7. */
  readonly attributes: number;
  readonly authPolicy?: Uint8Array;
  /** Bytes of data: 8 for counters and bit fields, the digest size for extend indices. */
  readonly dataSize: number;
}

export function marshalNvPublic(space: NvSpace): Buffer {
  const policy = space.authPolicy ?? new Uint8Array(0);
  const body = Buffer.alloc(4 + 2 + 4 + 2 + policy.length + 2);
  let o = body.writeUInt32BE(space.index >>> 0, 0);
  o = body.writeUInt16BE(HASH_ALGS[space.nameAlg].id, o);
  o = body.writeUInt32BE(space.attributes >>> 0, o);
  o = body.writeUInt16BE(policy.length, o);
  body.set(policy, o);
  o += policy.length;
  body.writeUInt16BE(space.dataSize, o);
  return wrapTpm2b(body);
}

/** dataSize of a TPM2B_NV_PUBLIC. */
export function nvPublicDataSize(tpm2bNvPublic: Uint8Array): number {
  const r = new Reader(unwrapTpm2b(tpm2bNvPublic, 'TPM2B_NV_PUBLIC'), 'TPMS_NV_PUBLIC');
  r.u32();
  r.u16();
  r.u32();
  r.take(r.u16());
  const size = r.u16();
  r.end();
  return size;
}

/** objectAttributes (TPMA_OBJECT) of a TPM2B_PUBLIC. */
export function objectAttributesOf(tpm2bPublic: Uint8Array): number {
  const r = new Reader(unwrapTpm2b(tpm2bPublic, 'TPM2B_PUBLIC'), 'TPMT_PUBLIC');
  r.u16(); // type
  r.u16(); // nameAlg
  return r.u32();
}

export const TPMA_OBJECT_USER_WITH_AUTH = 0x40;

/** TPMT_SIG_SCHEME with TPM_ALG_NULL: sign with the key's own scheme. */
export const SIG_SCHEME_NULL = Buffer.from([0x00, 0x10]);
