/**
 * A software HsmSigner (node:crypto keys in memory) for fast service and CLI tests. It
 * is never wired in production; the real adapter passes the same tests against SoftHSM2
 * in test/keys.
 */
import { generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { HsmKeyMissingError, HsmUnavailableError } from './errors.js';
import type { HsmKey, HsmSigner, KeyAlgorithm, PublicJwk } from './signer.port.js';

export class FakeSigner implements HsmSigner {
  readonly #keys = new Map<string, { key: HsmKey; privateKey: KeyObject }>();
  #open_ = false;
  /** Make the next signing calls fail as an HSM fault would. */
  failSigns = false;

  open(): Promise<void> {
    this.#open_ = true;
    return Promise.resolve();
  }

  generate(alg: KeyAlgorithm, label: string): Promise<HsmKey> {
    const pair =
      alg === 'ES256'
        ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
        : generateKeyPairSync('ed25519');
    const jwk = pair.publicKey.export({ format: 'jwk' });
    const publicJwk: PublicJwk =
      alg === 'ES256'
        ? { kty: 'EC', crv: 'P-256', x: jwk.x ?? '', y: jwk.y ?? '' }
        : { kty: 'OKP', crv: 'Ed25519', x: jwk.x ?? '' };
    const key: HsmKey = { hsmId: randomBytes(16).toString('hex'), label, alg, publicJwk };
    this.#keys.set(key.hsmId, { key, privateKey: pair.privateKey });
    return Promise.resolve(key);
  }

  load(hsmId: string): Promise<HsmKey> {
    const k = this.#keys.get(hsmId);
    if (k === undefined)
      return Promise.reject(new HsmKeyMissingError('no such key', { details: { hsmId } }));
    return Promise.resolve(k.key);
  }

  sign(hsmId: string, data: Uint8Array): Promise<Uint8Array> {
    if (!this.#open_ || this.failSigns)
      return Promise.reject(new HsmUnavailableError('fake HSM fault'));
    const k = this.#keys.get(hsmId);
    if (k === undefined)
      return Promise.reject(new HsmKeyMissingError('no such key', { details: { hsmId } }));
    const sig =
      k.key.alg === 'ES256'
        ? sign('sha256', data, { key: k.privateKey, dsaEncoding: 'ieee-p1363' })
        : sign(null, data, k.privateKey);
    return Promise.resolve(new Uint8Array(sig));
  }

  destroy(hsmId: string): Promise<void> {
    this.#keys.delete(hsmId);
    return Promise.resolve();
  }

  /** Whether an object with this id exists (for tests). */
  has(hsmId: string): boolean {
    return this.#keys.has(hsmId);
  }

  /** How many keys the fake HSM holds (for tests). */
  get size(): number {
    return this.#keys.size;
  }

  ready(): Promise<{ ok: boolean; reason?: string }> {
    return Promise.resolve(this.#open_ ? { ok: true } : { ok: false, reason: 'hsm_unavailable' });
  }

  close(): Promise<void> {
    this.#open_ = false;
    return Promise.resolve();
  }
}

export function createFakeSigner(): FakeSigner {
  return new FakeSigner();
}
