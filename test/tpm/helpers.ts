/**
 * Test helpers for the TPM adapter: hand-built TPMT_PUBLIC templates (byte-exact TCG EK
 * templates and our AK shapes), tpm2-tools runs against the same swtpm, and just enough
 * parsing of public areas and signatures to verify them with node:crypto.
 */
import { execFile } from 'node:child_process';
import { createPublicKey, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const zeros = (n: number): Buffer => Buffer.alloc(n);
const u16 = (v: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v, 0);
  return b;
};
const u32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0, 0);
  return b;
};
const tpm2b = (b: Buffer): Buffer => Buffer.concat([u16(b.length), b]);

export const EK_POLICY_A_SHA256 = hex(
  '837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa',
);
export const EK_POLICY_A_SHA384 = hex(
  '8bbf2266537c171cb56e403c4dc1d4b64f432611dc386e6f532050c3278c930e143e8bb1133824ccb431053871c6db53',
);
export const EK_POLICY_B_SHA384 = hex(
  'b26e7d28d11a50bc53d882bcf5fd3a1a074148bb35d3b4e4cb1c0ad9bde419cacb47ba09699646150f9fc000f3f80e12',
);

const EK_LOW = 0x000300b2; // fixedTPM fixedParent sensitiveDataOrigin adminWithPolicy restricted decrypt
const EK_HIGH = 0x000300f2; // ... plus userWithAuth
const AK_ATTRS = 0x00050072; // fixedTPM fixedParent sensitiveDataOrigin userWithAuth restricted sign

/** TCG EK template L-1 (RSA-2048). */
export const EK_RSA2048 = Buffer.concat([
  hex('0001 000b'),
  u32(EK_LOW),
  tpm2b(EK_POLICY_A_SHA256),
  hex('0006 0080 0043 0010 0800 00000000'),
  tpm2b(zeros(256)),
]);

/** TCG EK template L-2 (ECC NIST P-256). */
export const EK_ECC_P256 = Buffer.concat([
  hex('0023 000b'),
  u32(EK_LOW),
  tpm2b(EK_POLICY_A_SHA256),
  hex('0006 0080 0043 0010 0003 0010'),
  tpm2b(zeros(32)),
  tpm2b(zeros(32)),
]);

/** High-range ECC P-384 EK (PolicyB, userWithAuth), the one swtpm_setup persists. */
export const EK_ECC_P384_HIGH = Buffer.concat([
  hex('0023 000c'),
  u32(EK_HIGH),
  tpm2b(EK_POLICY_B_SHA384),
  hex('0006 0100 0043 0010 0004 0010'),
  tpm2b(zeros(0)),
  tpm2b(zeros(0)),
]);

/** ECC P-384 EK authorised only by PolicyA_SHA384 (exercises the SHA-384 policy session). */
export const EK_ECC_P384_POLICY_A = Buffer.concat([
  hex('0023 000c'),
  u32(EK_LOW),
  tpm2b(EK_POLICY_A_SHA384),
  hex('0006 0100 0043 0010 0004 0010'),
  tpm2b(zeros(0)),
  tpm2b(zeros(0)),
]);

/** AK: restricted signing ECC P-256, ECDSA/SHA-256. */
export const AK_ECC_P256 = Buffer.concat([
  hex('0023 000b'),
  u32(AK_ATTRS),
  tpm2b(zeros(0)),
  hex('0010 0018 000b 0003 0010'),
  tpm2b(zeros(0)),
  tpm2b(zeros(0)),
]);

/** AK: restricted signing RSA-2048, RSASSA/SHA-256. */
export const AK_RSA2048 = Buffer.concat([
  hex('0001 000b'),
  u32(AK_ATTRS),
  tpm2b(zeros(0)),
  hex('0010 0014 000b 0800 00000000'),
  tpm2b(zeros(0)),
]);

/** Storage root key (ECC P-256, AES-128-CFB), a parent for AKs besides the EK. */
export const SRK_ECC_P256 = Buffer.concat([
  hex('0023 000b'),
  u32(0x00030472), // fixedTPM fixedParent sensitiveDataOrigin userWithAuth noDA restricted decrypt
  tpm2b(zeros(0)),
  hex('0006 0080 0043 0010 0003 0010'),
  tpm2b(zeros(0)),
  tpm2b(zeros(0)),
]);

class Cursor {
  off = 0;
  constructor(readonly b: Buffer) {}
  u16(): number {
    const v = this.b.readUInt16BE(this.off);
    this.off += 2;
    return v;
  }
  u32(): number {
    const v = this.b.readUInt32BE(this.off);
    this.off += 4;
    return v;
  }
  take(n: number): Buffer {
    if (this.off + n > this.b.length) throw new Error('truncated');
    const v = this.b.subarray(this.off, this.off + n);
    this.off += n;
    return v;
  }
  tpm2b(): Buffer {
    return this.take(this.u16());
  }
}

/** The public key of an RSA or ECC TPM2B_PUBLIC (only the shapes used in these tests). */
export function publicKeyOf(tpm2bPublic: Buffer): KeyObject {
  const c = new Cursor(tpm2bPublic);
  c.u16();
  const type = c.u16();
  c.u16(); // nameAlg
  c.u32(); // attributes
  c.tpm2b(); // authPolicy
  const sym = c.u16();
  if (sym !== 0x0010) c.take(4);
  const scheme = c.u16();
  if (scheme !== 0x0010) c.u16();
  const b64u = (b: Buffer): string => b.toString('base64url');
  if (type === 0x0001) {
    c.u16(); // keyBits
    const exp = c.u32();
    const n = c.tpm2b();
    const e = Buffer.alloc(4);
    e.writeUInt32BE(exp === 0 ? 65537 : exp, 0);
    return createPublicKey({
      key: { kty: 'RSA', n: b64u(n), e: b64u(e.subarray(e.findIndex((x) => x !== 0))) },
      format: 'jwk',
    });
  }
  const curve = c.u16();
  const kdf = c.u16();
  if (kdf !== 0x0010) c.u16();
  const x = c.tpm2b();
  const y = c.tpm2b();
  const crv = curve === 0x0003 ? 'P-256' : curve === 0x0004 ? 'P-384' : 'unknown';
  return createPublicKey({ key: { kty: 'EC', crv, x: b64u(x), y: b64u(y) }, format: 'jwk' });
}

/** TPMT_SIGNATURE -> {alg, hash, signature in node:crypto's form (P1363 for ECDSA)}. */
export function parseSignature(sig: Buffer): { alg: number; hash: number; bytes: Buffer } {
  const c = new Cursor(sig);
  const alg = c.u16();
  const hash = c.u16();
  if (alg === 0x0018) {
    const r = c.tpm2b();
    const s = c.tpm2b();
    const n = Math.max(r.length, s.length);
    const pad = (v: Buffer): Buffer => Buffer.concat([Buffer.alloc(n - v.length), v]);
    return { alg, hash, bytes: Buffer.concat([pad(r), pad(s)]) };
  }
  return { alg, hash, bytes: c.tpm2b() };
}

/** The first fields of a TPMS_ATTEST: magic, type, qualifiedSigner, extraData. */
export function attestHeader(attest: Buffer): {
  magic: number;
  type: number;
  signer: Buffer;
  extraData: Buffer;
  rest: Buffer;
} {
  const c = new Cursor(attest);
  const magic = c.u32();
  const type = c.u16();
  const signer = c.tpm2b();
  const extraData = c.tpm2b();
  c.take(17); // clockInfo
  c.take(8); // firmwareVersion
  return { magic, type, signer, extraData, rest: attest.subarray(c.off) };
}

/** Runs a tpm2-tools command against the given swtpm (our context must be closed). */
export async function tpm2(
  tcti: string,
  tool: string,
  args: string[],
  cwd?: string,
): Promise<string> {
  const { stdout } = await run(tool, args, {
    env: { ...process.env, TPM2TOOLS_TCTI: tcti, TSS2_LOG: 'all+none' },
    ...(cwd === undefined ? {} : { cwd }),
  });
  return stdout;
}
