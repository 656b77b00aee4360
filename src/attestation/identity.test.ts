/**
 * Issue 12: what a runtime is comes from operators (enrollment rules, label assignment),
 * never from what it claims; pending enrollments expire; EKs are released by operators;
 * quote-mode verdicts are recorded like attestations. Service level, with a software TPM
 * (the real routes on swtpm: test/attestation/identity.test.ts).
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { parseEnrollmentRules, type EnrollmentRuleSet } from './enrollment-rules.js';
import { parseReferencePolicy } from './reference-policy.js';
import { createFakeRuntimeStore } from './runtime-store.memory.js';
import { AttestationService } from './service.js';
import {
  answerChallenge,
  codeOf,
  enrollRuntime,
  type FakeAudit,
  freshRuntime,
  sessionKey,
} from './testing/fakes.js';
import { SoftEk, SoftTpm } from './testing/soft-tpm.js';
import { qualifyingData } from './verify-quote.js';

const OPERATOR = { id: 'op_1', role: 'operator' };
const MINUTE = 60_000;

let now: Date;
let audit: FakeAudit;
let tpm: SoftTpm;
let ek: SoftEk;
let rules: EnrollmentRuleSet;

/** A strict policy for everyone, and a lax one for `team: payments` (PCR 7 unchecked). */
function policies(t: SoftTpm) {
  const pcr = (i: number) => [t.value('sha256', i).toString('hex')];
  return [
    parseReferencePolicy(
      { name: 'strict', catchAll: true, pcrs: { sha256: { '0': pcr(0), '7': pcr(7) } } },
      't',
    ),
    parseReferencePolicy(
      { name: 'lax', selector: { team: 'payments' }, pcrs: { sha256: { '0': pcr(0) } } },
      't',
    ),
  ];
}

function makeService(): AttestationService {
  const refs = policies(tpm);
  return new AttestationService(
    {
      trustedEkCas: [],
      referencePolicies: refs,
      get enrollmentRules() {
        return rules;
      },
      sessionTtlMs: 10 * MINUTE,
    },
    { store: createFakeRuntimeStore(), audit, now: () => now.getTime() },
  );
}

let svc: AttestationService;

async function enroll(
  name: string,
  labels: Record<string, string> = {},
  e = ek,
  t = tpm,
): Promise<{ runtimeId: string; secret: string }> {
  // The AK is created under this EK, as a real TPM's would be (its quotes name it).
  t.parentEk = e.ekPublic;
  return enrollRuntime(svc, e, t, name, labels);
}

async function attest(runtimeId: string) {
  return svc.attest(runtimeId, await answerChallenge(svc, tpm, runtimeId));
}

function ruleFor(e: SoftEk, labels: Record<string, string>, state = 'active') {
  return parseEnrollmentRules(
    {
      version: 1,
      rules: [{ name: 'fleet', match: { ekPublicKeySha256: [e.publicKeySha256] }, labels, state }],
    },
    'test',
  );
}

beforeEach(() => {
  ({ now, audit, tpm, ek } = freshRuntime());
  rules = { version: 1, rules: [] };
  svc = makeService();
});

describe('operator-owned identity', () => {
  it('labels a runtime claims are a request: never assigned, never selecting a laxer policy', async () => {
    const { runtimeId, secret } = await enroll('agent-1', { team: 'payments' });
    expect(await svc.activate(runtimeId, { secret })).toEqual({
      runtimeId,
      state: 'pending_approval',
    });
    await svc.approve(runtimeId);
    const view = await svc.getRuntime(runtimeId);
    expect(view.labels).toEqual({});
    expect(view.requestedLabels).toEqual({ team: 'payments' });
    expect(view.labelSource).toBeNull();
    // The strict policy applies: a changed PCR 7 is a violation, not ignored by `lax`.
    expect(view.referencePolicy).toBe('strict');
    tpm.extend('sha256', 7, 'rootkit');
    const verdict = await attest(runtimeId);
    expect(verdict.verdict).toBe('untrusted');
    expect(verdict.reasons).toEqual(['pcr_policy_violation']);
  });

  it('an enrollment rule matching the EK assigns its labels and state at activation', async () => {
    rules = ruleFor(ek, { team: 'payments' });
    const { runtimeId, secret } = await enroll('agent-1', { team: 'support' });
    expect((await svc.activate(runtimeId, { secret })).state).toBe('active');
    const view = await svc.getRuntime(runtimeId);
    expect(view.labels).toEqual({ team: 'payments' });
    expect(view.requestedLabels).toEqual({ team: 'support' });
    expect(view.labelSource).toBe('rule:fleet');
    expect(view.referencePolicy).toBe('lax');
    expect(view.ek.publicKeySha256).toBe(ek.publicKeySha256);
    expect(audit.events[0]).toMatchObject({ type: 'runtime.enroll', reasons: ['rule:fleet'] });
  });

  it('a rule may hold a matched runtime for approval; another EK matches nothing', async () => {
    rules = ruleFor(ek, { team: 'payments' }, 'pending_approval');
    const held = await enroll('agent-1');
    expect((await svc.activate(held.runtimeId, held)).state).toBe('pending_approval');
    const other = new SoftEk();
    const stranger = await enroll('agent-2', { team: 'payments' }, other, new SoftTpm('ecc'));
    expect((await svc.activate(stranger.runtimeId, stranger)).state).toBe('pending_approval');
    expect((await svc.getRuntime(stranger.runtimeId)).labels).toEqual({});
  });

  it('operators assign labels: audited, the session ends, the new policy applies', async () => {
    const { runtimeId, secret } = await enroll('agent-1');
    await svc.activate(runtimeId, { secret });
    await svc.approve(runtimeId);
    const first = await attest(runtimeId);
    expect(svc.sessionFor(first.attestationId)).toBeDefined();
    const view = await svc.assignLabels(runtimeId, { team: 'payments' }, OPERATOR);
    expect(view.labels).toEqual({ team: 'payments' });
    expect(view.labelSource).toBe('operator:op_1');
    expect(view.referencePolicy).toBe('lax');
    expect(svc.sessionFor(first.attestationId)).toBeUndefined();
    expect(audit.events.at(-1)).toMatchObject({
      type: 'runtime.labels.assign',
      reasons: ['operator:op_1'],
    });
    await svc.revoke(runtimeId);
    expect(await codeOf(svc.assignLabels(runtimeId, {}, OPERATOR))).toBe('runtime_state_invalid');
  });

  it('an assignment the audit log cannot record does not happen', async () => {
    const { runtimeId, secret } = await enroll('agent-1');
    await svc.activate(runtimeId, { secret });
    audit.failing = true;
    expect(await codeOf(svc.assignLabels(runtimeId, { team: 'x' }, OPERATOR))).toBe(
      'audit_unavailable',
    );
    audit.failing = false;
    expect((await svc.getRuntime(runtimeId)).labels).toEqual({});
  });
});

describe('enrollment lifecycle', () => {
  it('a squatted EK is freed when the pending enrollment expires', async () => {
    await enroll('squatter');
    expect(await codeOf(enroll('owner'))).toBe('ek_already_enrolled');
    now = new Date(now.getTime() + 15 * MINUTE - 1);
    expect(await codeOf(enroll('owner'))).toBe('ek_already_enrolled');
    now = new Date(now.getTime() + 1);
    const owner = await enroll('owner');
    expect((await svc.activate(owner.runtimeId, owner)).state).toBe('pending_approval');
    expect(audit.events.map((e) => e.type)).toContain('runtime.enroll_expired');
  });

  it('an expired name is freed too, and an expired enrollment cannot activate', async () => {
    const late = await enroll('agent-1');
    expect((await svc.getRuntime(late.runtimeId)).pendingExpiresAt).toBe(
      '2030-01-01T00:15:00.000Z',
    );
    now = new Date(now.getTime() + 16 * MINUTE);
    expect(await codeOf(svc.activate(late.runtimeId, late))).toBe('enrollment_expired');
    expect(await codeOf(svc.getRuntime(late.runtimeId))).toBe('unknown_runtime');
    const again = await enroll('agent-1');
    expect(again.runtimeId).not.toBe(late.runtimeId);
  });

  it("a revoked runtime's EK stays blocked until an operator releases it", async () => {
    const { runtimeId, secret } = await enroll('agent-1');
    await svc.activate(runtimeId, { secret });
    expect(await codeOf(svc.release(runtimeId, OPERATOR))).toBe('runtime_state_invalid');
    await svc.revoke(runtimeId);
    now = new Date(now.getTime() + 60 * MINUTE);
    expect(await codeOf(enroll('agent-2'))).toBe('ek_revoked');
    const released = await svc.release(runtimeId, OPERATOR);
    expect(released.released).toEqual({ at: now.toISOString(), by: 'op_1' });
    expect(await codeOf(svc.release(runtimeId, OPERATOR))).toBe('runtime_state_invalid');
    expect(audit.events.at(-1)).toMatchObject({
      type: 'runtime.release',
      reasons: ['operator:op_1'],
    });
    const again = await enroll('agent-1');
    expect(again.runtimeId).not.toBe(runtimeId);
  });

  it('a pending enrollment can be released at once (revoked, EK and name freed)', async () => {
    const squat = await enroll('agent-1');
    const view = await svc.release(squat.runtimeId, OPERATOR);
    expect(view.state).toBe('revoked');
    expect(await codeOf(svc.activate(squat.runtimeId, squat))).toBe('runtime_state_invalid');
    await enroll('agent-1');
  });
});

describe('inventory', () => {
  it('filters by state, label, reference policy and verdict, and pages with a cursor', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const t = new SoftTpm('ecc');
      const e = new SoftEk();
      const r = await enroll(`agent-${i}`, {}, e, t);
      if (i < 4) await svc.activate(r.runtimeId, r);
      if (i < 2) await svc.assignLabels(r.runtimeId, { team: 'payments' }, OPERATOR);
      ids.push(r.runtimeId);
    }
    ids.sort();
    const all = await svc.listRuntimes({ limit: 2 });
    expect(all.runtimes.map((r) => r.runtimeId)).toEqual(ids.slice(0, 2));
    const next = await svc.listRuntimes({ limit: 10, after: all.nextCursor ?? '' });
    expect(next.runtimes.map((r) => r.runtimeId)).toEqual(ids.slice(2));
    expect(next.nextCursor).toBeNull();
    expect(
      (await svc.listRuntimes({ limit: 10, state: 'pending_activation' })).runtimes,
    ).toHaveLength(1);
    const payments = await svc.listRuntimes({ limit: 10, label: ['team', 'payments'] });
    expect(payments.runtimes).toHaveLength(2);
    expect((await svc.listRuntimes({ limit: 10, referencePolicy: 'lax' })).runtimes).toHaveLength(
      2,
    );
    expect((await svc.listRuntimes({ limit: 10, verdict: 'none' })).runtimes).toHaveLength(5);
    expect((await svc.listRuntimes({ limit: 10, verdict: 'trusted' })).runtimes).toHaveLength(0);
    // Five software EKs (RSA-2048 key generation) on a busy machine.
  }, 60_000);
});

describe('quote-mode verdicts', () => {
  async function activeWithSession(): Promise<{ runtimeId: string; attestationId: string }> {
    const { runtimeId, secret } = await enroll('agent-1');
    await svc.activate(runtimeId, { secret });
    await svc.approve(runtimeId);
    return { runtimeId, attestationId: (await attest(runtimeId)).attestationId };
  }

  async function quoteFor(runtimeId: string, qd: Buffer) {
    const { nonce } = await svc.challenge(runtimeId);
    return tpm.quote(Buffer.from(nonce, 'base64'), qd);
  }

  it('a violation is audited, read as the last attestation, and ends the session', async () => {
    const { runtimeId, attestationId } = await activeWithSession();
    tpm.extend('sha256', 7, 'rootkit');
    const qd = Buffer.alloc(32, 7);
    expect(await codeOf(svc.proveQuote(runtimeId, await quoteFor(runtimeId, qd), qd))).toBe(
      'pcr_policy_violation',
    );
    expect(audit.events.at(-1)).toMatchObject({
      type: 'runtime.quote',
      decision: 'untrusted',
      reasons: ['pcr_policy_violation'],
    });
    const view = await svc.getRuntime(runtimeId);
    expect(view.lastAttestation?.verdict).toBe('untrusted');
    expect(view.lastAttestation?.reasons).toEqual(['pcr_policy_violation']);
    expect(svc.sessionFor(attestationId)).toBeUndefined();
  });

  it('a trusted quote is audited too and leaves the session', async () => {
    const { runtimeId, attestationId } = await activeWithSession();
    const qd = Buffer.alloc(32, 9);
    const verified = await svc.proveQuote(runtimeId, await quoteFor(runtimeId, qd), qd);
    expect(verified.runtimeId).toBe(runtimeId);
    expect(audit.events.at(-1)).toMatchObject({ type: 'runtime.quote', decision: 'trusted' });
    expect(svc.sessionFor(attestationId)).toBeDefined();
    expect((await svc.getRuntime(runtimeId)).lastAttestation?.attestationId).toBe(attestationId);
  });
});

describe('challenges', () => {
  it("an old quote replayed against a runtime's fresh nonce does not spend it", async () => {
    const { runtimeId, secret } = await enroll('agent-1');
    await svc.activate(runtimeId, { secret });
    await svc.approve(runtimeId);
    // A quote the runtime made earlier (quotes are not secret).
    const old = await svc.challenge(runtimeId);
    const key = sessionKey();
    const n = Buffer.from(old.nonce, 'base64');
    const oldQuote = tpm.quote(n, qualifyingData(n, key));
    const fresh = await svc.challenge(runtimeId);
    expect(
      await codeOf(svc.attest(runtimeId, { ...oldQuote, nonce: fresh.nonce, sessionKey: key })),
    ).toBe('quote_nonce_mismatch');
    // The runtime's own answer to the fresh nonce still works.
    const f = Buffer.from(fresh.nonce, 'base64');
    const own = sessionKey();
    const verdict = await svc.attest(runtimeId, {
      ...tpm.quote(f, qualifyingData(f, own)),
      sessionKey: own,
    });
    expect(verdict.verdict).toBe('trusted');
  });
});
