/**
 * The pipeline with fakes at every port (fast): each rejection path asserts its code, the
 * order of the steps, what is audited and signed on each path, redemption and revocation.
 * The real parts (swtpm, SoftHSM2, Cedar, LevelDB) are in test/grants/.
 */
import { createHash, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { qualifyingData, type AttestedSession, type RuntimeView } from '../attestation/index.js';
import type { AuditEvent } from '../audit/index.js';
import { checkEvent } from '../audit/entry.js';
import type { PolicyDecision, PolicyRequest } from '../policy/index.js';
import { GrantorError, UnavailableError } from '../shared/errors.js';
import { MemoryGrantStore, type GrantRecord } from './grant-store.port.js';
import { GrantService, jwkThumbprint, lowS, type GrantsConfig } from './pipeline.js';
import type { AudienceGateways } from './cedar-context.js';
import {
  requestDigest,
  sessionSigningInput,
  unsignedRequestText,
  withoutQuote,
} from './request.js';

const NOW = new Date('2026-01-01T12:00:00.000Z');
/** An enrolled gateway for the audiences the tests redeem for. */
const GW = { id: 'gw_00000000000000a1', audiences: ['gw_tickets', 'gw_other'] } as const;
const RT = 'rt_alpha';
const AT = 'at_session1';

interface SessionKey {
  readonly privateKey: KeyObject;
  readonly jwk: { kty: 'EC'; crv: 'P-256'; x: string; y: string };
}

function sessionKey(): SessionKey {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const j = publicKey.export({ format: 'jwk' });
  return { privateKey, jwk: { kty: 'EC', crv: 'P-256', x: j.x ?? '', y: j.y ?? '' } };
}

function signRequest(body: Record<string, unknown>, key: KeyObject): Record<string, unknown> {
  const signature = sign('sha256', Buffer.from(sessionSigningInput(body)), {
    key,
    dsaEncoding: 'ieee-p1363',
  }).toString('base64url');
  const session = body.session as Record<string, unknown>;
  return { ...body, session: { ...session, signature } };
}

class Fakes {
  readonly key = sessionKey();
  readonly runtimes = new Map<string, RuntimeView>();
  readonly sessions = new Map<string, AttestedSession>();
  readonly events: AuditEvent[] = [];
  readonly signed: Record<string, unknown>[] = [];
  readonly policyCalls: PolicyRequest[] = [];
  readonly store = new MemoryGrantStore();
  quoteCalls: { runtimeId: string; qd: Buffer }[] = [];
  auditFails: (() => Error) | undefined;
  auditHang = false;
  /** An append that never settles (a log stuck on its storage or its TPM anchor). */
  auditStuck = false;
  /** A realistic commit latency for every append (ms). */
  auditDelayMs = 0;
  signFails: (() => Error) | undefined;
  policyFails: (() => Error) | undefined;
  decision: (req: PolicyRequest) => PolicyDecision = () => allow();
  /** The enrolled gateways per audience (issue 18); undefined: no port wired. */
  gateways: AudienceGateways | undefined;
  verifyQuoteFails: (() => Error) | undefined;
  seq = 0;

  constructor() {
    this.addRuntime(RT, { team: 'payments' });
    this.addSession(AT, RT, this.key);
  }

  addRuntime(id: string, labels: Record<string, string>, state: RuntimeView['state'] = 'active') {
    this.runtimes.set(id, {
      runtimeId: id,
      name: id,
      labels,
      requestedLabels: {},
      labelSource: 'rule:test',
      state,
      ekCertified: true,
      ek: { publicKeySha256: null, certificate: null, tpm: null },
      akName: '000b' + 'aa'.repeat(32),
      referencePolicy: 'ref',
      createdAt: NOW.toISOString(),
      pendingExpiresAt: null,
      released: null,
      counters: null,
      lastQuote: null,
      lastAttestation: null,
    });
  }

  addSession(id: string, runtimeId: string, key: SessionKey, validUntil = NOW.getTime() + 600_000) {
    this.sessions.set(id, {
      attestationId: id,
      runtimeId,
      sessionKey: key.jwk,
      akName: '000b' + 'aa'.repeat(32),
      pcrDigestHex: 'bb'.repeat(32),
      resetCount: 1,
      restartCount: 0,
      validUntil: new Date(validUntil),
    });
    const r = this.runtimes.get(runtimeId);
    if (r !== undefined) {
      this.runtimes.set(runtimeId, {
        ...r,
        lastAttestation: {
          attestationId: id,
          verdict: 'trusted',
          reasons: [],
          at: new Date(NOW.getTime() - 30_000).toISOString(),
        },
      });
    }
  }

  service(config: Partial<GrantsConfig> = {}): GrantService {
    return new GrantService(
      {
        issuer: 'grantor-unit',
        maxTtlSeconds: 3600,
        clockSkewSeconds: 60,
        maxDepth: 4,
        maxChildren: 64,
        dependencyDeadlineMs: 200,
        replayCacheSize: 1000,
        ...config,
      },
      {
        attestation: {
          getRuntime: (id) => {
            const r = this.runtimes.get(id);
            if (r === undefined)
              return Promise.reject(new GrantorError('unknown_runtime', 'no such runtime'));
            return Promise.resolve(r);
          },
          sessionFor: (id) => {
            const s = this.sessions.get(id);
            return s !== undefined && s.validUntil.getTime() > NOW.getTime() ? s : undefined;
          },
          verifyQuote: (runtimeId, _quote, qd) => {
            this.quoteCalls.push({ runtimeId, qd: Buffer.from(qd) });
            if (this.verifyQuoteFails !== undefined) return Promise.reject(this.verifyQuoteFails());
            return Promise.resolve({
              runtimeId,
              akName: '000b' + 'cc'.repeat(32),
              pcrDigestHex: 'dd'.repeat(32),
              resetCount: 2,
              restartCount: 1,
              resetDetected: false,
            });
          },
        },
        policy: {
          decide: (req) => {
            this.policyCalls.push(req);
            if (this.policyFails !== undefined) throw this.policyFails();
            return this.decision(req);
          },
        },
        audit: {
          append: async (event) => {
            if (this.auditHang) await new Promise((r) => setTimeout(r, 400));
            if (this.auditStuck) await new Promise<never>(() => undefined);
            if (this.auditDelayMs > 0) {
              await new Promise((r) => setTimeout(r, this.auditDelayMs));
            }
            if (this.auditFails !== undefined) throw this.auditFails();
            // The log's own limits (32 reasons of 256 characters), as the real one refuses.
            checkEvent(event);
            this.events.push(event);
            const seq = this.seq++;
            return { seq, hash: createHash('sha256').update(String(seq)).digest('hex') };
          },
        },
        keys: {
          signGrantToken: (header, payload) => {
            if (this.signFails !== undefined) return Promise.reject(this.signFails());
            const claims = JSON.parse(Buffer.from(payload).toString('utf8')) as Record<
              string,
              unknown
            >;
            this.signed.push(claims);
            const h = Buffer.from(JSON.stringify({ alg: 'ES256', kid: 'k1', ...header }));
            return Promise.resolve({
              token: `${h.toString('base64url')}.${Buffer.from(payload).toString('base64url')}.${Buffer.alloc(64, 1).toString('base64url')}`,
              batched: false,
            });
          },
        },
        store: this.store,
        ...(this.gateways === undefined ? {} : { gateways: this.gateways }),
      },
    );
  }
}

let counter = 0;
const POLICY_HASH = 'ee'.repeat(32);
function allow(
  obligations: PolicyDecision['obligations'] = { requireQuote: false },
): PolicyDecision {
  return {
    decision: 'allow',
    reasons: [],
    determiningPolicies: ['p1'],
    policyHash: POLICY_HASH,
    policyVersion: 1,
    obligations,
  };
}

function body(over: Record<string, unknown> = {}): Record<string, unknown> {
  counter += 1;
  return {
    runtimeId: RT,
    requestId: `req-${counter}`,
    issuedAt: NOW.toISOString(),
    action: 'tickets.read',
    resource: 'ticket:42',
    parametersDigest: 'ab'.repeat(32),
    audience: 'gw_tickets',
    parentGrantId: null,
    ttlSeconds: 120,
    session: { attestationId: AT },
    ...over,
  };
}

const code = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
  } catch (e) {
    if (e instanceof GrantorError) return e.code;
    throw e;
  }
  throw new Error('expected a rejection');
};

function decodeClaims(jws: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jws.split('.')[1] ?? '', 'base64url').toString()) as Record<
    string,
    unknown
  >;
}

describe('GrantService.request: the allow path', () => {
  it('issues a grant with exactly the §3 claims, audited before it is signed', async () => {
    const f = new Fakes();
    const svc = f.service();
    const req = signRequest(body(), f.key.privateKey);
    const issued = await svc.request(req, NOW);
    expect(issued.grantId).toMatch(/^gr_/);
    const claims = decodeClaims(issued.grant);
    expect(Object.keys(claims).sort()).toEqual(
      [
        'iss',
        'sub',
        'aud',
        'iat',
        'nbf',
        'exp',
        'jti',
        'act',
        'att',
        'cnf',
        'lin',
        'pol',
        'aud_seq',
        'aud_hash',
      ].sort(),
    );
    const iat = NOW.getTime() / 1000;
    expect(claims).toMatchObject({
      iss: 'grantor-unit',
      sub: RT,
      aud: 'gw_tickets',
      iat,
      nbf: iat,
      exp: iat + 120,
      jti: issued.grantId,
      act: { action: 'tickets.read', resource: 'ticket:42', parametersDigest: 'ab'.repeat(32) },
      att: { pcrDigest: 'bb'.repeat(32), resetCount: 1, restartCount: 0, attestationId: AT },
      cnf: { jkt: jwkThumbprint(f.key.jwk) },
      lin: { parent: null, root: issued.grantId, depth: 0 },
      pol: POLICY_HASH,
      aud_seq: issued.auditSeq,
    });
    expect(
      JSON.parse(Buffer.from(issued.grant.split('.')[0] ?? '', 'base64url').toString()),
    ).toMatchObject({ typ: 'grant+jwt' });
    expect(f.events).toEqual([
      {
        type: 'grant.decision',
        subject: issued.grantId,
        decision: 'allow',
        // The policy set that decided comes first: the same hash as the grant's `pol`.
        reasons: [`pol:${POLICY_HASH}`, 'p1'],
        digest: requestDigest(req),
        // What was decided, as typed facts (docs/protocol.md §4), and the request itself.
        facts: {
          runtime: RT,
          action: 'tickets.read',
          resource: 'ticket:42',
          audience: 'gw_tickets',
          parent: null,
          requestId: req.requestId,
          parametersDigest: 'ab'.repeat(32),
          proofMode: 'session',
          attestationId: AT,
          policyHash: POLICY_HASH,
          matchedPolicies: ['p1'],
          keyId: null,
          expiresAt: issued.expiresAt,
        },
        body: unsignedRequestText(req),
      },
    ]);
    expect(createHash('sha256').update(unsignedRequestText(req)).digest('hex')).toBe(
      requestDigest(req),
    );
    expect(issued.expiresAt).toBe(new Date((iat + 120) * 1000).toISOString());
    expect(f.policyCalls[0]).toMatchObject({
      runtime: { id: RT, labels: { team: 'payments' } },
      attestation: {
        proofMode: 'session',
        sessionAgeSeconds: 30,
        resetSeen: false,
        pcrPolicy: 'ref',
      },
      lineage: { depth: 0, root: '', parentAction: null, delegated: false },
      ttlSeconds: 120,
    });
  });

  it('caps the lifetime at the policy maxTtlSeconds', async () => {
    const f = new Fakes();
    f.decision = () => allow({ requireQuote: false, maxTtlSeconds: 60 });
    const issued = await f
      .service()
      .request(signRequest(body({ ttlSeconds: 600 }), f.key.privateKey), NOW);
    expect(decodeClaims(issued.grant).exp).toBe(NOW.getTime() / 1000 + 60);
  });

  it('uses the body copied before the first await', async () => {
    const f = new Fakes();
    const req = signRequest(body(), f.key.privateKey);
    const p = f.service().request(req, NOW);
    req.action = 'payments.transfer';
    const claims = decodeClaims((await p).grant);
    expect(claims.act).toMatchObject({ action: 'tickets.read' });
  });
});

describe('lowS', () => {
  const HALF = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n >> 1n;
  const sOf = (jws: string): bigint =>
    BigInt(
      `0x${Buffer.from(jws.split('.')[2] ?? '', 'base64url')
        .subarray(32)
        .toString('hex')}`,
    );

  it('turns a high-S ES256 signature into its low-S twin, which still verifies', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    let seenHigh = false;
    for (let i = 0; i < 64 && !seenHigh; i++) {
      const input = `eyJhbGciOiJFUzI1NiJ9.${Buffer.from(String(i)).toString('base64url')}`;
      const sig = sign('sha256', Buffer.from(input), {
        key: privateKey,
        dsaEncoding: 'ieee-p1363',
      });
      const jws = `${input}.${sig.toString('base64url')}`;
      const fixed = lowS(jws);
      expect(sOf(fixed) <= HALF).toBe(true);
      const fixedSig = Buffer.from(fixed.split('.')[2] ?? '', 'base64url');
      expect(
        verify(
          'sha256',
          Buffer.from(input),
          { key: publicKey, dsaEncoding: 'ieee-p1363' },
          fixedSig,
        ),
      ).toBe(true);
      if (sOf(jws) > HALF) {
        seenHigh = true;
        expect(fixed).not.toBe(jws);
      } else {
        expect(fixed).toBe(jws);
      }
    }
    expect(seenHigh).toBe(true);
  });

  it('refuses a malformed signature as hsm_unavailable', () => {
    expect(() => lowS('a.b.c')).toThrow(expect.objectContaining({ code: 'hsm_unavailable' }));
  });
});

describe('GrantService.request: schema', () => {
  const cases: [string, Record<string, unknown>][] = [
    ['ttl 0', { ttlSeconds: 0 }],
    ['ttl above max', { ttlSeconds: 3601 }],
    ['ttl not an integer', { ttlSeconds: 1.5 }],
    ['digest not hex', { parametersDigest: 'zz'.repeat(32) }],
    ['digest short', { parametersDigest: 'ab' }],
    ['issuedAt not a time', { issuedAt: 'yesterday' }],
    ['no proof', { session: undefined }],
    ['two proofs', { quote: { nonce: 'AA==', quote: 'AA==', signature: 'AA==', pcrs: {} } }],
  ];
  for (const [name, over] of cases) {
    it(`${name}: bad_request, nothing decided`, async () => {
      const f = new Fakes();
      const b = body(over);
      const req = b.session === undefined ? b : signRequest(b, f.key.privateKey);
      expect(await code(f.service().request(req, NOW))).toBe('bad_request');
      expect(f.policyCalls).toHaveLength(0);
    });
  }
  it('a signature that is not 64 bytes base64url: bad_request', async () => {
    const f = new Fakes();
    expect(
      await code(
        f.service().request(body({ session: { attestationId: AT, signature: 'x' } }), NOW),
      ),
    ).toBe('bad_request');
  });
});

describe('GrantService.request: runtime and proof', () => {
  it('unknown runtime: unknown_runtime', async () => {
    const f = new Fakes();
    const req = signRequest(body({ runtimeId: 'rt_nobody' }), f.key.privateKey);
    expect(await code(f.service().request(req, NOW))).toBe('unknown_runtime');
  });

  it('runtime not active: runtime_not_active', async () => {
    const f = new Fakes();
    f.addRuntime('rt_revoked', {}, 'revoked');
    f.addSession('at_r', 'rt_revoked', f.key);
    const req = signRequest(
      body({ runtimeId: 'rt_revoked', session: { attestationId: 'at_r' } }),
      f.key.privateKey,
    );
    expect(await code(f.service().request(req, NOW))).toBe('runtime_not_active');
  });

  it('unknown or expired session: session_not_live', async () => {
    const f = new Fakes();
    const svc = f.service();
    const unknown = signRequest(body({ session: { attestationId: 'at_none' } }), f.key.privateKey);
    expect(await code(svc.request(unknown, NOW))).toBe('session_not_live');
    f.addSession('at_old', RT, f.key, NOW.getTime() - 1);
    const expired = signRequest(body({ session: { attestationId: 'at_old' } }), f.key.privateKey);
    expect(await code(svc.request(expired, NOW))).toBe('session_not_live');
  });

  it('a superseded session (not the runtime latest attestation): session_not_live', async () => {
    const f = new Fakes();
    const other = sessionKey();
    f.sessions.set('at_stale', {
      ...(f.sessions.get(AT) as AttestedSession),
      attestationId: 'at_stale',
      sessionKey: other.jwk,
    });
    const req = signRequest(body({ session: { attestationId: 'at_stale' } }), other.privateKey);
    expect(await code(f.service().request(req, NOW))).toBe('session_not_live');
  });

  it("another runtime's session: session_runtime_mismatch", async () => {
    const f = new Fakes();
    const k = sessionKey();
    f.addRuntime('rt_beta', {});
    f.addSession('at_beta', 'rt_beta', k);
    const req = signRequest(body({ session: { attestationId: 'at_beta' } }), k.privateKey);
    expect(await code(f.service().request(req, NOW))).toBe('session_runtime_mismatch');
  });

  it('signed by another key, or altered after signing: request_signature_invalid', async () => {
    const f = new Fakes();
    const svc = f.service();
    expect(await code(svc.request(signRequest(body(), sessionKey().privateKey), NOW))).toBe(
      'request_signature_invalid',
    );
    const altered = { ...signRequest(body(), f.key.privateKey), resource: 'ticket:43' };
    expect(await code(svc.request(altered, NOW))).toBe('request_signature_invalid');
    // On the record: one entry for the (runtime, code) window; the repeat is counted.
    expect(f.events).toMatchObject([
      {
        type: 'grant.refused',
        subject: RT,
        decision: 'request_signature_invalid',
        facts: { runtime: RT, code: 'request_signature_invalid', repeats: 0, dropped: 0 },
      },
    ]);
  });

  it('the cached session key follows the session: a key changed in place is used, the old one refused', async () => {
    const f = new Fakes();
    const svc = f.service();
    expect((await svc.request(signRequest(body(), f.key.privateKey), NOW)).grantId).toMatch(/^gr_/);
    // The same session object (the cache key) now holds another key.
    const next = sessionKey();
    Object.assign(f.key.jwk, { x: next.jwk.x, y: next.jwk.y });
    expect(await code(svc.request(signRequest(body(), f.key.privateKey), NOW))).toBe(
      'request_signature_invalid',
    );
    expect((await svc.request(signRequest(body(), next.privateKey), NOW)).grantId).toMatch(/^gr_/);
  });

  it('a replayed requestId: request_replayed, also when both race and after a restart', async () => {
    const f = new Fakes();
    const svc = f.service();
    const req = signRequest(body(), f.key.privateKey);
    await svc.request(req, NOW);
    expect(await code(svc.request(req, NOW))).toBe('request_replayed');
    const twin = signRequest(body(), f.key.privateKey);
    const results = await Promise.allSettled([svc.request(twin, NOW), svc.request(twin, NOW)]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.find((r) => r.status === 'rejected');
    expect((rejected?.reason as GrantorError).code).toBe('request_replayed');
    // A new service over the same store (a restart) still knows it.
    expect(await code(f.service().request(req, NOW))).toBe('request_replayed');
  });

  it('the requestId is written with the grant, after a deny, and after a failure (then unawaited)', async () => {
    const f = new Fakes();
    const key = (r: Record<string, unknown>) => `${RT}\n${String(r.requestId)}`;
    // Allowed: the id and the grant arrive in one write.
    const writes: string[] = [];
    const create = f.store.create.bind(f.store);
    f.store.create = (record, used) => {
      writes.push(`create ${used?.requestId ?? 'without id'}`);
      return create(record, used);
    };
    const allowed = signRequest(body(), f.key.privateKey);
    await f.service().request(allowed, NOW);
    expect(writes).toEqual([`create ${String(allowed.requestId)}`]);
    expect(f.store.requests.has(key(allowed))).toBe(true);
    // Denied: written before the answer.
    f.decision = () => ({ ...allow(), decision: 'deny', reasons: ['no'] });
    const denied = signRequest(body(), f.key.privateKey);
    expect(await code(f.service().request(denied, NOW))).toBe('policy_denied');
    expect(f.store.requests.has(key(denied))).toBe(true);
    // Failed after the replay check (an unknown parent): written all the same.
    const failed = signRequest(body({ parentGrantId: 'gr_nope' }), f.key.privateKey);
    expect(await code(f.service().request(failed, NOW))).toBe('grant_parent_not_found');
    await vi.waitFor(() => {
      expect(f.store.requests.has(key(failed))).toBe(true);
    });
    // And so a restart refuses all three.
    for (const r of [allowed, denied, failed]) {
      expect(await code(f.service().request(r, NOW))).toBe('request_replayed');
    }
  });

  it('an id whose request is still in flight is never evicted: its replay is refused', async () => {
    const f = new Fakes();
    f.auditHang = true;
    const svc = f.service({ replayCacheSize: 2, dependencyDeadlineMs: 2000 });
    const a = signRequest(body(), f.key.privateKey);
    const first = svc.request(a, NOW);
    await new Promise((r) => setTimeout(r, 20));
    // Two more requests fill the bound while the first waits for its audit entry.
    const others = [1, 2].map(() => svc.request(signRequest(body(), f.key.privateKey), NOW));
    await new Promise((r) => setTimeout(r, 20));
    expect(await code(svc.request(a, NOW))).toBe('request_replayed');
    const settled = await Promise.allSettled([first, ...others]);
    expect(settled.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled']);
    expect(f.signed).toHaveLength(3);
  });

  it('at issuedAt + skew exactly, a concurrent twin is refused, also while the store is asked', async () => {
    const f = new Fakes();
    // More live ids than the bound: misses go to the store.
    for (const id of ['x1', 'x2', 'x3']) await f.store.putRequest(RT, id, NOW.getTime() + 60_000);
    const svc = f.service({ replayCacheSize: 2 });
    const edge = new Date(NOW.getTime() - 60_000).toISOString();
    const req = signRequest(body({ issuedAt: edge }), f.key.privateKey);
    const results = await Promise.allSettled([svc.request(req, NOW), svc.request(req, NOW)]);
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    const rejected = results.find((r) => r.status === 'rejected');
    expect((rejected?.reason as GrantorError).code).toBe('request_replayed');
    expect(f.signed).toHaveLength(1);
  });

  it('holds decisions until the start-up work settles, whether it succeeds or fails', async () => {
    const f = new Fakes();
    const svc = f.service();
    let finish: (ok: boolean) => void = () => undefined;
    svc.holdDecisionsUntil(
      new Promise<void>((resolve, reject) => {
        finish = (ok) => {
          if (ok) resolve();
          else reject(new Error('store down'));
        };
      }),
    );
    const held = svc.request(signRequest(body(), f.key.privateKey), NOW);
    await new Promise((r) => setTimeout(r, 20));
    expect(f.policyCalls).toHaveLength(0);
    finish(false);
    expect((await held).grantId).toMatch(/^gr_/);
    expect(f.policyCalls).toHaveLength(1);
  });

  it('a start-up hold past the dependency deadline answers grant_store_unavailable; a done one lets all through', async () => {
    const f = new Fakes();
    const stuck = f.service();
    stuck.holdDecisionsUntil(new Promise<void>(() => undefined));
    expect(await code(stuck.request(signRequest(body(), f.key.privateKey), NOW))).toBe(
      'grant_store_unavailable',
    );
    expect(f.policyCalls).toHaveLength(0);
    const done = f.service();
    done.holdDecisionsUntil(Promise.resolve());
    const issued = await Promise.all(
      [1, 2].map(() => done.request(signRequest(body(), f.key.privateKey), NOW)),
    );
    expect(issued.map((g) => g.grantId.startsWith('gr_'))).toEqual([true, true]);
  });

  it('records at most 32 reasons of at most 256 characters; the rest are counted, never refused', async () => {
    const f = new Fakes();
    const many = Array.from({ length: 40 }, (_, i) => `policy ${i}`);
    f.decision = () => ({ ...allow(), decision: 'deny', reasons: ['x'.repeat(300), ...many] });
    expect(await code(f.service().request(signRequest(body(), f.key.privateKey), NOW))).toBe(
      'policy_denied',
    );
    const reasons = f.events[0]?.reasons ?? [];
    expect(reasons).toHaveLength(32);
    expect(reasons[0]).toBe(`pol:${POLICY_HASH}`);
    expect(reasons[1]).toBe(`${'x'.repeat(255)}…`);
    expect(reasons[31]).toBe('and 11 more');
  });

  it('issuedAt outside the skew, either way: request_stale', async () => {
    const f = new Fakes();
    const svc = f.service();
    const old = new Date(NOW.getTime() - 61_000).toISOString();
    const future = new Date(NOW.getTime() + 61_000).toISOString();
    expect(
      await code(svc.request(signRequest(body({ issuedAt: old }), f.key.privateKey), NOW)),
    ).toBe('request_stale');
    expect(
      await code(svc.request(signRequest(body({ issuedAt: future }), f.key.privateKey), NOW)),
    ).toBe('request_stale');
  });

  it('quote mode: verifyQuote gets SHA-256(nonce || SHA-256(JCS(request - quote))); att from the quote', async () => {
    const f = new Fakes();
    const nonce = Buffer.alloc(32, 7).toString('base64');
    const req = body({
      session: undefined,
      action: 'payments.transfer',
      quote: { nonce, quote: 'AA==', signature: 'AA==', pcrs: { sha256: {} } },
    });
    delete req.session;
    const issued = await f.service().request(req, NOW);
    expect(f.quoteCalls).toHaveLength(1);
    expect(
      f.quoteCalls[0]?.qd.equals(qualifyingData(Buffer.from(nonce, 'base64'), withoutQuote(req))),
    ).toBe(true);
    expect(f.policyCalls[0]?.attestation.proofMode).toBe('quote');
    expect(decodeClaims(issued.grant)).toMatchObject({
      att: { akName: '000b' + 'cc'.repeat(32), pcrDigest: 'dd'.repeat(32), resetCount: 2 },
      cnf: { jkt: jwkThumbprint(f.key.jwk) },
    });
  });

  it('quote mode: a failing quote keeps its own code; no live session to hold the grant: session_not_live', async () => {
    const f = new Fakes();
    const q = { nonce: 'AA==', quote: 'AA==', signature: 'AA==', pcrs: { sha256: {} } };
    const mk = () => {
      const b = body({ quote: q });
      delete b.session;
      return b;
    };
    f.verifyQuoteFails = () => new GrantorError('quote_signature_invalid', 'bad');
    expect(await code(f.service().request(mk(), NOW))).toBe('quote_signature_invalid');
    f.verifyQuoteFails = undefined;
    f.sessions.clear();
    expect(await code(f.service().request(mk(), NOW))).toBe('session_not_live');
  });
});

describe('GrantService.request: lineage', () => {
  const parentRecord = (over: Partial<GrantRecord> = {}): GrantRecord => ({
    grantId: 'gr_parent',
    runtimeId: RT,
    action: 'payments.transfer',
    resource: 'acct:1',
    audience: 'gw',
    parent: null,
    root: 'gr_parent',
    depth: 0,
    iat: NOW.getTime() / 1000 - 10,
    exp: NOW.getTime() / 1000 + 50,
    auditSeq: 0,
    revokedAt: null,
    redemption: null,
    ...over,
  });

  it('a child of a live parent: depth, root, policy context, exp capped at the parent', async () => {
    const f = new Fakes();
    await f.store.create(parentRecord());
    const issued = await f
      .service()
      .request(
        signRequest(body({ parentGrantId: 'gr_parent', ttlSeconds: 300 }), f.key.privateKey),
        NOW,
      );
    expect(decodeClaims(issued.grant)).toMatchObject({
      lin: { parent: 'gr_parent', root: 'gr_parent', depth: 1 },
      exp: NOW.getTime() / 1000 + 50,
    });
    expect(f.policyCalls[0]?.lineage).toEqual({
      depth: 1,
      root: 'gr_parent',
      parentAction: 'payments.transfer',
      delegated: false,
      parentResource: 'acct:1',
      parentRuntime: { id: RT, labels: { team: 'payments' } },
    });
    expect(await f.store.children('gr_parent')).toEqual([issued.grantId]);
  });

  it('a parent of another runtime is a delegation for the policy to decide', async () => {
    const f = new Fakes();
    f.addRuntime('rt_other', {});
    await f.store.create(parentRecord({ runtimeId: 'rt_other' }));
    f.decision = (req) =>
      req.lineage.delegated
        ? {
            ...allow(),
            decision: 'deny',
            reasons: ['delegation to another runtime is not allowed'],
          }
        : allow();
    const req = signRequest(body({ parentGrantId: 'gr_parent' }), f.key.privateKey);
    expect(await code(f.service().request(req, NOW))).toBe('policy_denied');
  });

  const refusals: [string, Partial<GrantRecord> | null, string][] = [
    ['unknown parent', null, 'grant_parent_not_found'],
    ['expired parent', { exp: NOW.getTime() / 1000 }, 'grant_parent_expired'],
    ['revoked parent', { revokedAt: NOW.toISOString() }, 'grant_parent_revoked'],
    ['parent with a foreign root', { root: 'gr_elsewhere' }, 'grant_lineage_invalid'],
    [
      'parent whose own parent is unknown',
      { parent: 'gr_ghost', depth: 1 },
      'grant_lineage_invalid',
    ],
  ];
  for (const [name, over, expected] of refusals) {
    it(`${name}: ${expected}, no policy call`, async () => {
      const f = new Fakes();
      if (over !== null) await f.store.create(parentRecord(over));
      const req = signRequest(body({ parentGrantId: 'gr_parent' }), f.key.privateKey);
      expect(await code(f.service().request(req, NOW))).toBe(expected);
      expect(f.policyCalls).toHaveLength(0);
    });
  }

  it('a child deeper than maxDepth: grant_depth_exceeded', async () => {
    const f = new Fakes();
    await f.store.create(parentRecord());
    const req = signRequest(body({ parentGrantId: 'gr_parent' }), f.key.privateKey);
    expect(await code(f.service({ maxDepth: 0 }).request(req, NOW))).toBe('grant_depth_exceeded');
  });
});

describe('GrantService.request: policy, audit and HSM failures', () => {
  it('a deny is audited with its reasons and answers policy_denied; nothing signed or stored', async () => {
    const f = new Fakes();
    f.decision = () => ({
      ...allow(),
      decision: 'deny',
      reasons: ['moving money needs a fresh quote'],
    });
    const req = signRequest(body(), f.key.privateKey);
    const err = await f
      .service()
      .request(req, NOW)
      .catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: 'policy_denied',
      details: { reasons: ['moving money needs a fresh quote'] },
    });
    expect(f.events).toEqual([
      expect.objectContaining({
        type: 'grant.decision',
        decision: 'deny',
        reasons: [`pol:${POLICY_HASH}`, 'moving money needs a fresh quote'],
        digest: requestDigest(req),
      }),
    ]);
    expect(f.signed).toHaveLength(0);
    expect(f.store.grants.size).toBe(0);
  });

  it('policy engine failure: policy_unavailable, nothing audited, signed or stored', async () => {
    const f = new Fakes();
    f.policyFails = () => new Error('wasm trap');
    expect(await code(f.service().request(signRequest(body(), f.key.privateKey), NOW))).toBe(
      'policy_unavailable',
    );
    expect(f.events).toHaveLength(0);
    expect(f.signed).toHaveLength(0);
  });

  it('audit failure: audit_unavailable, nothing signed', async () => {
    const f = new Fakes();
    f.auditFails = () => new Error('disk gone');
    expect(await code(f.service().request(signRequest(body(), f.key.privateKey), NOW))).toBe(
      'audit_unavailable',
    );
    expect(f.signed).toHaveLength(0);
    expect(f.store.grants.size).toBe(0);
  });

  it('audit past its deadline: audit_unavailable, and the late "allow" is then marked issue_failed', async () => {
    const f = new Fakes();
    f.auditHang = true;
    expect(await code(f.service().request(signRequest(body(), f.key.privateKey), NOW))).toBe(
      'audit_unavailable',
    );
    expect(f.signed).toHaveLength(0);
    await vi.waitFor(
      () => {
        expect(f.events.map((e) => [e.type, e.decision])).toEqual([
          ['grant.decision', 'allow'],
          ['grant.issue_failed', 'failed'],
        ]);
      },
      { timeout: 10_000, interval: 50 },
    );
  });

  it('HSM failure after the commit: hsm_unavailable and a grant.issue_failed entry', async () => {
    const f = new Fakes();
    f.signFails = () => new UnavailableError('hsm_unavailable', 'token removed');
    expect(await code(f.service().request(signRequest(body(), f.key.privateKey), NOW))).toBe(
      'hsm_unavailable',
    );
    expect(f.events.map((e) => [e.type, e.decision, e.reasons])).toEqual([
      ['grant.decision', 'allow', [`pol:${POLICY_HASH}`, 'p1']],
      ['grant.issue_failed', 'failed', ['hsm_unavailable']],
    ]);
    expect(f.events[0]?.subject).toBe(f.events[1]?.subject);
    expect(f.store.grants.size).toBe(0);
  });

  it('a non-typed signer error is still hsm_unavailable', async () => {
    const f = new Fakes();
    f.signFails = () => new Error('CKR_DEVICE_REMOVED');
    expect(await code(f.service().request(signRequest(body(), f.key.privateKey), NOW))).toBe(
      'hsm_unavailable',
    );
  });
});

describe('redemption, lineage and revocation', () => {
  async function issue(f: Fakes, svc: GrantService, over: Record<string, unknown> = {}) {
    return svc.request(signRequest(body(over), f.key.privateKey), NOW);
  }

  it('first call wins under concurrency; later calls grant_already_redeemed; audited', async () => {
    const f = new Fakes();
    const svc = f.service();
    const { grantId } = await issue(f, svc);
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, () =>
        svc.redeem(grantId, { audience: 'gw_tickets', outcome: 'started' }, NOW, GW),
      ),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results) {
      if (r.status === 'rejected')
        expect((r.reason as GrantorError).code).toBe('grant_already_redeemed');
    }
    expect(f.events.filter((e) => e.type === 'grant.redeem')).toEqual([
      expect.objectContaining({
        subject: grantId,
        decision: 'redeemed',
        reasons: [`gateway:${GW.id}`, 'started'],
      }),
    ]);
    expect((await f.store.get(grantId))?.redemption).toMatchObject({
      audience: 'gw_tickets',
      outcome: 'started',
    });
  });

  it('refusals: grant_not_found, grant_audience_mismatch, grant_expired, grant_revoked', async () => {
    const f = new Fakes();
    const svc = f.service();
    expect(await code(svc.redeem('gr_none', { audience: 'gw_tickets' }, NOW, GW))).toBe(
      'grant_not_found',
    );
    const a = await issue(f, svc);
    expect(await code(svc.redeem(a.grantId, { audience: 'gw_other' }, NOW, GW))).toBe(
      'grant_audience_mismatch',
    );
    expect(
      await code(
        svc.redeem(a.grantId, { audience: 'gw_tickets' }, new Date(NOW.getTime() + 121_000), GW),
      ),
    ).toBe('grant_expired');
    await svc.revoke(a.grantId, 'tok_1', NOW);
    expect(await code(svc.redeem(a.grantId, { audience: 'gw_tickets' }, NOW, GW))).toBe(
      'grant_revoked',
    );
  });

  it('redemption fails closed when the audit log is down', async () => {
    const f = new Fakes();
    const svc = f.service();
    const a = await issue(f, svc);
    f.auditFails = () => new Error('down');
    expect(await code(svc.redeem(a.grantId, { audience: 'gw_tickets' }, NOW, GW))).toBe(
      'audit_unavailable',
    );
    f.auditFails = undefined;
    // The grant is used up, never reusable after an unclear answer.
    expect(await code(svc.redeem(a.grantId, { audience: 'gw_tickets' }, NOW, GW))).toBe(
      'grant_already_redeemed',
    );
  });

  it('lineage lists ancestors and descendants; revoke takes the live descendants with it', async () => {
    const f = new Fakes();
    const svc = f.service();
    const root = await issue(f, svc, { ttlSeconds: 600 });
    const child = await issue(f, svc, { parentGrantId: root.grantId, ttlSeconds: 600 });
    const shortChild = await issue(f, svc, { parentGrantId: root.grantId, ttlSeconds: 5 });
    const grandchild = await issue(f, svc, { parentGrantId: child.grantId, ttlSeconds: 600 });
    const l = await svc.lineage(child.grantId, NOW);
    expect(l.grant.grantId).toBe(child.grantId);
    expect(l.ancestors.map((g) => g.grantId)).toEqual([root.grantId]);
    expect(l.descendants.map((g) => g.grantId)).toEqual([grandchild.grantId]);
    const later = new Date(NOW.getTime() + 10_000);
    const r = await svc.revoke(root.grantId, 'tok_op', later);
    expect(r.revoked.sort()).toEqual([root.grantId, child.grantId, grandchild.grantId].sort());
    expect(r.revoked).not.toContain(shortChild.grantId);
    const all = await svc.lineage(root.grantId, later);
    expect(all.grant.state).toBe('revoked');
    expect(Object.fromEntries(all.descendants.map((g) => [g.grantId, g.state]))).toEqual({
      [child.grantId]: 'revoked',
      [shortChild.grantId]: 'expired',
      [grandchild.grantId]: 'revoked',
    });
    expect(f.events.at(-1)).toMatchObject({
      type: 'grant.revoke',
      subject: root.grantId,
      decision: 'revoked',
    });
    const req = signRequest(
      body({ parentGrantId: child.grantId, issuedAt: later.toISOString() }),
      f.key.privateKey,
    );
    expect(await code(svc.request(req, later))).toBe('grant_parent_revoked');
    expect(await code(svc.lineage('gr_none', NOW))).toBe('grant_not_found');
    expect(await code(svc.revoke('gr_none', 'tok', NOW))).toBe('grant_not_found');
  });
});

describe('revocation on real trees (issue 18)', () => {
  async function issue(f: Fakes, svc: GrantService, over: Record<string, unknown> = {}) {
    return svc.request(signRequest(body({ ttlSeconds: 600, ...over }), f.key.privateKey), NOW);
  }
  const record = (id: string, over: Partial<GrantRecord> = {}): GrantRecord => ({
    grantId: id,
    runtimeId: RT,
    action: 'payments.transfer',
    resource: 'acct:1',
    audience: 'gw_tickets',
    parent: null,
    root: id,
    depth: 0,
    iat: NOW.getTime() / 1000 - 10,
    exp: NOW.getTime() / 1000 + 500,
    auditSeq: 0,
    revokedAt: null,
    redemption: null,
    ...over,
  });

  it('revokes a root with 40 live children: one entry within the log limits, count and ids digest', async () => {
    const f = new Fakes();
    const svc = f.service();
    const root = await issue(f, svc);
    const children = [];
    for (let i = 0; i < 40; i += 1) {
      children.push(await issue(f, svc, { parentGrantId: root.grantId }));
    }
    const r = await svc.revoke(root.grantId, 'tok_op', NOW);
    expect(r.revoked).toHaveLength(41);
    const entry = f.events.at(-1);
    expect(entry?.type).toBe('grant.revoke');
    const reasons = entry?.reasons ?? [];
    expect(reasons.length).toBeLessThanOrEqual(32);
    for (const reason of reasons) expect(reason.length).toBeLessThanOrEqual(256);
    const ids = [...r.revoked].sort();
    const digest = createHash('sha256').update(JSON.stringify(ids)).digest('hex');
    expect(reasons.slice(0, 3)).toEqual(['by:tok_op', 'count:41', `ids:${digest}`]);
    expect(reasons.at(-1)).toMatch(/^and \d+ more$/);
    for (const c of children) {
      expect((await f.store.get(c.grantId))?.revokedAt).toBe(NOW.toISOString());
      expect(await code(svc.redeem(c.grantId, { audience: 'gw_tickets' }, NOW, GW))).toBe(
        'grant_revoked',
      );
    }
  });

  it('children requested while their parent is revoked never escape (5 ms audit latency)', async () => {
    const f = new Fakes();
    const svc = f.service();
    const parent = await issue(f, svc);
    f.auditDelayMs = 5;
    const child = (delayMs: number) =>
      new Promise((r) => setTimeout(r, delayMs)).then(() =>
        issue(f, svc, { parentGrantId: parent.grantId }),
      );
    const early = Array.from({ length: 20 }, (_, i) => child(i % 4));
    const revoke = new Promise((r) => setTimeout(r, 2)).then(() =>
      svc.revoke(parent.grantId, 'tok_op', NOW),
    );
    const late = Array.from({ length: 20 }, (_, i) => child(2 + (i % 6)));
    const results = await Promise.allSettled([...early, ...late]);
    await revoke;
    let issued = 0;
    for (const res of results) {
      if (res.status === 'rejected') {
        expect((res.reason as GrantorError).code).toBe('grant_parent_revoked');
        continue;
      }
      issued += 1;
      const stored = await f.store.get(res.value.grantId);
      expect(stored?.revokedAt, `child ${res.value.grantId} escaped the revoke`).not.toBeNull();
    }
    // Both sides of the race happened: some children before the revoke, some refused after.
    expect(issued).toBeGreaterThan(0);
    expect(issued).toBeLessThan(40);
  });

  it('redeem and child issuance refuse when any ancestor is revoked, not only the parent', async () => {
    const f = new Fakes();
    const svc = f.service();
    // A cascade cut short: the root is revoked, the branch below it was never rewritten.
    await f.store.create(record('gr_top', { revokedAt: NOW.toISOString() }));
    await f.store.create(record('gr_mid', { parent: 'gr_top', root: 'gr_top', depth: 1 }));
    await f.store.create(record('gr_leaf', { parent: 'gr_mid', root: 'gr_top', depth: 2 }));
    expect(await code(svc.redeem('gr_leaf', { audience: 'gw_tickets' }, NOW, GW))).toBe(
      'grant_revoked',
    );
    expect(await code(issue(f, svc, { parentGrantId: 'gr_leaf' }))).toBe('grant_parent_revoked');
    expect(f.policyCalls).toHaveLength(0);
  });

  it('redeem refuses a grant whose chain is inconsistent: grant_lineage_invalid', async () => {
    const f = new Fakes();
    await f.store.create(record('gr_top'));
    await f.store.create(record('gr_leaf', { parent: 'gr_top', root: 'gr_top', depth: 0 }));
    expect(await code(f.service().redeem('gr_leaf', { audience: 'gw_tickets' }, NOW, GW))).toBe(
      'grant_lineage_invalid',
    );
  });

  it("a revoked runtime's grants and their descendants no longer redeem, cascade or not", async () => {
    const f = new Fakes();
    const svc = f.service();
    const a = await issue(f, svc);
    const child = await issue(f, svc, { parentGrantId: a.grantId });
    const r = f.runtimes.get(RT);
    if (r === undefined) throw new Error('no runtime');
    f.runtimes.set(RT, { ...r, state: 'revoked' });
    expect(await code(svc.redeem(a.grantId, { audience: 'gw_tickets' }, NOW, GW))).toBe(
      'grant_revoked',
    );
    expect(await code(svc.redeem(child.grantId, { audience: 'gw_tickets' }, NOW, GW))).toBe(
      'grant_revoked',
    );
  });

  it('revokeRuntime revokes its live grants and their descendants, delegated ones too, audited with counts', async () => {
    const f = new Fakes();
    const svc = f.service();
    const a = await issue(f, svc);
    const b = await issue(f, svc);
    const redeemed = await issue(f, svc);
    await svc.redeem(redeemed.grantId, { audience: 'gw_tickets' }, NOW, GW);
    // A child held by another runtime under one of this runtime's grants.
    await f.store.create(
      record('gr_delegated', {
        runtimeId: 'rt_other',
        parent: a.grantId,
        root: a.grantId,
        depth: 1,
      }),
    );
    f.addRuntime('rt_other', {});
    // Another runtime's tree is not touched.
    await f.store.create(record('gr_foreign', { runtimeId: 'rt_other' }));
    const out = await svc.revokeRuntime(RT, 'tok_op', NOW);
    expect(out.revoked.sort()).toEqual(
      [a.grantId, b.grantId, redeemed.grantId, 'gr_delegated'].sort(),
    );
    expect((await f.store.get('gr_foreign'))?.revokedAt).toBeNull();
    expect(f.events.at(-1)).toMatchObject({
      type: 'grant.revoke',
      subject: RT,
      reasons: expect.arrayContaining(['by:tok_op', `runtime:${RT}`, 'count:4']) as unknown,
    });
    expect(out.auditSeq).toBe(f.seq - 1);
    // Nothing live left: no entry, nothing to record.
    expect(await svc.revokeRuntime(RT, 'tok_op', NOW)).toEqual({
      runtimeId: RT,
      revoked: [],
      auditSeq: null,
    });
  });

  it('a decision other than an explicit allow denies', async () => {
    const f = new Fakes();
    f.decision = () => ({ ...allow(), decision: 'maybe' as unknown as 'allow' });
    const req = signRequest(body(), f.key.privateKey);
    expect(await code(f.service().request(req, NOW))).toBe('policy_denied');
    expect(f.signed).toHaveLength(0);
    expect(f.events.at(-1)).toMatchObject({ type: 'grant.decision', decision: 'deny' });
  });
});

describe('tree width (issue 18)', () => {
  it('a parent with maxChildren children: grant_width_exceeded, also for children in flight', async () => {
    const f = new Fakes();
    const svc = f.service({ maxChildren: 3 });
    const parent = await svc.request(signRequest(body({ ttlSeconds: 600 }), f.key.privateKey), NOW);
    f.auditDelayMs = 5;
    const child = () =>
      svc.request(signRequest(body({ parentGrantId: parent.grantId }), f.key.privateKey), NOW);
    // Five at once: the in-flight ones count, so exactly three are issued.
    const results = await Promise.allSettled(Array.from({ length: 5 }, child));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(3);
    for (const r of results) {
      if (r.status === 'rejected')
        expect((r.reason as GrantorError).code).toBe('grant_width_exceeded');
    }
    expect(await f.store.children(parent.grantId)).toHaveLength(3);
    // A failed child frees its place: none is held by a request that released nothing.
    const other = await svc.request(signRequest(body({ ttlSeconds: 600 }), f.key.privateKey), NOW);
    f.policyFails = () => new Error('engine down');
    expect(
      await code(
        svc.request(signRequest(body({ parentGrantId: other.grantId }), f.key.privateKey), NOW),
      ),
    ).toBe('policy_unavailable');
    f.policyFails = undefined;
    const childOf = (id: string) =>
      svc.request(signRequest(body({ parentGrantId: id }), f.key.privateKey), NOW);
    for (let i = 0; i < 3; i += 1) await childOf(other.grantId);
    expect(await code(childOf(other.grantId))).toBe('grant_width_exceeded');
  });
});

describe('refusals on the record (issue 16)', () => {
  /** One refusal per code, each from a fresh service: its grant.refused entry. */
  const cases: [string, (f: Fakes) => Record<string, unknown>][] = [
    ['unknown_runtime', (f) => signRequest(body({ runtimeId: 'rt_nobody' }), f.key.privateKey)],
    [
      'runtime_not_active',
      (f) => {
        f.addRuntime('rt_revoked', {}, 'revoked');
        f.addSession('at_r', 'rt_revoked', f.key);
        return signRequest(
          body({ runtimeId: 'rt_revoked', session: { attestationId: 'at_r' } }),
          f.key.privateKey,
        );
      },
    ],
    [
      'session_not_live',
      (f) => signRequest(body({ session: { attestationId: 'at_gone' } }), f.key.privateKey),
    ],
    [
      'session_runtime_mismatch',
      (f) => {
        f.addRuntime('rt_other', {});
        f.addSession('at_other', 'rt_other', f.key);
        return signRequest(body({ session: { attestationId: 'at_other' } }), f.key.privateKey);
      },
    ],
    ['request_signature_invalid', () => signRequest(body(), sessionKey().privateKey)],
    [
      'request_stale',
      (f) =>
        signRequest(
          body({ issuedAt: new Date(NOW.getTime() - 61_000).toISOString() }),
          f.key.privateKey,
        ),
    ],
    [
      'grant_parent_not_found',
      (f) => signRequest(body({ parentGrantId: 'gr_missing' }), f.key.privateKey),
    ],
  ];
  for (const [expected, make] of cases) {
    it(`${expected}: one grant.refused entry with its code, the claimed runtime and the body`, async () => {
      const f = new Fakes();
      const req = make(f);
      expect(await code(f.service().request(req, NOW))).toBe(expected);
      const refused = f.events.filter((e) => e.type === 'grant.refused');
      expect(refused).toHaveLength(1);
      expect(refused[0]).toMatchObject({
        decision: expected,
        subject: req.runtimeId,
        digest: requestDigest(req),
        body: unsignedRequestText(req),
        facts: { code: expected, runtime: req.runtimeId, requestId: req.requestId },
      });
    });
  }

  it('request_replayed: the replay is on the record, the first request is a decision', async () => {
    const f = new Fakes();
    const svc = f.service();
    const req = signRequest(body(), f.key.privateKey);
    await svc.request(req, NOW);
    expect(await code(svc.request(req, NOW))).toBe('request_replayed');
    expect(f.events.map((e) => [e.type, e.decision])).toEqual([
      ['grant.decision', 'allow'],
      ['grant.refused', 'request_replayed'],
    ]);
  });

  it('a refusal answers within the audit deadline when the log is stuck, and is counted as dropped', async () => {
    const f = new Fakes();
    const svc = f.service();
    f.auditStuck = true;
    const stale = { issuedAt: new Date(NOW.getTime() - 61_000).toISOString() };
    expect(await code(svc.request(signRequest(body(stale), f.key.privateKey), NOW))).toBe(
      'request_stale',
    );
    f.auditStuck = false;
    const other = signRequest(body({ session: { attestationId: 'at_gone' } }), f.key.privateKey);
    expect(await code(svc.request(other, NOW))).toBe('session_not_live');
    expect(f.events).toHaveLength(1);
    expect(f.events[0]).toMatchObject({
      type: 'grant.refused',
      decision: 'session_not_live',
      facts: { dropped: 1 },
    });
  });

  it('a body that does not parse is not a refusal on the record (bad_request, nothing audited)', async () => {
    const f = new Fakes();
    expect(await code(f.service().request(body({ ttlSeconds: 0 }), NOW))).toBe('bad_request');
    expect(f.events).toHaveLength(0);
  });

  it('a runtime id that is no id is recorded by its digest, never as written', async () => {
    const f = new Fakes();
    const req = signRequest(body({ runtimeId: 'rt\nforged line' }), f.key.privateKey);
    expect(await code(f.service().request(req, NOW))).toBe('unknown_runtime');
    const facts = f.events[0]?.facts as { runtime: string } | undefined;
    expect(facts?.runtime).toMatch(/^digest:[0-9a-f]{64}$/);
  });

  it('a flood of 10,000 refusals writes a bounded number of entries, and counts the rest', async () => {
    const f = new Fakes();
    const svc = f.service({
      refusals: { windowSeconds: 60, maxEntriesPerWindow: 50, maxPerRuntime: 5 },
    });
    const bad = sessionKey().privateKey;
    // 10,000 bad signatures under 1,000 made-up runtime names plus the real one.
    const forged = new Map<string, Record<string, unknown>>();
    for (let i = 0; i < 10_000; i += 1) {
      const runtimeId = i % 10 === 0 ? RT : `rt_fake_${i % 1000}`;
      const req = forged.get(runtimeId) ?? signRequest(body({ runtimeId }), bad);
      forged.set(runtimeId, req);
      await code(svc.request(req, NOW));
    }
    const refused = f.events.filter((e) => e.type === 'grant.refused');
    expect(refused.length).toBeLessThanOrEqual(50);
    expect(refused.length).toBeGreaterThan(0);
    // The next window: the summary of what was only counted is written.
    const later = new Date(NOW.getTime() + 61_000);
    await code(svc.request(signRequest(body({ issuedAt: later.toISOString() }), bad), later));
    const last = f.events.at(-1)?.facts as { repeats: number; dropped: number } | undefined;
    const counted = (last?.repeats ?? 0) + (last?.dropped ?? 0);
    expect(counted).toBeGreaterThan(0);
    expect(refused.length + counted).toBeLessThanOrEqual(10_000);
  }, 60_000);
});

describe('the policy context (issue 18)', () => {
  it('a root grant: the audience and the gateways holding it; no parent', async () => {
    const f = new Fakes();
    const asked: string[] = [];
    f.gateways = {
      serving: (audience) => {
        asked.push(audience);
        return Promise.resolve([{ id: 'gw_00000000000000aa', name: 'tickets' }]);
      },
    };
    await f.service().request(signRequest(body(), f.key.privateKey), NOW);
    expect(asked).toEqual(['gw_tickets']);
    expect(f.policyCalls[0]?.audience).toEqual({
      name: 'gw_tickets',
      gateways: [{ id: 'gw_00000000000000aa', name: 'tickets' }],
    });
    expect(f.policyCalls[0]?.lineage).toMatchObject({ parentResource: null, parentRuntime: null });
  });

  it("a delegated child: the parent's resource, runtime and assigned (not requested) labels", async () => {
    const f = new Fakes();
    f.addRuntime('rt_parent', { team: 'ops' });
    const view = f.runtimes.get('rt_parent');
    if (view !== undefined) {
      f.runtimes.set('rt_parent', { ...view, requestedLabels: { team: 'payments', env: 'x' } });
    }
    await f.store.create({
      grantId: 'gr_p',
      runtimeId: 'rt_parent',
      action: 'payments.transfer',
      resource: 'acct:77',
      audience: 'gw_payments',
      parent: null,
      root: 'gr_p',
      depth: 0,
      iat: NOW.getTime() / 1000 - 10,
      exp: NOW.getTime() / 1000 + 50,
      auditSeq: 0,
      revokedAt: null,
      redemption: null,
    });
    await f.service().request(signRequest(body({ parentGrantId: 'gr_p' }), f.key.privateKey), NOW);
    expect(f.policyCalls[0]?.lineage).toEqual({
      depth: 1,
      root: 'gr_p',
      parentAction: 'payments.transfer',
      delegated: true,
      parentResource: 'acct:77',
      parentRuntime: { id: 'rt_parent', labels: { team: 'ops' } },
    });
    // No gateway port: policies see none (a rule that needs one denies).
    expect(f.policyCalls[0]?.audience).toEqual({ name: 'gw_tickets', gateways: [] });
  });

  it('the gateways cannot be read: policy_unavailable, nothing decided, signed or recorded', async () => {
    const f = new Fakes();
    f.gateways = { serving: () => Promise.reject(new Error('LevelDB closed')) };
    const req = signRequest(body(), f.key.privateKey);
    expect(await code(f.service().request(req, NOW))).toBe('policy_unavailable');
    expect(f.policyCalls).toHaveLength(0);
    expect(f.signed).toHaveLength(0);
    expect(f.events.filter((e) => e.type === 'grant.decision')).toHaveLength(0);
  });
});

describe('revokeRuntimes: a trust change cascade (issue 18)', () => {
  it('40 runtimes with a live grant each: one entry within the log limits, with both counts', async () => {
    const f = new Fakes();
    const runtimes: string[] = [];
    for (let i = 0; i < 40; i += 1) {
      const id = `rt_many${String(i).padStart(2, '0')}`;
      runtimes.push(id);
      f.addRuntime(id, {});
      await f.store.create({
        grantId: `gr_${id}`,
        runtimeId: id,
        action: 'tickets.read',
        resource: 'ticket:1',
        audience: 'gw_tickets',
        parent: null,
        root: `gr_${id}`,
        depth: 0,
        iat: NOW.getTime() / 1000 - 10,
        exp: NOW.getTime() / 1000 + 50,
        auditSeq: 0,
        revokedAt: null,
        redemption: null,
      });
    }
    const out = await f
      .service()
      .revokeRuntimes(
        runtimes,
        { subject: 'refpolicy:fleet', reason: 'cause:refpolicy.disable' },
        'operator:tok_1',
        NOW,
      );
    expect(out.runtimes).toBe(40);
    expect(out.revoked).toHaveLength(40);
    const entry = f.events.at(-1);
    expect(entry).toMatchObject({ type: 'grant.revoke', subject: 'refpolicy:fleet' });
    expect(entry?.reasons?.length).toBeLessThanOrEqual(32);
    const runtimeIds = createHash('sha256')
      .update(JSON.stringify([...runtimes].sort()))
      .digest('hex');
    expect(entry?.reasons?.slice(0, 6)).toEqual([
      'by:operator:tok_1',
      'cause:refpolicy.disable',
      'runtimes:40',
      `runtimeIds:${runtimeIds}`,
      'count:40',
      expect.stringMatching(/^ids:[0-9a-f]{64}$/),
    ]);
    expect((await f.store.get('gr_rt_many07'))?.revokedAt).toBe(NOW.toISOString());
  });

  it('no live grant: the entry still counts the runtimes (their sessions ended)', async () => {
    const f = new Fakes();
    const out = await f
      .service()
      .revokeRuntimes([RT], { subject: 'ekca:sha256:aa', reason: 'cause:ekca.replace' }, 'x', NOW);
    expect(out).toMatchObject({ runtimes: 1, revoked: [] });
    expect(f.events.at(-1)?.reasons).toEqual(expect.arrayContaining(['runtimes:1', 'count:0']));
  });
});
