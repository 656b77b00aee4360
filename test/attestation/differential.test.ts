/**
 * Differential test: for swtpm quotes, valid and mutated, our verdict on signature, nonce
 * (extraData) and PCR digest agrees with `tpm2_checkquote`'s.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAkPublic } from '../../src/attestation/ak.js';
import * as errors from '../../src/attestation/errors.js';
import { parseReferencePolicy } from '../../src/attestation/reference-policy.js';
import { parseQuoteRequest, verifyParsedQuote } from '../../src/attestation/verify-quote.js';
import { startSimTpm, type SimTpm } from '../rig/sim.js';
import { tpm2Tools, type Tools } from './tools.js';

const PCRS = [0, 1, 2, 3, 7];
const SELECTION = `sha256:${PCRS.join(',')}`;
/** The verifier's checks that tpm2_checkquote also makes, named by their error classes. */
const CHECKED: ReadonlySet<string> = new Set(
  [
    errors.QuoteMalformedError,
    errors.QuoteMagicError,
    errors.QuoteTypeError,
    errors.QuoteSignatureSchemeError,
    errors.QuoteSignatureRangeError,
    errors.QuoteSignatureInvalidError,
    errors.QuoteNonceMismatchError,
    errors.PcrDigestMismatchError,
  ].map((Kind) => new Kind().code),
);

let tpm: SimTpm;
let tools: Tools;

beforeAll(async () => {
  tpm = await startSimTpm();
  tools = await tpm2Tools(tpm.tcti);
  await tools.tpm2('createak', [
    '-C',
    '0x81010001',
    '-c',
    'ecc.ctx',
    '-G',
    'ecc',
    '-g',
    'sha256',
    '-s',
    'ecdsa',
    '-u',
    'ecc.pub',
  ]);
  await tools.tpm2('createak', [
    '-C',
    '0x81010001',
    '-c',
    'rsa.ctx',
    '-G',
    'rsa',
    '-g',
    'sha256',
    '-s',
    'rsassa',
    '-u',
    'rsa.pub',
  ]);
  await tools.tpm2('pcrextend', [`7:sha256=${'ab'.repeat(32)}`]);
}, 120_000);

afterAll(async () => {
  await tools.close();
  await tpm.destroy();
});

interface Case {
  name: string;
  attest: Buffer;
  sig: Buffer;
  pcrs: Buffer;
  qd: Buffer;
}

function ours(akPub: Buffer, c: Case): boolean {
  const values = Object.fromEntries(
    PCRS.map((p, i) => [String(p), c.pcrs.subarray(i * 32, i * 32 + 32).toString('hex')]),
  );
  const policy = parseReferencePolicy(
    { name: 'any', catchAll: true, pcrs: { sha256: { '0': ['00'.repeat(32)] } } },
    'diff',
  );
  try {
    verifyParsedQuote(
      parseQuoteRequest({
        nonce: Buffer.alloc(32).toString('base64'),
        quote: c.attest.toString('base64'),
        signature: c.sig.toString('base64'),
        pcrs: { sha256: values },
      }),
      {
        akPublic: parseAkPublic(akPub),
        qualifyingData: c.qd,
        nonceStatus: 'ok',
        policy,
        previous: undefined,
      },
    );
    return true;
  } catch (e) {
    const code = (e as { code?: string }).code ?? 'crash';
    if (!CHECKED.has(code) && !code.startsWith('pcr_') && !code.startsWith('tpm_')) throw e;
    return !CHECKED.has(code);
  }
}

async function checkquote(akPubFile: string, c: Case): Promise<boolean> {
  await tools.write('d.attest', c.attest);
  await tools.write('d.sig', c.sig);
  await tools.write('d.pcrs', c.pcrs);
  try {
    await tools.raw('checkquote', [
      '-u',
      akPubFile,
      '-m',
      'd.attest',
      '-s',
      'd.sig',
      '-f',
      'd.pcrs',
      '-l',
      SELECTION,
      '-g',
      'sha256',
      '-q',
      c.qd.toString('hex'),
    ]);
    return true;
  } catch {
    return false;
  }
}

function flipped(b: Buffer, i: number, bit = 0): Buffer {
  const out = Buffer.from(b);
  out[i % out.length] = (out[i % out.length] ?? 0) ^ (1 << bit);
  return out;
}

describe.each(['ecc', 'rsa'])('our verdict agrees with tpm2_checkquote (%s AK)', (kind) => {
  it('on a valid quote and its mutations', async () => {
    const qd = randomBytes(32);
    await tools.tpm2('quote', [
      '-c',
      `${kind}.ctx`,
      '-l',
      SELECTION,
      '-q',
      qd.toString('hex'),
      '-g',
      'sha256',
      '-m',
      'q.attest',
      '-s',
      'q.sig',
      '-o',
      'q.pcrs',
      '-F',
      'values',
    ]);
    const base: Case = {
      name: 'valid',
      attest: await tools.read('q.attest'),
      sig: await tools.read('q.sig'),
      pcrs: await tools.read('q.pcrs'),
      qd,
    };
    const cases: Case[] = [base, { ...base, name: 'other qualifying data', qd: randomBytes(32) }];
    // Bit flips across the whole attest structure (magic, signer, extraData, clock, PCR select, digest).
    for (let i = 0; i < base.attest.length; i += 7)
      cases.push({ ...base, name: `attest[${i}]`, attest: flipped(base.attest, i, i % 8) });
    for (let i = 0; i < base.sig.length; i += 11)
      cases.push({ ...base, name: `sig[${i}]`, sig: flipped(base.sig, i, i % 8) });
    for (let i = 0; i < base.pcrs.length; i += 13)
      cases.push({ ...base, name: `pcrs[${i}]`, pcrs: flipped(base.pcrs, i, i % 8) });
    const akPub = await tools.read(`${kind}.pub`);
    let agreed = 0;
    const disagreements: string[] = [];
    for (const c of cases) {
      const a = ours(akPub, c);
      const b = await checkquote(`${kind}.pub`, c);
      if (a === b) agreed++;
      else disagreements.push(`${c.name}: ours=${a} checkquote=${b}`);
    }
    expect(disagreements).toEqual([]);
    expect(agreed).toBe(cases.length);
    expect(ours(akPub, base)).toBe(true);
  });
});
