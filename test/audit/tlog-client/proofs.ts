/**
 * What both tlog-client tests check for a proof: the client computes it from the tiles of
 * the checkpoint it uses and verifies it against the signed roots; the test then compares
 * the returned path (hex, leaf to root) with the appliance's JSON proof route.
 */
import { expect } from 'vitest';
import { verifyConsistency, verifyInclusion, type Checkpoint, type TlogClient } from './client.js';

/** The inclusion path of leaf `seq` in `checkpoint` (already in use by `client`), verified. */
export async function verifiedInclusion(
  client: TlogClient,
  checkpoint: Checkpoint,
  seq: number,
  leaf: Buffer,
): Promise<string[]> {
  expect(leaf.equals(await client.leafHash(seq))).toBe(true);
  const proof = await client.inclusionProof(seq);
  expect(verifyInclusion(leaf, seq, checkpoint.size, proof, checkpoint.root)).toBe(true);
  if (checkpoint.size > 1) {
    const sibling = seq ^ 1;
    const other = sibling < checkpoint.size ? sibling : seq - 1;
    expect(verifyInclusion(leaf, other, checkpoint.size, proof, checkpoint.root)).toBe(false);
  }
  return proof.map((p) => p.toString('hex'));
}

/**
 * The consistency path from `old` to `checkpoint` (in use by `client`), verified: the old
 * root is also rebuilt from the new tree's authenticated tiles.
 */
export async function verifiedConsistency(
  client: TlogClient,
  old: Checkpoint,
  checkpoint: Checkpoint,
): Promise<string[]> {
  expect((await client.subtree(0, old.size)).equals(old.root)).toBe(true);
  const proof = await client.consistencyProof(old.size);
  const { size, root } = checkpoint;
  expect(verifyConsistency(old.size, size, proof, old.root, root)).toBe(true);
  if (old.size < size) {
    expect(verifyConsistency(old.size, size, proof, root, old.root)).toBe(false);
  }
  return proof.map((p) => p.toString('hex'));
}
