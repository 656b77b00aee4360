/**
 * A stand-in for the appliance's grant side, for gateway tests: an ES256 signing key, its
 * JWKS on 127.0.0.1 (Fastify), a first-call-wins redemption endpoint, and a minter for good
 * and forged grants. The real appliance endpoints replace it in the end-to-end suite.
 */
import { createHmac, generateKeyPairSync, randomUUID, sign, type KeyObject } from 'node:crypto';
import Fastify, { type FastifyInstance } from 'fastify';
import { calculateJwkThumbprint } from 'jose';
import { parametersDigest, toLowS } from '../../src/gateway/index.js';

export const ISSUER = 'grantor-test';
export const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

export interface EcKey {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  readonly jwk: { kty: 'EC'; crv: 'P-256'; x: string; y: string };
  readonly thumbprint: string;
}

export async function ecKey(): Promise<EcKey> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const { kty, crv, x, y } = publicKey.export({ format: 'jwk' });
  const jwk = { kty: 'EC', crv: 'P-256', x: x ?? '', y: y ?? '' } as const;
  if (kty !== 'EC' || crv !== 'P-256') throw new Error('not P-256');
  return { privateKey, publicKey, jwk, thumbprint: await calculateJwkThumbprint(jwk) };
}

export function b64url(data: string | Uint8Array): string {
  return Buffer.from(data).toString('base64url');
}

export function es256(key: KeyObject, data: string | Uint8Array): Buffer {
  return sign('sha256', Buffer.from(data), { key, dsaEncoding: 'ieee-p1363' });
}

function withS(sig: Uint8Array, s: bigint): Buffer {
  return Buffer.concat([sig.subarray(0, 32), Buffer.from(s.toString(16).padStart(64, '0'), 'hex')]);
}

/** The high-S twin of a signature: mathematically valid, refused as non-canonical. */
export function highS(sig: Uint8Array): Buffer {
  const low = toLowS(sig);
  return withS(low, P256_N - BigInt(`0x${Buffer.from(low.subarray(32)).toString('hex')}`));
}

export interface MintOptions {
  readonly claims?: Record<string, unknown>;
  readonly header?: Record<string, unknown>;
  /** Raw JSON texts, used as is (e.g. with duplicate members). */
  readonly headerText?: string;
  readonly payloadText?: string;
  readonly signer?: KeyObject;
  readonly signature?: 'low' | 'high' | 'zero' | 'none' | ((signingInput: string) => Uint8Array);
}

export interface Execution {
  readonly action: string;
  readonly resource: string;
  readonly parameters: unknown;
}

export class FakeAppliance {
  readonly redeemed = new Map<string, string>();
  jwksFetches = 0;
  redeemStatus: number | undefined;
  extraJwks: Record<string, unknown>[] = [];
  cacheControl = 'max-age=300';
  #app: FastifyInstance | undefined;
  #url = '';

  private constructor(
    readonly signing: EcKey,
    readonly kid: string,
    readonly runtime: EcKey,
  ) {}

  static async start(): Promise<FakeAppliance> {
    const signing = await ecKey();
    const runtime = await ecKey();
    const appliance = new FakeAppliance(signing, signing.thumbprint, runtime);
    await appliance.#listen();
    return appliance;
  }

  get url(): string {
    return this.#url;
  }

  get jwksUrl(): string {
    return `${this.#url}/.well-known/jwks.json`;
  }

  jwks(): { keys: Record<string, unknown>[] } {
    return {
      keys: [{ ...this.signing.jwk, kid: this.kid, alg: 'ES256', use: 'sig' }, ...this.extraJwks],
    };
  }

  async #listen(): Promise<void> {
    const app = Fastify({ logger: false });
    app.get('/.well-known/jwks.json', (_req, reply) => {
      this.jwksFetches++;
      return reply.header('cache-control', this.cacheControl).send(this.jwks());
    });
    app.post<{ Params: { grantId: string }; Body: { audience: string; outcome?: string } }>(
      '/v1/grants/:grantId/redeem',
      (req, reply) => {
        if (this.redeemStatus !== undefined) {
          return reply
            .code(this.redeemStatus)
            .send({ error: { code: 'audit_unavailable', message: 'down' } });
        }
        // First call wins (single process, synchronous check-and-set).
        if (this.redeemed.has(req.params.grantId)) {
          return reply
            .code(409)
            .send({ error: { code: 'grant_already_redeemed', message: 'already redeemed' } });
        }
        this.redeemed.set(req.params.grantId, req.body.audience);
        return reply.code(200).send({ grantId: req.params.grantId, redeemed: true });
      },
    );
    this.#url = await app.listen({ host: '127.0.0.1', port: 0 });
    this.#app = app;
  }

  async close(): Promise<void> {
    await this.#app?.close();
  }

  claims(nowSeconds: number, audience: string, execution: Execution): Record<string, unknown> {
    const jti = `gr_${randomUUID()}`;
    return {
      iss: ISSUER,
      sub: 'rt_agent7',
      aud: audience,
      iat: nowSeconds,
      nbf: nowSeconds,
      exp: nowSeconds + 60,
      jti,
      act: {
        action: execution.action,
        resource: execution.resource,
        parametersDigest: parametersDigest(execution.parameters),
      },
      att: {
        akName: '000b' + 'ab'.repeat(32),
        pcrDigest: 'cd'.repeat(32),
        resetCount: 1,
        restartCount: 0,
        attestationId: 'at_1',
      },
      cnf: { jkt: this.runtime.thumbprint },
      lin: { parent: null, root: jti, depth: 0 },
      pol: 'ef'.repeat(32),
      aud_seq: 7,
      aud_hash: '12'.repeat(32),
    };
  }

  /** A compact JWS; by default a correct grant for `claims`. */
  mint(claims: Record<string, unknown>, options: MintOptions = {}): string {
    const header =
      options.headerText ??
      JSON.stringify(options.header ?? { alg: 'ES256', kid: this.kid, typ: 'grant+jwt' });
    const payload = options.payloadText ?? JSON.stringify({ ...claims, ...options.claims });
    const signingInput = `${b64url(header)}.${b64url(payload)}`;
    const mode = options.signature ?? 'low';
    let sig: Uint8Array;
    if (typeof mode === 'function') sig = mode(signingInput);
    else if (mode === 'none') sig = new Uint8Array(0);
    else if (mode === 'zero') sig = new Uint8Array(64);
    else {
      const raw = es256(options.signer ?? this.signing.privateKey, signingInput);
      sig = mode === 'high' ? highS(raw) : toLowS(raw);
    }
    return `${signingInput}.${b64url(sig)}`;
  }
}

/** HMAC-SHA256 with the given secret (for the HS256-with-the-public-key forgery). */
export function hs256(secret: Uint8Array | string, data: string): Buffer {
  return createHmac('sha256', secret).update(data).digest();
}
