import { beforeAll, describe, expect, it } from 'vitest';
import * as x509 from './x509.js';
import { createFakeCertificateRevocationStore } from './cert-revocations.memory.js';
import { CertificateRevocations } from './cert-revocations.service.js';
import { OperatorCertificateVerifier, roleFromCertificate } from './client-cert.js';
import { People } from './people.js';
import { MemoryPersonStore } from './person-store.memory.js';
import { makeCa, makeLeaf, type TestCa } from './testing/certs.js';
import { refusalCode as code } from '../shared/testing/refusal.js';

describe('operator client certificates', () => {
  let ca: TestCa;
  let other: TestCa;
  let verifier: OperatorCertificateVerifier;
  let people: People;
  const revocationStore = createFakeCertificateRevocationStore();
  const now = new Date();

  beforeAll(async () => {
    ca = await makeCa();
    other = await makeCa('someone else');
    people = new People(new MemoryPersonStore());
    await people.put('alice', {
      displayName: 'Alice Smith',
      roles: ['auditor', 'operator', 'key_custodian'],
      emails: ['alice@example.com'],
    });
    await people.put('bob', { displayName: 'Bob', roles: ['auditor'] });
    verifier = new OperatorCertificateVerifier(ca.pem, {
      people,
      revocations: revocationStore,
    });
  });

  it('reads the role from a SAN URI and the person from the SAN e-mail', async () => {
    const der = await makeLeaf(ca, { cn: 'whoever', uris: ['urn:grantor:role:auditor'] });
    const actor = await verifier.verify(der, now);
    expect(actor).toMatchObject({
      kind: 'operator',
      person: 'alice',
      role: 'auditor',
      name: 'Alice Smith',
      credential: 'certificate',
    });
    expect(actor.id).toMatch(/^cert:[0-9a-f]{16}:[0-9a-f]+$/);
  });

  it('names the person by a SAN URN or e-mail, normalised (case, NFKC, spaces)', async () => {
    for (const names of [
      { uris: ['urn:grantor:role:auditor', 'URN:Grantor:Operator:ALICE'], emails: [] },
      { uris: ['urn:grantor:role:auditor'], emails: [' Alice@EXAMPLE.com'] },
      { uris: ['urn:grantor:role:auditor', 'urn:grantor:operator:\uFF41lice'], emails: [] },
    ]) {
      const der = await makeLeaf(ca, names);
      expect((await verifier.verify(der, now)).person).toBe('alice');
    }
  });

  it('refuses a certificate naming nobody registered, two people, or a role the person lacks', async () => {
    for (const names of [
      { uris: ['urn:grantor:role:auditor'], emails: [] },
      { uris: ['urn:grantor:role:auditor'], emails: ['mallory@example.com'] },
      { uris: ['urn:grantor:role:auditor', 'urn:grantor:operator:bob'] },
      { uris: ['urn:grantor:role:operator', 'urn:grantor:operator:bob'], emails: [] },
    ]) {
      const der = await makeLeaf(ca, names);
      expect(await code(verifier.verify(der, now))).toBe('unauthenticated');
    }
  });

  it('matches role URNs without regard to case (RFC 8141), and the SAN wins over the OU', async () => {
    const der = await makeLeaf(ca, { ou: ['key_custodian'], uris: ['URN:grantor:role:auditor'] });
    expect(roleFromCertificate(new x509.X509Certificate(der))).toBe('auditor');
    expect((await verifier.verify(der, now)).role).toBe('auditor');
    // Any SAN URI decides alone: an OU never adds a role beside it.
    const onlyPerson = await makeLeaf(ca, {
      ou: ['key_custodian'],
      uris: ['urn:grantor:operator:alice'],
      emails: [],
    });
    expect(await code(verifier.verify(onlyPerson, now))).toBe('unauthenticated');
  });

  it('refuses a revoked certificate (issuer and serial), at once', async () => {
    const der = await makeLeaf(ca, { uris: ['urn:grantor:role:auditor'], serial: '0badcafe' });
    const actor = await verifier.verify(der, now);
    // The same serial from another issuer is another certificate.
    const foreign = new x509.X509Certificate(
      await makeLeaf(other, { uris: ['urn:grantor:role:auditor'], serial: '0badcafe' }),
    );
    const revocations = new CertificateRevocations(revocationStore);
    const other_ = revocations.describe({ pem: foreign.toString('pem') });
    expect(other_.id).not.toBe(actor.id);
    await revocations.revoke({ pem: foreign.toString('pem') }, 'test');
    expect((await verifier.verify(der, now)).id).toBe(actor.id);
    await revocations.revoke({ id: actor.id }, 'test');
    expect(await code(verifier.verify(der, now))).toBe('unauthenticated');
    expect(await verifier.stillValid(actor.id, 'alice', 'auditor', actor.expiresAt, now)).toBe(
      false,
    );
  });

  it('reads the role from the OU when no role URI exists', async () => {
    const der = await makeLeaf(ca, { cn: 'bob', ou: ['key_custodian'] });
    expect((await verifier.verify(der, now)).role).toBe('key_custodian');
  });

  it('prefers the SAN URI over the OU', async () => {
    const der = await makeLeaf(ca, { ou: ['key_custodian'], uris: ['urn:grantor:role:auditor'] });
    expect(roleFromCertificate(new x509.X509Certificate(der))).toBe('auditor');
  });

  it('refuses a certificate with no role, an unknown role or two roles', async () => {
    for (const options of [
      {},
      { uris: ['urn:grantor:role:root'] },
      { uris: ['urn:grantor:role:auditor', 'urn:grantor:role:operator'] },
      { ou: ['auditor', 'operator'] },
    ]) {
      const der = await makeLeaf(ca, options);
      expect(await code(verifier.verify(der, now))).toBe('unauthenticated');
    }
  });

  it('refuses a certificate from another CA, even one naming a role', async () => {
    const der = await makeLeaf(other, { uris: ['urn:grantor:role:operator'] });
    expect(await code(verifier.verify(der, now))).toBe('unauthenticated');
  });

  it('refuses a certificate whose issuer name matches but whose signature does not', async () => {
    const impostor = await makeCa('grantor operator CA');
    const der = await makeLeaf(impostor, { uris: ['urn:grantor:role:operator'] });
    expect(await code(verifier.verify(der, now))).toBe('unauthenticated');
  });

  it('refuses an expired or not yet valid certificate', async () => {
    const day = 24 * 3600 * 1000;
    const expired = await makeLeaf(ca, {
      uris: ['urn:grantor:role:operator'],
      notBefore: new Date(now.getTime() - 3 * day),
      notAfter: new Date(now.getTime() - day),
    });
    expect(await code(verifier.verify(expired, now))).toBe('unauthenticated');
    const early = await makeLeaf(ca, {
      uris: ['urn:grantor:role:operator'],
      notBefore: new Date(now.getTime() + day),
      notAfter: new Date(now.getTime() + 3 * day),
    });
    expect(await code(verifier.verify(early, now))).toBe('unauthenticated');
  });

  it('refuses a certificate not meant for client authentication', async () => {
    const der = await makeLeaf(ca, {
      uris: ['urn:grantor:role:operator'],
      eku: [x509.ExtendedKeyUsage.serverAuth],
    });
    expect(await code(verifier.verify(der, now))).toBe('unauthenticated');
  });

  it('never lets a runtime identity act as an operator', async () => {
    const der = await makeLeaf(ca, {
      uris: ['urn:grantor:runtime:rt_1', 'urn:grantor:role:operator'],
    });
    expect(await code(verifier.verify(der, now))).toBe('forbidden');
  });

  it('refuses bytes that are not a certificate', async () => {
    expect(await code(verifier.verify(new Uint8Array([0x30, 0x03, 0x02, 0x01]), now))).toBe(
      'unauthenticated',
    );
  });

  it('refuses to start without an operator CA', () => {
    expect(() => new OperatorCertificateVerifier('no pem here', { people })).toThrow(TypeError);
  });
});
