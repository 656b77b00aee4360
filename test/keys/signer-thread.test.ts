/**
 * The signing thread of the PKCS#11 adapter on its own, with the real SoftHSM2 module:
 * items past their deadline are not signed, the first failure fails the rest of its batch
 * with the module's return value, a module that cannot be loaded fails typed, and a thread
 * lost with a batch in flight rejects that batch and is replaced on the next one, and a
 * thread that is not ready within its boot time fails its start.
 * (Signing through the thread, with real sessions and keys, is in signer.test.ts.)
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { getPriority } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pkcs11js from 'pkcs11js';
import { describe, expect, it } from 'vitest';
import {
  FAILED,
  SignThread,
  SKIPPED,
  type ThreadItem,
} from '../../src/keys/signer.thread.pkcs11.js';
import { repoRoot, SOFTHSM_MODULE } from '../rig/sim.js';

const run = promisify(execFile);

const handle = (n: number): Uint8Array => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
};

const item = (deadline: number): ThreadItem => ({
  key: handle(2),
  mechanism: pkcs11js.CKM_ECDSA,
  sha256: true,
  data: Buffer.from('payload'),
  deadline,
});

const future = (): number => Date.now() + 60_000;

describe('SignThread', () => {
  it('is ready once start() resolves, and no longer once closed', async () => {
    const t = new SignThread('/nonexistent/libpkcs11.so');
    try {
      expect([t.running, t.ready]).toEqual([false, false]);
      const started = t.start();
      expect(t.running).toBe(true);
      await started;
      expect(t.ready).toBe(true);
      // A second start of a running thread is the same thread.
      await t.start();
      expect(t.ready).toBe(true);
    } finally {
      await t.close();
    }
    expect([t.running, t.ready]).toEqual([false, false]);
  });

  it('fails a start that the thread does not live to finish', async () => {
    const t = new SignThread('/nonexistent/libpkcs11.so');
    const started = t.start();
    await t.close();
    await expect(started).rejects.toThrow(/signing thread was closed/);
    expect(t.ready).toBe(false);
  });

  it('fails a start the thread does not finish within its boot time, and lets it go', async () => {
    // 1 ms: no thread boots that fast, so the start must fail rather than wait on.
    const t = new SignThread('/nonexistent/libpkcs11.so', 1);
    try {
      await expect(t.start()).rejects.toThrow(/not ready within 1 ms/);
      expect([t.running, t.ready]).toEqual([false, false]);
    } finally {
      await t.close();
    }
  });

  it('skips items whose deadline has passed, without calling the module', async () => {
    // The module path is bogus: any attempt to sign would fail instead of skip.
    const t = new SignThread('/nonexistent/libpkcs11.so');
    try {
      const reply = await t.run(handle(1), [item(1), item(Date.now() - 1)]);
      expect([...reply.lengths]).toEqual([SKIPPED, SKIPPED]);
      expect(reply.error).toBeUndefined();
    } finally {
      await t.close();
    }
  });

  it('fails the first item with the module return value and the rest of the batch alike', async () => {
    // This process never called C_Initialize: the module answers CKR_CRYPTOKI_NOT_INITIALIZED.
    const t = new SignThread(SOFTHSM_MODULE);
    try {
      const reply = await t.run(handle(1), [item(future()), item(future()), item(future())]);
      expect([...reply.lengths]).toEqual([FAILED, FAILED, FAILED]);
      expect(reply.error).toEqual({
        rv: pkcs11js.CKR_CRYPTOKI_NOT_INITIALIZED,
        name: 'CKR_CRYPTOKI_NOT_INITIALIZED',
      });
    } finally {
      await t.close();
    }
  });

  it('reports a module it cannot load as a failure without a return value', async () => {
    const t = new SignThread('/nonexistent/libpkcs11.so');
    try {
      const reply = await t.run(handle(1), [item(future()), item(future())]);
      expect([...reply.lengths]).toEqual([FAILED, FAILED]);
      expect(reply.error?.rv).toBeUndefined();
      expect(reply.error?.name).toBe('the signing thread could not call the module');
    } finally {
      await t.close();
    }
  });

  it('answers batches handed over before the previous one is done, in order', async () => {
    const t = new SignThread('/nonexistent/libpkcs11.so');
    try {
      const replies = await Promise.all([
        t.run(handle(1), [item(future())]),
        t.run(handle(1), [item(1), item(1)]),
        t.run(handle(1), [item(future()), item(1)]),
      ]);
      expect(replies.map((r) => [...r.lengths])).toEqual([
        [FAILED],
        [SKIPPED, SKIPPED],
        [FAILED, FAILED],
      ]);
      expect(t.inFlight).toBe(0);
    } finally {
      await t.close();
    }
  });

  it('lowers the priority of its own thread, never that of the event loop', async () => {
    const before = getPriority();
    const t = new SignThread('/nonexistent/libpkcs11.so');
    try {
      await t.run(handle(1), [item(1)]);
      const niceOf = (task: string): number =>
        Number(readFileSync(`/proc/self/task/${task}/stat`, 'utf8').split(') ')[1]?.split(' ')[16]);
      const nices = readdirSync('/proc/self/task').map(niceOf);
      expect(getPriority()).toBe(before);
      expect(nices).toContain(Math.min(19, before + 5));
    } finally {
      await t.close();
    }
  });

  it('keeps its thread below the event loop when the appliance itself runs under nice', async () => {
    // The thread adds its niceness to the one it inherits: an absolute value would put it
    // level with an event loop at nice 5, and above one at nice 7 when run as root.
    const { stdout } = await run(
      'nice',
      [
        '-n',
        '7',
        process.execPath,
        '--import',
        'tsx',
        join(repoRoot, 'test/keys/signer-nice-child.ts'),
      ],
      { cwd: repoRoot, timeout: 60_000 },
    );
    const { loop, nices } = JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as {
      loop: number;
      nices: number[];
    };
    expect(loop).toBe(Math.min(19, getPriority() + 7));
    expect(nices).toContain(Math.min(19, loop + 5));
    expect(Math.min(...nices)).toBe(loop);
  });

  it('rejects the batch in flight when the thread goes, and starts a new thread after', async () => {
    const t = new SignThread('/nonexistent/libpkcs11.so');
    // Terminated before it even started: the batch can only be rejected, never answered.
    const lost = expect(t.run(handle(1), [item(future())])).rejects.toThrow(
      /signing thread was closed/,
    );
    await t.close();
    await lost;
    try {
      const reply = await t.run(handle(1), [item(1)]);
      expect([...reply.lengths]).toEqual([SKIPPED]);
    } finally {
      await t.close();
    }
  });
});
