import { createPrivateKey, createPublicKey, generateKeyPairSync, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { CheckpointSigner } from './checkpoint.js';
import {
  formatCheckpoint,
  noteVerifierKey,
  parseCheckpoint,
  parseVerifierKey,
  signNote,
  verifyNote,
} from './checkpoint.js';

const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex');

function signerFromSeed(keyName: string, seed: Buffer): CheckpointSigner {
  const privateKey = createPrivateKey({
    key: Buffer.concat([PKCS8_ED25519, seed]),
    format: 'der',
    type: 'pkcs8',
  });
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  return {
    keyName,
    publicKey: spki.subarray(-32),
    sign: (m) => Promise.resolve(sign(null, m, privateKey)),
  };
}

// The example of golang.org/x/mod/sumdb/note (and the C2SP signed-note spec).
const GO_SEED = Buffer.from('AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz', 'base64').subarray(1);
const GO_VKEY = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW';
const GO_TEXT =
  'If you think cryptography is the answer to your problem,\n' +
  "then you don't know what your problem is.\n";
const GO_NOTE =
  GO_TEXT +
  '\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n';

describe('C2SP signed notes', () => {
  it('reproduces the Go sumdb note example (key id, verifier key, signature)', async () => {
    const signer = signerFromSeed('PeterNeumann', GO_SEED);
    expect(noteVerifierKey(signer.keyName, signer.publicKey)).toBe(GO_VKEY);
    expect(await signNote(GO_TEXT, signer)).toBe(GO_NOTE);
    expect(verifyNote(GO_NOTE, parseVerifierKey(GO_VKEY))).toBe(GO_TEXT);
  });

  it('rejects a changed text, a wrong key and a missing signature', () => {
    const key = parseVerifierKey(GO_VKEY);
    expect(() => verifyNote(GO_NOTE.replace('cryptography', 'cryptographY'), key)).toThrow(
      expect.objectContaining({ code: 'audit_note_signature_invalid' }) as Error,
    );
    const { publicKey } = generateKeyPairSync('ed25519');
    const other = parseVerifierKey(
      noteVerifierKey(
        'PeterNeumann',
        publicKey.export({ format: 'der', type: 'spki' }).subarray(-32),
      ),
    );
    expect(() => verifyNote(GO_NOTE, other)).toThrow(
      expect.objectContaining({ code: 'audit_note_signature_invalid' }) as Error,
    );
    expect(() => verifyNote(GO_TEXT, key)).toThrow(
      expect.objectContaining({ code: 'audit_note_malformed' }) as Error,
    );
  });

  it.each([
    'PeterNeumann+c74f20a3',
    'PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW',
    'Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW',
    'PeterNeumann+c74f20a3+AhpcQ==',
  ])('rejects a malformed verifier key %s', (vkey) => {
    expect(() => parseVerifierKey(vkey)).toThrow(
      expect.objectContaining({ code: 'audit_verifier_key_invalid' }) as Error,
    );
  });
});

describe('checkpoints', () => {
  const body = {
    origin: 'grantor.example/appliance-1',
    size: 42,
    root: Buffer.alloc(32, 7),
    counter: 12345678901n,
    extendValue: Buffer.alloc(32, 9),
  };

  it('formats a tlog-checkpoint with the anchor extension lines and parses it back', () => {
    const text = formatCheckpoint(body);
    expect(text.split('\n')).toEqual([
      'grantor.example/appliance-1',
      '42',
      Buffer.alloc(32, 7).toString('base64'),
      'nv-counter 12345678901',
      `nv-extend ${Buffer.alloc(32, 9).toString('base64')}`,
      '',
    ]);
    expect(parseCheckpoint(text)).toEqual(body);
  });

  it('signs and verifies a checkpoint', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const signer: CheckpointSigner = {
      keyName: body.origin,
      publicKey: publicKey.export({ format: 'der', type: 'spki' }).subarray(-32),
      sign: (m) => Promise.resolve(sign(null, m, privateKey)),
    };
    const note = await signNote(formatCheckpoint(body), signer);
    const key = parseVerifierKey(noteVerifierKey(signer.keyName, signer.publicKey));
    expect(parseCheckpoint(verifyNote(note, key))).toEqual(body);
  });

  it('signs again when the key is rotated while a signature is in flight', async () => {
    const keys = [generateKeyPairSync('ed25519'), generateKeyPairSync('ed25519')];
    const raw = (i: number): Buffer =>
      (keys[i]?.publicKey.export({ format: 'der', type: 'spki' }) ?? Buffer.alloc(0)).subarray(-32);
    let active = 0;
    let signs = 0;
    const signer: CheckpointSigner = {
      keyName: body.origin,
      get publicKey() {
        return raw(active);
      },
      sign: (m) => {
        signs += 1;
        const signature = sign(null, m, keys[active]?.privateKey ?? '');
        // The first signature is made with the old key, then the rotation completes.
        if (signs === 1) active = 1;
        return Promise.resolve(signature);
      },
    };
    const note = await signNote(formatCheckpoint(body), signer);
    expect(signs).toBe(2);
    expect(() => verifyNote(note, parseVerifierKey(noteVerifierKey(body.origin, raw(0))))).toThrow(
      expect.objectContaining({ code: 'audit_note_signature_invalid' }) as Error,
    );
    const key = parseVerifierKey(noteVerifierKey(body.origin, raw(1)));
    expect(parseCheckpoint(verifyNote(note, key))).toEqual(body);
  });

  it('gives up when the key changes during every attempt', async () => {
    let n = 0;
    const { privateKey } = generateKeyPairSync('ed25519');
    const signer: CheckpointSigner = {
      keyName: body.origin,
      get publicKey() {
        n += 1;
        return Buffer.alloc(32, n);
      },
      sign: (m) => Promise.resolve(sign(null, m, privateKey)),
    };
    await expect(signNote(formatCheckpoint(body), signer)).rejects.toMatchObject({
      code: 'audit_note_signature_invalid',
    });
  });

  it.each([
    'origin\n42\n',
    'origin\n-1\nAAAA\n',
    `origin\n42\n${Buffer.alloc(31).toString('base64')}\nnv-counter 1\nnv-extend ${Buffer.alloc(32).toString('base64')}\n`,
    `origin\n42\n${Buffer.alloc(32).toString('base64')}\n`,
    `origin\n42\n${Buffer.alloc(32).toString('base64')}\nnv-counter 1\nnv-extend ${Buffer.alloc(32).toString('base64')}`,
  ])('rejects a malformed checkpoint (%#)', (text) => {
    expect(() => parseCheckpoint(text)).toThrow(
      expect.objectContaining({ code: 'audit_note_malformed' }) as Error,
    );
  });
});
