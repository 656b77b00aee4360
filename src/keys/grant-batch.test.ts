/**
 * Batch mode of the KeyService (grant-batch.ts, KeyService#signBatch) on the fake signer:
 * batches close on size, on deadline, or at the end of the turn while the key is idle, one
 * signature each, a fault fails the whole batch
 * typed, a rotation in the middle of batching leaves every grant verifiable with one kid per
 * batch and the retiring key published for the grants it signed, and close fails what waits.
 */
import type { GrantClaims } from '../shared/grant-claims.js';
import { describe, expect, it } from 'vitest';
import { decodeBatchProof } from '../gateway/batch.js';
import { decodeBase64url } from '../gateway/encoding.js';
import { staticKeySource } from '../gateway/jwks.js';
import { verifyGrant } from '../gateway/verify-grant.js';
import { GrantBatcher } from './grant-batch.js';
import { fakeKeys, type FakeKeys, activeGrantKid, testGrantClaims } from './testing.js';

const claims = (f: FakeKeys, jti: string, ttl = 60): GrantClaims =>
  testGrantClaims(f, jti, {}, ttl);

const kidOf = (token: string): string =>
  String(
    (
      JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString('utf8')) as {
        kid?: unknown;
      }
    ).kid,
  );
const sizeOf = (token: string): number =>
  decodeBatchProof(decodeBase64url(token.split('.')[2] ?? '') ?? Buffer.alloc(0)).size;

function countSigns(f: FakeKeys): { n: number } {
  const count = { n: 0 };
  const sign = f.signer.sign.bind(f.signer);
  f.signer.sign = (id, data) => {
    count.n += 1;
    return sign(id, data);
  };
  return count;
}

describe('batch-signed grants in the key service', () => {
  it('closes a batch that does not fill (at the end of the turn, the key being idle)', async () => {
    const f = await fakeKeys({ grantBatch: { maxSize: 64, maxWaitMs: 5 } });
    const signs = countSigns(f);
    const [a, b] = await Promise.all([
      f.keys.signGrantToken({ typ: 'grant+jwt' }, claims(f, 'g1')),
      f.keys.signGrantToken({ typ: 'grant+jwt' }, claims(f, 'g2')),
    ]);
    expect(signs.n).toBe(1);
    expect(sizeOf(a.token)).toBe(2);
    expect(sizeOf(b.token)).toBe(2);
    const alone = await f.keys.signGrantToken({ typ: 'grant+jwt' }, claims(f, 'g3'));
    expect(sizeOf(alone.token)).toBe(1);
    expect(signs.n).toBe(2);
  });

  it('does not wait for the deadline while the key is idle: the turn that opened the batch closes it', async () => {
    // A deadline no test outlives: a batch that waited for it would lose the race below.
    const f = await fakeKeys({ grantBatch: { maxSize: 64, maxWaitMs: 600_000 } });
    const signs = countSigns(f);
    const turns = async (n: number): Promise<'turns'> => {
      for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
      return 'turns';
    };
    const issue = (jti: string) => f.keys.signGrantToken({ typ: 'grant+jwt' }, claims(f, jti));
    const both = Promise.all([issue('g1'), issue('g2')]);
    const first = await Promise.race([both, turns(50)]);
    if (first === 'turns') throw new Error('the batch waited for its deadline on an idle key');
    // The grants of one turn share the batch: one signature for both.
    expect(signs.n).toBe(1);
    for (const o of first) expect(sizeOf(o.token)).toBe(2);
  });

  it('lets batches grow while the key is busy: a due batch waits for a signature to finish', async () => {
    const f = await fakeKeys({ grantBatch: { maxSize: 64, maxWaitMs: 1 } });
    const release: (() => void)[] = [];
    const sign = f.signer.sign.bind(f.signer);
    f.signer.sign = async (id, data) => {
      await new Promise<void>((r) => release.push(r));
      return sign(id, data);
    };
    const tick = () => new Promise((r) => setTimeout(r, 10));
    const issue = (i: number) => f.keys.signGrantToken({}, claims(f, `g${String(i)}`));
    const first = issue(1);
    await tick();
    const second = issue(2);
    await tick();
    // Two batches are being signed: the next ones wait past their deadline, and grow.
    const rest = [3, 4, 5, 6, 7].map(issue);
    await tick();
    expect(release.length).toBe(2);
    release.shift()?.();
    expect(sizeOf((await first).token)).toBe(1);
    await tick();
    expect(release.length).toBe(2);
    for (const r of release.splice(0)) r();
    expect(sizeOf((await second).token)).toBe(1);
    for (const r of await Promise.all(rest)) expect(sizeOf(r.token)).toBe(5);
  });

  it('keeps the JWS form when batching is off', async () => {
    const f = await fakeKeys();
    const out = await f.keys.signGrantToken({ typ: 'grant+jwt' }, claims(f, 'g1'));
    expect(out.batched).toBe(false);
    expect(JSON.parse(Buffer.from(out.token.split('.')[0] ?? '', 'base64url').toString())).toEqual({
      alg: 'ES256',
      kid: activeGrantKid(f.keys),
      typ: 'grant+jwt',
    });
  });

  it('refuses what signJws refuses, before the grant joins a batch', async () => {
    const f = await fakeKeys({ grantBatch: { maxSize: 4, maxWaitMs: 1 } });
    await expect(f.keys.signGrantToken({ alg: 'none' }, claims(f, 'g1'))).rejects.toMatchObject({
      code: 'bad_request',
    });
    await expect(f.keys.signGrantToken({}, claims(f, 'g1', 301))).rejects.toMatchObject({
      code: 'bad_request',
    });
    await expect(f.keys.signGrantToken({}, { exp: 1.5 })).rejects.toMatchObject({
      code: 'bad_request',
    });
  });

  it('fails every grant of a batch typed when the HSM fails its one signature', async () => {
    const f = await fakeKeys({ grantBatch: { maxSize: 4, maxWaitMs: 1 } });
    f.signer.failSigns = true;
    const out = await Promise.allSettled(
      [1, 2, 3].map((i) => f.keys.signGrantToken({}, claims(f, `g${String(i)}`))),
    );
    for (const o of out) {
      expect(o.status).toBe('rejected');
      if (o.status === 'rejected') expect(o.reason).toMatchObject({ code: 'hsm_unavailable' });
    }
  });

  it('rotation in the middle of batching: one kid per batch, every grant verifies, the old key stays published', async () => {
    const f = await fakeKeys({ grantBatch: { maxSize: 3, maxWaitMs: 2 } });
    const old = activeGrantKid(f.keys);
    const issue = (i: number, ttl: number) =>
      f.keys.signGrantToken({ typ: 'grant+jwt' }, claims(f, `g${String(i)}`, ttl));
    const before = Array.from({ length: 7 }, (_, i) => issue(i, 250));
    const rotation = f.keys.rotate('grant');
    const during = Array.from({ length: 7 }, (_, i) => issue(10 + i, 30));
    const { active, previous } = await rotation;
    const after = await Promise.all(Array.from({ length: 4 }, (_, i) => issue(20 + i, 30)));
    const tokens = [...(await Promise.all([...before, ...during])), ...after].map((o) => o.token);

    const keys = await staticKeySource(JSON.stringify(f.keys.jwks()));
    const byRoot = new Map<string, Set<string>>();
    for (const token of tokens) {
      const v = await verifyGrant(token, {
        issuer: 'grantor',
        audience: 'gw',
        keys,
        now: () => f.now(),
        execution: { action: 'a', resource: 'r', parametersDigest: 'c'.repeat(64) },
      });
      expect([old, active.kid]).toContain(v.kid);
      const root = Buffer.from(
        decodeBatchProof(decodeBase64url(token.split('.')[2] ?? '') ?? Buffer.alloc(0)).root,
      ).toString('hex');
      byRoot.set(root, (byRoot.get(root) ?? new Set()).add(kidOf(token)));
    }
    for (const kids of byRoot.values()) expect(kids.size).toBe(1);
    // Both keys signed batches: the rotation happened while grants were being batched.
    expect(new Set(tokens.map(kidOf))).toEqual(new Set([old, active.kid]));
    for (const o of after) expect(kidOf(o.token)).toBe(active.kid);
    // The old key signed grants up to 250 s: it stays published (retiring) until then.
    expect(previous?.kid).toBe(old);
    expect(previous?.maxExp).toBeGreaterThanOrEqual(Math.floor(f.now() / 1000) + 250);
    f.advance(249);
    expect((await f.keys.maintain()).retired).toEqual([]);
    f.advance(2);
    expect((await f.keys.maintain()).retired).toEqual([old]);
  });

  it('fails the open batch when the service closes, and refuses new grants after', async () => {
    const f = await fakeKeys({ grantBatch: { maxSize: 64, maxWaitMs: 1000 } });
    const waiting = f.keys.signGrantToken({}, claims(f, 'g1'));
    await f.keys.close();
    await expect(waiting).rejects.toMatchObject({ code: 'hsm_unavailable' });
    await expect(f.keys.signGrantToken({}, claims(f, 'g2'))).rejects.toMatchObject({
      code: 'hsm_unavailable',
    });
  });

  it('refuses batch bounds outside its range', () => {
    const sign = () => Promise.resolve();
    expect(() => new GrantBatcher({ maxSize: 1, maxWaitMs: 1 }, sign)).toThrow(RangeError);
    expect(() => new GrantBatcher({ maxSize: 4097, maxWaitMs: 1 }, sign)).toThrow(RangeError);
    expect(() => new GrantBatcher({ maxSize: 4, maxWaitMs: -1 }, sign)).toThrow(RangeError);
  });
});
