/**
 * An interposer on the TPM bus (a TCP proxy between the addon and swtpm) answers the
 * start-up read of the anchor with the values of an older backup. A plain NV_Read believes
 * it and accepts the backup; the start-up read the appliance uses (NV_Certify with a fresh
 * nonce, checked against the pinned AK and NV names) does not: start-up refuses.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AnchorState } from '../../src/audit/anchor.port.js';
import type { TpmAnchorConfig } from '../../src/audit/anchor.tpm.js';
import { TpmAuditAnchor } from '../../src/audit/anchor.tpm.js';
import { NativeTpm } from '../../src/tpm/tpm.native.js';
import { startSimTpm, type SimTpm } from '../rig/sim.js';
import {
  TPM_CC_NV_CERTIFY,
  TPM_CC_NV_READ,
  commandOf,
  startBusProxy,
  type BusProxy,
} from './bus-proxy.js';
import {
  INDICES,
  backupBehindLive,
  logAt,
  provisionAnchor,
  tearDownTpm,
  tempDir,
} from './helpers.js';

let sim: SimTpm;
let proxy: BusProxy;
let work: string;
let config: TpmAnchorConfig;
let old: AnchorState;

const counterBytes = (n: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(n);
  return b;
};

beforeAll(async () => {
  sim = await startSimTpm();
  work = await tempDir('grantor-audit-bus-');
  const tpm = await NativeTpm.open(sim.tcti);
  try {
    config = await provisionAnchor(tpm);
    expect(config.pinnedAkPublic).toBeDefined();
    await backupBehindLive(work, tpm, config, 4, async () => {
      old = await new TpmAuditAnchor(tpm, config).read();
    });
  } finally {
    await tpm.close();
  }
  proxy = await startBusProxy(sim.port);
}, 60_000);

afterAll(() => tearDownTpm(() => proxy.close(), [sim], work));

/** Opens the log at `dir` through the proxy; resolves to 'ready' or the refusal. */
async function startThroughProxy(dir: string, anchorConfig: TpmAnchorConfig): Promise<object> {
  const tpm = await NativeTpm.open(proxy.tcti);
  try {
    const opened = await logAt(join(work, dir), tpm, anchorConfig);
    try {
      await opened.log.open();
      return { ready: opened.log.head().size };
    } catch (err) {
      const e = err as { code?: string; details?: object };
      return { code: e.code, details: e.details };
    } finally {
      await opened.close();
    }
  } finally {
    await tpm.close();
  }
}

describe('an interposer on the TPM bus answering with a backup’s anchor', () => {
  it('passes through untouched: the live log starts with certified reads', async () => {
    proxy.rewrite = undefined;
    expect(await startThroughProxy('live', config)).toEqual({ ready: 4 });
  });

  it('fools a plain NV_Read: the backup would be accepted (why the start-up read is certified)', async () => {
    proxy.rewrite = (command, response) => {
      const { cc, handle } = commandOf(command, 1);
      if (cc !== TPM_CC_NV_READ || response.readUInt32BE(6) !== 0) return response;
      const out = Buffer.from(response);
      const value = handle === INDICES.counterIndex ? counterBytes(old.counter) : old.extendValue;
      // header (10), parameterSize (4), TPM2B size (2), then the data.
      value.copy(out, 16);
      return out;
    };
    const { pinnedAkPublic: _unpinned, ...plain } = config;
    const before = proxy.rewritten;
    expect(await startThroughProxy('backup', plain)).toEqual({ ready: 1 });
    expect(proxy.rewritten).toBeGreaterThan(before);
  });

  it('refuses at start when the NV_Certify answers are rewritten: anchor_read_unverified', async () => {
    proxy.rewrite = (command, response) => {
      const { cc, handle } = commandOf(command, 2);
      if (cc !== TPM_CC_NV_CERTIFY || response.readUInt32BE(6) !== 0) return response;
      const out = Buffer.from(response);
      const attestSize = out.readUInt16BE(14);
      // The certified contents are the attestation's last bytes.
      const value = handle === INDICES.counterIndex ? counterBytes(old.counter) : old.extendValue;
      value.copy(out, 16 + attestSize - value.length);
      return out;
    };
    const before = proxy.rewritten;
    expect(await startThroughProxy('backup', config)).toMatchObject({
      code: 'audit_rollback_detected',
      details: {
        reason: 'anchor_read_unverified',
        problem: 'signature does not verify with the AK',
      },
    });
    expect(proxy.rewritten).toBeGreaterThan(before);
  });

  it('refuses the backup with the NV_Read answers rewritten: certified reads never use them', async () => {
    proxy.rewrite = (command, response) => {
      const { cc } = commandOf(command, 1);
      if (cc !== TPM_CC_NV_READ) return response;
      throw new Error('the certified start-up read must not send NV_Read');
    };
    expect(await startThroughProxy('backup', config)).toMatchObject({
      code: 'audit_rollback_detected',
      details: { reason: 'store_behind_anchor' },
    });
  });
});
