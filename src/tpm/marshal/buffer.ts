/**
 * Big-endian reader and writer for TPM 2.0 marshalled structures (TPM 2.0 Part 2).
 *
 * The reader checks the remaining length before every read and before it allocates by a
 * declared size; nested structures are read on a child reader whose offset is committed to
 * the parent only when the nested read succeeds (tss2-mu style).
 */
import {
  TpmMarshalError,
  TpmParseInvalidError,
  TpmParseOversizedError,
  TpmParseTrailingError,
  TpmParseTruncatedError,
  type TpmParseLocation,
} from '../errors.js';

export {
  TpmMarshalError,
  TpmParseError,
  TpmParseInvalidError,
  TpmParseOversizedError,
  TpmParseTrailingError,
  TpmParseTruncatedError,
  TPM_PARSE_CODES,
} from '../errors.js';

export class TpmReader {
  readonly #bytes: Uint8Array;
  readonly #end: number;
  #offset: number;
  readonly structure: string;

  constructor(bytes: Uint8Array, structure: string, start = 0, end = bytes.length) {
    this.#bytes = bytes;
    this.#offset = start;
    this.#end = end;
    this.structure = structure;
  }

  get offset(): number {
    return this.#offset;
  }

  get remaining(): number {
    return this.#end - this.#offset;
  }

  at(field: string, offset = this.#offset): TpmParseLocation {
    return { structure: this.structure, field, offset };
  }

  invalid(field: string, reason: string, offset = this.#offset): TpmParseInvalidError {
    return new TpmParseInvalidError(this.at(field, offset), reason);
  }

  #need(field: string, n: number): number {
    if (this.remaining < n) throw new TpmParseTruncatedError(this.at(field), n, this.remaining);
    return this.#offset;
  }

  u8(field: string): number {
    const o = this.#need(field, 1);
    const v = this.#bytes[o] ?? 0;
    this.#offset = o + 1;
    return v;
  }

  u16(field: string): number {
    const o = this.#need(field, 2);
    const v = ((this.#bytes[o] ?? 0) << 8) | (this.#bytes[o + 1] ?? 0);
    this.#offset = o + 2;
    return v;
  }

  u32(field: string): number {
    const o = this.#need(field, 4);
    const b = this.#bytes;
    const v =
      ((b[o] ?? 0) * 0x1000000 +
        (((b[o + 1] ?? 0) << 16) | ((b[o + 2] ?? 0) << 8) | (b[o + 3] ?? 0))) >>>
      0;
    this.#offset = o + 4;
    return v;
  }

  u64(field: string): bigint {
    const o = this.#need(field, 8);
    let v = 0n;
    for (let i = 0; i < 8; i++) v = (v << 8n) | BigInt(this.#bytes[o + i] ?? 0);
    this.#offset = o + 8;
    return v;
  }

  /** `n` raw bytes, copied into a fresh Buffer (the result never aliases the input). */
  bytes(field: string, n: number): Buffer {
    const o = this.#need(field, n);
    const v = Buffer.from(this.#bytes.subarray(o, o + n));
    this.#offset = o + n;
    return v;
  }

  /** Everything left, copied. */
  rest(field: string): Buffer {
    return this.bytes(field, this.remaining);
  }

  /** A TPM2B: a u16 size then that many bytes, at most `max`. */
  tpm2b(field: string, max: number): Buffer {
    const start = this.#offset;
    const size = this.u16(`${field}.size`);
    if (size > max) {
      this.#offset = start;
      throw new TpmParseOversizedError(this.at(`${field}.size`, start), size, max);
    }
    if (this.remaining < size) {
      const err = new TpmParseTruncatedError(this.at(field), size, this.remaining);
      this.#offset = start;
      throw err;
    }
    return this.bytes(field, size);
  }

  /**
   * A nested structure: `read` runs on a child reader at the current offset, and the offset
   * is committed only when it returns.
   */
  struct<T>(read: (r: TpmReader) => T): T {
    const child = new TpmReader(this.#bytes, this.structure, this.#offset, this.#end);
    const value = read(child);
    this.#offset = child.#offset;
    return value;
  }

  /**
   * A size-prefixed structure (TPM2B_PUBLIC, TPM2B_NV_PUBLIC...): u16 size at most `max`,
   * then exactly `size` bytes that `read` must consume entirely.
   */
  sized<T>(
    field: string,
    max: number,
    read: (r: TpmReader) => T,
    allowEmpty = false,
  ): T | undefined {
    const start = this.#offset;
    const size = this.u16(`${field}.size`);
    if (size > max) {
      this.#offset = start;
      throw new TpmParseOversizedError(this.at(`${field}.size`, start), size, max);
    }
    if (size === 0) {
      if (allowEmpty) return undefined;
      this.#offset = start;
      throw this.invalid(`${field}.size`, 'empty structure', start);
    }
    if (this.remaining < size) {
      const err = new TpmParseTruncatedError(this.at(field), size, this.remaining);
      this.#offset = start;
      throw err;
    }
    const child = new TpmReader(this.#bytes, this.structure, this.#offset, this.#offset + size);
    try {
      const value = read(child);
      child.end(field);
      this.#offset = child.#offset;
      return value;
    } catch (e) {
      this.#offset = start;
      throw e;
    }
  }

  /** The structure must end here: any byte left is `tpm_parse_trailing`. */
  end(field = 'end'): void {
    if (this.remaining !== 0) throw new TpmParseTrailingError(this.at(field), this.remaining);
  }
}

/**
 * Parse a complete top-level structure: `read` must consume every byte.
 * The input is copied first so a caller mutating its buffer cannot change the result.
 */
export function parseAll<T>(bytes: Uint8Array, structure: string, read: (r: TpmReader) => T): T {
  const r = new TpmReader(Buffer.from(bytes), structure);
  const value = read(r);
  r.end();
  return value;
}

export class TpmWriter {
  #buf: Buffer = Buffer.alloc(256);
  #len = 0;

  #reserve(n: number): number {
    if (this.#len + n > this.#buf.length) {
      const next = Buffer.alloc(Math.max(this.#buf.length * 2, this.#len + n));
      this.#buf.copy(next, 0, 0, this.#len);
      this.#buf = next;
    }
    const o = this.#len;
    this.#len += n;
    return o;
  }

  u8(v: number, field = 'u8'): this {
    checkUint(v, 0xff, field);
    this.#buf.writeUInt8(v, this.#reserve(1));
    return this;
  }

  u16(v: number, field = 'u16'): this {
    checkUint(v, 0xffff, field);
    this.#buf.writeUInt16BE(v, this.#reserve(2));
    return this;
  }

  u32(v: number, field = 'u32'): this {
    checkUint(v, 0xffffffff, field);
    this.#buf.writeUInt32BE(v, this.#reserve(4));
    return this;
  }

  u64(v: bigint, field = 'u64'): this {
    if (v < 0n || v > 0xffffffffffffffffn)
      throw new TpmMarshalError(field, 'out of range for UINT64');
    this.#buf.writeBigUInt64BE(v, this.#reserve(8));
    return this;
  }

  bytes(v: Uint8Array): this {
    const o = this.#reserve(v.length);
    this.#buf.set(v, o);
    return this;
  }

  /** A TPM2B: u16 size then the bytes; refuses more than `max` bytes. */
  tpm2b(v: Uint8Array, max: number, field = 'tpm2b'): this {
    if (v.length > max) throw new TpmMarshalError(field, `${v.length} bytes exceed maximum ${max}`);
    return this.u16(v.length, field).bytes(v);
  }

  /** A size-prefixed structure written by `write` (TPM2B_PUBLIC and friends). */
  sized(write: (w: TpmWriter) => void, field = 'sized'): this {
    const inner = new TpmWriter();
    write(inner);
    const bytes = inner.finish();
    if (bytes.length > 0xffff) throw new TpmMarshalError(field, 'structure too large');
    return this.u16(bytes.length, field).bytes(bytes);
  }

  /** The bytes written so far, as a fresh Buffer. */
  finish(): Buffer {
    return Buffer.from(this.#buf.subarray(0, this.#len));
  }
}

function checkUint(v: number, max: number, field: string): void {
  if (!Number.isInteger(v) || v < 0 || v > max)
    throw new TpmMarshalError(field, `out of range (0..${max})`);
}

/** Marshal with a fresh writer. */
export function marshal(write: (w: TpmWriter) => void): Buffer {
  const w = new TpmWriter();
  write(w);
  return w.finish();
}
