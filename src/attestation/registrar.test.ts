import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeCa } from '../operators/testing/certs.js';
import { ConfigError } from '../shared/errors.js';
import { parseReferencePolicy } from './reference-policy.js';
import { AttestationTrust, bundleSha256 } from './registrar.js';
import type { AuditSink } from './service.js';
import { tempDirs } from '../shared/testing/temp-dirs.js';

const tmp = tempDirs('grantor-trust-');
afterAll(() => tmp.removeAll());

const actor = { id: 'tok_0123456789abcdef', role: 'operator', name: 'alice' };
const policies = [
  parseReferencePolicy(
    { name: 'a', selector: { fleet: 'a' }, pcrs: { sha256: { '0': ['00'.repeat(32)] } } },
    't',
  ),
  parseReferencePolicy(
    { name: 'b', catchAll: true, pcrs: { sha256: { '0': ['00'.repeat(32)] } } },
    't',
  ),
];

async function open(dir: string, configuredEkCaPem: string, audit?: AuditSink) {
  const events: Parameters<AuditSink['record']>[0][] = [];
  const trust = await AttestationTrust.open({
    configuredEkCaPem,
    referencePolicies: policies,
    stateDir: dir,
    audit: audit ?? {
      record: (e) => {
        events.push(e);
        return Promise.resolve();
      },
    },
  });
  return { trust, events };
}

describe('AttestationTrust', () => {
  it('replaces the EK CA bundle at once, audited, and keeps it across a reopen', async () => {
    const dir = await tmp.make();
    const [first, second] = [await makeCa('first'), await makeCa('second')];
    const { trust, events } = await open(dir, first.pem);
    const before = trust.trustedEkCas;
    expect(trust.ekCa()).toMatchObject({
      source: 'configuration',
      sha256: bundleSha256(first.pem),
    });
    const view = await trust.replaceEkCa(second.pem, actor);
    expect(view).toMatchObject({ source: 'replaced', replacedBy: actor.id });
    expect(trust.trustedEkCas).not.toBe(before);
    expect(trust.trustedEkCas.map((c) => c.subject)).toEqual(['CN=second']);
    expect(events.map((e) => [e.type, e.subject])).toEqual([
      ['attestation.ekca.replace', `sha256:${bundleSha256(second.pem)}`],
    ]);
    const again = await open(dir, first.pem);
    expect(again.trust.ekCa()).toMatchObject({
      source: 'replaced',
      sha256: bundleSha256(second.pem),
    });
  });

  it('changes nothing when the audit log cannot record', async () => {
    const dir = await tmp.make();
    const [first, second] = [await makeCa('first'), await makeCa('second')];
    const { trust } = await open(dir, first.pem, {
      record: () => Promise.reject(new Error('log down')),
    });
    await expect(trust.replaceEkCa(second.pem, actor)).rejects.toMatchObject({
      code: 'audit_unavailable',
    });
    await expect(trust.setReferencePolicyEnabled('a', false, actor)).rejects.toMatchObject({
      code: 'audit_unavailable',
    });
    expect(trust.ekCa().sha256).toBe(bundleSha256(first.pem));
    expect(trust.referencePolicies.map((p) => p.name)).toEqual(['a', 'b']);
    expect(await readdir(dir)).toEqual([]);
  });

  it('disables and enables a policy for quote verification, persisted', async () => {
    const dir = await tmp.make();
    const ca = await makeCa('ca');
    const { trust } = await open(dir, ca.pem);
    await expect(trust.setReferencePolicyEnabled('a', true, actor)).rejects.toMatchObject({
      code: 'reference_policy_state_invalid',
    });
    expect(() => {
      trust.checkReferencePolicy('zz', true);
    }).toThrow(expect.objectContaining({ code: 'reference_policy_not_found' }));
    await trust.setReferencePolicyEnabled('a', false, actor);
    expect(trust.referencePolicies.map((p) => p.name)).toEqual(['b']);
    const reopened = await open(dir, ca.pem);
    expect(reopened.trust.referencePolicyViews()[0]).toMatchObject({
      name: 'a',
      enabled: false,
      disabledBy: actor.id,
    });
    await reopened.trust.setReferencePolicyEnabled('a', true, actor);
    expect(reopened.trust.referencePolicies.map((p) => p.name)).toEqual(['a', 'b']);
  });

  it('refuses to start on a damaged persisted bundle (fail closed)', async () => {
    const dir = await tmp.make();
    const ca = await makeCa('ca');
    const { trust } = await open(dir, ca.pem);
    await trust.replaceEkCa((await makeCa('other')).pem, actor);
    const file = join(dir, 'ek-ca.json');
    const saved = JSON.parse(await readFile(file, 'utf8')) as { pem: string };
    await writeFile(file, JSON.stringify({ ...saved, pem: ca.pem }));
    await expect(open(dir, ca.pem)).rejects.toBeInstanceOf(ConfigError);
  });
});
