/** A node:crypto Ed25519 checkpoint signer for tests (production: the HSM's audit key). */
import { generateKeyPairSync, sign } from 'node:crypto';
import type { CheckpointSigner } from '../../src/audit/checkpoint.js';

export function testSigner(keyName: string): CheckpointSigner {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    keyName,
    publicKey: publicKey.export({ format: 'der', type: 'spki' }).subarray(-32),
    sign: (m) => Promise.resolve(sign(null, m, privateKey)),
  };
}
