/**
 * UEFI structures inside event data (PC Client PFP §10.2.6, UEFI 2.10 §32.4): the
 * UEFI_VARIABLE_DATA of EV_EFI_VARIABLE_* events and the EFI_SIGNATURE_LIST entries of
 * PK, KEK, db and dbx. Read with the bounds-checked reader; callers turn failures into
 * verdict reasons (the bytes were already bound to the quote by their digest).
 */
import { createHash } from 'node:crypto';
import { LogReader } from './reader.js';

export const EFI_GLOBAL_VARIABLE = '8be4df61-93ca-11d2-aa0d-00e098032b8c';
export const EFI_IMAGE_SECURITY_DATABASE = 'd719b2cb-3d3a-4596-a3bc-dad00e67656f';
export const EFI_CERT_X509 = 'a5c059a1-94e4-4aa7-87b5-ab155c2bf072';
export const EFI_CERT_SHA256 = 'c1c41626-504c-4092-aca9-41f936934328';

export interface UefiVariable {
  readonly guid: string;
  readonly name: string;
  readonly data: Buffer;
}

/** An EFI_GUID as text: the first three fields are little-endian. */
export function guidString(b: Buffer): string {
  const hex = (x: Buffer) => x.toString('hex');
  const le = (x: Buffer) => hex(Buffer.from(x).reverse());
  return [
    le(b.subarray(0, 4)),
    le(b.subarray(4, 6)),
    le(b.subarray(6, 8)),
    hex(b.subarray(8, 10)),
    hex(b.subarray(10, 16)),
  ].join('-');
}

function u64(r: LogReader, field: string): number {
  const lo = r.u32(field);
  const hi = r.u32(field);
  if (hi !== 0) throw r.fail('oversized', field, 'length above 2^32');
  return lo;
}

/** UEFI_VARIABLE_DATA: GUID, u64 name length (chars), u64 data length, UTF-16 name, data. */
export function parseUefiVariable(data: Buffer): UefiVariable {
  const r = new LogReader(data, 'UEFI_VARIABLE_DATA', 'event_log_malformed');
  const guid = guidString(r.bytes('VariableName', 16));
  const nameLength = u64(r, 'UnicodeNameLength');
  const dataLength = u64(r, 'VariableDataLength');
  if (nameLength > 1024)
    throw r.fail('oversized', 'UnicodeNameLength', 'name above 1024 characters');
  const name = r.bytes('UnicodeName', nameLength * 2).toString('utf16le');
  const value = r.bytes('VariableData', dataLength);
  if (r.remaining !== 0) throw r.fail('trailing', 'end', `${r.remaining} unconsumed bytes`);
  return { guid, name, data: value };
}

export interface SignatureEntry {
  readonly type: string;
  readonly owner: string;
  /** How policies name it: SHA-256 of an X.509 certificate's DER, the hash of a hash entry. */
  readonly id: string;
}

/** A list of EFI_SIGNATURE_LIST structures (the value of PK, KEK, db, dbx). */
export function parseSignatureLists(data: Buffer): SignatureEntry[] {
  const r = new LogReader(data, 'EFI_SIGNATURE_LIST', 'event_log_malformed');
  const out: SignatureEntry[] = [];
  while (r.remaining > 0) {
    const start = r.offset;
    const type = guidString(r.bytes('SignatureType', 16));
    const listSize = r.u32('SignatureListSize');
    const headerSize = r.u32('SignatureHeaderSize');
    const sigSize = r.u32('SignatureSize');
    if (listSize < 28 + headerSize || listSize - 28 > r.remaining || sigSize < 16)
      throw r.fail('invalid', 'SignatureListSize', 'sizes do not fit', start);
    r.bytes('SignatureHeader', headerSize);
    const body = listSize - 28 - headerSize;
    if (body % sigSize !== 0)
      throw r.fail('invalid', 'SignatureSize', 'entries do not fill the list', start);
    for (let i = 0; i < body / sigSize; i++) {
      const owner = guidString(r.bytes('SignatureOwner', 16));
      const value = r.bytes('SignatureData', sigSize - 16);
      const id =
        type === EFI_CERT_SHA256
          ? value.toString('hex')
          : createHash('sha256').update(value).digest('hex');
      out.push({ type, owner, id });
      if (out.length > 10_000)
        throw r.fail('oversized', 'SignatureData', 'more than 10000 entries');
    }
  }
  return out;
}
