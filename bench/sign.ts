/**
 * Signing throughput: raw pkcs11js (one session, synchronous C_SignInit + C_Sign on the
 * event loop) against our adapter (signing threads that sign batches on sessions of its
 * pool) at concurrency 1, 4 and 16, with the event-loop delay p99 during each adapter run.
 * Provisions its own SoftHSM2 token in a temp folder. The raw rate is measured in the same
 * run, before and after the adapter runs; the target compares with the better of the two.
 * On a shared box the rates swing with other load, so each run also prints the CPU time
 * per sign (Linux: the event loop's thread from /proc, all threads from cpuUsage), which
 * other load barely moves, and the rate those costs would allow on free cores.
 *
 *   npx tsx bench/sign.ts   (BENCH_MS=3000 per run, BENCH_POOL=4 sessions,
 *                            BENCH_THREADS=signing threads, default: the number of cores)
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import pkcs11js from 'pkcs11js';
import { provisionSimHsm } from '../test/rig/sim.js';
import { findPrivate, openRawSession } from '../test/keys/hsm-tools.js';

const runMs = Number(process.env.BENCH_MS ?? 3000);
const poolSize = Number(process.env.BENCH_POOL ?? 4);
const threads =
  process.env.BENCH_THREADS === undefined ? undefined : Number(process.env.BENCH_THREADS);

/** CPU time of the calling thread in ms (Linux; undefined elsewhere). */
function threadCpuMs(): number | undefined {
  try {
    const fields = readFileSync('/proc/thread-self/stat', 'utf8').split(') ')[1]?.split(' ');
    // utime + stime, in USER_HZ (100 per second).
    const ticks = Number(fields?.[11]) + Number(fields?.[12]);
    return Number.isFinite(ticks) ? ticks * 10 : undefined;
  } catch {
    return undefined;
  }
}

function processCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** Microseconds of CPU per sign, or '?' where the thread's CPU time is unknown. */
function perSign(ms: number | undefined, n: number): number | undefined {
  return ms === undefined ? undefined : (ms * 1000) / n;
}

const us = (v: number | undefined): string => (v === undefined ? '?' : v.toFixed(0));

const root = await mkdtemp(join(tmpdir(), 'grantor-bench-sign-'));
const hsm = await provisionSimHsm(join(root, 'hsm'), 'grantor-bench');
// SoftHSM reads its configuration at C_Initialize: set it before the adapter opens.
process.env.SOFTHSM2_CONF = hsm.conf;
const { Pkcs11Signer } = await import('../src/keys/signer.pkcs11.js');

const signer = new Pkcs11Signer({
  modulePath: hsm.module,
  tokenLabel: hsm.tokenLabel,
  pin: hsm.pin,
  sessionPoolSize: poolSize,
  signDeadlineMs: 10_000,
  recoveryBackoffMs: 1000,
  ...(threads === undefined ? {} : { signThreads: threads }),
});

try {
  await signer.open();
  const key = await signer.generate('ES256', 'bench');
  const message = Buffer.from('a grant signing input of typical length: header.payload'.repeat(8));

  // Raw: the same key through a plain pkcs11js session, synchronous, on the event loop.
  const { p, session, close: closeRaw } = openRawSession(hsm);
  const handle = findPrivate(p, session, key.hsmId);

  const rawRate = (): { rate: number; cpuUs: number | undefined } => {
    let n = 0;
    const c0 = threadCpuMs();
    const t0 = performance.now();
    while (performance.now() - t0 < runMs) {
      // Same work as the adapter: hash here, CKM_ECDSA over the digest.
      const digest = createHash('sha256').update(message).digest();
      p.C_SignInit(session, { mechanism: pkcs11js.CKM_ECDSA }, handle);
      p.C_Sign(session, digest, Buffer.alloc(64));
      n++;
    }
    const rate = n / ((performance.now() - t0) / 1000);
    const c1 = threadCpuMs();
    return { rate, cpuUs: perSign(c0 === undefined || c1 === undefined ? c0 : c1 - c0, n) };
  };

  const adapterRate = async (
    concurrency: number,
  ): Promise<{
    rate: number;
    p99ms: number;
    maxms: number;
    loopUs: number | undefined;
    allUs: number;
  }> => {
    const h = monitorEventLoopDelay({ resolution: 1 });
    let n = 0;
    const loop0 = threadCpuMs();
    const all0 = processCpuMs();
    const t0 = performance.now();
    h.enable();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() - t0 < runMs) {
          await signer.sign(key.hsmId, message);
          n++;
        }
      }),
    );
    h.disable();
    const rate = n / ((performance.now() - t0) / 1000);
    const loop1 = threadCpuMs();
    return {
      rate,
      p99ms: h.percentile(99) / 1e6,
      maxms: h.max / 1e6,
      loopUs: perSign(loop0 === undefined || loop1 === undefined ? loop0 : loop1 - loop0, n),
      allUs: ((processCpuMs() - all0) * 1000) / n,
    };
  };

  // Warm up both paths once.
  for (let i = 0; i < 200; i++) await signer.sign(key.hsmId, message);
  const rawRun = rawRate();
  const raw = rawRun.rate;
  console.log(
    `SoftHSM2 P-256 ES256, ${runMs} ms per run, adapter pool ${poolSize} sessions, ` +
      `${String(signer.signThreadCount)} signing threads, ${String(availableParallelism())} cores`,
  );
  console.log(`raw pkcs11js, 1 session, sync      ${raw.toFixed(0).padStart(7)} signs/s`);
  console.log(`  CPU per sign: ${us(rawRun.cpuUs)} us (its one thread)`);
  const results: {
    c: number;
    rate: number;
    p99ms: number;
    maxms: number;
    loopUs: number | undefined;
    allUs: number;
  }[] = [];
  for (const c of [1, 4, 16]) {
    const r = await adapterRate(c);
    results.push({ c, ...r });
    console.log(
      `adapter, concurrency ${String(c).padEnd(2)}           ${r.rate.toFixed(0).padStart(7)} signs/s  ` +
        `ratio ${(r.rate / raw).toFixed(2)}  event-loop delay p99 ${r.p99ms.toFixed(2)} ms (max ${r.maxms.toFixed(2)} ms)`,
    );
    console.log(`  CPU per sign: event loop ${us(r.loopUs)} us, all threads ${us(r.allUs)} us`);
  }
  const raw2 = rawRate().rate;
  console.log(`raw pkcs11js again (drift check)   ${raw2.toFixed(0).padStart(7)} signs/s`);
  const c16 = results.find((r) => r.c === 16);
  if (c16 !== undefined) {
    const ratio = c16.rate / Math.max(raw, raw2);
    console.log(
      `target: concurrency 16 >= 0.90 x raw: ${ratio.toFixed(2)} ${ratio >= 0.9 ? 'MET' : 'NOT MET'}`,
    );
    // Not the target: what the measured CPU costs allow when the cores are free (the
    // event loop bounds the adapter at 1/loop, the cores at cores/all; raw at 1/raw).
    if (c16.loopUs !== undefined && rawRun.cpuUs !== undefined) {
      const cores = availableParallelism();
      const capacity = Math.min(1e6 / c16.loopUs, (cores * 1e6) / c16.allUs);
      console.log(
        `  from CPU per sign, on ${String(cores)} free cores: concurrency 16 up to ` +
          `${capacity.toFixed(0)} signs/s, raw up to ${(1e6 / rawRun.cpuUs).toFixed(0)} signs/s ` +
          `(${(capacity / (1e6 / rawRun.cpuUs)).toFixed(2)} x)`,
      );
    }
  }
  closeRaw();
} finally {
  await signer.close();
  await rm(root, { recursive: true, force: true });
}
