/**
 * Quote verifications per second in-process (parse + every guard clause of the verifier),
 * next to the raw node:crypto ECDSA P-256 verify rate measured in the same run.
 *   npx tsx bench/attest.ts [seconds per measurement, default 3]
 */
import { generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { parseReferencePolicy } from '../src/attestation/reference-policy.js';
import { SoftTpm } from '../src/attestation/testing/soft-tpm.js';
import {
  parseQuoteRequest,
  qualifyingData,
  verifyParsedQuote,
} from '../src/attestation/verify-quote.js';

const seconds = Number(process.argv[2] ?? '3');

function rate(name: string, fn: () => void): number {
  for (let i = 0; i < 200; i++) fn(); // warm-up
  let n = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  while (performance.now() < end) {
    for (let i = 0; i < 50; i++) fn();
    n += 50;
  }
  const perSecond = n / ((performance.now() - start) / 1000);
  console.log(`${name.padEnd(44)} ${perSecond.toFixed(0).padStart(8)} /s`);
  return perSecond;
}

const tpm = new SoftTpm('ecc');
const nonce = randomBytes(32);
const sessionKey = { kty: 'EC', crv: 'P-256', x: 'bench', y: 'bench' };
const qd = qualifyingData(nonce, sessionKey);
const request = tpm.quote(nonce, qd, { selection: [{ bank: 'sha256', pcrs: [0, 1, 2, 3, 7] }] });
const policy = parseReferencePolicy(
  {
    name: 'bench',
    catchAll: true,
    pcrs: {
      sha256: {
        '0': [tpm.value('sha256', 0).toString('hex')],
        '7': [tpm.value('sha256', 7).toString('hex')],
      },
    },
  },
  'bench',
);

const message = Buffer.from(request.quote, 'base64');
// A separate P-256 key for the raw baseline, over a message of the quote's size.
const raw = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const rawSig = sign('sha256', message, { key: raw.privateKey, dsaEncoding: 'ieee-p1363' });

const rawRate = rate('node:crypto ECDSA P-256 verify (raw)', () => {
  if (!verify('sha256', message, { key: raw.publicKey, dsaEncoding: 'ieee-p1363' }, rawSig))
    throw new Error('raw verify');
});
const quoteRate = rate('quote verification (parse + all guards)', () => {
  const facts = verifyParsedQuote(parseQuoteRequest(request), {
    akPublic: tpm.akPublic,
    qualifyingData: qd,
    nonceStatus: 'ok',
    policy,
    previous: { resetCount: 3, restartCount: 0 },
  });
  if (facts.violations.length !== 0) throw new Error('untrusted');
});
console.log(
  `quote verification / raw verify: ${((quoteRate / rawRate) * 100).toFixed(1)}% (target >= 70%)`,
);
