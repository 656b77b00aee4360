/**
 * Configurable owner authorisation on a real swtpm and SoftHSM2 token: `grantor provision
 * --set-owner-auth FILE` (setRandomOwnerAuth) sets a random owner auth when it is empty and
 * keeps it in FILE (0400, never overwritten); provisioning reads it from
 * GRANTOR_TPM_OWNER_AUTH_FILE (refused when group/world accessible); the running anchor then
 * writes with its HSM key only, no owner auth. The value is registered with the run's log
 * scan (test/rig/log-capture.ts) and never appears in what provisioning says or its errors.
 */
import { chmod, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { provisionAppliance } from '../../src/appliance.js';
import { Pkcs11AnchorKey } from '../../src/audit/anchor-key.pkcs11.js';
import { formatAnchorPin, readAnchorPin } from '../../src/audit/anchor-pin.js';
import { loadConfig } from '../../src/shared/config.js';
import {
  createOwnerAuthFile,
  readOwnerAuth,
  setRandomOwnerAuth,
} from '../../src/tpm/owner-auth.js';
import { TPM_RC, TpmError } from '../../src/tpm/errors.js';
import { NativeTpm } from '../../src/tpm/tpm.native.js';
import { provisionSimHsm, repoRoot, startSimTpm, type SimHsm, type SimTpm } from '../rig/sim.js';
import { registerSecret } from '../rig/secrets.js';
import { AK_TEMPLATE, event, logAt, tempDir } from './helpers.js';

let sim: SimTpm;
let hsm: SimHsm;
let work: string;
let ownerFile: string;
let secret: string;

beforeAll(async () => {
  work = await tempDir('grantor-owner-auth-');
  hsm = await provisionSimHsm(join(work, 'hsm'), 'grantor-owner-auth');
  process.env.SOFTHSM2_CONF = hsm.conf;
  sim = await startSimTpm();
  ownerFile = join(work, 'owner-auth');
}, 60_000);

afterAll(async () => {
  try {
    await sim.destroy();
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});

const env = (extra: Record<string, string> = {}): Record<string, string> => ({
  GRANTOR_TPM_TCTI: sim.tcti,
  GRANTOR_PKCS11_MODULE: hsm.module,
  GRANTOR_HSM_TOKEN_LABEL: hsm.tokenLabel,
  GRANTOR_HSM_PIN_FILE: hsm.pinFile,
  GRANTOR_STATE_DIR: join(work, 'state'),
  GRANTOR_AUDIT_NV_COUNTER: '0x015000c0',
  GRANTOR_AUDIT_NV_EXTEND: '0x015000c1',
  ...extra,
});

describe('owner authorisation', () => {
  it('--set-owner-auth sets a random one while it is empty, kept 0400 in a new file', async () => {
    const tpm = await NativeTpm.open(sim.tcti);
    try {
      await setRandomOwnerAuth(tpm, ownerFile);
      secret = (await readFile(ownerFile, 'utf8')).trim();
      registerSecret('TPM owner authorisation', secret);
      expect(secret).toMatch(/^[0-9a-f]{64}$/);
      expect((await stat(ownerFile)).mode & 0o777).toBe(0o400);
      // The empty owner auth no longer works...
      const refused = await tpm
        .nvDefine(
          { index: 0x015000cf, nameAlg: 'sha256', attributes: (1 << 1) | (1 << 17), dataSize: 8 },
          { hierarchy: 'owner', hierarchyAuth: new Uint8Array(0) },
        )
        .catch((e: unknown) => e);
      expect(refused instanceof TpmError && refused.is(TPM_RC.BAD_AUTH)).toBe(true);
      // ...and a second run changes nothing: the auth is set, the file is kept.
      await expect(setRandomOwnerAuth(tpm, join(work, 'other'))).rejects.toMatchObject({
        code: 'config_invalid',
        message: expect.stringContaining('already set') as unknown,
      });
      await expect(stat(join(work, 'other'))).rejects.toMatchObject({ code: 'ENOENT' });
    } finally {
      await tpm.close();
    }
  });

  it('never overwrites an existing file', async () => {
    const before = await readFile(ownerFile, 'utf8');
    await expect(createOwnerAuthFile(ownerFile)).rejects.toMatchObject({
      code: 'config_invalid',
    });
    expect(await readFile(ownerFile, 'utf8')).toBe(before);
  });

  it.each(['0440', '0404', '0620'])(
    'refuses a file with mode %s, without its value in the error',
    async (octal) => {
      const mode = Number.parseInt(octal, 8);
      const copy = join(work, `owner-auth-${octal}`);
      await writeFile(copy, `${secret}\n`, { mode: 0o600 });
      await chmod(copy, mode);
      const err = await readOwnerAuth(copy).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'config_invalid', key: 'GRANTOR_TPM_OWNER_AUTH_FILE' });
      expect(JSON.stringify(err) + String(err)).not.toContain(secret);
    },
  );

  it('refuses a file that is not hex', async () => {
    const bad = join(work, 'owner-auth-text');
    await writeFile(bad, 'my owner password\n', { mode: 0o400 });
    await expect(readOwnerAuth(bad)).rejects.toMatchObject({ code: 'config_invalid' });
  });

  it('provisioning needs it; the running anchor writes without it', async () => {
    const without = loadConfig(env(), repoRoot);
    const tpm = await NativeTpm.open(sim.tcti);
    try {
      const refused = await provisionAppliance(without, tpm).catch((e: unknown) => e);
      expect(refused instanceof TpmError && refused.is(TPM_RC.BAD_AUTH)).toBe(true);
      const config = loadConfig(env({ GRANTOR_TPM_OWNER_AUTH_FILE: ownerFile }), repoRoot);
      const lines = await provisionAppliance(config, tpm);
      expect(lines.join('\n')).toContain('audit log: created');
      expect(lines.join('\n')).not.toContain(secret);
      const pin = await readAnchorPin(config.audit.pinFile, 'k');
      if (pin?.writeKey === undefined) throw new Error('no write key pinned');
      const writeKey = new Pkcs11AnchorKey({
        modulePath: hsm.module,
        tokenLabel: hsm.tokenLabel,
        pin: hsm.pin,
      });
      const opened = await logAt(
        join(config.stateDir, 'db'),
        tpm,
        {
          counterIndex: pin.counterIndex,
          extendIndex: pin.extendIndex,
          pinnedNames: pin.names,
          pinnedGenesis: pin.genesisCounter,
          pinnedAkPublic: pin.akPublic,
          akTemplate: AK_TEMPLATE,
          writeKey,
          pinnedWritePolicy: Buffer.from(pin.writeKey.policy, 'hex'),
        },
        { origin: config.applianceId },
      );
      try {
        await opened.log.open();
        await expect(opened.log.append(event(1))).resolves.toMatchObject({ seq: 0 });
      } finally {
        await opened.close();
        await writeKey.close();
      }
    } finally {
      await tpm.close();
    }
  });
});

describe('migration', () => {
  it('refuses an owner-written anchor pin (grantor-anchor-pin/1) with a clear reason', async () => {
    const config = loadConfig(
      env({ GRANTOR_AUDIT_ANCHOR_PIN: join(work, 'old-pin.json') }),
      repoRoot,
    );
    const current = await readAnchorPin(
      loadConfig(env(), repoRoot).audit.pinFile,
      'GRANTOR_AUDIT_ANCHOR_PIN',
    );
    if (current === undefined) throw new Error('the test above provisions first');
    const { writeKey: _, ...old } = current;
    await writeFile(config.audit.pinFile, formatAnchorPin(old));
    const tpm = await NativeTpm.open(sim.tcti);
    try {
      await expect(provisionAppliance(config, tpm)).rejects.toMatchObject({
        code: 'config_invalid',
        key: 'GRANTOR_AUDIT_ANCHOR_PIN',
        message: expect.stringContaining('re-provision') as unknown,
      });
    } finally {
      await tpm.close();
    }
  });
});
