/**
 * The SDK's revocation view offline: the snapshot test vector (test/fixtures/
 * revocation-snapshot-vector.json, printed in docs/protocol.md §3.1) verifies with the SDK,
 * with plain jose and with openssl; each refusal of a snapshot and of a grant has its code;
 * a property test: arbitrary text is refused with the snapshot's own code, never a crash.
 */
import { execFile } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { compactVerify, createLocalJWKSet } from 'jose';
import { describe, expect, it } from 'vitest';
import { GrantorError } from '../shared/errors.js';
import { staticKeySource } from './jwks.js';
import { RevocationView, verifyRevocationSnapshot } from './revocations.js';

const run = promisify(execFile);
const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const vector = JSON.parse(
  await readFile(join(root, 'test/fixtures/revocation-snapshot-vector.json'), 'utf8'),
) as {
  jwks: { keys: { kid: string; kty: string; crv: string; x: string; y: string }[] };
  issuer: string;
  now: number;
  claims: Record<string, unknown>;
  snapshot: string;
};
const keys = await staticKeySource(JSON.stringify(vector.jwks));
const opts = { issuer: vector.issuer, keys, now: () => vector.now * 1000 };

async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    if (e instanceof GrantorError) return e.code;
    throw e;
  }
  return 'resolved';
}

describe('the revocation snapshot test vector', () => {
  it('verifies with the SDK and gives the claims', async () => {
    const { ttl: _ttl, ...claims } = vector.claims;
    expect(await verifyRevocationSnapshot(vector.snapshot, opts)).toEqual(claims);
  });

  it('verifies with plain jose and with openssl', async () => {
    const { payload } = await compactVerify(
      vector.snapshot,
      createLocalJWKSet(vector.jwks as never),
    );
    expect(JSON.parse(Buffer.from(payload).toString())).toEqual(vector.claims);
    const [h = '', p = '', s = ''] = vector.snapshot.split('.');
    const dir = await mkdtemp(join(tmpdir(), 'grantor-snapshot-'));
    try {
      const sig = Buffer.from(s, 'base64url');
      // r||s to DER for openssl.
      const int = (b: Buffer) => {
        let v = b;
        while (v.length > 1 && v[0] === 0 && (v[1] ?? 0) < 0x80) v = v.subarray(1);
        if ((v[0] ?? 0) >= 0x80) v = Buffer.concat([Buffer.from([0]), v]);
        return Buffer.concat([Buffer.from([0x02, v.length]), v]);
      };
      const body = Buffer.concat([int(sig.subarray(0, 32)), int(sig.subarray(32))]);
      await writeFile(
        join(dir, 'sig.der'),
        Buffer.concat([Buffer.from([0x30, body.length]), body]),
      );
      await writeFile(join(dir, 'input'), `${h}.${p}`);
      const jwk = vector.jwks.keys[0];
      await writeFile(
        join(dir, 'pub.pem'),
        createPublicKey({ key: { ...jwk }, format: 'jwk' }).export({ type: 'spki', format: 'pem' }),
      );
      const out = await run('openssl', [
        'dgst',
        '-sha256',
        '-verify',
        join(dir, 'pub.pem'),
        '-signature',
        join(dir, 'sig.der'),
        join(dir, 'input'),
      ]);
      expect(out.stdout).toContain('Verified OK');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('is printed in docs/protocol.md', async () => {
    const doc = await readFile(join(root, 'docs/protocol.md'), 'utf8');
    expect(doc).toContain(vector.snapshot);
    expect(doc).toContain(vector.jwks.keys[0]?.x ?? 'missing');
  });

  it('refuses a changed payload, another issuer, an expired one, a wrong typ or kid', async () => {
    const [h = '', p = '', s = ''] = vector.snapshot.split('.');
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
    const other = Buffer.from(JSON.stringify({ ...claims, runtimes: [] })).toString('base64url');
    const header = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const kid = vector.jwks.keys[0]?.kid ?? '';
    for (const bad of [
      `${h}.${other}.${s}`,
      `${header({ alg: 'ES256', kid, typ: 'grant+jwt' })}.${p}.${s}`,
      `${header({ alg: 'ES256', kid: 'unknown', typ: 'revocations+jwt' })}.${p}.${s}`,
      `${header({ alg: 'none', kid, typ: 'revocations+jwt' })}.${p}.`,
      `${header({ alg: 'ES256', kid, typ: 'revocations+jwt', jku: 'https://x' })}.${p}.${s}`,
      `${h}.${p}`,
      42,
    ]) {
      expect(await codeOf(verifyRevocationSnapshot(bad, opts))).toBe('revocation_snapshot_invalid');
    }
    expect(await codeOf(verifyRevocationSnapshot(vector.snapshot, { ...opts, issuer: 'x' }))).toBe(
      'revocation_snapshot_invalid',
    );
    expect(
      await codeOf(
        verifyRevocationSnapshot(vector.snapshot, { ...opts, now: () => 1767225300 * 1000 }),
      ),
    ).toBe('revocation_snapshot_invalid');
  });

  it('arbitrary text is refused with revocation_snapshot_invalid, never a crash', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string(),
          fc.tuple(fc.string(), fc.string(), fc.string()).map((t) => t.join('.')),
          fc.base64String().map((b) => `${vector.snapshot.split('.')[0] ?? ''}.${b}.x`),
        ),
        async (text) => {
          expect(await codeOf(verifyRevocationSnapshot(text, opts))).toBe(
            'revocation_snapshot_invalid',
          );
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('RevocationView.check', () => {
  /** A view loaded from the vector through a fetch that serves it (no appliance needed). */
  async function loaded(nowSec = vector.now) {
    const clock = { nowMs: nowSec * 1000 };
    const view = new RevocationView({
      applianceUrl: 'http://127.0.0.1:1/',
      gatewayToken: 'ggw_test',
      issuer: vector.issuer,
      keys,
      maxStalenessSeconds: 60,
      now: () => clock.nowMs,
      fetch: () =>
        Promise.resolve(
          new Response(JSON.stringify({ snapshot: vector.snapshot }), { status: 200 }),
        ),
    });
    await view.loadSnapshot();
    return { view, clock };
  }
  const claims = (
    over: Partial<{ jti: string; sub: string; parent: string | null; root: string }>,
  ) => ({
    jti: over.jti ?? 'gr_live',
    sub: over.sub ?? 'rt_live',
    lin: { parent: over.parent ?? null, root: over.root ?? over.jti ?? 'gr_live' },
  });

  it('refuses the revoked grant, its descendants by lineage, and grants of a revoked runtime', async () => {
    const { view } = await loaded(1767225010);
    expect(view.seq).toBe(18);
    expect(() => {
      view.check(claims({}));
    }).not.toThrow();
    expect(
      await codeOf(() => {
        view.check(claims({ jti: 'gr_7Qm2x9Lk4VbN1sT8wZ3c' }));
      }),
    ).toBe('grant_revoked');
    expect(
      await codeOf(() => {
        view.check(claims({ parent: 'gr_7Qm2x9Lk4VbN1sT8wZ3c' }));
      }),
    ).toBe('grant_revoked');
    expect(
      await codeOf(() => {
        view.check(claims({ root: 'gr_7Qm2x9Lk4VbN1sT8wZ3c' }));
      }),
    ).toBe('grant_revoked');
    expect(
      await codeOf(() => {
        view.check(claims({ sub: 'rt_K3v9pQ2mX7nL4sB1' }));
      }),
    ).toBe('grant_runtime_revoked');
  });

  it('refuses a bound that the long-poll wait alone would exceed (config_invalid, naming the key)', () => {
    const options = {
      applianceUrl: 'http://127.0.0.1:1/',
      gatewayToken: 'ggw_test',
      issuer: vector.issuer,
      keys,
    };
    for (const [maxStalenessSeconds, waitSeconds] of [
      [25, 25],
      [10, 25],
      [5, 30],
    ] as const) {
      let caught: unknown;
      try {
        new RevocationView({ ...options, maxStalenessSeconds, waitSeconds });
      } catch (e) {
        caught = e;
      }
      expect(caught).toMatchObject({
        code: 'config_invalid',
        message: expect.stringContaining('revocations.maxStalenessSeconds') as unknown,
      });
    }
    expect(
      () => new RevocationView({ ...options, maxStalenessSeconds: 26, waitSeconds: 25 }),
    ).not.toThrow();
  });

  it('refuses every grant when the view is older than its bound, and before any snapshot', async () => {
    const { view, clock } = await loaded();
    // Confirmed as of the snapshot's iat (1767225000): 100 s before `now` already.
    expect(view.lagSeconds()).toBe(100);
    expect(
      await codeOf(() => {
        view.check(claims({}));
      }),
    ).toBe('revocation_view_stale');
    clock.nowMs = 1767225000 * 1000 + 59_000;
    expect(() => {
      view.check(claims({}));
    }).not.toThrow();
    const empty = new RevocationView({
      applianceUrl: 'http://127.0.0.1:1/',
      gatewayToken: 'ggw_test',
      issuer: vector.issuer,
      keys,
    });
    expect(empty.lagSeconds()).toBe(Number.POSITIVE_INFINITY);
    expect(
      await codeOf(() => {
        empty.check(claims({}));
      }),
    ).toBe('revocation_view_stale');
  });
});
