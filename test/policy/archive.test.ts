/**
 * The policy archive on the real appliance (startApplianceServer over swtpm, SoftHSM2,
 * LevelDB): the set active at start and every reloaded one are kept by hash before they
 * decide, GET /v1/policy/{hash} answers their texts (which re-hash to the hash), an unknown
 * hash is 404 policy_set_not_found, a malformed one 400, and only auditors and operators ask.
 */
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/http/app.js';
import { policySetHash, readPolicySource } from '../../src/policy/index.js';
import { startRealAppliance, type RealAppliance } from '../appliance/real.js';
import { repoRoot } from '../rig/sim.js';

interface Archived {
  hash: string;
  schema: string;
  policies: Record<string, string>;
}

const FREEZE = `@id("freeze-tickets")
@reason("tickets are frozen")
forbid (principal, action == Action::"tickets.read", resource);
`;

let policyDir: string;
let real: RealAppliance;
let app: App;
const tokens = { operator: '', auditor: '', custodian: '' };
const as = (who: keyof typeof tokens) => ({ authorization: `Bearer ${tokens[who]}` });

beforeAll(async () => {
  policyDir = await mkdtemp(join(tmpdir(), 'grantor-policy-archive-'));
  await cp(join(repoRoot, 'policies/default'), policyDir, { recursive: true });
  real = await startRealAppliance('policy-archive', {
    GRANTOR_POLICY_DIR: policyDir,
    GRANTOR_POLICY_WATCH: 'false',
  });
  app = real.server.app;
  const ops = real.server.appliance?.operators.tokens;
  if (ops === undefined) throw new Error('the appliance did not start');
  tokens.operator = (await ops.create({ role: 'operator', actor: 'olivia' })).token;
  tokens.auditor = (await ops.create({ role: 'auditor', actor: 'aude' })).token;
  tokens.custodian = (await ops.create({ role: 'key_custodian', actor: 'kim' })).token;
}, 180_000);

afterAll(async () => {
  await real.close();
  await rm(policyDir, { recursive: true, force: true });
});

/** The hash recomputed from an answer's texts, not taken from the answer. */
function rehash(a: Archived): string {
  return policySetHash({
    schema: a.schema,
    files: Object.entries(a.policies).map(([name, text]) => ({ name, text })),
  });
}

describe('GET /v1/policy/{hash}', () => {
  let startHash: string;

  it('answers the set active at start: its texts re-hash to the hash asked for', async () => {
    const source = await readPolicySource(policyDir, real.config().policy.schemaFile);
    startHash = policySetHash(source);
    const res = await app.inject({ url: `/v1/policy/${startHash}`, headers: as('auditor') });
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json<Archived>();
    expect(body.hash).toBe(startHash);
    expect(rehash(body)).toBe(startHash);
    expect(body.schema).toBe(source.schema);
    expect(Object.keys(body.policies).sort()).toEqual(source.files.map((f) => f.name).sort());
  });

  it('keeps every reloaded set, and the earlier one stays', async () => {
    await writeFile(join(policyDir, 'freeze.cedar'), FREEZE);
    const reload = await app.inject({
      method: 'POST',
      url: '/v1/policy/reload',
      headers: as('operator'),
    });
    expect(reload.statusCode, reload.body).toBe(200);
    const newHash = reload.json<{ hash: string }>().hash;
    expect(newHash).not.toBe(startHash);
    for (const hash of [startHash, newHash]) {
      const res = await app.inject({ url: `/v1/policy/${hash}`, headers: as('operator') });
      expect(res.statusCode).toBe(200);
      expect(rehash(res.json<Archived>())).toBe(hash);
    }
    const latest = await app.inject({ url: `/v1/policy/${newHash}`, headers: as('auditor') });
    expect(latest.json<Archived>().policies['freeze.cedar']).toBe(FREEZE);
  });

  it('answers 404 policy_set_not_found for a hash never active', async () => {
    const res = await app.inject({ url: `/v1/policy/${'0'.repeat(64)}`, headers: as('auditor') });
    expect(res.statusCode).toBe(404);
    expect(res.json<{ error: { code: string } }>().error.code).toBe('policy_set_not_found');
  });

  it('answers 400 bad_request for a malformed hash', async () => {
    for (const bad of ['ABCD', 'a'.repeat(63), `${'a'.repeat(64)}0`, 'G'.repeat(64)]) {
      const res = await app.inject({ url: `/v1/policy/${bad}`, headers: as('auditor') });
      expect(res.statusCode).toBe(400);
      expect(res.json<{ error: { code: string } }>().error.code).toBe('bad_request');
    }
  });

  it('refuses a missing credential (401) and a key custodian (403)', async () => {
    const anon = await app.inject({ url: `/v1/policy/${startHash}` });
    expect(anon.statusCode).toBe(401);
    const custodian = await app.inject({
      url: `/v1/policy/${startHash}`,
      headers: as('custodian'),
    });
    expect(custodian.statusCode).toBe(403);
    expect(custodian.json<{ error: { code: string } }>().error.code).toBe('forbidden');
  });
});
