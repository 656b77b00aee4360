/**
 * Issue 12 on swtpm through the routes: ROCA-structured AK and EK keys are refused, a real
 * STMicro EK certificate read raw from NV (padded) is accepted, the TPM clock going back
 * within one boot is refused, and the AK's qualified name is checked against swtpm's.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LevelRuntimeStore } from '../../src/attestation/runtime-store.level.js';
import { rocaModulus } from '../../src/attestation/testing/roca-modulus.js';
import { TPM_ALG } from '../../src/tpm/marshal/constants.js';
import { marshalTpm2bPublic, unmarshalTpm2bPublic } from '../../src/tpm/marshal/public.js';
import { repoRoot } from '../rig/sim.js';
import {
  enrollAndActivate,
  quoteWithTools,
  startHarness,
  type Harness,
  type ToolQuote,
} from './harness.js';
import { createEccAk, createRsaAk } from './tools.js';

const fixtures = join(repoRoot, 'src/attestation/fixtures');
const vendorCaPem = readdirSync(join(fixtures, 'tpm-vendor-ca'))
  .filter((f) => f.endsWith('.pem'))
  .map((f) => readFileSync(join(fixtures, 'tpm-vendor-ca', f), 'utf8'))
  .join('\n');
const template = process.env.GRANTOR_TEST_TPM_TEMPLATE ?? '';
const swtpmCaPem = ['ca/issuercert.pem', 'ca/swtpm-localca-rootca-cert.pem']
  .map((f) => (template === '' ? '' : readFileSync(join(template, f), 'utf8')))
  .join('\n');

const AK = '0x81010003';
let h: Harness;
let runtimeId: string;

beforeAll(async () => {
  // The swtpm EK CA and the real vendor CAs: both kinds of EK certificate chain.
  h = await startHarness({ ekCaPem: `${swtpmCaPem}\n${vendorCaPem}` });
  await createEccAk(h.tools);
  await h.tools.tpm2('evictcontrol', ['-C', 'o', '-c', 'ak.ctx', AK]);
  await createRsaAk(h.tools);
  await h.tools.tpm2('nvread', ['0x01c00002', '-o', 'ek.der']);
  runtimeId = await enrollAndActivate(h, 'hardened', { ak: AK });
}, 120_000);

afterAll(async () => {
  await h.close();
});

async function enroll(payload: Record<string, string>): Promise<{ status: number; code?: string }> {
  const res = await h.app.inject({ method: 'POST', url: '/v1/runtimes', payload });
  const body = res.json<{ error?: { code: string } }>();
  return { status: res.statusCode, ...(body.error ? { code: body.error.code } : {}) };
}

/** A TPM2B_PUBLIC read from swtpm with its RSA modulus replaced by a ROCA-structured one. */
async function withRocaModulus(file: string): Promise<string> {
  const pub = unmarshalTpm2bPublic(await h.tools.read(file));
  if (pub.type !== TPM_ALG.RSA) throw new Error('not an RSA key');
  return marshalTpm2bPublic({ ...pub, unique: rocaModulus() }).toString('base64');
}

describe('key and certificate hardening (swtpm, routes)', () => {
  it('refuses a ROCA-structured RSA AK (ak_key_weak) and EK (ek_key_weak), audits nothing', async () => {
    await h.tools.tpm2('readpublic', ['-c', '0x81010001', '-o', 'ekrsa.pub']);
    const events = h.audit.events.length;
    expect(
      await enroll({
        name: 'roca-ak',
        ekCertificate: (await h.tools.read('ek.der')).toString('base64'),
        akPublic: await withRocaModulus('akrsa.pub'),
      }),
    ).toEqual({ status: 422, code: 'ak_key_weak' });
    expect(
      await enroll({
        name: 'roca-ek',
        ekPublic: await withRocaModulus('ekrsa.pub'),
        akPublic: (await h.tools.read('akrsa.pub')).toString('base64'),
      }),
    ).toEqual({ status: 422, code: 'ek_key_weak' });
    expect(h.audit.events.length).toBe(events);
  });

  it('accepts the real STMicro EK certificate as read from NV (DER then 0xFF padding)', async () => {
    const padded = readFileSync(
      join(fixtures, 'vendor-ek/keylime/stm_st33htph_rsa2048_ek_nv_padded.bin'),
    );
    expect(padded.subarray(-16).every((b) => b === 0xff)).toBe(true);
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/runtimes',
      payload: {
        name: 'stm-nv-read',
        ekCertificate: padded.toString('base64'),
        akPublic: (await h.tools.read('akrsa.pub')).toString('base64'),
      },
    });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({ state: 'pending_activation' });
    // Trailing bytes that are not padding stay refused.
    const tail = Buffer.concat([padded.subarray(0, 1169), Buffer.from('extra')]);
    expect(
      await enroll({
        name: 'stm-trailing',
        ekCertificate: tail.toString('base64'),
        akPublic: (await h.tools.read('akrsa.pub')).toString('base64'),
      }),
    ).toEqual({ status: 400, code: 'ek_certificate_invalid' });
  });
});

describe('quote checks (swtpm, routes)', () => {
  it("swtpm's qualifiedSigner is the AK under the EK: the quote is trusted", async () => {
    // tpm2_readpublic -q: the TPM's own qualified name of the AK, as enrollment computed it.
    await h.tools.tpm2('readpublic', ['-c', AK, '-q', 'ak.qn']);
    const record = await new LevelRuntimeStore(h.db).get(runtimeId);
    expect(record?.akQualifiedName).toBe((await h.tools.read('ak.qn')).toString('hex'));
    const res = await h.app.inject({
      method: 'POST',
      url: `/v1/runtimes/${runtimeId}/attestations`,
      payload: await quoteWithTools(h, runtimeId, { ak: AK }),
    });
    expect(res.json()).toMatchObject({ verdict: 'trusted' });
  });

  it('refuses the quote of an AK enrolled with an EK that is not its parent (quote_signer_mismatch)', async () => {
    // akrsa was created under the RSA EK; it enrolls with the P-384 EK of the same TPM, so
    // activation succeeds (both keys live in this TPM) but its qualified name is another.
    const other = await enrollAndActivate(h, 'wrong-parent', {
      ek: 'ecc',
      ak: 'akrsa.ctx',
      akPub: 'akrsa.pub',
    });
    const res = await h.app.inject({
      method: 'POST',
      url: `/v1/runtimes/${other}/attestations`,
      payload: await quoteWithTools(h, other, { ak: 'akrsa.ctx' }),
    });
    expect(res.statusCode).toBe(422);
    expect(res.json()).toMatchObject({ error: { code: 'quote_signer_mismatch' } });
  });

  it('refuses a quote whose TPM clock is earlier than the last one within the same boot', async () => {
    const held = await quoteWithTools(h, runtimeId, { ak: AK });
    // Advance the TPM clock (owner-authorised TPM2_ClockSet), then quote again.
    const out = await h.tools.tpm2('readclock', []);
    const clock = /clock:\s*(\d+)/.exec(out)?.[1];
    if (clock === undefined) throw new Error(`no clock in ${out}`);
    await h.tools.tpm2('setclock', [String(BigInt(clock) + 3_600_000n)]);
    const fresh = await quoteWithTools(h, runtimeId, { ak: AK });
    const send = (body: ToolQuote) =>
      h.app.inject({
        method: 'POST',
        url: `/v1/runtimes/${runtimeId}/attestations`,
        payload: body,
      });
    expect((await send(fresh)).json()).toMatchObject({ verdict: 'trusted', reasons: [] });
    // The held quote: authentic, its nonce still fresh, same reset and restart counts.
    const res = await send(held);
    expect(res.statusCode).toBe(422);
    expect(res.json()).toMatchObject({ error: { code: 'tpm_clock_rollback' } });
  });
});

describe('challenges no outsider can cancel (swtpm, routes)', () => {
  it("a flood of challenges and failed attempts in a runtime's name leaves its own challenge usable", async () => {
    const own = await quoteWithTools(h, runtimeId, { ak: AK });
    // Anyone can ask for challenges in the runtime's name (its id is public)...
    const flood: string[] = [];
    for (let i = 0; i < 40; i++) {
      const ch = await h.app.inject({
        method: 'POST',
        url: `/v1/runtimes/${runtimeId}/challenges`,
      });
      expect(ch.statusCode).toBe(201);
      flood.push(ch.json<{ nonce: string }>().nonce);
    }
    // ...and send garbage with them, or with the runtime's own nonce if it ever saw it.
    const garbage = (nonce: string) =>
      h.app.inject({
        method: 'POST',
        url: `/v1/runtimes/${runtimeId}/attestations`,
        payload: { ...own, nonce, signature: Buffer.alloc(70, 1).toString('base64') },
      });
    for (const nonce of [...flood.slice(0, 5), own.nonce])
      expect((await garbage(nonce)).statusCode).toBeGreaterThanOrEqual(400);
    const res = await h.app.inject({
      method: 'POST',
      url: `/v1/runtimes/${runtimeId}/attestations`,
      payload: own,
    });
    expect(res.json()).toMatchObject({ verdict: 'trusted' });
    // Single use still holds for the quote that was verified.
    const again = await h.app.inject({
      method: 'POST',
      url: `/v1/runtimes/${runtimeId}/attestations`,
      payload: own,
    });
    expect(again.json()).toMatchObject({ error: { code: 'nonce_reused' } });
  });
});
