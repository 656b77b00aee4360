import { beforeEach, describe, expect, it } from 'vitest';
import { factsProblem } from '../audit/facts.js';
import { TPM_ST } from '../tpm/marshal/constants.js';
import { marshalTpm2bPublic, objectName } from '../tpm/marshal/public.js';
import { parseReferencePolicy } from './reference-policy.js';
import { createFakeRuntimeStore } from './runtime-store.memory.js';
import type { RuntimeStore } from './runtime-store.port.js';
import { AttestationService } from './service.js';
import {
  answerChallenge,
  codeOf,
  enrollRuntime,
  type FakeAudit,
  freshRuntime,
} from './testing/fakes.js';
import { SoftEk, SoftTpm } from './testing/soft-tpm.js';
import { qualifyingData } from './verify-quote.js';

let now: Date;
let audit: FakeAudit;
let svc: AttestationService;
let tpm: SoftTpm;
let ek: SoftEk;

function policyFor(t: SoftTpm, allowReset = true) {
  return parseReferencePolicy(
    {
      name: 'dev',
      catchAll: true,
      pcrs: {
        sha256: {
          '0': [t.value('sha256', 0).toString('hex')],
          '7': [t.value('sha256', 7).toString('hex')],
        },
      },
      allowReset,
    },
    'test',
  );
}

function makeService(allowReset = true): AttestationService {
  return new AttestationService(
    { trustedEkCas: [], referencePolicies: [policyFor(tpm, allowReset)], sessionTtlMs: 60_000 },
    { store: createFakeRuntimeStore(), audit, now: () => now.getTime() },
  );
}

async function enrollAndActivate(s = svc, t = tpm, e = ek, name = 'agent-7'): Promise<string> {
  const { runtimeId, secret } = await enrollRuntime(s, e, t, name);
  expect(await s.activate(runtimeId, { secret })).toEqual({
    runtimeId,
    state: 'pending_approval',
  });
  await s.approve(runtimeId);
  return runtimeId;
}

function quoteBody(
  runtimeId: string,
  options: Parameters<SoftTpm['quote']>[2] = {},
  s = svc,
  t = tpm,
) {
  return answerChallenge(s, t, runtimeId, options);
}

beforeEach(() => {
  ({ now, audit, tpm, ek } = freshRuntime());
  svc = makeService();
});

describe('AttestationService', () => {
  it('enroll -> activate -> approve -> challenge -> attest: trusted, with a live session', async () => {
    const runtimeId = await enrollAndActivate();
    const body = await quoteBody(runtimeId);
    const res = await svc.attest(runtimeId, body);
    expect(res.verdict).toBe('trusted');
    expect(res.reasons).toEqual([]);
    expect(res.validUntil).toBe('2030-01-01T00:01:00.000Z');
    const session = svc.sessionFor(res.attestationId);
    expect(session?.sessionKey).toEqual(body.sessionKey);
    expect(session?.akName).toBe(objectName(tpm.akPublic).toString('hex'));
    const view = await svc.getRuntime(runtimeId);
    expect(view.state).toBe('active');
    expect(view.lastAttestation?.verdict).toBe('trusted');
    expect(audit.events.map((e) => e.type)).toEqual([
      'runtime.enroll',
      'runtime.activate',
      'runtime.approve',
      'runtime.attest',
    ]);
    // Never a secret in the audit events: only digests and codes.
    expect(JSON.stringify(audit.events)).not.toContain(body.sessionKey.x);
    now = new Date('2030-01-01T00:01:00Z');
    expect(svc.sessionFor(res.attestationId)).toBeUndefined();
  });

  it('an untrusted quote (PCR value outside the policy) ends the session at once', async () => {
    const runtimeId = await enrollAndActivate();
    const first = await svc.attest(runtimeId, await quoteBody(runtimeId));
    tpm.extend('sha256', 7, 'malware');
    const second = await svc.attest(runtimeId, await quoteBody(runtimeId));
    expect(second.verdict).toBe('untrusted');
    expect(second.reasons).toEqual(['pcr_policy_violation']);
    expect(second.validUntil).toBeNull();
    expect(svc.sessionFor(first.attestationId)).toBeUndefined();
    expect(svc.sessionFor(second.attestationId)).toBeUndefined();
  });

  it('an authentic quote with a bad digest ends the session; a forged signature does not', async () => {
    const runtimeId = await enrollAndActivate();
    const first = await svc.attest(runtimeId, await quoteBody(runtimeId));
    const forged = await quoteBody(runtimeId);
    const sig = Buffer.from(forged.signature, 'base64');
    sig[sig.length - 1] = (sig[sig.length - 1] ?? 0) ^ 1;
    expect(
      await codeOf(svc.attest(runtimeId, { ...forged, signature: sig.toString('base64') })),
    ).toBe('quote_signature_invalid');
    expect(svc.sessionFor(first.attestationId)).toBeDefined();
    // Rejected before a verdict: typed facts (issue 16), the quote not authentic.
    const forgedEntry = audit.events.at(-1);
    expect(forgedEntry).toMatchObject({
      type: 'runtime.attest',
      decision: 'rejected',
      facts: { runtime: runtimeId, code: 'quote_signature_invalid', authentic: false },
    });
    expect(factsProblem('runtime.attest', forgedEntry?.facts)).toBeUndefined();
    const bad = await quoteBody(runtimeId, {
      tamper: (a) =>
        a.attested.type === TPM_ST.ATTEST_QUOTE
          ? { ...a, attested: { ...a.attested, pcrDigest: Buffer.alloc(32) } }
          : a,
    });
    expect(await codeOf(svc.attest(runtimeId, bad))).toBe('pcr_digest_mismatch');
    expect(svc.sessionFor(first.attestationId)).toBeUndefined();
    expect(audit.events.at(-1)).toMatchObject({
      type: 'runtime.attest',
      decision: 'rejected',
      reasons: ['pcr_digest_mismatch'],
      facts: {
        runtime: runtimeId,
        akName: expect.stringMatching(/^000b/) as unknown,
        referencePolicy: expect.any(String) as unknown,
        code: 'pcr_digest_mismatch',
        authentic: true,
      },
    });
    expect(factsProblem('runtime.attest', audit.events.at(-1)?.facts)).toBeUndefined();
  });

  it('nonces: reused, expired and foreign nonces are refused, and no session opens', async () => {
    const runtimeId = await enrollAndActivate();
    const body = await quoteBody(runtimeId);
    await svc.attest(runtimeId, body);
    expect(await codeOf(svc.attest(runtimeId, body))).toBe('nonce_reused');
    const late = await quoteBody(runtimeId);
    now = new Date(now.getTime() + 61_000);
    expect(await codeOf(svc.attest(runtimeId, late))).toBe('nonce_expired');
    const tpm2 = new SoftTpm('ecc');
    const other = await enrollAndActivate(svc, tpm2, new SoftEk(), 'agent-8');
    const foreign = await quoteBody(other, {}, svc, tpm2);
    expect(await codeOf(svc.attest(runtimeId, foreign))).toBe('quote_signature_invalid');
    const own = await quoteBody(runtimeId);
    const { nonce } = await svc.challenge(other);
    expect(await codeOf(svc.attest(runtimeId, { ...own, nonce }))).toBe('quote_nonce_mismatch');
  });

  it('a failed activation deletes the pending enrollment: a second try is unknown_runtime', async () => {
    const enrolled = await svc.enroll({
      name: 'a',
      ekPublic: ek.ekPublicBytes.toString('base64'),
      akPublic: tpm.akPublicBytes.toString('base64'),
    });
    const wrong = Buffer.alloc(32, 1).toString('base64');
    expect(await codeOf(svc.activate(enrolled.runtimeId, { secret: wrong }))).toBe(
      'activation_failed',
    );
    expect(await codeOf(svc.activate(enrolled.runtimeId, { secret: wrong }))).toBe(
      'unknown_runtime',
    );
    expect(JSON.stringify(audit.events)).not.toContain(wrong);
    // The EK is free again: it may enroll anew.
    expect(
      (
        await svc.enroll({
          name: 'a',
          ekPublic: ek.ekPublicBytes.toString('base64'),
          akPublic: tpm.akPublicBytes.toString('base64'),
        })
      ).state,
    ).toBe('pending_activation');
  });

  it('the credential is single-use', async () => {
    const runtimeId = await enrollAndActivate();
    expect(await codeOf(svc.activate(runtimeId, { secret: 'AAAA' }))).toBe('runtime_state_invalid');
  });

  it('refuses an EK already enrolled, and a known name with another EK/AK', async () => {
    await enrollAndActivate();
    const ak2 = new SoftTpm('ecc').akPublicBytes.toString('base64');
    expect(
      await codeOf(
        svc.enroll({ name: 'other', ekPublic: ek.ekPublicBytes.toString('base64'), akPublic: ak2 }),
      ),
    ).toBe('ek_already_enrolled');
    expect(
      await codeOf(
        svc.enroll({
          name: 'agent-7',
          ekPublic: new SoftEk().ekPublicBytes.toString('base64'),
          akPublic: ak2,
        }),
      ),
    ).toBe('runtime_identity_mismatch');
  });

  it('refuses an unrestricted or exportable AK at enrollment', async () => {
    const ak = tpm.akPublic;
    for (const [change, code] of [
      [{ restricted: false }, 'ak_not_restricted'],
      [{ fixedTPM: false }, 'ak_not_fixed_tpm'],
      [{ fixedParent: false }, 'ak_not_fixed_parent'],
    ] as const) {
      const bad = marshalTpm2bPublic({
        ...ak,
        objectAttributes: { ...ak.objectAttributes, ...change },
      });
      expect(
        await codeOf(
          svc.enroll({
            name: 'x',
            ekPublic: ek.ekPublicBytes.toString('base64'),
            akPublic: bad.toString('base64'),
          }),
        ),
      ).toBe(code);
    }
    expect(audit.events).toEqual([]);
  });

  it('an audit log that cannot record answers audit_unavailable and opens no session', async () => {
    const runtimeId = await enrollAndActivate();
    const body = await quoteBody(runtimeId);
    audit.failing = true;
    expect(await codeOf(svc.attest(runtimeId, body))).toBe('audit_unavailable');
    expect((await svc.getRuntime(runtimeId)).lastAttestation).toBeNull();
    expect(
      await codeOf(
        svc.enroll({
          name: 'n',
          ekPublic: new SoftEk().ekPublicBytes.toString('base64'),
          akPublic: tpm.akPublicBytes.toString('base64'),
        }),
      ),
    ).toBe('audit_unavailable');
  });

  it('only active runtimes are challenged; revocation ends the session', async () => {
    const enrolled = await svc.enroll({
      name: 'p',
      ekPublic: ek.ekPublicBytes.toString('base64'),
      akPublic: tpm.akPublicBytes.toString('base64'),
    });
    expect(await codeOf(svc.challenge(enrolled.runtimeId))).toBe('runtime_state_invalid');
    expect(await codeOf(svc.challenge('rt_nope'))).toBe('unknown_runtime');
    expect(await codeOf(svc.approve(enrolled.runtimeId))).toBe('runtime_state_invalid');
    const runtimeId = await enrollAndActivate(svc, tpm, new SoftEk(), 'q');
    const res = await svc.attest(runtimeId, await quoteBody(runtimeId));
    await svc.revoke(runtimeId);
    expect(svc.sessionFor(res.attestationId)).toBeUndefined();
    expect(await codeOf(svc.challenge(runtimeId))).toBe('runtime_state_invalid');
    expect(await codeOf(svc.revoke(runtimeId))).toBe('runtime_state_invalid');
  });

  it('cached runtime records: reads after a change see it; a read that raced a write is not kept', async () => {
    const store = createFakeRuntimeStore();
    let reads = 0;
    let holdNext: Promise<void> | undefined;
    const slow: RuntimeStore = {
      get: async (id) => {
        reads += 1;
        const hold = holdNext;
        holdNext = undefined;
        const r = await store.get(id);
        // Read now, answered after whatever runs while `hold` is pending.
        if (hold !== undefined) await hold;
        return r;
      },
      scan: (after, limit) => store.scan(after, limit),
      release: (r) => store.release(r),
      findByEk: (fp) => store.findByEk(fp),
      findByName: (name) => store.findByName(name),
      create: (r) => store.create(r),
      update: (r) => store.update(r),
      delete: (r) => store.delete(r),
    };
    const make = () =>
      new AttestationService(
        { trustedEkCas: [], referencePolicies: [policyFor(tpm)], sessionTtlMs: 60_000 },
        { store: slow, audit, now: () => now.getTime() },
      );
    const s = make();
    const runtimeId = await enrollAndActivate(s);
    expect((await s.getRuntime(runtimeId)).state).toBe('active');
    const before = reads;
    expect((await s.getRuntime(runtimeId)).state).toBe('active');
    expect(reads).toBe(before);
    await s.revoke(runtimeId);
    expect((await s.getRuntime(runtimeId)).state).toBe('revoked');

    // A fresh service (nothing cached): a read that overlaps a revocation.
    const other = await enrollAndActivate(s, tpm, new SoftEk(), 'other');
    const t = make();
    let release = (): void => undefined;
    holdNext = new Promise((r) => {
      release = r;
    });
    const racing = t.getRuntime(other);
    await t.revoke(other);
    release();
    expect((await racing).state).toBe('active'); // read before the write: its answer stands
    expect((await t.getRuntime(other)).state).toBe('revoked'); // but it was not kept
  });

  it('resetCount going backwards is refused; a reset is reported, and untrusted when the policy forbids it', async () => {
    const runtimeId = await enrollAndActivate();
    await svc.attest(runtimeId, await quoteBody(runtimeId, { resetCount: 5 }));
    expect(await codeOf(svc.attest(runtimeId, await quoteBody(runtimeId, { resetCount: 4 })))).toBe(
      'tpm_counter_rollback',
    );
    const reset = await svc.attest(runtimeId, await quoteBody(runtimeId, { resetCount: 6 }));
    expect(reset).toMatchObject({
      verdict: 'trusted',
      reasons: ['tpm_reset_detected'],
      resetCount: 6,
    });

    const strict = makeService(false);
    const id2 = await enrollAndActivate(strict);
    await strict.attest(id2, await quoteBody(id2, { resetCount: 5 }, strict));
    const res = await strict.attest(id2, await quoteBody(id2, { resetCount: 6 }, strict));
    expect(res).toMatchObject({ verdict: 'untrusted', reasons: ['tpm_reset_detected'] });
  });

  it('records clock and firmware of the last quote; a clock rollback and a firmware change', async () => {
    const store = createFakeRuntimeStore();
    const s = new AttestationService(
      { trustedEkCas: [], referencePolicies: [policyFor(tpm)], sessionTtlMs: 60_000 },
      { store, audit, now: () => now.getTime() },
    );
    const runtimeId = await enrollAndActivate(s);
    const ekRecord = await store.get(runtimeId);
    expect(ekRecord?.akQualifiedName).toMatch(/^000b[0-9a-f]{64}$/);
    expect(ekRecord?.lastQuote).toBeUndefined();
    await s.attest(runtimeId, await quoteBody(runtimeId, { clock: 5000n }, s));
    expect((await store.get(runtimeId))?.lastQuote).toEqual({
      clock: '5000',
      firmwareVersion: '0000200000000001',
    });
    // The first quote sets the firmware version: nothing to compare it with, no change.
    expect(audit.events.some((e) => e.type === 'runtime.firmware')).toBe(false);
    expect(await codeOf(s.attest(runtimeId, await quoteBody(runtimeId, { clock: 4999n }, s)))).toBe(
      'tpm_clock_rollback',
    );
    expect(audit.events.at(-1)).toMatchObject({
      type: 'runtime.attest',
      decision: 'rejected',
      reasons: ['tpm_clock_rollback'],
    });
    tpm.firmwareVersion = 0x2000_0000_0002n;
    await s.attest(runtimeId, await quoteBody(runtimeId, { clock: 6000n }, s));
    expect(audit.events.filter((e) => e.type === 'runtime.firmware')).toMatchObject([
      {
        subject: runtimeId,
        decision: 'changed',
        reasons: ['from:0000200000000001', 'to:0000200000000002'],
      },
    ]);
    expect((await store.get(runtimeId))?.lastQuote).toEqual({
      clock: '6000',
      firmwareVersion: '0000200000000002',
    });
  });

  it('proveQuote (quote-mode grants) checks against the given qualifying data and throws on violations', async () => {
    const runtimeId = await enrollAndActivate();
    const { nonce } = await svc.challenge(runtimeId);
    const n = Buffer.from(nonce, 'base64');
    const qd = qualifyingData(n, { action: 'x' });
    const ok = await svc.proveQuote(runtimeId, tpm.quote(n, qd), qd);
    expect(ok.akName).toBe(objectName(tpm.akPublic).toString('hex'));
    tpm.extend('sha256', 0, 'x');
    const n2 = Buffer.from((await svc.challenge(runtimeId)).nonce, 'base64');
    const qd2 = qualifyingData(n2, { action: 'x' });
    expect(await codeOf(svc.proveQuote(runtimeId, tpm.quote(n2, qd2), qd2))).toBe(
      'pcr_policy_violation',
    );
  });

  it('proveQuote answers in one call with the runtime as the verdict left it and its live session', async () => {
    const runtimeId = await enrollAndActivate();
    const body = await quoteBody(runtimeId);
    const attested = await svc.attest(runtimeId, body);
    const quoteWith = async (options: Parameters<SoftTpm['quote']>[2] = {}) => {
      const n = Buffer.from((await svc.challenge(runtimeId)).nonce, 'base64');
      const qd = qualifyingData(n, { action: 'x' });
      return svc.proveQuote(runtimeId, tpm.quote(n, qd, options), qd);
    };
    const proof = await quoteWith({ clock: 200_000n });
    expect(proof.session?.attestationId).toBe(attested.attestationId);
    expect(proof.session?.sessionKey).toEqual(body.sessionKey);
    expect(proof.runtime).toMatchObject({
      runtimeId,
      state: 'active',
      lastAttestation: { attestationId: attested.attestationId, verdict: 'trusted' },
      lastQuote: { clock: '200000' },
    });
    // A restart leaves the session live, the new counters in the runtime's view.
    const restarted = await quoteWith({ clock: 200_500n, restartCount: 1 });
    expect(restarted.session?.attestationId).toBe(attested.attestationId);
    expect(restarted.runtime.counters).toEqual({ resetCount: 3, restartCount: 1 });
    // A reset ends it: the verdict stands, with no session to hold a grant.
    const reset = await quoteWith({ clock: 10n, resetCount: 4, restartCount: 0 });
    expect(reset.resetDetected).toBe(true);
    expect(reset.session).toBeUndefined();
    // Without an attestation there is no session either.
    const otherTpm = new SoftTpm('ecc');
    otherTpm.extend('sha256', 7, 'boot');
    const other = await enrollAndActivate(svc, otherTpm, new SoftEk(), 'agent-8');
    const n = Buffer.from((await svc.challenge(other)).nonce, 'base64');
    const qd = qualifyingData(n, { action: 'x' });
    expect((await svc.proveQuote(other, otherTpm.quote(n, qd), qd)).session).toBeUndefined();
  });

  it('refuses a session key that is not an EC P-256 public JWK on the curve', async () => {
    const runtimeId = await enrollAndActivate();
    const body = await quoteBody(runtimeId);
    const offCurve = { ...body.sessionKey, y: body.sessionKey.x };
    expect(await codeOf(svc.attest(runtimeId, { ...body, sessionKey: offCurve }))).toBe(
      'session_key_invalid',
    );
    expect(
      await codeOf(svc.attest(runtimeId, { ...body, sessionKey: { ...body.sessionKey, d: 'x' } })),
    ).toBe('session_key_invalid');
  });

  describe('refusals before the quote is checked are audited like the later ones', () => {
    /** The service over `store` as configured now (a fresh record cache). */
    const over = (store: RuntimeStore, referencePolicies = [policyFor(tpm, true)]) =>
      new AttestationService(
        { trustedEkCas: [], referencePolicies, sessionTtlMs: 60_000 },
        { store, audit, now: () => now.getTime() },
      );

    /** A runtime enrolled and active on a service over `store`, and a quote body for it. */
    async function enrolledOver(store: RuntimeStore) {
      const first = over(store);
      const runtimeId = await enrollAndActivate(first);
      return { runtimeId, body: await quoteBody(runtimeId, {}, first) };
    }

    /** `attempt` fails with `code` and writes one rejected entry with `facts` (typed). */
    async function refusedEntry(
      attempt: Promise<unknown>,
      code: string,
      facts: Record<string, unknown>,
    ): Promise<Parameters<FakeAudit['record']>[0]> {
      const before = audit.events.length;
      expect(await codeOf(attempt)).toBe(code);
      const added = audit.events.slice(before);
      expect(added).toHaveLength(1);
      const [entry] = added;
      if (entry === undefined) throw new Error('no entry');
      expect(entry).toMatchObject({
        type: 'runtime.attest',
        decision: 'rejected',
        reasons: [code],
      });
      expect(factsProblem(entry.type, entry.facts)).toBeUndefined();
      expect(entry.facts).toMatchObject({ code, authentic: false, ...facts });
      return entry;
    }

    it('runtime_state_invalid: a revoked runtime attesting', async () => {
      const runtimeId = await enrollAndActivate();
      const body = await quoteBody(runtimeId);
      await svc.revoke(runtimeId);
      const entry = await refusedEntry(svc.attest(runtimeId, body), 'runtime_state_invalid', {
        runtime: runtimeId,
        referencePolicy: 'dev',
      });
      expect(entry.subject).toBe(runtimeId);
    });

    it('reference_policy_unknown: no policy selects the runtime', async () => {
      const store = createFakeRuntimeStore();
      const { runtimeId, body } = await enrolledOver(store);
      await refusedEntry(over(store, []).attest(runtimeId, body), 'reference_policy_unknown', {
        runtime: runtimeId,
        referencePolicy: null,
      });
    });

    it('ek_certificate_untrusted: the EK chained to a CA no longer trusted', async () => {
      const store = createFakeRuntimeStore();
      const { runtimeId, body } = await enrolledOver(store);
      const record = await store.get(runtimeId);
      if (record?.ek === undefined || record.ek === null) throw new Error('no EK identity');
      await store.update({
        ...record,
        ek: {
          ...record.ek,
          certificate: { issuer: 'CN=gone', serialNumber: '01', chainSha256: ['00'.repeat(32)] },
        },
      });
      await refusedEntry(over(store).attest(runtimeId, body), 'ek_certificate_untrusted', {
        runtime: runtimeId,
        referencePolicy: 'dev',
      });
    });

    it('a log that cannot record the refusal answers audit_unavailable', async () => {
      const runtimeId = await enrollAndActivate();
      const body = await quoteBody(runtimeId);
      await svc.revoke(runtimeId);
      audit.failing = true;
      expect(await codeOf(svc.attest(runtimeId, body))).toBe('audit_unavailable');
    });
  });
});
