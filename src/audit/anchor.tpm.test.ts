import { describe, expect, it } from 'vitest';
import { TPM_RC, TpmError, TpmUnavailableError } from '../tpm/errors.js';
import type { TpmPort } from '../tpm/tpm.port.js';
import { ANCHOR_NV_ATTRIBUTES, TpmAuditAnchor, expectedAnchorNames } from './anchor.tpm.js';
import { AnchorError } from './errors.js';

const indices = { counterIndex: 0x01500020, extendIndex: 0x01500021 };
const config = { ...indices, pinnedNames: expectedAnchorNames(indices) };

/** Just the NV calls the anchor makes, failing as told. */
function fakeTpm(fail: () => Error, names = config.pinnedNames): TpmPort {
  const nameOf = (i: number): Buffer =>
    Buffer.from(i === indices.counterIndex ? names.counter : names.extend, 'hex');
  return {
    nvExtend: () => Promise.reject(fail()),
    nvIncrement: () => Promise.reject(fail()),
    nvReadPublic: (i: number) => Promise.resolve({ public: Buffer.alloc(0), name: nameOf(i) }),
  } as unknown as TpmPort;
}

describe('TpmAuditAnchor error mapping', () => {
  it.each([
    ['TPM_RC_NV_RATE', TPM_RC.NV_RATE],
    ['TPM_RC_RETRY', TPM_RC.RETRY],
    ['TPM_RC_YIELDED', 0x908],
    ['TPM_RC_TESTING', 0x90a],
  ])('%s is retryable (the command did not run)', async (_name, rc) => {
    const anchor = new TpmAuditAnchor(
      fakeTpm(() => new TpmError('NV_Extend', rc, 'tpm', 'x')),
      config,
    );
    const err = await anchor.extend(Buffer.alloc(32)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AnchorError);
    expect(err).toMatchObject({ retryable: true, code: 'tpm_unavailable' });
  });

  it('a lost connection or another TPM error is not retryable', async () => {
    for (const fail of [
      () => new TpmUnavailableError('connection reset'),
      () => new TpmError('NV_Increment', TPM_RC.AUTH_FAIL, 'tpm', 'auth'),
      () => new TpmError('NV_Increment', TPM_RC.NV_RATE, 'esys', 'not the TPM layer'),
    ]) {
      const anchor = new TpmAuditAnchor(fakeTpm(fail), config);
      await expect(anchor.increment()).rejects.toMatchObject({ retryable: false });
    }
  });

  it('checkPinned refuses a name that is not the pinned one', async () => {
    const other = { counter: config.pinnedNames.counter, extend: '000b' + 'ab'.repeat(32) };
    const anchor = new TpmAuditAnchor(
      fakeTpm(() => new Error('unused'), other),
      config,
    );
    await expect(anchor.checkPinned()).rejects.toMatchObject({ code: 'audit_rollback_detected' });
    await new TpmAuditAnchor(
      fakeTpm(() => new Error('unused')),
      config,
    ).checkPinned();
  });

  it('uses owner-only writes and no policy delete, platform create or orderly bits', () => {
    expect(ANCHOR_NV_ATTRIBUTES & 0x2).toBe(0x2); // ownerWrite
    expect(ANCHOR_NV_ATTRIBUTES & (0x4 | 0x8)).toBe(0); // authWrite, policyWrite
    expect(ANCHOR_NV_ATTRIBUTES & ((1 << 10) | (1 << 30) | (1 << 26))).toBe(0);
  });
});
