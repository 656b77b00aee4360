/**
 * The TPM commands one anchor write sends, counted on the bus (a TCP proxy in front of a
 * real swtpm), and what the addon's kept NV handles (native/src/context.h) must not change:
 * an index undefined and redefined behind them by someone else (tpm2-tools, another
 * connection) with another name is refused, and nothing lands on it.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Pkcs11AnchorKey } from '../../src/audit/anchor-key.pkcs11.js';
import { anchorPolicySigner, anchorWritePolicy } from '../../src/audit/anchor-policy.js';
import type { AnchorState } from '../../src/audit/anchor.port.js';
import { TpmAuditAnchor, provisionTpmAnchor } from '../../src/audit/anchor.tpm.js';
import { TPM_RC, TpmArgumentError, TpmError } from '../../src/tpm/errors.js';
import { NativeTpm } from '../../src/tpm/tpm.native.js';
import type { PolicySigner } from '../../src/tpm/tpm.port.js';
import { provisionSimHsm, startSimTpm, type SimTpm } from '../rig/sim.js';
import { startBusProxy, type BusProxy } from './bus-proxy.js';
import { tempDir, tearDownTpm } from './helpers.js';

const run = promisify(execFile);
const INDICES = { counterIndex: 0x01500040, extendIndex: 0x01500041 };
const CC = {
  StartAuthSession: 0x176,
  LoadExternal: 0x167,
  PolicySigned: 0x160,
  FlushContext: 0x165,
  NV_Extend: 0x136,
  NV_Increment: 0x134,
  NV_Read: 0x14e,
  NV_ReadPublic: 0x169,
} as const;
const NAMES = new Map<number, string>(Object.entries(CC).map(([k, v]) => [v, k]));

let sim: SimTpm;
let proxy: BusProxy;
let tpm: NativeTpm;
let key: Pkcs11AnchorKey;
let work: string;
let anchor: TpmAuditAnchor;
let policy: Buffer;
const seen: string[] = [];
let pinnedNames: { extend: string; counter: string };

/** What a batch sends while its store write is in flight: both sessions readied. */
const PREPARED = [
  'StartAuthSession',
  'StartAuthSession',
  // One loaded copy of the write key for both sessions, flushed after them.
  'LoadExternal',
  'PolicySigned',
  'PolicySigned',
  'FlushContext',
];

/** tpm2-tools on their own connection, straight to swtpm (not through our context). */
async function tools(tool: string, args: string[]): Promise<void> {
  const env: NodeJS.ProcessEnv = { ...process.env, TPM2TOOLS_TCTI: sim.tcti, TSS2_LOG: 'all+none' };
  delete env.LD_PRELOAD;
  await run(tool, args, { env });
}

/** Waits for `done`, failing after 10 s (a hung wait would hold the TPM for later tests). */
async function until(done: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('until: condition not met in 10 s');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/**
 * The next `cc` command reaches the TPM as an unknown command code (refused before any
 * session or NV processing, so it does not run and spends nothing), and its answer becomes
 * `rc`. `fired()`: whether it happened; `undo()` puts the proxy back.
 */
function refuseNext(cc: number, rc: number): { fired: () => boolean; undo: () => void } {
  const record = proxy.rewriteCommand;
  let armed = true;
  proxy.rewriteCommand = (command) => {
    const sent = record === undefined ? command : record(command);
    if (!armed || sent.readUInt32BE(6) !== cc) return sent;
    armed = false;
    const mangled = Buffer.from(sent);
    mangled.writeUInt32BE(0, 6);
    return mangled;
  };
  proxy.rewrite = (command, response) => {
    if (command.readUInt32BE(6) !== 0) return response;
    const answer = Buffer.alloc(10);
    answer.writeUInt16BE(0x8001, 0);
    answer.writeUInt32BE(10, 2);
    answer.writeUInt32BE(rc, 6);
    return answer;
  };
  return {
    fired: () => !armed,
    undo: () => {
      proxy.rewriteCommand = record;
      proxy.rewrite = undefined;
    },
  };
}

/**
 * A batch whose store write is done, with the next `cc` refused with `rc` (refuseNext):
 * the anchor as read before it, what it rejected with and the writes it reported landed;
 * `seen` holds its commands.
 */
async function batchRefusing(
  cc: number,
  rc: number,
  root: Buffer,
): Promise<{ before: AnchorState; refused: unknown; landed: string[] }> {
  const before = await anchor.readAfterWrite();
  const refusal = refuseNext(cc, rc);
  const landed: string[] = [];
  seen.length = 0;
  let refused: unknown;
  try {
    await anchor.writeBatch(root, Promise.resolve(), (write) => landed.push(write));
  } catch (err) {
    refused = err;
  } finally {
    refusal.undo();
  }
  expect(refusal.fired()).toBe(true);
  return { before, refused, landed };
}

/** The commands `fn` sends through the proxy, by name. */
async function commandsOf(fn: () => Promise<unknown>): Promise<string[]> {
  seen.length = 0;
  await fn();
  return [...seen];
}

beforeAll(async () => {
  work = await tempDir('grantor-anchor-trips-');
  const hsm = await provisionSimHsm(join(work, 'hsm'), 'grantor-anchor-trips');
  process.env.SOFTHSM2_CONF = hsm.conf;
  sim = await startSimTpm();
  proxy = await startBusProxy(sim.port);
  proxy.rewriteCommand = (command) => {
    const cc = command.readUInt32BE(6);
    seen.push(NAMES.get(cc) ?? `0x${cc.toString(16)}`);
    return command;
  };
  tpm = await NativeTpm.open(proxy.tcti);
  key = new Pkcs11AnchorKey(
    { modulePath: hsm.module, tokenLabel: hsm.tokenLabel, pin: hsm.pin },
    { create: true },
  );
  const pin = await provisionTpmAnchor(tpm, INDICES, { writeKey: key });
  policy = anchorWritePolicy(await key.publicPoint());
  pinnedNames = pin.names;
  anchor = new TpmAuditAnchor(tpm, { ...INDICES, pinnedNames, writeKey: key });
});

afterAll(() =>
  tearDownTpm(
    async () => {
      await key.close();
      await tpm.close();
      await proxy.close();
    },
    [sim],
    work,
  ),
);

describe('TPM commands per anchor write', () => {
  it('sends no NV_ReadPublic: the policy write addresses the indices by their TPM handles', async () => {
    await anchor.extend(Buffer.alloc(32, 1));
    await anchor.increment();
    const write = await commandsOf(async () => {
      await anchor.extend(Buffer.alloc(32, 2));
      await anchor.increment();
    });
    const policyWrite = (nv: string): string[] => [
      'StartAuthSession',
      'LoadExternal',
      'PolicySigned',
      'FlushContext',
      // The NV command spends its policy session (continueSession clear): no flush after it.
      nv,
    ];
    expect(write).toEqual([
      ...policyWrite('NV_Extend'),
      ...policyWrite('NV_Increment'),
      // The read-after-write, in the increment's call (below).
      'NV_Read',
      'NV_Read',
    ]);
  });

  it("a batch's two writes: both sessions readied by PolicySigned while the store writes, NV written only after it, in one call", async () => {
    const root = Buffer.alloc(32, 7);
    const before = await anchor.readAfterWrite();
    let release = (): void => undefined;
    const stored = new Promise<void>((resolve) => {
      release = resolve;
    });
    const landed: string[] = [];
    seen.length = 0;
    const batch = anchor.writeBatch(root, stored, (write) => landed.push(write));
    const prepared = PREPARED;
    try {
      await until(() => seen.length >= prepared.length);
      // Given time, nothing more goes to the TPM while the store has not answered.
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(seen).toEqual(prepared);
      expect(landed).toEqual([]);
    } finally {
      release();
      await batch;
    }
    // The NV commands spend their sessions (continueSession clear): no flush after them.
    expect(seen).toEqual([...prepared, 'NV_Extend', 'NV_Increment', 'NV_Read', 'NV_Read']);
    expect(landed).toEqual(['extend', 'increment']);
    const extended = createHash('sha256').update(before.extendValue).update(root).digest();
    const state = await anchor.readAfterWrite();
    expect(state).toEqual({ counter: before.counter + 1n, extendValue: extended });
    expect(await tpm.nvRead(INDICES.extendIndex, { auth: { by: 'index' } })).toEqual(extended);
  });

  it("a batch whose store write fails writes nothing, flushes both sessions and rejects with the store's error", async () => {
    const before = await anchor.readAfterWrite();
    let fail = (_e: Error): void => undefined;
    const stored = new Promise<void>((_resolve, reject) => {
      fail = reject;
    });
    const landed: string[] = [];
    seen.length = 0;
    const batch = anchor.writeBatch(Buffer.alloc(32, 8), stored, (write) => landed.push(write));
    const disk = new Error('EIO');
    try {
      await until(() => seen.includes('PolicySigned'));
    } finally {
      fail(disk);
    }
    await expect(batch).rejects.toBe(disk);
    // The key's flush (in PREPARED), then both sessions'.
    expect(seen).toEqual([...PREPARED, 'FlushContext', 'FlushContext']);
    expect(landed).toEqual([]);
    expect(await tpm.nvRead(INDICES.extendIndex, { auth: { by: 'index' } })).toEqual(
      before.extendValue,
    );
    expect(await tpm.nvReadCounter(INDICES.counterIndex, { auth: { by: 'index' } })).toBe(
      before.counter,
    );
  });

  it('a batch whose PolicySigned is refused lands nothing and leaves no session loaded', async () => {
    const { before, refused, landed } = await batchRefusing(
      CC.PolicySigned,
      TPM_RC.VALUE,
      Buffer.alloc(32, 11),
    );
    expect(refused).toMatchObject({ code: 'tpm_unavailable' });
    expect((refused as Error).message).toBe('NV_Extend failed');
    expect((refused as { cause?: unknown }).cause).toMatchObject({ command: 'PolicySigned' });
    // The key, then both sessions: the refused one, and the one whose PolicySigned never
    // ran (all or none).
    expect(seen).toEqual([
      'StartAuthSession',
      'StartAuthSession',
      'LoadExternal',
      'PolicySigned',
      'FlushContext',
      'FlushContext',
      'FlushContext',
    ]);
    expect(landed).toEqual([]);
    expect(await anchor.readAfterWrite()).toEqual(before);
  });

  it("a batch whose increment is refused: the extend landed, the rejection is the increment's", async () => {
    // TPM_RC_NV_RATE: not run, so the log may send it again.
    const root = Buffer.alloc(32, 10);
    const { before, refused, landed } = await batchRefusing(CC.NV_Increment, TPM_RC.NV_RATE, root);
    // The refused increment's session is flushed right after it (a leak would be hidden
    // by the sweep on "slots full" below, so it is checked on the bus).
    expect(seen.slice(-3)).toEqual(['NV_Extend', 'NV_Increment', 'FlushContext']);
    expect(landed).toEqual(['extend']);
    expect(refused).toMatchObject({ code: 'tpm_unavailable', retryable: true });
    expect((refused as Error).message).toBe('NV_Increment failed');
    const extended = createHash('sha256').update(before.extendValue).update(root).digest();
    expect(await tpm.nvRead(INDICES.extendIndex, { auth: { by: 'index' } })).toEqual(extended);
    expect(await tpm.nvReadCounter(INDICES.counterIndex, { auth: { by: 'index' } })).toBe(
      before.counter,
    );
    // The increment's session was spent or flushed: another write still finds a slot.
    await anchor.increment();
    expect(await tpm.nvReadCounter(INDICES.counterIndex, { auth: { by: 'index' } })).toBe(
      before.counter + 1n,
    );
  });

  it('a batch whose extend is refused lands nothing and flushes both sessions', async () => {
    const { before, refused, landed } = await batchRefusing(
      CC.NV_Extend,
      TPM_RC.NV_RATE,
      Buffer.alloc(32, 12),
    );
    expect(refused).toMatchObject({ code: 'tpm_unavailable', retryable: true });
    expect((refused as Error).message).toBe('NV_Extend failed');
    // The increment was never sent: its session and the refused extend's are flushed.
    expect(seen.slice(-3)).toEqual(['NV_Extend', 'FlushContext', 'FlushContext']);
    expect(landed).toEqual([]);
    expect(await anchor.readAfterWrite()).toEqual(before);
  });

  it('a signer that answers another number of signatures writes nothing and flushes the sessions', async () => {
    const before = await anchor.readAfterWrite();
    const hsm = anchorPolicySigner(key, await key.publicPoint());
    const short: PolicySigner = {
      public: hsm.public,
      sign: async (requests) => (await hsm.sign(requests)).slice(0, 1),
    };
    seen.length = 0;
    const refused = await tpm
      .nvWritesByPolicySigned(
        [
          {
            index: INDICES.extendIndex,
            write: {
              kind: 'extend',
              data: Buffer.alloc(32, 13),
              name: Buffer.from(pinnedNames.extend, 'hex'),
            },
          },
          {
            index: INDICES.counterIndex,
            write: { kind: 'increment', name: Buffer.from(pinnedNames.counter, 'hex') },
          },
        ],
        short,
      )
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(TpmArgumentError);
    expect(seen).toEqual(['StartAuthSession', 'StartAuthSession', 'FlushContext', 'FlushContext']);
    expect(await anchor.readAfterWrite()).toEqual(before);
  });

  it('refuses more writes in one call than the TPM holds sessions, before sending anything', async () => {
    const hsm = anchorPolicySigner(key, await key.publicPoint());
    const write = {
      index: INDICES.counterIndex,
      write: { kind: 'increment', name: Buffer.from(pinnedNames.counter, 'hex') },
    } as const;
    seen.length = 0;
    await expect(
      tpm.nvWritesByPolicySigned([write, write, write, write], hsm),
    ).rejects.toBeInstanceOf(TpmArgumentError);
    expect(seen).toEqual([]);
  });

  it('reads the anchor back in the increment call itself: readAfterWrite sends nothing', async () => {
    await anchor.extend(Buffer.alloc(32, 6));
    const increment = await commandsOf(() => anchor.increment());
    expect(increment.slice(-3)).toEqual(['NV_Increment', 'NV_Read', 'NV_Read']);
    let state: Awaited<ReturnType<TpmAuditAnchor['readAfterWrite']>> | undefined;
    expect(
      await commandsOf(async () => {
        state = await anchor.readAfterWrite();
      }),
    ).toEqual([]);
    // What the TPM holds now, read on its own.
    expect(state?.counter).toBe(
      await tpm.nvReadCounter(INDICES.counterIndex, { auth: { by: 'index' } }),
    );
    expect(state?.extendValue).toEqual(
      await tpm.nvRead(INDICES.extendIndex, { auth: { by: 'index' } }),
    );
    // Used once: the next readAfterWrite reads the TPM.
    expect(await commandsOf(() => anchor.readAfterWrite())).toContain('NV_Read');
  });

  it('a read back that fails does not fail the write: readAfterWrite reads on its own', async () => {
    const before = await tpm.nvReadCounter(INDICES.counterIndex, { auth: { by: 'index' } });
    let armed = true;
    proxy.rewrite = (command, response) => {
      if (!armed || command.readUInt32BE(6) !== CC.NV_Read) return response;
      armed = false;
      // TPM_RC_NV_RATE: retryable for a write, so it must not surface as the write's error.
      const rc = Buffer.alloc(10);
      rc.writeUInt16BE(0x8001, 0);
      rc.writeUInt32BE(10, 2);
      rc.writeUInt32BE(TPM_RC.NV_RATE, 6);
      return rc;
    };
    try {
      await anchor.increment();
    } finally {
      proxy.rewrite = undefined;
    }
    expect(armed).toBe(false);
    const state = await anchor.readAfterWrite();
    expect(state.counter).toBe(before + 1n);
  });

  it('resubmits a command the TPM answers with TPM_RC_RETRY, and the write lands once', async () => {
    const before = await anchor.readAfterWrite();
    const refusal = refuseNext(CC.NV_Extend, TPM_RC.RETRY);
    const value = Buffer.alloc(32, 9);
    let write: string[];
    try {
      write = await commandsOf(() => anchor.extend(value));
    } finally {
      refusal.undo();
    }
    expect(refusal.fired()).toBe(true);
    expect(write.filter((c) => c === 'NV_Extend')).toHaveLength(2);
    // Extended exactly once: SHA-256(before || value).
    const extended = createHash('sha256').update(before.extendValue).update(value).digest();
    expect(await tpm.nvRead(INDICES.extendIndex, { auth: { by: 'index' } })).toEqual(extended);
  });

  it('an index redefined behind the kept handle with another name takes no write', async () => {
    await anchor.extend(Buffer.alloc(32, 3));
    const index = `0x${INDICES.extendIndex.toString(16)}`;
    // Someone with owner auth, on another connection: same write policy, but owner-writable
    // too (so another name). Our kept handle still carries the pinned name.
    const policyFile = join(work, 'policy.bin');
    await writeFile(policyFile, policy);
    await tools('tpm2_nvundefine', [index, '-C', 'o']);
    await tools('tpm2_nvdefine', [
      index,
      '-C',
      'o',
      '-s',
      '32',
      '-L',
      policyFile,
      '-a',
      'policywrite|ownerwrite|ownerread|authread|no_da|nt=extend',
    ]);
    const refused = await anchor.extend(Buffer.alloc(32, 4)).catch((e: unknown) => e);
    // The TPM checks PolicySigned's cpHash (made with the pinned name) against the index
    // as it is: the signature does not authorise a write to the substituted index.
    expect(refused).toMatchObject({ code: 'tpm_unavailable', retryable: false });
    expect((refused as { cause?: unknown }).cause).toBeInstanceOf(TpmError);
    expect((refused as { cause: TpmError }).cause.is(TPM_RC.POLICY_FAIL)).toBe(true);
    // Nothing landed: the new index was never written.
    const read = await tpm
      .nvRead(INDICES.extendIndex, { auth: { by: 'index' } })
      .catch((e: unknown) => e);
    expect(read).toBeInstanceOf(TpmError);
    expect((read as TpmError).is(TPM_RC.NV_UNINITIALIZED)).toBe(true);
    // And again, after the failure dropped the kept handles (re-resolved afresh).
    await expect(anchor.extend(Buffer.alloc(32, 5))).rejects.toMatchObject({
      code: 'tpm_unavailable',
    });
    await expect(anchor.checkPinned()).rejects.toMatchObject({ code: 'audit_rollback_detected' });
  });
});
