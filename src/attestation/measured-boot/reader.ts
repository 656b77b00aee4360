/**
 * Little-endian reader for firmware and kernel logs (TCG event logs and IMA lists are
 * written in the platform's byte order, little-endian on every platform we accept).
 *
 * Same discipline as the TPM reader (src/tpm/marshal/buffer.ts): the remaining length is
 * checked before every read and before anything is sliced by a declared size, a failed
 * read leaves the offset where it was, and byte slices are views of the reader's own
 * private copy of the input (made once by the caller), so nothing is allocated by a
 * length the input declares.
 */
import { LogMalformedError, type MalformedReason } from './errors.js';

export class LogReader {
  readonly #bytes: Buffer;
  readonly #code: 'event_log_malformed' | 'ima_log_malformed';
  #offset = 0;
  readonly structure: string;
  /** Index of the event being read, for error locations. */
  event: number | undefined = undefined;

  readonly #base: number;

  /** `base`: where `bytes` start in the whole log, so errors give offsets in the log. */
  constructor(
    bytes: Buffer,
    structure: string,
    code: 'event_log_malformed' | 'ima_log_malformed',
    base = 0,
  ) {
    this.#bytes = bytes;
    this.#base = base;
    this.structure = structure;
    this.#code = code;
  }

  get offset(): number {
    return this.#offset;
  }

  get remaining(): number {
    return this.#bytes.length - this.#offset;
  }

  fail(
    reason: MalformedReason,
    field: string,
    message: string,
    offset = this.#offset,
  ): LogMalformedError {
    return new LogMalformedError(
      this.#code,
      reason,
      { structure: this.structure, field, offset: this.#base + offset, event: this.event },
      message,
    );
  }

  #need(field: string, n: number): number {
    if (this.remaining < n)
      throw this.fail('truncated', field, `needs ${n} bytes, ${this.remaining} left`);
    return this.#offset;
  }

  u8(field: string): number {
    const o = this.#need(field, 1);
    this.#offset = o + 1;
    return this.#bytes.readUInt8(o);
  }

  u16(field: string): number {
    const o = this.#need(field, 2);
    this.#offset = o + 2;
    return this.#bytes.readUInt16LE(o);
  }

  u32(field: string): number {
    const o = this.#need(field, 4);
    this.#offset = o + 4;
    return this.#bytes.readUInt32LE(o);
  }

  /** `n` bytes as a view of the private copy (never aliases the caller's input). */
  bytes(field: string, n: number): Buffer {
    const o = this.#need(field, n);
    this.#offset = o + n;
    return this.#bytes.subarray(o, o + n);
  }

  /** A u32 length at most `max`, then that many bytes; the offset moves only on success. */
  sized(field: string, max: number): Buffer {
    const start = this.#offset;
    const size = this.u32(`${field}.size`);
    if (size > max) {
      this.#offset = start;
      throw this.fail('oversized', `${field}.size`, `declared ${size} exceeds ${max}`, start);
    }
    if (this.remaining < size) {
      const err = this.fail('truncated', field, `needs ${size} bytes, ${this.remaining} left`);
      this.#offset = start;
      throw err;
    }
    return this.bytes(field, size);
  }

  /** Run `read` and roll the offset back if it throws. */
  atomic<T>(read: () => T): T {
    const start = this.#offset;
    try {
      return read();
    } catch (e) {
      this.#offset = start;
      throw e;
    }
  }
}
