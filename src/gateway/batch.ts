/**
 * Batch-signed grants (docs/protocol.md §3, "Batch-signed grants"): the one home of the
 * format, used by the appliance to issue and by the gateway SDK to verify.
 *
 * The appliance signs one batch head per batch: the RFC 9162 §2.1 Merkle root over the
 * batch's grants (each leaf = SHA-256(0x00 ‖ the grant's `header.claims` signing input)),
 * its size and the key id, with the ES256 grant key. Each grant carries that signature, the
 * root, its position and its inclusion path in its third segment, so it verifies offline
 * from the JWKS alone, like a JWS, while the key signs once per batch. Prior art: IETF
 * Merkle Tree Certificates (draft-davidben-tls-merkle-tree-certs), which sign one tree head
 * over a batch of certificates and give each an inclusion proof.
 */
import { createHash, timingSafeEqual, webcrypto } from 'node:crypto';
import { decodeBase64url, es256SignatureProblem } from './encoding.js';
import type { KeySource } from './jwks.js';
import {
  GrantBatchPathInvalidError,
  GrantBatchPositionInvalidError,
  GrantMalformedError,
  GrantSignatureInvalidError,
} from './errors.js';

/** The `alg` of a batch-signed grant's header ("ES256 over a Merkle tree batch"). */
export const BATCH_ALG = 'ES256-MTB';
/** The first line of a batch head: never the start of a JWS signing input (`eyJ...`). */
export const BATCH_HEAD_LINE = 'grantor grant batch v1';
/** The largest batch: a path holds at most 12 hashes. */
export const MAX_BATCH_SIZE = 4096;

const VERSION = 1;
const HASH = 32;
const SIGNATURE = 64;
/** version, size, index, root, signature, path length. */
const FIXED = 1 + 4 + 4 + HASH + SIGNATURE + 1;

/** The third segment of a batch-signed grant, decoded. */
export interface BatchProof {
  readonly size: number;
  readonly index: number;
  readonly root: Uint8Array;
  /** ES256 over the batch head, JOSE r‖s (64 bytes). */
  readonly signature: Uint8Array;
  /** RFC 9162 inclusion path, leaf to root. */
  readonly path: readonly Uint8Array[];
}

const sha256 = (...parts: readonly Uint8Array[]): Buffer => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};
const LEAF = Uint8Array.of(0);
const NODE = Uint8Array.of(1);

/** RFC 9162 leaf hash of a grant: SHA-256(0x00 ‖ ASCII(header "." claims)). */
export function batchLeafHash(signingInput: Uint8Array): Buffer {
  return sha256(LEAF, signingInput);
}

function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  return sha256(NODE, left, right);
}

/** The bytes the key signs for a batch: four lines of text, each ending in a newline. */
export function batchHead(kid: string, size: number, root: Uint8Array): Buffer {
  if (/[\n\r]/.test(kid)) throw new TypeError('a kid cannot hold a line break');
  const rootB64 = Buffer.from(root).toString('base64url');
  return Buffer.from(`${BATCH_HEAD_LINE}\n${kid}\n${String(size)}\n${rootB64}\n`, 'utf8');
}

/** The number of hashes in the inclusion path of leaf `index` in a tree of `size` leaves. */
export function inclusionPathLength(index: number, size: number): number {
  let fn = index;
  let sn = size - 1;
  let length = 0;
  while (sn > 0) {
    if (fn % 2 === 0 && fn === sn) {
      // The right edge: this level has no right sibling; climb until there is one.
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
    length += 1;
  }
  return length;
}

/**
 * RFC 9162 §2.1.3.2: the root that `path` leads to from leaf `index` of `size`, or
 * undefined when the path does not have the length that position needs.
 */
export function rootFromPath(
  index: number,
  size: number,
  leaf: Uint8Array,
  path: readonly Uint8Array[],
): Buffer | undefined {
  if (!(index >= 0 && index < size)) return undefined;
  let fn = index;
  let sn = size - 1;
  let r: Buffer = Buffer.from(leaf);
  for (const p of path) {
    if (sn === 0) return undefined;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 ? r : undefined;
}

/** Largest power of two strictly smaller than n (n >= 2). */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** The root of the leaves and every leaf's inclusion path (leaf to root), n - 1 node hashes. */
export function batchTree(leaves: readonly Uint8Array[]): { root: Buffer; paths: Buffer[][] } {
  if (leaves.length === 0 || leaves.length > MAX_BATCH_SIZE)
    throw new RangeError(`a batch holds 1 to ${MAX_BATCH_SIZE} grants`);
  const paths: Buffer[][] = leaves.map(() => []);
  const build = (lo: number, hi: number): Buffer => {
    if (hi - lo === 1) return Buffer.from(leaves[lo] ?? Buffer.alloc(0));
    const mid = lo + splitPoint(hi - lo);
    const left = build(lo, mid);
    const right = build(mid, hi);
    for (let i = lo; i < mid; i++) paths[i]?.push(right);
    for (let i = mid; i < hi; i++) paths[i]?.push(left);
    return nodeHash(left, right);
  };
  return { root: build(0, leaves.length), paths };
}

export function encodeBatchProof(proof: BatchProof): Buffer {
  if (proof.root.length !== HASH || proof.signature.length !== SIGNATURE)
    throw new RangeError('a batch proof needs a 32-byte root and a 64-byte signature');
  const out = Buffer.alloc(FIXED + HASH * proof.path.length);
  let o = out.writeUInt8(VERSION, 0);
  o = out.writeUInt32BE(proof.size, o);
  o = out.writeUInt32BE(proof.index, o);
  out.set(proof.root, o);
  o += HASH;
  out.set(proof.signature, o);
  o += SIGNATURE;
  o = out.writeUInt8(proof.path.length, o);
  for (const p of proof.path) {
    if (p.length !== HASH) throw new RangeError('a path hash is 32 bytes');
    out.set(p, o);
    o += HASH;
  }
  return out;
}

/**
 * Decode a batch proof: guard clauses, each with its own error. The size, the position in
 * it and the path's length are checked here, before any key is fetched.
 */
export function decodeBatchProof(bytes: Uint8Array): BatchProof {
  if (bytes.length < FIXED) throw new GrantMalformedError('the batch proof is truncated');
  const b = Buffer.from(bytes);
  if (b.readUInt8(0) !== VERSION)
    throw new GrantMalformedError('the batch proof has an unknown version');
  const size = b.readUInt32BE(1);
  const index = b.readUInt32BE(5);
  if (size < 1 || size > MAX_BATCH_SIZE)
    throw new GrantMalformedError(`the batch size is not in 1..${MAX_BATCH_SIZE}`);
  // A position past the end names no leaf: no path can lead from it.
  if (index >= size) throw new GrantBatchPositionInvalidError('the position is outside the batch');
  const count = b.readUInt8(FIXED - 1);
  if (b.length !== FIXED + HASH * count)
    throw new GrantMalformedError('the batch proof length does not match its path');
  if (count !== inclusionPathLength(index, size))
    throw new GrantBatchPathInvalidError('the path does not have the length its position needs');
  const root = b.subarray(9, 9 + HASH);
  const signature = b.subarray(9 + HASH, 9 + HASH + SIGNATURE);
  const path: Buffer[] = [];
  for (let i = 0; i < count; i++) path.push(b.subarray(FIXED + HASH * i, FIXED + HASH * (i + 1)));
  return { size, index, root, signature, path };
}

/**
 * The proof check of a batch-signed grant, after its header named `kid` and before its
 * claims are read: decode the proof (its size, position and path length), check the
 * signature's form, fetch the key, lead the grant up its path to the root it carries, then
 * verify the key's signature over that root's batch head. Each failure has its own error.
 */
export async function verifyBatchProof(
  signingInput: string,
  proofB64: string,
  kid: string,
  keys: KeySource,
): Promise<BatchProof> {
  const bytes = decodeBase64url(proofB64);
  if (bytes === undefined) throw new GrantMalformedError('the batch proof is not base64url');
  const proof = decodeBatchProof(bytes);
  const problem = es256SignatureProblem(proof.signature);
  if (problem !== undefined) throw new GrantSignatureInvalidError(`signature: ${problem}`);
  const { key } = await keys.getKey(kid);
  const leaf = batchLeafHash(Buffer.from(signingInput, 'ascii'));
  const root = rootFromPath(proof.index, proof.size, leaf, proof.path);
  if (root === undefined || !timingSafeEqual(root, proof.root)) {
    throw new GrantBatchPathInvalidError('the path does not lead from this grant to the root');
  }
  // The root is this grant's; only the key's signature over it makes it the appliance's.
  const ok = await webcrypto.subtle.verify(
    { name: 'ECDSA', hash: 'SHA-256' },
    key,
    proof.signature,
    batchHead(kid, proof.size, proof.root),
  );
  if (!ok) throw new GrantSignatureInvalidError('the batch signature does not verify');
  return proof;
}
