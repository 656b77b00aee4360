/**
 * The test vectors of batch-signed grants (test/fixtures/grant-batch-vectors.json, printed
 * in docs/protocol.md §3): the SDK accepts each grant; the leaf hashes and the root are
 * recomputed with node:crypto and the audit log's own RFC 9162 tree; the batch head's
 * signature is checked by openssl, independently of our code; the protocol document shows
 * the same values.
 */
import { execFile } from 'node:child_process';
import { createHash, createPublicKey } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { MerkleTree } from '../audit/merkle.js';
import { batchHead } from './batch.js';
import { staticKeySource } from './jwks.js';
import { verifyGrant } from './verify-grant.js';

const run = promisify(execFile);
const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

interface Vectors {
  jwks: { keys: { kid: string; kty: string; crv: string; x: string; y: string }[] };
  issuer: string;
  audience: string;
  now: number;
  executions: { action: string; resource: string; parameters: unknown }[];
  leafHashes: string[];
  root: string;
  head: string;
  signature: string;
  tokens: string[];
}

const vectors = JSON.parse(
  await readFile(join(root, 'test/fixtures/grant-batch-vectors.json'), 'utf8'),
) as Vectors;

/** JOSE r‖s to the DER ECDSA-Sig-Value openssl reads. */
function derSignature(p1363: Buffer): Buffer {
  const int = (b: Buffer): Buffer => {
    let i = 0;
    while (i < b.length - 1 && b[i] === 0) i++;
    const v = b.subarray(i);
    const body = (v[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.of(0), v]) : v;
    return Buffer.concat([Buffer.of(0x02, body.length), body]);
  };
  const seq = Buffer.concat([int(p1363.subarray(0, 32)), int(p1363.subarray(32))]);
  return Buffer.concat([Buffer.of(0x30, seq.length), seq]);
}

describe('batch-signed grant test vectors', () => {
  it('verify with the SDK, each at its position', async () => {
    const keys = await staticKeySource(JSON.stringify(vectors.jwks));
    for (const [i, token] of vectors.tokens.entries()) {
      const execution = vectors.executions[i];
      if (execution === undefined) throw new Error('vector without execution');
      const v = await verifyGrant(token, {
        issuer: vectors.issuer,
        audience: vectors.audience,
        keys,
        now: () => vectors.now * 1000,
        execution,
      });
      expect(v.form).toEqual({ batch: { index: i, size: vectors.tokens.length } });
    }
  });

  it('have the leaf hashes, root and head that independent code computes', () => {
    const tree = new MerkleTree();
    vectors.tokens.forEach((token, i) => {
      const [h = '', c = ''] = token.split('.');
      const leaf = createHash('sha256').update(Buffer.of(0)).update(`${h}.${c}`).digest();
      expect(leaf.toString('hex')).toBe(vectors.leafHashes[i]);
      tree.appendLeaf(leaf);
    });
    expect(tree.root().toString('hex')).toBe(vectors.root);
    const kid = vectors.jwks.keys[0]?.kid ?? '';
    expect(batchHead(kid, 3, Buffer.from(vectors.root, 'hex')).toString('utf8')).toBe(vectors.head);
  });

  it('carry a head signature that openssl verifies with the JWKS key', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'grantor-vectors-'));
    try {
      const jwk = vectors.jwks.keys[0];
      if (jwk === undefined) throw new Error('no key');
      const pem = createPublicKey({
        key: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y },
        format: 'jwk',
      }).export({ format: 'pem', type: 'spki' });
      await writeFile(join(dir, 'key.pem'), pem);
      await writeFile(join(dir, 'head'), vectors.head);
      await writeFile(
        join(dir, 'sig.der'),
        derSignature(Buffer.from(vectors.signature, 'base64url')),
      );
      const args = ['dgst', '-sha256', '-verify', 'key.pem', '-signature', 'sig.der'];
      const { stdout } = await run('openssl', [...args, 'head'], { cwd: dir });
      expect(stdout.trim()).toBe('Verified OK');
      await writeFile(join(dir, 'head2'), vectors.head.replace('\n3\n', '\n4\n'));
      await expect(run('openssl', [...args, 'head2'], { cwd: dir })).rejects.toThrow();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('are the ones docs/protocol.md shows', async () => {
    const doc = await readFile(join(root, 'docs/protocol.md'), 'utf8');
    for (const value of [
      vectors.root,
      vectors.signature,
      vectors.tokens[2] ?? '',
      ...vectors.leafHashes,
    ])
      expect(doc).toContain(value);
    for (const line of vectors.head.split('\n').filter((l) => l !== ''))
      expect(doc).toContain(line);
  });
});
