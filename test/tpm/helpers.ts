/**
 * Test helpers for the TPM adapter: marshalled templates, tpm2-tools runs against the same
 * swtpm, and just enough parsing of public areas and signatures to verify them with
 * node:crypto.
 */
import { execFile } from 'node:child_process';
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { expect } from 'vitest';
import { NativeTpm } from '../../src/tpm/tpm.native.js';
import {
  marshalTpmtPublic,
  objectAttributes,
  type TpmtPublic,
} from '../../src/tpm/marshal/public.js';
import {
  AK_TEMPLATES,
  EK_POLICY_A_SHA384,
  EK_TEMPLATE_ECC_P256,
  EK_TEMPLATE_ECC_P384,
  EK_TEMPLATES,
} from '../../src/tpm/templates.js';
import { startSimTpm, type SimTpm } from '../rig/sim.js';

const run = promisify(execFile);

const tmpl = (p: TpmtPublic): Buffer => marshalTpmtPublic(p);

/** TCG EK templates and our AK templates (src/tpm/templates.ts), marshalled. */
export const EK_RSA2048 = tmpl(EK_TEMPLATES.rsa2048);
export const EK_ECC_P256 = tmpl(EK_TEMPLATES['ecc-p256']);
export const EK_ECC_P384_HIGH = tmpl(EK_TEMPLATES['ecc-p384']);
export const AK_ECC_P256 = tmpl(AK_TEMPLATES['ecc-p256']);
export const AK_RSA2048 = tmpl(AK_TEMPLATES.rsa2048);

/**
 * A P-384 EK authorised only by PolicyA_SHA384 (no userWithAuth): exercises the SHA-384
 * EK policy session, which the high-range template's PolicyB does not allow.
 */
export const EK_ECC_P384_POLICY_A = tmpl({
  ...EK_TEMPLATE_ECC_P384,
  objectAttributes: { ...EK_TEMPLATE_ECC_P384.objectAttributes, userWithAuth: false },
  authPolicy: EK_POLICY_A_SHA384,
});

/** Storage root key (ECC P-256, AES-128-CFB), a parent for AKs besides the EK. */
export const SRK_ECC_P256 = tmpl({
  ...EK_TEMPLATE_ECC_P256,
  objectAttributes: objectAttributes(
    'fixedTPM',
    'fixedParent',
    'sensitiveDataOrigin',
    'userWithAuth',
    'noDA',
    'restricted',
    'decrypt',
  ),
  authPolicy: Buffer.alloc(0),
  unique: { x: Buffer.alloc(0), y: Buffer.alloc(0) },
});

/** A test file's own swtpm and our context open on it. */
export interface SimTpmRig {
  sim: SimTpm;
  tpm: NativeTpm;
}

/** Starts a fresh swtpm and opens our context on it (the swtpm goes again if that fails). */
export async function openSimTpm(): Promise<SimTpmRig> {
  const sim = await startSimTpm();
  try {
    return { sim, tpm: await NativeTpm.open(sim.tcti) };
  } catch (e) {
    await sim.destroy();
    throw e;
  }
}

/** Closes the context, then stops and removes the swtpm. */
export async function closeSimTpm(rig: SimTpmRig): Promise<void> {
  await rig.tpm.close();
  await rig.sim.destroy();
}

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

/**
 * What every signed attestation of these tests must be: TPM-generated (magic), of `type`, over
 * `nonce` (extraData), and signed by the key of `signerPublic` (a TPM2B_PUBLIC), checked with
 * node:crypto. Returns the attested union (the bytes after the header).
 */
export function expectSignedAttest(
  signed: { attest: Buffer; signature: Buffer },
  signerPublic: Buffer,
  type: number,
  nonce: Buffer,
): Buffer {
  const h = attestHeader(signed.attest);
  expect(h.magic).toBe(0xff544347);
  expect(h.type).toBe(type);
  expect(h.extraData.equals(nonce)).toBe(true);
  const key = publicKeyOf(signerPublic);
  const options =
    key.asymmetricKeyType === 'ec' ? { key, dsaEncoding: 'ieee-p1363' as const } : key;
  expect(verify('sha256', signed.attest, options, parseSignature(signed.signature).bytes)).toBe(
    true,
  );
  return h.rest;
}

/** The environment for tpm2-tools: no ASan preload (set when the addon runs under ASan). */
function toolEnv(tcti: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, TPM2TOOLS_TCTI: tcti, TSS2_LOG: 'all+none' };
  delete env.LD_PRELOAD;
  return env;
}

/** Runs a tpm2-tools command against the given swtpm (our context must be closed). */
export async function tpm2(
  tcti: string,
  tool: string,
  args: string[],
  cwd?: string,
): Promise<string> {
  const { stdout } = await run(tool, args, {
    env: toolEnv(tcti),
    ...(cwd === undefined ? {} : { cwd }),
  });
  return stdout;
}

/** Like tpm2(), for tools that write binary data to stdout. */
export async function tpm2Raw(tcti: string, tool: string, args: string[]): Promise<Buffer> {
  const { stdout } = await run(tool, args, {
    encoding: 'buffer',
    env: toolEnv(tcti),
  });
  return stdout;
}
