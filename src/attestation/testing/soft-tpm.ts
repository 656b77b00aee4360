/**
 * A software stand-in for a runtime's TPM, for fast unit tests of the verifier and the
 * service: an AK (ECC P-256/ECDSA or RSA-2048/RSASSA, as the AK templates), PCR banks, and
 * quotes marshalled and signed exactly as a TPM does. Integration tests use real swtpm.
 */
import {
  constants,
  createDecipheriv,
  createHash,
  createHmac,
  generateKeyPairSync,
  privateDecrypt,
  sign,
  type KeyObject,
} from 'node:crypto';
import {
  unmarshalIdObject,
  unmarshalTpm2bEncryptedSecret,
  unmarshalTpm2bIdObject,
} from '../../tpm/marshal/credential.js';
import { kdfa } from '../make-credential.js';
import { akQualifiedNameUnderEk } from '../ak.js';
import { marshalTpmsAttest, type TpmsAttest } from '../../tpm/marshal/attest.js';
import {
  TPM_ALG,
  TPM_GENERATED_VALUE,
  TPM_ST,
  hashInfoByName,
  type HashName,
} from '../../tpm/marshal/constants.js';
import {
  pcrDigest,
  pcrListToSelection,
  type PcrBankSelection,
} from '../../tpm/marshal/pcr-selection.js';
import {
  marshalTpm2bPublic,
  objectName,
  type EccPublic,
  type RsaPublic,
  type TpmtPublic,
} from '../../tpm/marshal/public.js';
import { marshalTpmtSignature, type TpmtSignature } from '../../tpm/marshal/signature.js';
import {
  AK_TEMPLATE_ECC_P256,
  AK_TEMPLATE_RSA2048,
  EK_TEMPLATE_RSA2048,
  withUnique,
} from '../../tpm/templates.js';
import type { QuoteRequest } from '../verify-quote.js';

export interface SoftQuoteOptions {
  readonly selection?: readonly PcrBankSelection[];
  readonly resetCount?: number;
  readonly restartCount?: number;
  readonly safe?: boolean;
  readonly clock?: bigint;
  /** Override what goes into the signed structure. */
  readonly tamper?: (a: TpmsAttest) => TpmsAttest;
}

/** Every SoftTpm by its AK name, so a SoftEk's activation can adopt the AK as its child. */
const softAks = new Map<string, SoftTpm>();

export class SoftTpm {
  readonly akPublic: EccPublic | RsaPublic;
  readonly #key: KeyObject;
  readonly pcrs = new Map<HashName, Buffer[]>();
  resetCount = 3;
  restartCount = 0;
  clock = 123456n;
  firmwareVersion = 0x2000_0000_0001n;
  /**
   * The EK this AK was created under (sets qualifiedSigner as a real TPM would). A
   * SoftEk's successful activation for this AK sets it: the AK activated with an EK is
   * taken as its child, as our attester creates it.
   */
  parentEk: TpmtPublic | undefined;

  constructor(kind: 'ecc' | 'rsa' = 'ecc') {
    if (kind === 'ecc') {
      const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
      const jwk = publicKey.export({ format: 'jwk' });
      this.akPublic = withUnique(AK_TEMPLATE_ECC_P256, {
        x: Buffer.from(jwk.x ?? '', 'base64url'),
        y: Buffer.from(jwk.y ?? '', 'base64url'),
      });
      this.#key = privateKey;
    } else {
      const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const jwk = publicKey.export({ format: 'jwk' });
      this.akPublic = withUnique(AK_TEMPLATE_RSA2048, Buffer.from(jwk.n ?? '', 'base64url'));
      this.#key = privateKey;
    }
    softAks.set(objectName(this.akPublic).toString('hex'), this);
    for (const bank of ['sha1', 'sha256'] as const) {
      const size = hashInfoByName(bank)?.size ?? 32;
      this.pcrs.set(
        bank,
        Array.from({ length: 24 }, () => Buffer.alloc(size)),
      );
    }
  }

  get akPublicBytes(): Buffer {
    return marshalTpm2bPublic(this.akPublic);
  }

  extend(bank: HashName, pcr: number, data: string): void {
    const values = this.pcrs.get(bank);
    const old = values?.[pcr];
    if (values === undefined || old === undefined) throw new Error('no such PCR');
    const h = bank === 'sha1' ? 'sha1' : 'sha256';
    values[pcr] = createHash(h).update(old).update(createHash(h).update(data).digest()).digest();
  }

  value(bank: HashName, pcr: number): Buffer {
    const v = this.pcrs.get(bank)?.[pcr];
    if (v === undefined) throw new Error('no such PCR');
    return v;
  }

  signBytes(message: Uint8Array): TpmtSignature {
    if (this.akPublic.type === TPM_ALG.ECC) {
      const p1363 = sign('sha256', message, { key: this.#key, dsaEncoding: 'ieee-p1363' });
      return {
        sigAlg: TPM_ALG.ECDSA,
        hash: TPM_ALG.SHA256,
        r: p1363.subarray(0, 32),
        s: p1363.subarray(32),
      };
    }
    const sig = sign('sha256', message, { key: this.#key, padding: constants.RSA_PKCS1_PADDING });
    return { sigAlg: TPM_ALG.RSASSA, hash: TPM_ALG.SHA256, sig };
  }

  /** A quote request body as a runtime sends it. */
  quote(nonce: Buffer, extraData: Buffer, options: SoftQuoteOptions = {}): QuoteRequest {
    const selection = options.selection ?? [{ bank: 'sha256', pcrs: [0, 7] }];
    const sel = pcrListToSelection(selection);
    const values: Record<string, Record<string, string>> = {};
    const raw: Partial<Record<HashName, Record<number, Buffer>>> = {};
    for (const { bank, pcrs } of selection) {
      values[bank] = {};
      raw[bank] = {};
      for (const p of pcrs) {
        values[bank][String(p)] = this.value(bank, p).toString('hex');
        raw[bank][p] = this.value(bank, p);
      }
    }
    let attest: TpmsAttest = {
      magic: TPM_GENERATED_VALUE,
      qualifiedSigner:
        this.parentEk === undefined
          ? Buffer.concat([Buffer.from('000b', 'hex'), Buffer.alloc(32, 0xaa)])
          : akQualifiedNameUnderEk(this.parentEk, objectName(this.akPublic)),
      extraData,
      clockInfo: {
        clock: options.clock ?? this.clock,
        resetCount: options.resetCount ?? this.resetCount,
        restartCount: options.restartCount ?? this.restartCount,
        safe: options.safe ?? true,
      },
      firmwareVersion: this.firmwareVersion,
      attested: {
        type: TPM_ST.ATTEST_QUOTE,
        pcrSelect: sel,
        pcrDigest: pcrDigest(TPM_ALG.SHA256, sel, raw),
      },
    };
    if (options.tamper !== undefined) attest = options.tamper(attest);
    const bytes = marshalTpmsAttest(attest);
    return {
      nonce: nonce.toString('base64'),
      quote: bytes.toString('base64'),
      signature: marshalTpmtSignature(this.signBytes(bytes)).toString('base64'),
      pcrs: values,
    };
  }
}

/** A software RSA-2048 EK (template L-1) that can run ActivateCredential's math. */
export class SoftEk {
  readonly ekPublic: RsaPublic;
  /** Hex SHA-256 of the EK's SubjectPublicKeyInfo (DER), as enrollment rules list it. */
  readonly publicKeySha256: string;
  readonly #key: KeyObject;

  constructor() {
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    this.publicKeySha256 = createHash('sha256')
      .update(publicKey.export({ type: 'spki', format: 'der' }))
      .digest('hex');
    this.ekPublic = withUnique(
      EK_TEMPLATE_RSA2048,
      Buffer.from(publicKey.export({ format: 'jwk' }).n ?? '', 'base64url'),
    );
    this.#key = privateKey;
  }

  get ekPublicBytes(): Buffer {
    return marshalTpm2bPublic(this.ekPublic);
  }

  /** TPM2_ActivateCredential: recover the secret for `name`, or throw on an integrity failure. */
  activate(credentialBlob: Uint8Array, encryptedSecret: Uint8Array, name: Uint8Array): Buffer {
    const seed = privateDecrypt(
      {
        key: this.#key,
        padding: constants.RSA_PKCS1_OAEP_PADDING,
        oaepHash: 'sha256',
        oaepLabel: Buffer.from('IDENTITY\0'),
      },
      unmarshalTpm2bEncryptedSecret(encryptedSecret),
    );
    const { integrityHmac, encIdentity } = unmarshalIdObject(
      unmarshalTpm2bIdObject(credentialBlob),
    );
    const hmacKey = kdfa('sha256', seed, 'INTEGRITY', Buffer.alloc(0), Buffer.alloc(0), 256);
    const hmac = createHmac('sha256', hmacKey).update(encIdentity).update(name).digest();
    if (!hmac.equals(Buffer.from(integrityHmac))) throw new Error('integrity check failed');
    const symKey = kdfa('sha256', seed, 'STORAGE', name, Buffer.alloc(0), 128);
    const d = createDecipheriv('aes-128-cfb', symKey, Buffer.alloc(16));
    const plain = Buffer.concat([d.update(encIdentity), d.final()]);
    const ak = softAks.get(Buffer.from(name).toString('hex'));
    if (ak !== undefined) ak.parentEk = this.ekPublic;
    return plain.subarray(2, 2 + plain.readUInt16BE(0));
  }

  /**
   * What a runtime posts to activate: the secret of an enrollment answer (its base64 wire
   * fields) recovered for `ak`'s AK, base64.
   */
  activateEnrollment(
    enrolled: { readonly credentialBlob: string; readonly encryptedSecret: string },
    ak: SoftTpm,
  ): string {
    return this.activate(
      Buffer.from(enrolled.credentialBlob, 'base64'),
      Buffer.from(enrolled.encryptedSecret, 'base64'),
      objectName(ak.akPublic),
    ).toString('base64');
  }
}
