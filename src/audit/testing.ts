/**
 * Test helpers of the audit domain: a node:crypto Ed25519 checkpoint signer (production:
 * the HSM's audit key), for the log's unit tests and the other domains' tests of it.
 */
import { generateKeyPairSync, sign } from 'node:crypto';
import type { CheckpointSigner } from './checkpoint.js';

export function testSigner(keyName: string): CheckpointSigner {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    keyName,
    publicKey: publicKey.export({ format: 'der', type: 'spki' }).subarray(-32),
    sign: (m) => Promise.resolve(sign(null, m, privateKey)),
  };
}
