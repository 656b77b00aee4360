/**
 * Evidence an auditor can use (issue 16), end to end on the real parts of the grants rig
 * (swtpm runtimes and appliance TPM, SoftHSM2, LevelDB, Cedar): a runtime enrolls, attests,
 * is granted, is denied and is refused; an auditor then finds all of it through
 * GET /v1/audit/entries and GET /v1/runtimes/{id}/timeline, with typed facts, the request
 * bodies by digest, and no secret anywhere in the log.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer } from '../../src/http/app.js';
import { auditRoutes } from '../../src/http/routes/audit.js';
import { loadSecrets } from '../rig/secrets.js';
import { newSessionKeyPair, startRig, type Rig } from '../grants/rig.js';
import { attestedSupportRuntime, type SupportRuntime } from '../rig/support-runtime.js';

let rig: Rig;
let support: SupportRuntime;
let auditApp: ReturnType<typeof createServer>;
let allowed: { grantId: string; auditSeq: number };
let allowedBody: Record<string, unknown>;

interface Entry {
  seq: number;
  type: string;
  subject: string;
  decision?: string;
  digest: string;
  v?: number;
  facts?: Record<string, unknown>;
}

beforeAll(async () => {
  rig = await startRig();
  support = await attestedSupportRuntime(rig);
  auditApp = createServer();
  await auditApp.register(auditRoutes, { audit: rig.audit });
  await auditApp.ready();

  allowedBody = support.request();
  const ok = await rig.app.inject({ method: 'POST', url: '/v1/grants', payload: allowedBody });
  expect(ok.statusCode).toBe(201);
  allowed = ok.json();
  // A refusal after the body parsed: signed with a key that is not the session's.
  const forged = support.request({}, newSessionKeyPair().privateKey);
  const refused = await rig.app.inject({ method: 'POST', url: '/v1/grants', payload: forged });
  expect(refused.json<{ error: { code: string } }>().error.code).toBe('request_signature_invalid');
}, 180_000);

afterAll(async () => {
  await auditApp.close();
  await rig.close();
});

async function query(qs: string): Promise<{ entries: Entry[]; next: number | null }> {
  const res = await auditApp.inject({ method: 'GET', url: `/v1/audit/entries?${qs}` });
  expect(res.statusCode, res.body).toBe(200);
  return res.json();
}

describe('evidence an auditor can use', () => {
  it('the allow says what was decided (v2 facts) and its request body hashes to its digest', async () => {
    const { entries } = await query(`subject=${support.runtime.runtimeId}&type=grant.decision`);
    const entry = entries.find((e) => e.seq === allowed.auditSeq);
    expect(entry).toMatchObject({
      v: 2,
      subject: allowed.grantId,
      decision: 'allow',
      facts: {
        runtime: support.runtime.runtimeId,
        action: allowedBody.action,
        resource: allowedBody.resource,
        audience: allowedBody.audience,
        parent: null,
        requestId: allowedBody.requestId,
        parametersDigest: allowedBody.parametersDigest,
        proofMode: 'session',
        attestationId: support.session.attestationId,
      },
    });
    expect(entry?.facts?.policyHash).toMatch(/^[0-9a-f]{64}$/);
    expect(entry?.facts?.keyId).toEqual(expect.any(String));
    const res = await auditApp.inject({
      method: 'GET',
      url: `/v1/audit/bodies/${entry?.digest ?? ''}`,
    });
    expect(res.statusCode).toBe(200);
    const { body } = res.json<{ body: string }>();
    expect(createHash('sha256').update(body).digest('hex')).toBe(entry?.digest);
    expect(JSON.parse(body)).toMatchObject({
      runtimeId: support.runtime.runtimeId,
      requestId: allowedBody.requestId,
    });
  });

  it('the refusal is on the record under the runtime, with its code', async () => {
    const { entries } = await query(
      `subject=${support.runtime.runtimeId}&decision=request_signature_invalid`,
    );
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({
      type: 'grant.refused',
      facts: { runtime: support.runtime.runtimeId, code: 'request_signature_invalid' },
    });
  });

  it("the runtime's timeline: enrollment, attestation, grant and refusal, each with its seq", async () => {
    const res = await auditApp.inject({
      method: 'GET',
      url: `/v1/runtimes/${support.runtime.runtimeId}/timeline`,
    });
    expect(res.statusCode).toBe(200);
    const { events } = res.json<{ events: { seq: number; kind: string; grant?: string }[] }>();
    const kinds = events.map((e) => e.kind);
    for (const k of ['enrollment', 'attestation', 'grant', 'refusal']) expect(kinds).toContain(k);
    const seqs = events.map((e) => e.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(events.find((e) => e.kind === 'grant')?.grant).toBe(allowed.grantId);
  });

  it('attestation verdicts carry the AK name, PCR digest, counters and firmware', async () => {
    const { entries } = await query(`subject=${support.runtime.runtimeId}&type=runtime.attest`);
    const facts = entries[0]?.facts ?? {};
    expect(facts).toMatchObject({
      runtime: support.runtime.runtimeId,
      attestationId: support.session.attestationId,
    });
    expect(facts.akName).toMatch(/^000b[0-9a-f]{64}$/);
    expect(facts.pcrDigest).toMatch(/^[0-9a-f]{64}$/);
    expect(typeof facts.resetCount).toBe('number');
    expect(facts.firmware).toMatch(/^[0-9a-f]{16}$/);
  });

  it('validates filters: bad id 400, since not before until 422 audit_query_invalid, from with cursor 422', async () => {
    const bad = await auditApp.inject({ method: 'GET', url: '/v1/audit/entries?type=a%20b' });
    expect(bad.statusCode).toBe(400);
    const range = await auditApp.inject({
      method: 'GET',
      url: '/v1/audit/entries?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z',
    });
    expect(range.statusCode).toBe(422);
    expect(range.json<{ error: { code: string } }>().error.code).toBe('audit_query_invalid');
    const both = await auditApp.inject({ method: 'GET', url: '/v1/audit/entries?from=0&cursor=1' });
    expect(both.json<{ error: { code: string } }>().error.code).toBe('audit_query_invalid');
    const big = await auditApp.inject({
      method: 'GET',
      url: '/v1/audit/entries?type=x&limit=1001',
    });
    expect(big.statusCode).toBe(400);
    const body = await auditApp.inject({
      method: 'GET',
      url: `/v1/audit/bodies/${'0'.repeat(64)}`,
    });
    expect(body.statusCode).toBe(404);
  });

  it('no secret of the run is anywhere in the log (PINs, session private keys, tokens)', async () => {
    const all = JSON.stringify(await rig.audit.entries(0, 10_000));
    const file = process.env.GRANTOR_TEST_SECRETS_FILE;
    const secrets = file === undefined ? [] : await loadSecrets(file);
    for (const s of secrets) expect(all.includes(s.value), s.label).toBe(false);
    const d = support.session.key.privateKey.export({ format: 'jwk' }).d ?? '';
    expect(d).not.toBe('');
    expect(all.includes(d)).toBe(false);
  });
});
