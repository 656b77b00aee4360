/**
 * A minimal bounds-checked DER reader, enough to reach the X.509 extensions that node:crypto
 * does not expose structurally (the subject alternative name's directoryName attributes and
 * the extension criticality). Signatures, chains and validity stay with node:crypto.
 */

export class DerError extends Error {}

export interface Tlv {
  readonly tag: number;
  /** The content octets (a copy-free view into the input, which the caller owns). */
  readonly value: Uint8Array;
  /** Offset just past this element. */
  readonly end: number;
}

/** One TLV at `offset`; low-tag-number form only, definite lengths of at most 4 bytes. */
export function readTlv(bytes: Uint8Array, offset: number, limit = bytes.length): Tlv {
  if (offset + 2 > limit) throw new DerError('truncated header');
  const tag = bytes[offset] ?? 0;
  if ((tag & 0x1f) === 0x1f) throw new DerError('high tag numbers are not supported');
  let len = bytes[offset + 1] ?? 0;
  let pos = offset + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new DerError('unsupported length form');
    if (pos + n > limit) throw new DerError('truncated length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (bytes[pos + i] ?? 0);
    pos += n;
  }
  if (len > limit - pos) throw new DerError('truncated value');
  return { tag, value: bytes.subarray(pos, pos + len), end: pos + len };
}

/** The elements of a constructed value, in order. */
export function children(value: Uint8Array): Tlv[] {
  const out: Tlv[] = [];
  let offset = 0;
  while (offset < value.length) {
    const tlv = readTlv(value, offset);
    out.push(tlv);
    offset = tlv.end;
  }
  return out;
}

/** Dotted form of an OBJECT IDENTIFIER's content octets. */
export function decodeOid(value: Uint8Array): string {
  if (value.length === 0) throw new DerError('empty OID');
  const parts: number[] = [];
  let acc = 0;
  for (const b of value) {
    acc = acc * 128 + (b & 0x7f);
    if (acc > Number.MAX_SAFE_INTEGER / 128) throw new DerError('OID arc too large');
    if ((b & 0x80) === 0) {
      parts.push(acc);
      acc = 0;
    }
  }
  if ((value[value.length - 1] ?? 0) & 0x80) throw new DerError('truncated OID');
  const first = parts[0] ?? 0;
  const head = first < 80 ? [Math.floor(first / 40), first % 40] : [2, first - 80];
  return [...head, ...parts.slice(1)].join('.');
}

const TAG = { BOOLEAN: 0x01, OCTET_STRING: 0x04, OID: 0x06, SEQUENCE: 0x30, SET: 0x31 } as const;

export interface CertExtension {
  readonly oid: string;
  readonly critical: boolean;
  readonly value: Uint8Array;
}

function expect(tlv: Tlv | undefined, tag: number, what: string): Tlv {
  if (tlv?.tag !== tag) throw new DerError(`expected ${what}`);
  return tlv;
}

/** The extensions of a DER certificate (tbsCertificate [3]), and whether its subject is empty. */
export function certificateExtensions(der: Uint8Array): {
  extensions: CertExtension[];
  subjectEmpty: boolean;
} {
  const cert = readTlv(der, 0);
  if (cert.tag !== TAG.SEQUENCE || cert.end !== der.length) throw new DerError('not a certificate');
  const tbs = expect(children(cert.value)[0], TAG.SEQUENCE, 'tbsCertificate');
  const fields = children(tbs.value);
  // version [0] is optional; then serial, signature, issuer, validity, subject, spki.
  const base = fields[0]?.tag === 0xa0 ? 1 : 0;
  const subject = expect(fields[base + 4], TAG.SEQUENCE, 'subject');
  const extField = fields.slice(base + 6).find((f) => f.tag === 0xa3);
  const extensions: CertExtension[] = [];
  if (extField !== undefined) {
    const seq = expect(children(extField.value)[0], TAG.SEQUENCE, 'extensions');
    for (const ext of children(seq.value)) {
      const parts = children(expect(ext, TAG.SEQUENCE, 'extension').value);
      const oid = decodeOid(expect(parts[0], TAG.OID, 'extnID').value);
      let i = 1;
      let critical = false;
      if (parts[i]?.tag === TAG.BOOLEAN) {
        critical = (parts[i]?.value[0] ?? 0) !== 0;
        i++;
      }
      const value = expect(parts[i], TAG.OCTET_STRING, 'extnValue').value;
      extensions.push({ oid, critical, value });
    }
  }
  return { extensions, subjectEmpty: subject.value.length === 0 };
}

/**
 * The attributes (OID -> string value) of every directoryName [4] in a GeneralNames value
 * (the content of a subjectAltName extension).
 */
export function directoryNameAttributes(sanValue: Uint8Array): Map<string, string>[] {
  const names = expect(readTlv(sanValue, 0), TAG.SEQUENCE, 'GeneralNames');
  const out: Map<string, string>[] = [];
  for (const gn of children(names.value)) {
    if (gn.tag !== 0xa4) continue;
    const name = expect(children(gn.value)[0], TAG.SEQUENCE, 'Name');
    const attrs = new Map<string, string>();
    for (const rdn of children(name.value)) {
      for (const atv of children(expect(rdn, TAG.SET, 'RDN').value)) {
        const parts = children(expect(atv, TAG.SEQUENCE, 'AttributeTypeAndValue').value);
        const oid = decodeOid(expect(parts[0], TAG.OID, 'type').value);
        const value = parts[1];
        if (value === undefined) throw new DerError('missing attribute value');
        attrs.set(oid, Buffer.from(value.value).toString('utf8'));
      }
    }
    out.push(attrs);
  }
  return out;
}
