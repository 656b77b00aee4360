/**
 * The Linux IMA measurement list, binary (`binary_runtime_measurements`) and ASCII
 * (`ascii_runtime_measurements`), for the templates ima, ima-ng, ima-sig and ima-buf.
 *
 * Every entry keeps `hashInput`, the bytes the kernel hashes for the template hash and for
 * each PCR bank it extends: the template fields each as u32 length ‖ data (for the legacy
 * `ima` template, the digest then the name NUL-padded to 256 bytes, no lengths). For the
 * binary list they are the bytes read; for the ASCII list they are rebuilt from the printed
 * fields. Whether the template hash matches them is checked by the replay (ima-replay.ts).
 *
 * Untrusted input: size and entry limits first, bounds-checked reads, no recursion.
 */
import { LogTooLargeError } from './errors.js';
import { LogReader } from './reader.js';
import { bankByName, type Bank } from './hashes.js';

export type ImaTemplate = 'ima' | 'ima-ng' | 'ima-sig' | 'ima-buf';

export interface ImaEntry {
  /** Position in the runtime's whole list (the first entry sent is `offset`). */
  readonly index: number;
  readonly pcr: number;
  /** The template hash as logged (SHA-1 unless the list says otherwise). */
  readonly templateHash: Buffer;
  readonly template: ImaTemplate;
  /** The measured file's digest and its algorithm (`sha256`...). */
  readonly digestAlg: string;
  readonly digest: Buffer;
  /** The file name (or the ima-buf buffer name), as bytes decoded as UTF-8 for display. */
  readonly name: string;
  /** ima-sig: the signature field (may be empty). */
  readonly signature: Buffer | undefined;
  /** ima-buf: the measured buffer. */
  readonly buf: Buffer | undefined;
  /** What the kernel hashed for this entry (see the file comment). */
  readonly hashInput: Buffer;
  /** A measurement violation: the kernel logs an all-zero template hash and extends 0xFF... */
  readonly violation: boolean;
}

export interface ImaLimits {
  readonly maxBytes: number;
  readonly maxEntries: number;
}

export const DEFAULT_IMA_LIMITS: ImaLimits = { maxBytes: 1 << 22, maxEntries: 200_000 };

const TEMPLATES: readonly ImaTemplate[] = ['ima', 'ima-ng', 'ima-sig', 'ima-buf'];
const MAX_NAME = 255;
const MAX_TEMPLATE_NAME = 15;
/** Limit on one entry's template data (an ima-buf key or a signature is a few KiB). */
const MAX_TEMPLATE_DATA = 1 << 16;
const MAX_PCR = 23;

function checkSize(n: number, limits: ImaLimits): void {
  if (n > limits.maxBytes)
    throw new LogTooLargeError('ima_log_too_large', 'bytes', n, limits.maxBytes);
}

/** The digest algorithm of a d-ng field: the kernel's name (`sm3` for SM3-256) to a bank. */
function digestBank(alg: string): Bank | undefined {
  return alg === 'sm3' ? bankByName('sm3_256') : bankByName(alg);
}

function u32le(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

/** Template fields encoded as the kernel hashes them: u32 length ‖ data each. */
function encodeFields(fields: readonly Buffer[]): Buffer {
  return Buffer.concat(fields.flatMap((f) => [u32le(f.length), f]));
}

// ---------------------------------------------------------------------------------------
// binary

/** Parse a binary measurement list; `offset` is the index of its first entry. */
export function parseImaBinary(
  input: Uint8Array,
  options: { offset?: number; limits?: ImaLimits; templateHashSize?: number } = {},
): ImaEntry[] {
  const limits = options.limits ?? DEFAULT_IMA_LIMITS;
  const hashSize = options.templateHashSize ?? 20;
  checkSize(input.length, limits);
  const r = new LogReader(Buffer.from(input), 'IMA_MEASUREMENT', 'ima_log_malformed');
  const out: ImaEntry[] = [];
  const first = options.offset ?? 0;
  while (r.remaining > 0) {
    if (out.length >= limits.maxEntries)
      throw new LogTooLargeError('ima_log_too_large', 'events', out.length + 1, limits.maxEntries);
    r.event = first + out.length;
    out.push(r.atomic(() => readBinaryEntry(r, first + out.length, hashSize)));
  }
  return out;
}

function readBinaryEntry(r: LogReader, index: number, hashSize: number): ImaEntry {
  const pcrAt = r.offset;
  const pcr = r.u32('pcr');
  if (pcr > MAX_PCR) throw r.fail('invalid', 'pcr', `PCR ${pcr} is not 0..${MAX_PCR}`, pcrAt);
  const templateHash = r.bytes('templateHash', hashSize);
  const nameAt = r.offset;
  const templateName = r.sized('templateName', MAX_TEMPLATE_NAME).toString('latin1');
  const template = TEMPLATES.find((t) => t === templateName);
  if (template === undefined)
    throw r.fail(
      'invalid',
      'templateName',
      'template is not ima, ima-ng, ima-sig or ima-buf',
      nameAt,
    );
  const head: EntryHead = { index, pcr, templateHash, template };
  if (template === 'ima') {
    const digest = r.bytes('digest', 20);
    return legacyEntry(head, digest, r.sized('fileName', MAX_NAME));
  }
  const dataAt = r.offset;
  const data = r.sized('templateData', MAX_TEMPLATE_DATA);
  const fr = new LogReader(data, 'IMA_MEASUREMENT', 'ima_log_malformed', dataAt + 4);
  fr.event = index;
  const fields: Buffer[] = [];
  const want = template === 'ima-ng' ? 2 : 3;
  for (let i = 0; i < want; i++) fields.push(fr.sized(`templateData.field[${i}]`, fr.remaining));
  if (fr.remaining !== 0)
    throw fr.fail('trailing', 'templateData', `${fr.remaining} bytes after the ${want} fields`);
  const [dng, nng, third] = fields as [Buffer, Buffer, Buffer | undefined];
  const { alg, digest } = parseDigestNg(dng, fr, dataAt + 8);
  if (nng.length === 0 || nng[nng.length - 1] !== 0)
    throw fr.fail(
      'invalid',
      'templateData.n-ng',
      'the name is not NUL-terminated',
      dataAt + 8 + dng.length,
    );
  return entry(head, alg, digest, nng.subarray(0, nng.length - 1), third, data);
}

/** A d-ng field: `<alg>:` NUL digest (the algorithm name, a colon, a NUL, the digest). */
function parseDigestNg(f: Buffer, r: LogReader, at: number): { alg: string; digest: Buffer } {
  const nul = f.indexOf(0);
  if (nul < 2 || f[nul - 1] !== 0x3a)
    throw r.fail('invalid', 'templateData.d-ng', 'no <alg>: prefix', at);
  const alg = f.subarray(0, nul - 1).toString('latin1');
  const digest = f.subarray(nul + 1);
  checkDigest(alg, digest.length, (m) => r.fail('invalid', 'templateData.d-ng', m, at));
  return { alg, digest };
}

function checkDigest(alg: string, size: number, fail: (m: string) => Error): void {
  const b = digestBank(alg);
  if (b === undefined) throw fail(`unknown digest algorithm ${alg.slice(0, 16)}`);
  if (size !== b.size) throw fail(`a ${alg} digest is ${b.size} bytes, not ${size}`);
}

/** What every template's entry starts with: its place, PCR, template hash and template. */
interface EntryHead {
  readonly index: number;
  readonly pcr: number;
  readonly templateHash: Buffer;
  readonly template: ImaTemplate;
}

/** An entry; `name` without n-ng's NUL, `third` the ima-sig or ima-buf field. */
function entry(
  head: EntryHead,
  digestAlg: string,
  digest: Buffer,
  name: Buffer,
  third: Buffer | undefined,
  hashInput: Buffer,
): ImaEntry {
  return {
    ...head,
    digestAlg: digestAlg === 'sm3' ? 'sm3_256' : digestAlg,
    digest,
    name: name.toString('utf8'),
    signature: head.template === 'ima-sig' ? third : undefined,
    buf: head.template === 'ima-buf' ? third : undefined,
    hashInput,
    violation: head.templateHash.every((b) => b === 0),
  };
}

/** The legacy `ima` template, hashed as its SHA-1 digest ‖ the name NUL-padded to 256 bytes. */
function legacyEntry(head: EntryHead, digest: Buffer, name: Buffer): ImaEntry {
  const padded = Buffer.alloc(MAX_NAME + 1);
  name.copy(padded);
  return entry(head, 'sha1', digest, name, undefined, Buffer.concat([digest, padded]));
}

// ---------------------------------------------------------------------------------------
// ASCII

const HEX = /^(?:[0-9a-f]{2})*$/;
const MAX_LINE = 2 * MAX_TEMPLATE_DATA + 512;

/**
 * Parse an ASCII measurement list (one entry a line: PCR, template hash, template name,
 * fields). The template-hash column is `templateHashSize` bytes (20: SHA-1).
 */
export function parseImaAscii(
  input: Uint8Array | string,
  options: { offset?: number; limits?: ImaLimits; templateHashSize?: number } = {},
): ImaEntry[] {
  const limits = options.limits ?? DEFAULT_IMA_LIMITS;
  const hashSize = options.templateHashSize ?? 20;
  const text = typeof input === 'string' ? input : Buffer.from(input).toString('latin1');
  checkSize(text.length, limits);
  const out: ImaEntry[] = [];
  const first = options.offset ?? 0;
  const r = new LogReader(Buffer.alloc(0), 'IMA_ASCII', 'ima_log_malformed');
  let pos = 0;
  while (pos < text.length) {
    let eol = text.indexOf('\n', pos);
    if (eol < 0) eol = text.length;
    if (out.length >= limits.maxEntries)
      throw new LogTooLargeError('ima_log_too_large', 'events', out.length + 1, limits.maxEntries);
    r.event = first + out.length;
    const fail = (field: string, m: string) => r.fail('invalid', field, m, pos);
    if (eol - pos > MAX_LINE)
      throw r.fail('oversized', 'line', `line exceeds ${MAX_LINE} characters`, pos);
    out.push(readAsciiLine(text.slice(pos, eol), first + out.length, hashSize, fail));
    pos = eol + 1;
  }
  return out;
}

function readAsciiLine(
  line: string,
  index: number,
  hashSize: number,
  fail: (field: string, m: string) => Error,
): ImaEntry {
  const cut = (s: string, field: string): [string, string] => {
    const sp = s.indexOf(' ');
    if (sp < 0) throw fail(field, `missing ${field}`);
    return [s.slice(0, sp), s.slice(sp + 1)];
  };
  const [pcrText, a] = cut(line, 'pcr');
  if (!/^(0|[1-9][0-9]?)$/.test(pcrText) || Number(pcrText) > MAX_PCR)
    throw fail('pcr', 'PCR is not 0..23');
  const [hashHex, b] = cut(a, 'templateHash');
  if (hashHex.length !== hashSize * 2 || !HEX.test(hashHex))
    throw fail('templateHash', `template hash is not ${hashSize} bytes of lower-case hex`);
  const templateHash = Buffer.from(hashHex, 'hex');
  const [templateName, c] = cut(b, 'templateName');
  const template = TEMPLATES.find((t) => t === templateName);
  if (template === undefined)
    throw fail('templateName', 'template is not ima, ima-ng, ima-sig or ima-buf');
  const head: EntryHead = { index, pcr: Number(pcrText), templateHash, template };
  const [digestText, rest] = cut(c, 'digest');
  if (template === 'ima') {
    if (digestText.length !== 40 || !HEX.test(digestText))
      throw fail('digest', 'digest is not 20 bytes of hex');
    const name = Buffer.from(rest, 'latin1');
    if (name.length > MAX_NAME) throw fail('fileName', `name exceeds ${MAX_NAME} bytes`);
    return legacyEntry(head, Buffer.from(digestText, 'hex'), name);
  }
  const colon = digestText.indexOf(':');
  const alg = digestText.slice(0, colon);
  const hex = digestText.slice(colon + 1);
  if (colon < 1 || !HEX.test(hex)) throw fail('digest', 'digest is not <alg>:<hex>');
  const digest = Buffer.from(hex, 'hex');
  checkDigest(alg, digest.length, (m) => fail('digest', m));
  let nameText = rest;
  let third: Buffer | undefined;
  if (template !== 'ima-ng') {
    // The last field is hex (ima-sig: the signature, possibly empty; ima-buf: the buffer).
    const sp = rest.lastIndexOf(' ');
    const tail = sp < 0 ? '' : rest.slice(sp + 1);
    if (sp >= 0 && HEX.test(tail)) {
      nameText = rest.slice(0, sp);
      third = Buffer.from(tail, 'hex');
    } else if (template === 'ima-sig') {
      third = Buffer.alloc(0);
    } else {
      throw fail('buf', 'the ima-buf buffer is not hex');
    }
  }
  const name = Buffer.from(nameText, 'latin1');
  const dng = Buffer.concat([Buffer.from(`${alg}:\0`, 'latin1'), digest]);
  const nng = Buffer.concat([name, Buffer.alloc(1)]);
  const fields = third === undefined ? [dng, nng] : [dng, nng, third];
  return entry(head, alg, digest, name, third, encodeFields(fields));
}
