/**
 * The adversarial suite: real swtpm quotes made with tpm2-tools, mutated, sent through the
 * routes. Every case asserts its error code and that no attestation (so no session) was
 * recorded for the runtime.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AttestationService,
  createFakeRuntimeStore,
  parseCaBundle,
  parseReferencePolicy,
} from '../../src/attestation/index.js';
import { TPM_ALG } from '../../src/tpm/marshal/constants.js';
import { marshalTpmtSignature, unmarshalTpmtSignature } from '../../src/tpm/marshal/signature.js';
import {
  enrollAndActivate,
  newSessionKey,
  qdHex,
  quoteWithTools,
  startHarness,
  type Harness,
  type ToolQuote,
} from './harness.js';
import { repoRoot } from '../rig/sim.js';
import { createEccAk, createRsaAk } from './tools.js';

const AK = '0x81010003';
let h: Harness;
let ecc: string; // runtime: RSA EK, ECC AK (persistent, survives the reset case)
let rsa: string; // runtime: P-384 EK, RSA AK

beforeAll(async () => {
  h = await startHarness();
  const t = h.tools;
  await createEccAk(t);
  await t.tpm2('evictcontrol', ['-C', 'o', '-c', 'ak.ctx', AK]);
  // Under the P-384 EK it enrolls with: a quote names its signer by the AK's place under the EK.
  await createRsaAk(t, '0x81010016');
  ecc = await enrollAndActivate(h, 'ecc-runtime', { ak: AK });
}, 120_000);

afterAll(async () => {
  await h.close();
});

async function attest(
  runtimeId: string,
  body: ToolQuote | Record<string, unknown>,
): Promise<{ status: number; code?: string; verdict?: string }> {
  const res = await h.app.inject({
    method: 'POST',
    url: `/v1/runtimes/${runtimeId}/attestations`,
    payload: body,
  });
  const json = res.json<{ error?: { code: string }; verdict?: string }>();
  return {
    status: res.statusCode,
    ...(json.error ? { code: json.error.code } : {}),
    ...(json.verdict ? { verdict: json.verdict } : {}),
  };
}

async function lastAttestation(runtimeId: string): Promise<unknown> {
  return (await h.svc.getRuntime(runtimeId)).lastAttestation;
}

/** Send `body`, expect `code`, and that no attestation was recorded (no session opened). */
async function refused(
  runtimeId: string,
  body: ToolQuote | Record<string, unknown>,
  code: string,
): Promise<void> {
  const before = await lastAttestation(runtimeId);
  const res = await attest(runtimeId, body);
  expect(res.code).toBe(code);
  expect(res.status).toBeGreaterThanOrEqual(400);
  expect(await lastAttestation(runtimeId)).toEqual(before);
}

const flip = (b64: string, index: number): string => {
  const b = Buffer.from(b64, 'base64');
  const i = index < 0 ? b.length + index : index;
  b[i] = (b[i] ?? 0) ^ 0x01;
  return b.toString('base64');
};

describe('adversarial quotes (real swtpm quotes, mutated)', () => {
  it('baseline: an untouched quote is trusted', async () => {
    expect((await attest(ecc, await quoteWithTools(h, ecc, { ak: AK }))).verdict).toBe('trusted');
  });

  it('wrong magic', async () => {
    const q = await quoteWithTools(h, ecc, { ak: AK });
    await refused(ecc, { ...q, quote: flip(q.quote, 3) }, 'quote_magic_invalid');
  });

  it('a CERTIFY attestation signed by the same AK, presented as a quote', async () => {
    const { nonce } = (
      await h.app.inject({ method: 'POST', url: `/v1/runtimes/${ecc}/challenges` })
    ).json<{ nonce: string }>();
    const q = await quoteWithTools(h, ecc, { ak: AK });
    await h.tools.tpm2('certify', [
      '-c',
      AK,
      '-C',
      AK,
      '-g',
      'sha256',
      // tpm2_certify (5.4) has no qualification option: extraData is empty, and the type
      // check comes first anyway.
      '-o',
      'certify.attest',
      '-s',
      'certify.sig',
    ]);
    const body = {
      ...q,
      nonce,
      quote: (await h.tools.read('certify.attest')).toString('base64'),
      signature: (await h.tools.read('certify.sig')).toString('base64'),
    };
    await refused(ecc, body, 'quote_type_invalid');
  });

  it('an NV_Certify attestation signed by the same AK, presented as a quote', async () => {
    await h.tools.tpm2('nvdefine', [
      '0x01500020',
      '-C',
      'o',
      '-s',
      '8',
      '-a',
      'ownerread|ownerwrite|authread|authwrite',
    ]);
    await h.tools.write('nv.bin', 'grantor!');
    await h.tools.tpm2('nvwrite', ['0x01500020', '-C', 'o', '-i', 'nv.bin']);
    const { nonce } = (
      await h.app.inject({ method: 'POST', url: `/v1/runtimes/${ecc}/challenges` })
    ).json<{ nonce: string }>();
    const key = newSessionKey();
    await h.tools.tpm2('nvcertify', [
      '-C',
      AK,
      '-g',
      'sha256',
      '-c',
      '0x01500020',
      '-q',
      qdHex(nonce, key),
      '--size',
      '8',
      '--offset',
      '0',
      '--attestation',
      'nv.attest',
      '-o',
      'nv.sig',
      '0x01500020',
    ]);
    const q = await quoteWithTools(h, ecc, { ak: AK });
    const body = {
      ...q,
      nonce,
      sessionKey: key,
      quote: (await h.tools.read('nv.attest')).toString('base64'),
      signature: (await h.tools.read('nv.sig')).toString('base64'),
    };
    await refused(ecc, body, 'quote_type_invalid');
  });

  it('PCR relabelling: values claimed for PCRs other than the signed selection', async () => {
    const q = await quoteWithTools(h, ecc, { ak: AK });
    const v = q.pcrs.sha256 ?? {};
    const relabelled = {
      sha256: { '0': v['0'], '1': v['1'], '2': v['2'], '3': v['3'], '8': v['7'] },
    };
    await refused(ecc, { ...q, pcrs: relabelled }, 'pcr_selection_mismatch');
  });

  it('a PCR the reference policy requires is missing from the quote', async () => {
    await refused(
      ecc,
      await quoteWithTools(h, ecc, { ak: AK, pcrs: [0, 1, 2] }),
      'pcr_selection_incomplete',
    );
  });

  it('one bit flipped in a PCR value', async () => {
    const q = await quoteWithTools(h, ecc, { ak: AK });
    const v = Buffer.from(q.pcrs.sha256?.['1'] ?? '', 'hex');
    v[31] = (v[31] ?? 0) ^ 1;
    await refused(
      ecc,
      { ...q, pcrs: { sha256: { ...q.pcrs.sha256, '1': v.toString('hex') } } },
      'pcr_digest_mismatch',
    );
  });

  it('one bit flipped in pcrDigest, in the attest bytes, and in the signature', async () => {
    const q1 = await quoteWithTools(h, ecc, { ak: AK });
    await refused(ecc, { ...q1, quote: flip(q1.quote, -1) }, 'quote_signature_invalid'); // pcrDigest is last
    const q2 = await quoteWithTools(h, ecc, { ak: AK });
    await refused(ecc, { ...q2, quote: flip(q2.quote, 50) }, 'quote_signature_invalid');
    const q3 = await quoteWithTools(h, ecc, { ak: AK });
    await refused(ecc, { ...q3, signature: flip(q3.signature, -1) }, 'quote_signature_invalid');
  });

  it('a replayed quote and a reused nonce', async () => {
    const q = await quoteWithTools(h, ecc, { ak: AK });
    expect((await attest(ecc, q)).verdict).toBe('trusted');
    await refused(ecc, q, 'nonce_reused');
    const again = await quoteWithTools(h, ecc, { ak: AK, nonce: q.nonce });
    await refused(ecc, again, 'nonce_reused');
  });

  it('an expired nonce', async () => {
    const { nonce } = (
      await h.app.inject({ method: 'POST', url: `/v1/runtimes/${ecc}/challenges` })
    ).json<{ nonce: string }>();
    const q = await quoteWithTools(h, ecc, { ak: AK, nonce });
    h.clock.now = new Date(h.clock.now.getTime() + 61_000);
    try {
      await refused(ecc, q, 'nonce_expired');
    } finally {
      h.clock.now = new Date();
    }
  });

  it('a nonce never issued', async () => {
    await refused(
      ecc,
      await quoteWithTools(h, ecc, { ak: AK, nonce: randomBytes(32).toString('base64') }),
      'nonce_unknown',
    );
  });

  it('ECDSA r or s zero or >= n', async () => {
    const n = Buffer.from(
      'ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551',
      'hex',
    );
    for (const change of [
      { r: Buffer.alloc(32) },
      { s: Buffer.alloc(32) },
      { r: n },
      { s: Buffer.alloc(32, 0xff) },
    ]) {
      const q = await quoteWithTools(h, ecc, { ak: AK });
      const sig = unmarshalTpmtSignature(Buffer.from(q.signature, 'base64'));
      if (sig.sigAlg !== TPM_ALG.ECDSA) throw new Error('expected ECDSA');
      await refused(
        ecc,
        { ...q, signature: marshalTpmtSignature({ ...sig, ...change }).toString('base64') },
        'quote_signature_out_of_range',
      );
    }
  });

  it('a SHA-1 bank offered where SHA-256 is required', async () => {
    await refused(
      ecc,
      await quoteWithTools(h, ecc, { ak: AK, bank: 'sha1', pcrs: [0, 7] }),
      'pcr_bank_not_allowed',
    );
  });

  it('at enrollment: an unrestricted AK and an exportable AK', async () => {
    const t = h.tools;
    await t.tpm2('createprimary', ['-C', 'o', '-g', 'sha256', '-G', 'ecc', '-c', 'prim.ctx']);
    await t.raw('create', [
      '-C',
      'prim.ctx',
      '-G',
      'ecc256:ecdsa-sha256',
      '-a',
      'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign',
      '-u',
      'unrestricted.pub',
      '-r',
      'unrestricted.priv',
    ]);
    await t.tpm2('create', [
      '-C',
      'prim.ctx',
      '-G',
      'ecc256:ecdsa-sha256:null',
      '-a',
      'sensitivedataorigin|userwithauth|sign|restricted',
      '-u',
      'exportable.pub',
      '-r',
      'exportable.priv',
    ]);
    await t.tpm2('nvread', ['0x01c00016', '-o', 'ek384.der']);
    const events = h.audit.events.length;
    for (const [file, code] of [
      ['unrestricted.pub', 'ak_not_restricted'],
      ['exportable.pub', 'ak_not_fixed_tpm'],
    ] as const) {
      const res = await h.app.inject({
        method: 'POST',
        url: '/v1/runtimes',
        payload: {
          name: `bad-${code}`,
          ekCertificate: (await t.read('ek384.der')).toString('base64'),
          akPublic: (await t.read(file)).toString('base64'),
        },
      });
      expect(res.json<{ error: { code: string } }>().error.code).toBe(code);
    }
    expect(h.audit.events.length).toBe(events);
  });

  it('a wrong activation secret, twice; then the EK may enroll again (P-384 EK, RSA AK)', async () => {
    const wrong = (real: Buffer): Buffer => Buffer.from(real.map((b) => b ^ 0xff));
    await expect(
      enrollAndActivate(h, 'rsa-runtime', {
        ek: 'ecc',
        ak: 'akrsa.ctx',
        akPub: 'akrsa.pub',
        secret: wrong,
      }),
    ).rejects.toThrow(/403.*activation_failed/);
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/runtimes',
      payload: {
        name: 'x',
        akPublic: (await h.tools.read('akrsa.pub')).toString('base64'),
        ekCertificate: (await h.tools.read('ek384.der')).toString('base64'),
      },
    });
    const id = res.json<{ runtimeId: string }>().runtimeId;
    const first = await h.app.inject({
      method: 'POST',
      url: `/v1/runtimes/${id}/activation`,
      payload: { secret: randomBytes(32).toString('base64') },
    });
    expect(first.json<{ error: { code: string } }>().error.code).toBe('activation_failed');
    const second = await h.app.inject({
      method: 'POST',
      url: `/v1/runtimes/${id}/activation`,
      payload: { secret: randomBytes(32).toString('base64') },
    });
    expect(second.json<{ error: { code: string } }>().error.code).toBe('unknown_runtime');
    rsa = await enrollAndActivate(h, 'rsa-runtime', {
      ek: 'ecc',
      ak: 'akrsa.ctx',
      akPub: 'akrsa.pub',
    });
    expect((await attest(rsa, await quoteWithTools(h, rsa, { ak: 'akrsa.ctx' }))).verdict).toBe(
      'trusted',
    );
  });

  it('RSA/ECDSA scheme swapped: each AK signature presented for the other runtime', async () => {
    const fromRsa = await quoteWithTools(h, rsa, { ak: 'akrsa.ctx' });
    const toEcc = await quoteWithTools(h, ecc, { ak: AK });
    await refused(
      ecc,
      { ...toEcc, signature: fromRsa.signature },
      'quote_signature_scheme_mismatch',
    );
    const fromEcc = await quoteWithTools(h, ecc, { ak: AK });
    const toRsa = await quoteWithTools(h, rsa, { ak: 'akrsa.ctx' });
    await refused(
      rsa,
      { ...toRsa, signature: fromEcc.signature },
      'quote_signature_scheme_mismatch',
    );
  });

  it("a foreign nonce: another runtime's challenge", async () => {
    const { nonce } = (
      await h.app.inject({ method: 'POST', url: `/v1/runtimes/${rsa}/challenges` })
    ).json<{ nonce: string }>();
    await refused(ecc, await quoteWithTools(h, ecc, { ak: AK, nonce }), 'nonce_unknown');
  });

  it('an EK certificate from an untrusted CA (real vendor roots only)', async () => {
    const dir = join(repoRoot, 'src/attestation/fixtures/tpm-vendor-ca');
    const vendor = readdirSync(dir)
      .filter((f) => f.endsWith('.pem'))
      .flatMap((f) => parseCaBundle(readFileSync(join(dir, f), 'utf8')));
    const svc = new AttestationService(
      {
        trustedEkCas: vendor,
        referencePolicies: [
          parseReferencePolicy(
            { name: 'p', catchAll: true, pcrs: { sha256: { '0': ['00'.repeat(32)] } } },
            't',
          ),
        ],
      },
      { store: createFakeRuntimeStore(), audit: h.audit },
    );
    await expect(
      svc.enroll({
        name: 'u',
        ekCertificate: (await h.tools.read('ek.der')).toString('base64'),
        akPublic: (await h.tools.read('ak.pub')).toString('base64'),
      }),
    ).rejects.toMatchObject({ code: 'ek_certificate_untrusted' });
  });

  it('resetCount going backwards: a quote from before a TPM reset, sent after a newer one', async () => {
    expect((await attest(ecc, await quoteWithTools(h, ecc, { ak: AK }))).verdict).toBe('trusted');
    const old = await quoteWithTools(h, ecc, { ak: AK });
    // An orderly TPM Reset: Shutdown(CLEAR), then Startup(CLEAR) when swtpm starts again.
    await h.tools.tpm2('shutdown', ['-c']);
    await h.tpm.stop();
    await h.tpm.restart();
    const fresh = await quoteWithTools(h, ecc, { ak: AK });
    const res = await h.app.inject({
      method: 'POST',
      url: `/v1/runtimes/${ecc}/attestations`,
      payload: fresh,
    });
    expect(res.json()).toMatchObject({ verdict: 'trusted', reasons: ['tpm_reset_detected'] });
    await refused(ecc, old, 'tpm_counter_rollback');
  });
});
