import { generateKeyPairSync, sign } from 'node:crypto';
import { calculateJwkThumbprint } from 'jose';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GrantorError } from '../shared/errors.js';
import { parametersDigest } from './digest.js';
import { toLowS } from './encoding.js';
import { staticKeySource } from './jwks.js';
import { PopChallenges, popSigningInput, verifyPop } from './pop.js';
import { createGrantVerifier, verifyGrant } from './verify-grant.js';

const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const { x, y } = publicKey.export({ format: 'jwk' });
const jwk = { kty: 'EC', crv: 'P-256', x, y };
const NOW = 1_800_000_000;
const execution = { action: 'tickets.read', resource: 'ticket:1', parameters: { id: 1 } };

async function setup(resource = 'ticket:1') {
  const kid = await calculateJwkThumbprint({ kty: 'EC', crv: 'P-256', x: x ?? '', y: y ?? '' });
  const keys = await staticKeySource(JSON.stringify({ keys: [{ ...jwk, kid, alg: 'ES256' }] }));
  const claims = {
    iss: 'grantor',
    sub: 'rt_1',
    aud: 'gw',
    iat: NOW,
    nbf: NOW,
    exp: NOW + 60,
    jti: 'gr_1',
    act: {
      action: 'tickets.read',
      resource,
      parametersDigest: parametersDigest({ id: 1 }),
    },
    att: { akName: 'ak', pcrDigest: 'pcr', resetCount: 0, restartCount: 0, attestationId: null },
    cnf: { jkt: kid },
    lin: { parent: null, root: 'gr_1', depth: 0 },
    pol: 'a'.repeat(64),
    aud_seq: 0,
    aud_hash: 'b'.repeat(64),
  };
  const input = `${Buffer.from(JSON.stringify({ alg: 'ES256', typ: 'grant+jwt', kid })).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  const sig = toLowS(
    sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' }),
  );
  return { keys, kid, jws: `${input}.${Buffer.from(sig).toString('base64url')}` };
}

const base = { issuer: 'grantor', audience: 'gw', now: () => NOW * 1000 };

describe('verifyGrant configuration', () => {
  it('verifies a grant with a static key source', async () => {
    const { keys, jws } = await setup();
    await expect(verifyGrant(jws, { ...base, keys, execution })).resolves.toMatchObject({
      grantId: 'gr_1',
    });
  });

  it.each([-1, 301, Number.NaN])(
    'refuses a clock tolerance of %s',
    async (clockToleranceSeconds) => {
      const { keys } = await setup();
      expect(() => createGrantVerifier({ ...base, keys, clockToleranceSeconds })).toThrow(
        expect.objectContaining({ code: 'config_invalid' }),
      );
    },
  );

  it('refuses an empty issuer or audience', async () => {
    const { keys } = await setup();
    expect(() => createGrantVerifier({ ...base, keys, issuer: '' })).toThrow(
      expect.objectContaining({ code: 'config_invalid' }),
    );
    expect(() => createGrantVerifier({ ...base, keys, audience: '' })).toThrow(
      expect.objectContaining({ code: 'config_invalid' }),
    );
  });

  it('refuses to redeem without a redeemer', async () => {
    const { keys, jws } = await setup();
    await expect(
      verifyGrant(jws, { ...base, keys, execution, redeem: true }),
    ).rejects.toMatchObject({
      code: 'config_invalid',
    });
  });

  it('computes the digest before verification starts (later mutation does not count)', async () => {
    const { keys, jws } = await setup();
    const parameters = { id: 1 };
    const pending = verifyGrant(jws, { ...base, keys, execution: { ...execution, parameters } });
    parameters.id = 2;
    await expect(pending).resolves.toMatchObject({ grantId: 'gr_1' });
  });
});

describe('verifyPop', () => {
  const challenge = Buffer.alloc(32, 1).toString('base64url');
  const input = { audience: 'gw', grantId: 'gr_1', challenge };
  const signature = () =>
    sign('sha256', popSigningInput(input), { key: privateKey, dsaEncoding: 'ieee-p1363' }).toString(
      'base64url',
    );

  it('accepts a proof by the bound key', async () => {
    const { kid } = await setup();
    await expect(
      verifyPop(kid, input, { publicKey: jwk, signature: signature() }),
    ).resolves.toBeUndefined();
  });

  it.each([
    ['a short challenge', { ...input, challenge: 'AAAA' }],
    ['a non-base64url challenge', { ...input, challenge: '*'.repeat(43) }],
  ])('refuses %s', async (_name, bad) => {
    const { kid } = await setup();
    await expect(
      verifyPop(kid, bad, { publicKey: jwk, signature: signature() }),
    ).rejects.toMatchObject({
      code: 'grant_pop_invalid',
    });
  });

  it('refuses a signature that is not 64 bytes, or a key off the curve', async () => {
    const { kid } = await setup();
    await expect(
      verifyPop(kid, input, { publicKey: jwk, signature: 'AAAA' }),
    ).rejects.toMatchObject({
      code: 'grant_pop_invalid',
    });
    await expect(
      verifyPop(kid, input, { publicKey: { ...jwk, x: y }, signature: signature() }),
    ).rejects.toMatchObject({ code: 'grant_pop_invalid' });
  });

  it('challenges are single use and expire', () => {
    let now = 0;
    const challenges = new PopChallenges({ ttlMs: 1000, now: () => now });
    const a = challenges.issue();
    const b = challenges.issue();
    expect(challenges.consume(a)).toBe(true);
    expect(challenges.consume(a)).toBe(false);
    now = 1000;
    expect(challenges.consume(b)).toBe(false);
    expect(challenges.consume('never-issued')).toBe(false);
  });

  it('a flood stays bounded per client and in all; expired challenges make room again', () => {
    let now = 0;
    const challenges = new PopChallenges({
      ttlMs: 1000,
      maxPerClient: 4,
      maxOutstanding: 100,
      now: () => now,
    });
    // One client flooding: only its 4 newest challenges are kept, the oldest dropped.
    const mine = Array.from({ length: 10_000 }, () => challenges.issue('10.0.0.1'));
    expect(challenges.size).toBe(4);
    expect(challenges.consume(mine[0] ?? '', '10.0.0.1')).toBe(false);
    expect(challenges.consume(mine[9_999] ?? '', '10.0.0.1')).toBe(true);
    // Many clients flooding: never more than maxOutstanding, then a coded refusal.
    let refused = 0;
    for (let i = 0; i < 10_000; i += 1) {
      try {
        challenges.issue(`client-${i}`);
      } catch (e) {
        expect(e).toMatchObject({ code: 'pop_challenges_exhausted' });
        refused += 1;
      }
      expect(challenges.size).toBeLessThanOrEqual(100);
    }
    expect(refused).toBeGreaterThan(9_000);
    // Once they expire, room is made without scanning on every call.
    now = 1000;
    const fresh = challenges.issue('10.0.0.2');
    expect(challenges.size).toBeLessThanOrEqual(100);
    expect(challenges.consume(fresh, '10.0.0.2')).toBe(true);
  });

  it('a challenge is accepted only from the client it was issued to', () => {
    const challenges = new PopChallenges();
    const c = challenges.issue('10.0.0.1');
    expect(challenges.consume(c, '10.0.0.9')).toBe(false);
    // Still its own client's: a bystander cannot burn it.
    expect(challenges.consume(c, '10.0.0.1')).toBe(true);
    expect(() => new PopChallenges({ maxPerClient: 0 })).toThrow(RangeError);
  });
});

describe('text is compared as well-formed UTF-16 code units', () => {
  it('a grant for ticket:\\uFFFD is not accepted for ticket:\\uD800 (UTF-8 would merge them)', async () => {
    const { keys, jws } = await setup('ticket:\uFFFD');
    await expect(
      verifyGrant(jws, { ...base, keys, execution: { ...execution, resource: 'ticket:\uD800' } }),
    ).rejects.toMatchObject({ code: 'grant_resource_mismatch' });
    await expect(
      verifyGrant(jws, { ...base, keys, execution: { ...execution, resource: 'ticket:\uFFFD' } }),
    ).resolves.toMatchObject({ grantId: 'gr_1' });
  });

  it('a lone surrogate never matches, not even itself; a surrogate pair does', async () => {
    const lone = await setup('ticket:\uDC00');
    // A claim can carry one through a JSON escape (\\udc00): even the same text is refused.
    await expect(
      verifyGrant(lone.jws, {
        ...base,
        keys: lone.keys,
        execution: { ...execution, resource: 'ticket:\uDC00' },
      }),
    ).rejects.toMatchObject({ code: 'grant_resource_mismatch' });
    const { keys, jws } = await setup('ticket:\u{1F600}');
    await expect(
      verifyGrant(jws, {
        ...base,
        keys,
        execution: { ...execution, action: 'tickets.read\uD800', resource: 'ticket:\u{1F600}' },
      }),
    ).rejects.toMatchObject({ code: 'grant_action_mismatch' });
    await expect(
      verifyGrant(jws, {
        ...base,
        keys,
        execution: { ...execution, resource: 'ticket:\u{1F600}' },
      }),
    ).resolves.toMatchObject({ grantId: 'gr_1' });
  });

  it('refuses an issuer or audience that is not well-formed: config_invalid', async () => {
    const { keys } = await setup();
    expect(() => createGrantVerifier({ ...base, keys, audience: 'gw\uD800' })).toThrow(
      expect.objectContaining({ code: 'config_invalid' }),
    );
  });
});

describe('arbitrary input', () => {
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

  it('any string is refused with one of our errors, never a crash', async () => {
    const { keys } = await setup();
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 300 }), async (text) => {
        const error: unknown = await verifyGrant(text, { ...base, keys, execution }).catch(
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(GrantorError);
      }),
      { numRuns: 300 },
    );
  });

  it('any header and claims (unsigned or mis-signed) are refused with one of our errors', async () => {
    const { keys, kid } = await setup();
    const header = fc.oneof(
      fc.constant({ alg: 'ES256', typ: 'grant+jwt', kid }),
      fc.record({
        alg: fc.constantFrom('ES256', 'none', 'HS256'),
        typ: fc.string(),
        kid: fc.oneof(fc.constant(kid), fc.string()),
      }),
      fc.jsonValue(),
    );
    const signature = fc.uint8Array({ minLength: 0, maxLength: 70 });
    await fc.assert(
      fc.asyncProperty(header, fc.jsonValue(), signature, async (h, claims, sig) => {
        const jws = `${b64(h)}.${b64(claims)}.${Buffer.from(sig).toString('base64url')}`;
        const error: unknown = await verifyGrant(jws, { ...base, keys, execution }).catch(
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(GrantorError);
      }),
      { numRuns: 300 },
    );
  });
});
