/**
 * The gateway SDK on batch-signed grants made by the real KeyService (fake signer): every
 * grant of a batch verifies offline from the JWKS alone, and each forgery is refused with its
 * own code: a wrong path, another batch's signature, a position out of range, a root signed
 * by a retired key or by another appliance, changed claims, a relabelled alg.
 */
import type { GrantClaims } from '../shared/grant-claims.js';
import { describe, expect, it } from 'vitest';
import { fakeKeys, type FakeKeys, activeGrantKid, testGrantClaims } from '../keys/testing.js';
import { BATCH_ALG, decodeBatchProof, encodeBatchProof, type BatchProof } from './batch.js';
import { parametersDigest } from './digest.js';
import { decodeBase64url } from './encoding.js';
import { staticKeySource } from './jwks.js';
import { verifyGrant, type VerifiedGrant } from './verify-grant.js';

const execution = { action: 'tickets.read', resource: 'ticket:1', parameters: { id: 1 } };

function claims(f: FakeKeys, jti: string, iss = 'grantor'): GrantClaims {
  const act = {
    action: 'tickets.read',
    resource: 'ticket:1',
    parametersDigest: parametersDigest({ id: 1 }),
  };
  return testGrantClaims(f, jti, { iss, act });
}

async function batchKeys(): Promise<FakeKeys> {
  return fakeKeys({ grantBatch: { maxSize: 4, maxWaitMs: 1 } });
}

/** `n` grants issued together: they share batches of at most 4. */
async function issue(f: FakeKeys, n: number, prefix = 'gr', iss = 'grantor'): Promise<string[]> {
  const out = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      f.keys.signGrantToken({ typ: 'grant+jwt' }, claims(f, `${prefix}_${String(i)}`, iss)),
    ),
  );
  for (const o of out) expect(o.batched).toBe(true);
  return out.map((o) => o.token);
}

async function verify(token: string, f: FakeKeys, jwks = f.keys.jwks()): Promise<VerifiedGrant> {
  return verifyGrant(token, {
    issuer: 'grantor',
    audience: 'gw',
    keys: await staticKeySource(JSON.stringify(jwks)),
    now: () => f.now(),
    execution,
  });
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

const proofOf = (token: string): BatchProof =>
  decodeBatchProof(decodeBase64url(token.split('.')[2] ?? '') ?? Buffer.alloc(0));

function withProof(token: string, change: (p: BatchProof) => BatchProof): string {
  const [h = '', c = ''] = token.split('.');
  return `${h}.${c}.${encodeBatchProof(change(proofOf(token))).toString('base64url')}`;
}

describe('batch-signed grants in the gateway SDK', () => {
  it('verifies every grant of a batch offline from the JWKS, one signature per batch', async () => {
    const f = await batchKeys();
    let signs = 0;
    const sign = f.signer.sign.bind(f.signer);
    f.signer.sign = (id, data) => {
      signs += 1;
      return sign(id, data);
    };
    const tokens = await issue(f, 10);
    expect(signs).toBe(3); // 4 + 4 + 2
    const header = JSON.parse(
      Buffer.from(tokens[0]?.split('.')[0] ?? '', 'base64url').toString('utf8'),
    ) as Record<string, unknown>;
    expect(header).toEqual({ alg: BATCH_ALG, kid: activeGrantKid(f.keys), typ: 'grant+jwt' });
    const seen: string[] = [];
    for (const token of tokens) {
      const v = await verify(token, f);
      expect(v.form).not.toBe('jws');
      if (v.form !== 'jws') seen.push(`${v.form.batch.index}/${v.form.batch.size}`);
      expect(v.kid).toBe(activeGrantKid(f.keys));
    }
    expect(seen).toEqual(['0/4', '1/4', '2/4', '3/4', '0/4', '1/4', '2/4', '3/4', '0/2', '1/2']);
  });

  it('refuses a wrong path (grant_batch_path_invalid)', async () => {
    const f = await batchKeys();
    const [token = ''] = await issue(f, 4);
    const bad = withProof(token, (p) => ({
      ...p,
      path: p.path.map((h, i) => (i === 0 ? Buffer.alloc(32, 9) : h)),
    }));
    expect(await codeOf(verify(bad, f))).toBe('grant_batch_path_invalid');
    // Another grant's path (a valid path, for another leaf) leads nowhere from this one.
    const [, second = ''] = await issue(f, 4, 'gx');
    const swapped = withProof(token, (p) => ({ ...p, path: proofOf(second).path }));
    expect(await codeOf(verify(swapped, f))).toBe('grant_batch_path_invalid');
  });

  it("refuses another batch's signature (grant_signature_invalid) and another batch's root", async () => {
    const f = await batchKeys();
    const [a = ''] = await issue(f, 4, 'ga');
    const [b = ''] = await issue(f, 4, 'gb');
    const other = proofOf(b);
    const signatureOnly = withProof(a, (p) => ({ ...p, signature: other.signature }));
    expect(await codeOf(verify(signatureOnly, f))).toBe('grant_signature_invalid');
    // With that batch's root too, this grant's path no longer leads to the root it carries.
    const rootToo = withProof(a, (p) => ({ ...p, root: other.root, signature: other.signature }));
    expect(await codeOf(verify(rootToo, f))).toBe('grant_batch_path_invalid');
  });

  it('refuses a position out of range (grant_batch_position_invalid) or moved', async () => {
    const f = await batchKeys();
    const [token = ''] = await issue(f, 4);
    expect(
      await codeOf(
        verify(
          withProof(token, (p) => ({ ...p, index: 4 })),
          f,
        ),
      ),
    ).toBe('grant_batch_position_invalid');
    expect(
      await codeOf(
        verify(
          withProof(token, (p) => ({ ...p, index: 1 })),
          f,
        ),
      ),
    ).toBe('grant_batch_path_invalid');
    // A larger size makes a path of the wrong length for that position.
    expect(
      await codeOf(
        verify(
          withProof(token, (p) => ({ ...p, size: 5 })),
          f,
        ),
      ),
    ).toBe('grant_batch_path_invalid');
  });

  it('refuses a root signed by a retired key (grant_kid_unknown)', async () => {
    const f = await batchKeys();
    const [token = ''] = await issue(f, 4);
    await expect(verify(token, f)).resolves.toBeDefined();
    const old = activeGrantKid(f.keys);
    await f.keys.rotate('grant');
    // Still published while its grants may live; once retired, its roots verify no more.
    await expect(verify(token, f)).resolves.toMatchObject({ kid: old });
    f.advance(61);
    expect((await f.keys.maintain()).retired).toEqual([old]);
    expect(await codeOf(verify(token, { ...f, now: () => f.now() - 61_000 }))).toBe(
      'grant_kid_unknown',
    );
  });

  it('refuses a root signed by another appliance (grant_kid_unknown, or grant_issuer_mismatch)', async () => {
    const f = await batchKeys();
    const other = await batchKeys();
    const [foreign = ''] = await issue(other, 2, 'go', 'grantor-2');
    expect(await codeOf(verify(foreign, f))).toBe('grant_kid_unknown');
    // A gateway whose key set also holds the other appliance's key still refuses its grant.
    const both = { keys: [...f.keys.jwks().keys, ...other.keys.jwks().keys] };
    expect(await codeOf(verify(foreign, f, both))).toBe('grant_issuer_mismatch');
    // Our kid on the other appliance's root: the signature is not ours.
    const [h = '', c = '', p = ''] = foreign.split('.');
    const header = { alg: BATCH_ALG, kid: activeGrantKid(f.keys), typ: 'grant+jwt' };
    const relabelled = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${c}.${p}`;
    expect(h).not.toBe(relabelled.split('.')[0]);
    expect(await codeOf(verify(relabelled, f))).toBe('grant_batch_path_invalid');
  });

  it('refuses changed claims, a relabelled alg, and a JWS signature in place of a proof', async () => {
    const f = await batchKeys();
    const [token = ''] = await issue(f, 4);
    const [h = '', , p = ''] = token.split('.');
    const forged = Buffer.from(JSON.stringify(claims(f, 'gr_forged'))).toString('base64url');
    expect(await codeOf(verify(`${h}.${forged}.${p}`, f))).toBe('grant_batch_path_invalid');
    const header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as Record<
      string,
      unknown
    >;
    const asJws = Buffer.from(JSON.stringify({ ...header, alg: 'ES256' })).toString('base64url');
    expect(await codeOf(verify(`${asJws}.${token.split('.')[1] ?? ''}.${p}`, f))).toBe(
      'grant_signature_invalid',
    );
    const jws = await f.keys.signJws({ typ: 'grant+jwt' }, claims(f, 'gr_jws'));
    const [, jc = '', js = ''] = jws.split('.');
    expect(await codeOf(verify(`${h}.${jc}.${js}`, f))).toBe('grant_malformed');
    // The JWS form still verifies beside the batch form.
    await expect(verify(jws, f)).resolves.toMatchObject({ form: 'jws' });
  });
});
