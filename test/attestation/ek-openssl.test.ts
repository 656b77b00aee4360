/**
 * Differential check of the EK certificate chain decisions against OpenSSL: for every real
 * vendor EK leaf and every CA set, `openssl verify -partial_chain` (every bundle certificate
 * an anchor, as in ek-certificate.ts) agrees with whether validateEkCertificate found a
 * chain; and OpenSSL's reading of the padded STMicro NV read is the DER we cut.
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  parseCaBundle,
  trimNvPadding,
  validateEkCertificate,
} from '../../src/attestation/ek-certificate.js';
import { repoRoot } from '../rig/sim.js';

const run = promisify(execFile);
const fixtures = join(repoRoot, 'src/attestation/fixtures');
const now = new Date('2026-06-01T00:00:00Z');
let dir: string;

async function certsIn(folder: string): Promise<X509Certificate[]> {
  const out: X509Certificate[] = [];
  for (const f of (await readdir(join(fixtures, folder))).sort()) {
    if (!/\.(pem|crt|cer)$/.test(f)) continue;
    const bytes = await readFile(join(fixtures, folder, f));
    if (bytes.includes('-----BEGIN CERTIFICATE-----'))
      out.push(...parseCaBundle(bytes.toString('utf8')));
    else out.push(new X509Certificate(bytes));
  }
  return out;
}

const sets: Record<string, X509Certificate[]> = {};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'grantor-ek-openssl-'));
  sets.keylime = await certsIn('tpm-vendor-ca');
  sets.wide = await certsIn('vendor-ek/tpm-ca-certificates');
  sets.google = await certsIn('vendor-ek/go-tpm-tools/ca-certs');
  for (const [name, certs] of Object.entries(sets))
    await writeFile(join(dir, `${name}.pem`), certs.map((c) => c.toString()).join('\n'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function opensslChains(leafPath: string, set: string): Promise<boolean> {
  try {
    const { stdout } = await run('openssl', [
      'verify',
      '-partial_chain',
      '-attime',
      String(Math.floor(now.getTime() / 1000)),
      '-CAfile',
      join(dir, `${set}.pem`),
      leafPath,
    ]);
    return stdout.trim().endsWith(': OK');
  } catch {
    return false;
  }
}

function weChain(der: Uint8Array, set: string): boolean {
  try {
    validateEkCertificate(der, { trustedCas: sets[set] ?? [], now });
    return true;
  } catch (e) {
    // Past the chain, a refusal is about the leaf itself (SAN, key usage), not the chain.
    return (e as { code?: string }).code !== 'ek_certificate_untrusted';
  }
}

describe('EK certificate chains: grantor and OpenSSL agree', () => {
  it('for every real vendor leaf and every CA set', async () => {
    const leaves = [
      ...(await readdir(join(fixtures, 'vendor-ek/keylime')))
        .filter((f) => f.endsWith('.pem'))
        .map((f) => join(fixtures, 'vendor-ek/keylime', f)),
      ...(await readdir(join(fixtures, 'vendor-ek/go-tpm-tools/certs'))).map((f) =>
        join(fixtures, 'vendor-ek/go-tpm-tools/certs', f),
      ),
    ];
    expect(leaves.length).toBe(13);
    let chained = 0;
    for (const leaf of leaves) {
      const der = new X509Certificate(await readFile(leaf)).raw;
      for (const set of Object.keys(sets)) {
        const ours = weChain(der, set);
        expect([leaf, set, ours]).toEqual([leaf, set, await opensslChains(leaf, set)]);
        if (ours) chained++;
      }
    }
    // Every leaf chains with one set or another (Infineon and Nuvoton: the wide set too).
    expect(chained).toBe(16);
  });

  it('the padded NV read: OpenSSL reads the same DER that trimNvPadding keeps', async () => {
    const padded = join(fixtures, 'vendor-ek/keylime/stm_st33htph_rsa2048_ek_nv_padded.bin');
    const out = join(dir, 'stm.der');
    await run('openssl', ['x509', '-inform', 'der', '-in', padded, '-outform', 'der', '-out', out]);
    expect(trimNvPadding(await readFile(padded))).toEqual(await readFile(out));
  });
});
