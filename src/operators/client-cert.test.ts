import { beforeAll, describe, expect, it } from 'vitest';
import * as x509 from './x509.js';
import { GrantorError } from '../shared/errors.js';
import { OperatorCertificateVerifier, roleFromCertificate } from './client-cert.js';
import { makeCa, makeLeaf, type TestCa } from './testing/certs.js';

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (e instanceof GrantorError) return e.code;
    throw e;
  }
  throw new Error('expected a refusal');
}

describe('operator client certificates', () => {
  let ca: TestCa;
  let other: TestCa;
  let verifier: OperatorCertificateVerifier;
  const now = new Date();

  beforeAll(async () => {
    ca = await makeCa();
    other = await makeCa('someone else');
    verifier = new OperatorCertificateVerifier(ca.pem);
  });

  it('reads the role from a SAN URI', async () => {
    const der = await makeLeaf(ca, { cn: 'alice', uris: ['urn:grantor:role:auditor'] });
    const actor = await verifier.verify(der, now);
    expect(actor).toMatchObject({
      kind: 'operator',
      role: 'auditor',
      name: 'alice',
      credential: 'certificate',
    });
    expect(actor.id).toMatch(/^cert:[0-9a-f]+$/);
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
    expect(() => new OperatorCertificateVerifier('no pem here')).toThrow(TypeError);
  });
});
