/**
 * `grantor audit export` from a service anchored in swtpm (with NV_Certify), then
 * `grantor audit verify` offline against the pinned AK and anchor pin: good, and a tampered
 * NV_Certify, a wrong AK, a wrong genesis, no pinned AK, and a genuine NV_Certify of a decoy
 * index holding the same value rejected.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatAnchorPin } from '../../src/audit/anchor-pin.js';
import type { TpmAnchorConfig } from '../../src/audit/anchor.tpm.js';
import { TpmAuditAnchor, provisionTpmAnchor } from '../../src/audit/anchor.tpm.js';
import { noteVerifierKey } from '../../src/audit/checkpoint.js';
import { runAuditCli } from '../../src/audit/cli.js';
import { createAudit } from '../../src/audit/index.js';
import type { AuditExport } from '../../src/audit/service.js';
import { openDatabase } from '../../src/shared/db.level.js';
import { NativeTpm } from '../../src/tpm/tpm.native.js';
import { startSimTpm, type SimTpm } from '../rig/sim.js';
import { INDICES, event, provisionAnchor, tempDir } from './helpers.js';
import { testSigner } from './signer.js';

const ORIGIN = 'grantor.test/cli';
let sim: SimTpm;
let work: string;
let exported: string;
let verifierKey: string;
let akPublic: string;
let config: TpmAnchorConfig;
let pinText: string;

beforeAll(async () => {
  sim = await startSimTpm();
  work = await tempDir('grantor-audit-cli-');
  const tpm = await NativeTpm.open(sim.tcti);
  config = await provisionAnchor(tpm);
  const db = await openDatabase(join(work, 'db'));
  const signer = testSigner(ORIGIN);
  verifierKey = noteVerifierKey(signer.keyName, signer.publicKey);
  const anchor = new TpmAuditAnchor(tpm, config);
  akPublic = (await anchor.akPublic())!.toString('base64');
  pinText = formatAnchorPin({
    ...INDICES,
    names: config.pinnedNames,
    genesisCounter: config.pinnedGenesis ?? 0n,
    akPublic: Buffer.from(akPublic, 'base64'),
  });
  const lines: string[] = [];
  const code = await runAuditCli(
    ['export', join(work, 'export.json'), '--legacy'],
    {
      openAudit: async () => {
        const audit = createAudit(
          { origin: ORIGIN, minAnchorIntervalMs: 0 },
          { db, anchor, signer },
        );
        await audit.provision();
        await audit.ready();
        await Promise.all(Array.from({ length: 12 }, (_, i) => audit.append(event(i))));
        return { audit, close: () => audit.close() };
      },
    },
    { out: (l) => lines.push(l), err: (l) => lines.push(l) },
  );
  expect(code, lines.join('\n')).toBe(0);
  expect(lines.join('\n')).toContain('with NV_Certify');
  await db.close();
  await tpm.close();
  const { readFile } = await import('node:fs/promises');
  exported = await readFile(join(work, 'export.json'), 'utf8');
});

afterAll(async () => {
  await sim.destroy();
  await rm(work, { recursive: true, force: true });
});

async function verify(text: string, extra: string[] = [], pin = pinText, withPin = true) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runAuditCli(
    ['verify', 'f', '--key', verifierKey, ...(withPin ? ['--pin', 'pin.json'] : []), ...extra],
    { readFile: (p) => Promise.resolve(p === 'pin.json' ? pin : text) },
    { out: (l) => out.push(l), err: (l) => err.push(l) },
  );
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('audit export/verify with NV_Certify from swtpm', () => {
  it('verifies links, leaves, root, note signature and both NV_Certify signatures', async () => {
    const r = await verify(exported, ['--ak', akPublic]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^OK: 12 entries .*NV_Certify of the pinned indices/);
    expect(r.err).toBe('');
    // The pin file carries the pinned AK...
    const byPin = await verify(exported);
    expect(byPin.code).toBe(0);
    // ...without it the verifier refuses: the AK inside the export is the appliance's word.
    const unpinned = await verify(exported, [], undefined, false);
    expect(unpinned.code).toBe(1);
    expect(unpinned.out).toMatch(/no pinned AK/);
    const akOnly = await verify(exported, ['--ak', akPublic], undefined, false);
    expect(akOnly.code).toBe(1);
    const skipped = await verify(exported, ['--skip-tpm-evidence']);
    expect(skipped.code).toBe(0);
    expect(skipped.err).toContain('TPM evidence NOT checked');
  });

  it('refuses a counter that is not the pinned genesis + the batches', async () => {
    const other = pinText.replace(
      `"genesisCounter": "${config.pinnedGenesis}"`,
      `"genesisCounter": "${(config.pinnedGenesis ?? 0n) - 1n}"`,
    );
    const r = await verify(exported, ['--ak', akPublic], other);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/nv-counter \d+ is not the pinned genesis/);
  });

  it('refuses a genuine NV_Certify of a decoy index holding the same value', async () => {
    const parsed = JSON.parse(exported) as AuditExport;
    const tpm = await NativeTpm.open(sim.tcti);
    try {
      // The same attributes at another handle, extended with the same roots: same value.
      const decoy = { counterIndex: 0x01500026, extendIndex: 0x01500027 };
      const decoyPin = await provisionTpmAnchor(tpm, decoy);
      for (const b of parsed.batches) {
        await tpm.nvExtend(decoy.extendIndex, Buffer.from(b.root, 'hex'), {
          auth: { by: 'owner' },
        });
      }
      const decoyAnchor = new TpmAuditAnchor(tpm, {
        ...config,
        extendIndex: decoy.extendIndex,
        pinnedNames: decoyPin.names,
      });
      const [, extendCert] = await decoyAnchor.certify(
        Buffer.from(parsed.checkpoint.nonce!, 'hex'),
      );
      const forged = {
        ...parsed,
        checkpoint: {
          ...parsed.checkpoint,
          nvCertify: [
            parsed.checkpoint.nvCertify![0],
            {
              index: 'extend',
              nvIndex: '0x01500027',
              attest: extendCert!.attest.toString('base64'),
              signature: extendCert!.signature.toString('base64'),
            },
          ],
        },
      };
      const r = await verify(JSON.stringify(forged), ['--ak', akPublic]);
      expect(r.code).toBe(1);
      expect(r.out).toMatch(/extend: certifies an NV index that is not the pinned one/);
    } finally {
      await tpm.close();
    }
  });

  it('rejects a tampered NV_Certify, another nonce and another AK', async () => {
    const parsed = JSON.parse(exported) as AuditExport;
    const certs = parsed.checkpoint.nvCertify!;
    const attest = Buffer.from(certs[1]!.attest, 'base64');
    attest.writeUInt8(attest.readUInt8(attest.length - 1) ^ 1, attest.length - 1);
    const tampered = {
      ...parsed,
      checkpoint: {
        ...parsed.checkpoint,
        nvCertify: [certs[0], { ...certs[1], attest: attest.toString('base64') }],
      },
    };
    const r1 = await verify(JSON.stringify(tampered), ['--ak', akPublic]);
    expect(r1.code).toBe(1);
    expect(r1.out).toMatch(/NV_Certify: extend: signature does not verify.*audit_export_invalid/);
    const otherNonce = { ...parsed, checkpoint: { ...parsed.checkpoint, nonce: '00'.repeat(32) } };
    expect((await verify(JSON.stringify(otherNonce), ['--ak', akPublic])).out).toMatch(
      /not qualified with the nonce/,
    );
    const oneOnly = { ...parsed, checkpoint: { ...parsed.checkpoint, nvCertify: [certs[0]] } };
    expect((await verify(JSON.stringify(oneOnly), ['--ak', akPublic])).out).toMatch(
      /both anchor indices/,
    );
    // A different (valid) TPM public key: the EK-like public of another template.
    const wrongAk = Buffer.from(akPublic, 'base64');
    wrongAk.writeUInt8(wrongAk.readUInt8(wrongAk.length - 5) ^ 1, wrongAk.length - 5);
    expect((await verify(exported, ['--ak', wrongAk.toString('base64')])).code).toBe(1);
  });
});
