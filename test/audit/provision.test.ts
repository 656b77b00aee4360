/**
 * Provisioning is the one explicit act that starts an audit log, and it resumes from a stop
 * at any step: `grantor provision` (src/appliance.ts provisionAppliance) killed with
 * SIGKILL right after each of its steps, on swtpm and LevelDB. After each kill the start-up
 * check says what an operator must do (never a silent new log, never a rollback for a
 * never-provisioned appliance); a second run finishes; a third changes nothing.
 */
import { spawn } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readAnchorPin } from '../../src/audit/anchor-pin.js';
import { TpmAuditAnchor, expectedAnchorNames } from '../../src/audit/anchor.tpm.js';
import { loadConfig, type AppConfig } from '../../src/shared/config.js';
import { NativeTpm } from '../../src/tpm/tpm.native.js';
import { buildCrashChild, type CrashChild } from './crash-harness.js';
import { AK_TEMPLATE, event, logAt, tempDir, tearDownTpm } from './helpers.js';
import { Pkcs11AnchorKey } from '../../src/audit/anchor-key.pkcs11.js';
import {
  provisionSimHsm,
  repoRoot,
  startSimTpm,
  SOFTHSM_MODULE,
  type SimHsm,
  type SimTpm,
} from '../rig/sim.js';

const STEPS = [
  'define_counter',
  'define_extend',
  'extend_genesis',
  'increment_counter',
  'write_pin',
  'create_store',
] as const;

let sim: SimTpm;
/** The key store: provisioning creates the anchor write key in it (one token for all). */
let hsm: SimHsm;
let writeKey: Pkcs11AnchorKey;
let child: CrashChild;
let work: string;

beforeAll(async () => {
  sim = await startSimTpm();
  child = await buildCrashChild(join(repoRoot, 'test/audit/provision-child.ts'));
  work = await tempDir('grantor-audit-provision-');
  hsm = await provisionSimHsm(join(work, 'hsm'), 'grantor-provision');
  process.env.SOFTHSM2_CONF = hsm.conf;
  writeKey = new Pkcs11AnchorKey({
    modulePath: hsm.module,
    tokenLabel: hsm.tokenLabel,
    pin: hsm.pin,
  });
}, 60_000);

afterAll(() =>
  tearDownTpm(
    async () => {
      await writeKey.close();
      await child.dispose();
    },
    [sim],
    work,
  ),
);

function envFor(name: string, counterIndex: number): Record<string, string> {
  return {
    GRANTOR_TPM_TCTI: sim.tcti,
    GRANTOR_PKCS11_MODULE: SOFTHSM_MODULE,
    GRANTOR_HSM_TOKEN_LABEL: hsm.tokenLabel,
    GRANTOR_HSM_PIN_FILE: hsm.pinFile,
    SOFTHSM2_CONF: hsm.conf,
    GRANTOR_STATE_DIR: join(work, name, 'state'),
    GRANTOR_AUDIT_NV_COUNTER: `0x${counterIndex.toString(16)}`,
    GRANTOR_AUDIT_NV_EXTEND: `0x${(counterIndex + 1).toString(16)}`,
    GRANTOR_AUDIT_MIN_ANCHOR_INTERVAL_MS: '0',
  };
}

async function provision(
  env: Record<string, string>,
  killAfter?: string,
): Promise<{ signal: NodeJS.Signals | null; code: number | null; out: string }> {
  const proc = spawn(child.command, [...child.args], {
    env: {
      ...process.env,
      ...env,
      ...(killAfter === undefined ? {} : { PROVISION_KILL_AFTER: killAfter }),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  proc.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  return new Promise((resolve) => {
    proc.on('close', (code, signal) => {
      resolve({ code, signal, out });
    });
  });
}

/** What a start would say: the audit part of openAppliance, on the same pin and store. */
async function startView(config: AppConfig): Promise<{ outcome: string; counter?: bigint }> {
  const pin = await readAnchorPin(config.audit.pinFile, 'GRANTOR_AUDIT_ANCHOR_PIN');
  const indices = {
    counterIndex: config.audit.nvCounterIndex,
    extendIndex: config.audit.nvExtendIndex,
  };
  const tpm = await NativeTpm.open(config.tpm.tcti);
  try {
    const anchorConfig = {
      ...indices,
      pinnedNames: pin?.names ?? expectedAnchorNames(indices),
      ...(pin === undefined ? {} : { pinnedGenesis: pin.genesisCounter }),
      akTemplate: AK_TEMPLATE,
      writeKey,
      ...(pin?.writeKey === undefined
        ? {}
        : { pinnedWritePolicy: Buffer.from(pin.writeKey.policy, 'hex') }),
    };
    const opened = await logAt(join(config.stateDir, 'db'), tpm, anchorConfig, {
      origin: config.applianceId,
    });
    try {
      await opened.log.open();
      await opened.log.append(event(1));
      return {
        outcome: 'ready',
        counter: (await new TpmAuditAnchor(tpm, anchorConfig).read()).counter,
      };
    } catch (err) {
      const e = err as { code?: string; details?: { reason?: string }; message?: string };
      return { outcome: `${e.code ?? 'error'} ${e.details?.reason ?? e.message ?? ''}`.trim() };
    } finally {
      await opened.close();
    }
  } finally {
    await tpm.close();
  }
}

const AFTER_KILL: Record<(typeof STEPS)[number], string> = {
  define_counter: 'audit_not_provisioned not provisioned: run `grantor provision`',
  define_extend: 'audit_not_provisioned not provisioned: run `grantor provision`',
  extend_genesis: 'audit_not_provisioned not provisioned: run `grantor provision`',
  increment_counter: 'audit_not_provisioned not provisioned: run `grantor provision`',
  write_pin: 'audit_rollback_detected store_missing',
  create_store: 'ready',
};

describe('grantor provision, killed after each step', () => {
  it.each(STEPS.map((s, i) => [s, i] as const))(
    'killed after %s: the start says what to do, a second run finishes, a third changes nothing',
    async (step, i) => {
      const env = envFor(step, 0x01500070 + 2 * i);
      const config = loadConfig(env, repoRoot);
      const killed = await provision(env, step);
      expect(killed.signal, killed.out).toBe('SIGKILL');
      expect(killed.out).toContain(`step ${step}\n`);
      // A kill before the store exists leaves nothing a start could mistake for a log.
      const view = await startView(config);
      expect(view.outcome).toBe(AFTER_KILL[step]);

      const resumed = await provision(env);
      expect(resumed.out).not.toContain('failed');
      expect(resumed.code).toBe(0);
      const pinText = await readFile(config.audit.pinFile, 'utf8');
      const pin = await readAnchorPin(config.audit.pinFile, 'k');
      // Steps already done are not done again.
      for (const done of STEPS.slice(0, i + 1)) {
        if (done !== 'create_store' || step !== 'create_store') {
          expect(resumed.out).not.toContain(`step ${done}\n`);
        }
      }
      const first = await startView(config);
      expect(first.outcome).toBe('ready');
      // The log started on the pinned genesis: its batches so far, each one count above.
      const batchesBefore = step === 'create_store' ? 2n : 1n;
      expect(first.counter).toBe((pin?.genesisCounter ?? 0n) + batchesBefore);

      const again = await provision(env);
      expect(again.code).toBe(0);
      expect(again.out).toContain('audit log: exists');
      expect(again.out).not.toContain('step ');
      expect(await readFile(config.audit.pinFile, 'utf8')).toBe(pinText);
    },
    60_000,
  );

  it('refuses an NV index with other attributes at the anchor handle (nv_index_foreign)', async () => {
    const env = envFor('foreign', 0x01500090);
    const tpm = await NativeTpm.open(sim.tcti);
    await tpm.nvDefine(
      {
        index: 0x01500090,
        nameAlg: 'sha256',
        attributes: (1 << 1) | (1 << 17) | (1 << 18),
        dataSize: 8,
      },
      { hierarchy: 'owner', hierarchyAuth: new Uint8Array(0) },
    );
    await tpm.close();
    const run = await provision(env);
    expect(run.code).toBe(1);
    expect(run.out).toContain('failed audit_provision_refused');
    const config = loadConfig(env, repoRoot);
    expect(await readAnchorPin(config.audit.pinFile, 'k')).toBeUndefined();
  });

  it('never adopts a used anchor when the pin is lost (anchor_in_use)', async () => {
    const env = envFor('lost-pin', 0x015000a0);
    const config = loadConfig(env, repoRoot);
    expect((await provision(env)).code).toBe(0);
    expect((await startView(config)).outcome).toBe('ready');
    await rm(config.audit.pinFile);
    const run = await provision(env);
    expect(run.code).toBe(1);
    expect(run.out).toContain('failed audit_provision_refused');
    expect((await startView(config)).outcome).toBe(
      'audit_not_provisioned not provisioned: run `grantor provision`',
    );
  });
});
