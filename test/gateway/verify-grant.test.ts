/**
 * The gateway SDK against forged and broken grants: a real ES256 key, its JWKS served over
 * HTTP on 127.0.0.1, and one test per rejection path asserting its code.
 */
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  JwksClient,
  RedemptionClient,
  createGrantVerifier,
  popSigningInput,
  verifyGrant,
  type GrantVerifier,
  type VerifyGrantRequest,
} from '../../src/gateway/index.js';
import { FakeAppliance, ISSUER, b64url, ecKey, es256, hs256, type EcKey } from './appliance.js';

const AUDIENCE = 'gw_payments';
const NOW_MS = Date.UTC(2026, 10, 27, 9, 0, 0);
const NOW = NOW_MS / 1000;
const EXECUTION = {
  action: 'payments.transfer',
  resource: 'acct:1234',
  parameters: { from: 'acct:1234', to: 'acct:9876', amountCents: 2500, currency: 'EUR' },
};

let appliance: FakeAppliance;
let attacker: EcKey;
let jwksNow: number;
let keys: JwksClient;
let verifier: GrantVerifier;

function good(claims: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...appliance.claims(NOW, AUDIENCE, EXECUTION), ...claims };
}

function request(extra: Partial<VerifyGrantRequest> = {}): VerifyGrantRequest {
  return { execution: EXECUTION, ...extra };
}

async function rejection(jws: string, extra: Partial<VerifyGrantRequest> = {}): Promise<string> {
  try {
    await verifier.verify(jws, request(extra));
  } catch (e) {
    return (e as { code?: string }).code ?? `not a GrantorError: ${String(e)}`;
  }
  return 'accepted';
}

beforeAll(async () => {
  appliance = await FakeAppliance.start();
  attacker = await ecKey();
});

afterAll(async () => {
  await appliance.close();
});

beforeEach(() => {
  jwksNow = NOW_MS;
  appliance.extraJwks = [];
  appliance.redeemStatus = undefined;
  keys = new JwksClient({ url: appliance.jwksUrl, now: () => jwksNow });
  verifier = createGrantVerifier({
    issuer: ISSUER,
    audience: AUDIENCE,
    keys,
    now: () => NOW_MS,
    redeemer: new RedemptionClient({ applianceUrl: appliance.url, audience: AUDIENCE }),
  });
});

describe('a good grant', () => {
  it('is accepted, with its claims', async () => {
    const claims = good();
    const grant = await verifier.verify(appliance.mint(claims), request());
    expect(grant.grantId).toBe(claims.jti);
    expect(grant.runtimeId).toBe('rt_agent7');
    expect(grant.kid).toBe(appliance.kid);
    expect(grant.claims.act).toEqual(claims.act);
    expect(grant.possessionProven).toBe(false);
    expect(grant.redeemed).toBe(false);
  });

  it('also verifies with plain jose jwtVerify against the JWKS (cross-check)', async () => {
    const jws = appliance.mint(good());
    await verifier.verify(jws, request());
    const jwks = createRemoteJWKSet(new URL(appliance.jwksUrl));
    const { payload, protectedHeader } = await jwtVerify(jws, jwks, {
      issuer: ISSUER,
      audience: AUDIENCE,
      typ: 'grant+jwt',
      algorithms: ['ES256'],
      currentDate: new Date(NOW_MS),
    });
    expect(protectedHeader.kid).toBe(appliance.kid);
    expect(payload.sub).toBe('rt_agent7');
  });

  it('accepts an expected parametersDigest instead of parameters', async () => {
    const claims = good();
    const digest = (claims.act as { parametersDigest: string }).parametersDigest;
    await expect(
      verifier.verify(appliance.mint(claims), {
        execution: {
          action: EXECUTION.action,
          resource: EXECUTION.resource,
          parametersDigest: digest,
        },
      }),
    ).resolves.toMatchObject({ grantId: claims.jti });
  });

  it('is accepted within the clock skew on both sides', async () => {
    expect(
      await rejection(appliance.mint(good({ iat: NOW - 100, nbf: NOW - 100, exp: NOW - 29 }))),
    ).toBe('accepted');
    expect(
      await rejection(appliance.mint(good({ nbf: NOW + 29, iat: NOW + 29, exp: NOW + 90 }))),
    ).toBe('accepted');
  });

  it('the free function takes the same options', async () => {
    const grant = await verifyGrant(appliance.mint(good()), {
      issuer: ISSUER,
      audience: AUDIENCE,
      keys,
      now: () => NOW_MS,
      execution: EXECUTION,
    });
    expect(grant.runtimeId).toBe('rt_agent7');
  });
});

describe('algorithm', () => {
  it('refuses alg none (unsigned)', async () => {
    const jws = appliance.mint(good(), {
      header: { alg: 'none', typ: 'grant+jwt', kid: appliance.kid },
      signature: 'none',
    });
    expect(await rejection(jws)).toBe('grant_alg_invalid');
  });

  it.each(['NONE', 'None', ''])('refuses alg %j', async (alg) => {
    const jws = appliance.mint(good(), {
      header: { alg, typ: 'grant+jwt', kid: appliance.kid },
      signature: 'none',
    });
    expect(await rejection(jws)).toBe('grant_alg_invalid');
  });

  it('refuses HS256 keyed with the public key bytes (PEM, JWK, raw point)', async () => {
    const header = { alg: 'HS256', typ: 'grant+jwt', kid: appliance.kid };
    const secrets = [
      appliance.signing.publicKey.export({ format: 'pem', type: 'spki' }),
      JSON.stringify(appliance.jwks().keys[0]),
      appliance.signing.publicKey.export({ format: 'der', type: 'spki' }),
    ];
    for (const secret of secrets) {
      const jws = appliance.mint(good(), { header, signature: (input) => hs256(secret, input) });
      expect(await rejection(jws)).toBe('grant_alg_invalid');
    }
  });

  it.each(['ES384', 'ES512', 'RS256', 'PS256', 'EdDSA', 'es256'])('refuses alg %s', async (alg) => {
    const jws = appliance.mint(good(), { header: { alg, typ: 'grant+jwt', kid: appliance.kid } });
    expect(await rejection(jws)).toBe('grant_alg_invalid');
  });

  it('refuses a kid whose JWKS key is not pinned to ES256', async () => {
    appliance.extraJwks = [
      { ...attacker.jwk, kid: 'k-es384', alg: 'ES384', use: 'sig' },
      { ...attacker.jwk, kid: 'k-noalg', use: 'sig' },
      { ...attacker.jwk, kid: 'k-enc', alg: 'ES256', use: 'enc' },
    ];
    for (const kid of ['k-es384', 'k-noalg', 'k-enc']) {
      const jws = appliance.mint(good(), {
        header: { alg: 'ES256', typ: 'grant+jwt', kid },
        signer: attacker.privateKey,
      });
      expect(await rejection(jws)).toBe('grant_alg_invalid');
    }
  });
});

describe('header', () => {
  it.each(['JWT', 'at+jwt', 'application/grant+jwt', 'GRANT+JWT'])(
    'refuses typ %s',
    async (typ) => {
      const jws = appliance.mint(good(), { header: { alg: 'ES256', typ, kid: appliance.kid } });
      expect(await rejection(jws)).toBe('grant_typ_invalid');
    },
  );

  it('refuses a missing typ', async () => {
    const jws = appliance.mint(good(), { header: { alg: 'ES256', kid: appliance.kid } });
    expect(await rejection(jws)).toBe('grant_typ_invalid');
  });

  it('refuses an embedded jwk (the attacker signs with their own key)', async () => {
    const jws = appliance.mint(good(), {
      header: { alg: 'ES256', typ: 'grant+jwt', kid: attacker.thumbprint, jwk: attacker.jwk },
      signer: attacker.privateKey,
    });
    expect(await rejection(jws)).toBe('grant_header_forbidden');
  });

  it.each([
    ['jku', { jku: 'https://attacker.example/jwks.json' }],
    ['x5u', { x5u: 'https://attacker.example/cert.pem' }],
    ['x5c', { x5c: ['MIIB'] }],
    ['x5t', { x5t: 'abc' }],
    ['crit', { crit: ['exp'], exp: 1 }],
    ['crit (empty)', { crit: [] }],
    ['b64', { b64: false, crit: ['b64'] }],
    ['an unknown member', { foo: 'bar' }],
  ])('refuses %s', async (_name, extra) => {
    const jws = appliance.mint(good(), {
      header: { alg: 'ES256', typ: 'grant+jwt', kid: appliance.kid, ...extra },
    });
    expect(await rejection(jws)).toBe('grant_header_forbidden');
  });

  it('refuses an unknown kid, refreshing the JWKS at most once per interval', async () => {
    const before = appliance.jwksFetches;
    await verifier.verify(appliance.mint(good()), request());
    for (let i = 0; i < 5; i++) {
      const jws = appliance.mint(good(), {
        header: { alg: 'ES256', typ: 'grant+jwt', kid: `unknown-${i}` },
        signer: attacker.privateKey,
      });
      expect(await rejection(jws)).toBe('grant_kid_unknown');
    }
    // One initial fetch; the unknown kids within the interval cause no further fetch.
    expect(appliance.jwksFetches - before).toBe(1);
    jwksNow += 31_000;
    const jws = appliance.mint(good(), {
      header: { alg: 'ES256', typ: 'grant+jwt', kid: 'unknown-late' },
    });
    expect(await rejection(jws)).toBe('grant_kid_unknown');
    expect(appliance.jwksFetches - before).toBe(2);
  });

  it('finds a key added after the first fetch (rotation) via refresh on unknown kid', async () => {
    await verifier.verify(appliance.mint(good()), request());
    appliance.extraJwks = [{ ...attacker.jwk, kid: 'rotated', alg: 'ES256', use: 'sig' }];
    jwksNow += 31_000;
    const jws = appliance.mint(good(), {
      header: { alg: 'ES256', typ: 'grant+jwt', kid: 'rotated' },
      signer: attacker.privateKey,
    });
    expect(await rejection(jws)).toBe('accepted');
  });

  it.each([
    ['path traversal', '../../../../dev/null'],
    ['SQL', "x' OR '1'='1"],
    ['a NUL byte', 'kid\u0000'],
    ['a URL', 'https://attacker.example/key'],
    ['an empty kid', ''],
    ['an overlong kid', 'k'.repeat(129)],
  ])('refuses an injected kid (%s) without fetching', async (_name, kid) => {
    const before = appliance.jwksFetches;
    const jws = appliance.mint(good(), { header: { alg: 'ES256', typ: 'grant+jwt', kid } });
    expect(await rejection(jws)).toBe('grant_kid_unknown');
    expect(appliance.jwksFetches).toBe(before);
  });

  it('refuses a non-string or missing kid', async () => {
    for (const header of [
      { alg: 'ES256', typ: 'grant+jwt' },
      { alg: 'ES256', typ: 'grant+jwt', kid: 7 },
    ]) {
      expect(await rejection(appliance.mint(good(), { header }))).toBe('grant_kid_unknown');
    }
  });

  it('refuses a header with a duplicate member', async () => {
    const headerText = `{"alg":"none","alg":"ES256","typ":"grant+jwt","kid":"${appliance.kid}"}`;
    expect(await rejection(appliance.mint(good(), { headerText }))).toBe('grant_malformed');
  });
});

describe('signature', () => {
  it('refuses the high-S twin of a valid signature', async () => {
    expect(await rejection(appliance.mint(good(), { signature: 'high' }))).toBe(
      'grant_signature_invalid',
    );
  });

  it('refuses a zero signature (r = s = 0)', async () => {
    expect(await rejection(appliance.mint(good(), { signature: 'zero' }))).toBe(
      'grant_signature_invalid',
    );
  });

  it('refuses r or s out of range', async () => {
    const n = Buffer.from(
      'ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551',
      'hex',
    );
    const rIsN = () => Buffer.concat([n, Buffer.alloc(31), Buffer.from([1])]);
    const sIsZero = (input: string) =>
      Buffer.concat([es256(appliance.signing.privateKey, input).subarray(0, 32), Buffer.alloc(32)]);
    expect(await rejection(appliance.mint(good(), { signature: rIsN }))).toBe(
      'grant_signature_invalid',
    );
    expect(await rejection(appliance.mint(good(), { signature: sIsZero }))).toBe(
      'grant_signature_invalid',
    );
  });

  it('refuses a DER-encoded or truncated signature', async () => {
    const short = (input: string) => es256(appliance.signing.privateKey, input).subarray(0, 63);
    expect(await rejection(appliance.mint(good(), { signature: short }))).toBe(
      'grant_signature_invalid',
    );
  });

  it('refuses a grant signed by another key under the appliance kid', async () => {
    expect(await rejection(appliance.mint(good(), { signer: attacker.privateKey }))).toBe(
      'grant_signature_invalid',
    );
  });

  it('refuses a payload changed after signing', async () => {
    const [h, , s] = appliance.mint(good()).split('.');
    const forged = b64url(
      JSON.stringify(good({ act: { ...EXECUTION, parametersDigest: '0'.repeat(64) } })),
    );
    expect(await rejection(`${h}.${forged}.${s}`)).toBe('grant_signature_invalid');
  });
});

describe('claims', () => {
  it('refuses a payload with a duplicate member, even correctly signed', async () => {
    const claims = good();
    const body = JSON.stringify(claims).slice(1);
    const payloadText = `{"aud":"gw_other",${body}`;
    const jws = appliance.mint(claims, { payloadText });
    // A plain JSON.parse reader sees the last "aud" and would accept it.
    expect(decodeJwt(jws).aud).toBe(AUDIENCE);
    expect(await rejection(jws)).toBe('grant_malformed');
  });

  it('refuses a duplicate member hidden by an escape', async () => {
    const claims = good();
    const payloadText = `{"\\u0061ct":{"action":"tickets.read","resource":"x","parametersDigest":"${'0'.repeat(64)}"},${JSON.stringify(claims).slice(1)}`;
    expect(await rejection(appliance.mint(claims, { payloadText }))).toBe('grant_malformed');
  });

  it('refuses an expired grant', async () => {
    expect(
      await rejection(appliance.mint(good({ iat: NOW - 200, nbf: NOW - 200, exp: NOW - 31 }))),
    ).toBe('grant_expired');
  });

  it('refuses a grant not valid yet', async () => {
    expect(await rejection(appliance.mint(good({ nbf: NOW + 31, exp: NOW + 120 })))).toBe(
      'grant_not_yet_valid',
    );
  });

  it('refuses a grant issued in the future', async () => {
    expect(await rejection(appliance.mint(good({ iat: NOW + 120, exp: NOW + 180 })))).toBe(
      'grant_not_yet_valid',
    );
  });

  it('refuses a wrong audience', async () => {
    expect(await rejection(appliance.mint(good({ aud: 'gw_tickets' })))).toBe(
      'grant_audience_mismatch',
    );
  });

  it('refuses an audience array (a widened audience)', async () => {
    expect(await rejection(appliance.mint(good({ aud: [AUDIENCE, 'gw_other'] })))).toBe(
      'grant_malformed',
    );
  });

  it('refuses a wrong issuer', async () => {
    expect(await rejection(appliance.mint(good({ iss: 'grantor-other' })))).toBe(
      'grant_issuer_mismatch',
    );
  });

  it('refuses a grant for another action', async () => {
    const jws = appliance.mint(
      good({ act: { ...(good().act as object), action: 'tickets.read' } }),
    );
    expect(await rejection(jws)).toBe('grant_action_mismatch');
  });

  it('refuses a grant for another resource', async () => {
    const jws = appliance.mint(good({ act: { ...(good().act as object), resource: 'acct:9999' } }));
    expect(await rejection(jws)).toBe('grant_resource_mismatch');
  });

  it('refuses a grant for other parameters', async () => {
    const jws = appliance.mint(good());
    const other = { ...EXECUTION, parameters: { ...EXECUTION.parameters, amountCents: 250000 } };
    expect(await rejection(jws, { execution: other })).toBe('grant_parameters_mismatch');
  });

  it('refuses parameters with no canonical JSON form (a lone surrogate) instead of crashing', async () => {
    const jws = appliance.mint(good());
    const odd = { ...EXECUTION, parameters: { ...EXECUTION.parameters, memo: 'x\ud800' } };
    expect(await rejection(jws, { execution: odd })).toBe('grant_parameters_mismatch');
  });

  it.each([
    ['sub', { sub: 42 }],
    ['exp', { exp: '9999999999' }],
    ['nbf', { nbf: undefined }],
    ['jti', { jti: '' }],
    ['act', { act: 'payments.transfer' }],
    ['act.parametersDigest', { act: { ...EXECUTION, parametersDigest: 'ABC' } }],
    ['cnf', { cnf: {} }],
    ['lin', { lin: { parent: null, root: 'gr_1', depth: -1 } }],
    ['pol', { pol: 'not-hex' }],
    ['aud_seq', { aud_seq: 1.5 }],
    ['exp before nbf', { exp: NOW - 1, nbf: NOW, iat: NOW - 2 }],
  ])('refuses a bad %s claim', async (_name, claims) => {
    expect(await rejection(appliance.mint(good(claims)))).toBe('grant_malformed');
  });

  it.each([
    ['not a compact JWS', 'abc.def'],
    ['four segments', 'a.b.c.d'],
    ['bad base64url', '!!!.???.***'],
    ['padding', `${b64url('{"alg":"ES256"}')}=.e30.AA`],
    ['a non-JSON header', `${b64url('nope')}.e30.AA`],
    [
      'a non-object payload',
      `${b64url('{"alg":"ES256","typ":"grant+jwt","kid":"k"}')}.${b64url('[1]')}.AA`,
    ],
  ])('refuses %s', async (_name, jws) => {
    expect(await rejection(jws)).toBe('grant_malformed');
  });

  it('refuses a non-string or overlong token', async () => {
    expect(await rejection(42 as unknown as string)).toBe('grant_malformed');
    expect(await rejection('a'.repeat(20_000))).toBe('grant_malformed');
  });
});

describe('proof of possession', () => {
  const challenge = b64url(Buffer.alloc(32, 7));

  function proofBy(key: EcKey, grantId: string, chal = challenge) {
    const signature = b64url(
      es256(key.privateKey, popSigningInput({ audience: AUDIENCE, grantId, challenge: chal })),
    );
    return { publicKey: key.jwk, signature };
  }

  it('accepts a proof by the cnf key', async () => {
    const claims = good();
    const grant = await verifier.verify(
      appliance.mint(claims),
      request({ pop: { challenge, proof: proofBy(appliance.runtime, claims.jti as string) } }),
    );
    expect(grant.possessionProven).toBe(true);
  });

  it('refuses a proof by another key', async () => {
    const claims = good();
    const pop = { challenge, proof: proofBy(attacker, claims.jti as string) };
    expect(await rejection(appliance.mint(claims), { pop })).toBe('grant_pop_invalid');
  });

  it('refuses the cnf public key with a signature by another key', async () => {
    const claims = good();
    const forged = proofBy(attacker, claims.jti as string);
    const pop = {
      challenge,
      proof: { publicKey: appliance.runtime.jwk, signature: forged.signature },
    };
    expect(await rejection(appliance.mint(claims), { pop })).toBe('grant_pop_invalid');
  });

  it('refuses a proof over another challenge or grant', async () => {
    const claims = good();
    const other = b64url(Buffer.alloc(32, 9));
    expect(
      await rejection(appliance.mint(claims), {
        pop: { challenge, proof: proofBy(appliance.runtime, claims.jti as string, other) },
      }),
    ).toBe('grant_pop_invalid');
    expect(
      await rejection(appliance.mint(claims), {
        pop: { challenge, proof: proofBy(appliance.runtime, 'gr_other') },
      }),
    ).toBe('grant_pop_invalid');
  });

  it('refuses a proof key with private material or of another type', async () => {
    const claims = good();
    const proof = proofBy(appliance.runtime, claims.jti as string);
    const withD = { ...proof, publicKey: { ...proof.publicKey, d: 'AAAA' } };
    const rsa = { ...proof, publicKey: { kty: 'RSA', n: 'AQAB', e: 'AQAB' } };
    expect(await rejection(appliance.mint(claims), { pop: { challenge, proof: withD } })).toBe(
      'grant_pop_invalid',
    );
    expect(await rejection(appliance.mint(claims), { pop: { challenge, proof: rsa } })).toBe(
      'grant_pop_invalid',
    );
  });
});

describe('online redemption', () => {
  it('redeems once; the replay is grant_already_redeemed', async () => {
    const claims = good();
    const jws = appliance.mint(claims);
    const first = await verifier.verify(jws, request({ redeem: true }));
    expect(first.redeemed).toBe(true);
    expect(appliance.redeemed.get(claims.jti as string)).toBe(AUDIENCE);
    expect(await rejection(jws, { redeem: true })).toBe('grant_already_redeemed');
  });

  it('does not redeem a grant that fails an offline check', async () => {
    const claims = good({ aud: 'gw_other' });
    expect(await rejection(appliance.mint(claims), { redeem: true })).toBe(
      'grant_audience_mismatch',
    );
    expect(appliance.redeemed.has(claims.jti as string)).toBe(false);
  });

  it('fails closed when the endpoint fails', async () => {
    appliance.redeemStatus = 503;
    expect(await rejection(appliance.mint(good()), { redeem: true })).toBe(
      'redemption_unavailable',
    );
    appliance.redeemStatus = 404;
    expect(await rejection(appliance.mint(good()), { redeem: 'started' })).toBe(
      'grant_redemption_refused',
    );
  });

  it('fails closed when the endpoint is unreachable', async () => {
    const dead = createGrantVerifier({
      issuer: ISSUER,
      audience: AUDIENCE,
      keys,
      now: () => NOW_MS,
      redeemer: new RedemptionClient({ applianceUrl: 'http://127.0.0.1:9/', audience: AUDIENCE }),
    });
    await expect(
      dead.verify(appliance.mint(good()), request({ redeem: true })),
    ).rejects.toMatchObject({
      code: 'redemption_unavailable',
    });
  });
});

describe('JWKS', () => {
  it('is jwks_unavailable when the endpoint is unreachable', async () => {
    const offline = createGrantVerifier({
      issuer: ISSUER,
      audience: AUDIENCE,
      keys: new JwksClient({ url: 'http://127.0.0.1:9/jwks.json' }),
      now: () => NOW_MS,
    });
    await expect(offline.verify(appliance.mint(good()), request())).rejects.toMatchObject({
      code: 'jwks_unavailable',
    });
  });

  it('is jwks_unavailable when the endpoint answers an error', async () => {
    const broken = createGrantVerifier({
      issuer: ISSUER,
      audience: AUDIENCE,
      keys: new JwksClient({ url: `${appliance.url}/no-such-path` }),
      now: () => NOW_MS,
    });
    await expect(broken.verify(appliance.mint(good()), request())).rejects.toMatchObject({
      code: 'jwks_unavailable',
    });
  });

  it('is cached for max-age: many verifications, one fetch', async () => {
    const before = appliance.jwksFetches;
    for (let i = 0; i < 5; i++) await verifier.verify(appliance.mint(good()), request());
    expect(appliance.jwksFetches - before).toBe(1);
    jwksNow += 301_000;
    await verifier.verify(appliance.mint(good()), request());
    expect(appliance.jwksFetches - before).toBe(2);
  });
});
