/**
 * End-to-end grants per second in session mode over HTTP (real swtpm for the runtime and
 * for the audit anchor, SoftHSM2, Cedar, LevelDB, audit on) at concurrency 1, 16 and 64,
 * with p50/p99 latency, next to the raw SoftHSM ES256 sign rate measured in the same run.
 * The appliance is the production one (test/appliance/real.ts: `startApplianceServer` with
 * every plugin, the default limits and the policy workers), over plain HTTP on loopback.
 *
 *   npx tsx bench/grants.ts [seconds-per-level] [levels, default 1,16,64]
 *   GRANTOR_POLICY_THREADS=0 npx tsx bench/grants.ts ...   (decisions in the event loop)
 *
 * The appliance (this process) and the clients (bench/grants-client.ts, a forked process)
 * run apart, as they would in production, so the appliance's event loop is what is
 * measured; they still share the machine's cores. The clients sign each request with the
 * session key, as a runtime would, over keep-alive HTTP/1.1 (one connection per request in
 * flight). One warm-up second at concurrency 16 runs first and is not counted. Per level
 * the appliance's CPU (user+system, all its threads, as % of one core), its event-loop
 * utilisation and the audit batches (count, mean entries per batch) are printed too.
 *
 * The raw rate is the key service's signJws (the call the pipeline makes) with 16 in
 * flight, before any HTTP load; the logger is off, as in the other benches. Per level the
 * CPU per grant of both processes is printed, and at the end the floor
 * (bench/grants-floor.ts): the CPU per grant of the parts every design pays (HSM signature,
 * Cedar decision, signature check, a no-op HTTP round trip with the same client), measured
 * in the same run, and the rate they alone allow on this machine's cores.
 */
import { fork } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { provisionTpmTemplate, repoRoot } from '../test/rig/sim.js';
import { createEccAk } from '../test/attestation/tools.js';
import type { Level, Result, Setup } from './grants-client.js';
import { cedarCpu, floorReport, noopServer, verifyCpu, type FloorPart } from './grants-floor.js';

const seconds = Number(process.argv[2] ?? '5');
const levels = (process.argv[3] ?? '1,16,64').split(',').map(Number);
const root = await mkdtemp(join(tmpdir(), 'grantor-bench-grants-'));
await provisionTpmTemplate(join(root, 'tpm-template'));
process.env.GRANTOR_TEST_TPM_TEMPLATE = join(root, 'tpm-template');

// Imported after the environment is set: the PKCS#11 module reads SOFTHSM2_CONF at init.
const { attest, enroll, grantBody, signed } = await import('../test/grants/rig.js');
const { startRealAppliance } = await import('../test/appliance/real.js');

// The appliance exactly as ./scripts/start composes it (every plugin, the policy workers),
// with its default limits; only its log is quiet.
// GRANTOR_POLICY_THREADS from the environment passes through (0: decide in the event loop).
const threads = process.env.GRANTOR_POLICY_THREADS;
const real = await startRealAppliance('bench-grants', {
  GRANTOR_LOG_LEVEL: 'error',
  ...(threads === undefined ? {} : { GRANTOR_POLICY_THREADS: threads }),
});
const appliance = real.server.appliance;
if (appliance === undefined) throw new Error('the appliance did not start');
const rig = real.rig;
const percentile = (sorted: number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;

const client = fork(fileURLToPath(new URL('./grants-client.ts', import.meta.url)), [], {
  execArgv: ['--import', 'tsx'],
  stdio: 'inherit',
});
const send = (msg: Setup | Level): void => {
  client.send(msg);
};
const answer = (): Promise<Result> =>
  new Promise((resolve, reject) => {
    const onExit = (code: number | null): void => {
      reject(new Error(`the client process exited (${code})`));
    };
    client.once('exit', onExit);
    client.once('message', (msg: Result) => {
      client.off('exit', onExit);
      resolve(msg);
    });
  });

try {
  await createEccAk(real.tools);
  await real.tools.tpm2('evictcontrol', ['-C', 'o', '-c', 'ak.ctx', '0x81010003']);
  const rt = await enroll(
    rig,
    'bench-agent',
    { team: 'support' },
    { ctx: '0x81010003', pub: 'ak.pub' },
    'rsa',
  );
  const session = await attest(rig, rt);

  // Raw HSM rate: the key service's signJws (the same call the pipeline makes), 16 in flight.
  const rawEnd = Date.now() + seconds * 1000;
  let raw = 0;
  const rawCpu0 = process.cpuUsage();
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (Date.now() < rawEnd) {
        const exp = Math.floor(Date.now() / 1000) + 60;
        await appliance.keys.signJws({ typ: 'grant+jwt' }, Buffer.from(JSON.stringify({ exp })));
        raw += 1;
      }
    }),
  );
  const rawRate = raw / seconds;
  const rawCpu = process.cpuUsage(rawCpu0);
  const signCpuMs = (rawCpu.user + rawCpu.system) / 1000 / raw;

  // The floor (bench/grants-floor.ts): Cedar, the signature check, a no-op HTTP round trip.
  const floorSeconds = Math.max(1, seconds / 2);
  const cedarCpuMs = await cedarCpu(
    join(repoRoot, 'policies/default'),
    join(repoRoot, 'policies/grantor.cedarschema'),
    floorSeconds,
  );
  const verifyCpuMs = verifyCpu(
    signed(grantBody(rt), session.attestationId, session.key.privateKey),
    createPublicKey({ key: { ...session.key.jwk }, format: 'jwk' }),
    floorSeconds,
  );
  const setup = (url: string): Setup => ({
    kind: 'setup',
    url,
    runtime: rt,
    attestationId: session.attestationId,
    privateKeyPem: session.key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
  });
  const noop = await noopServer();
  send(setup(noop.url));
  const noopWarm = answer();
  send({ kind: 'level', concurrency: 16, seconds: 1 });
  await noopWarm;
  const noopCpu0 = process.cpuUsage();
  const noopResult = answer();
  send({ kind: 'level', concurrency: 16, seconds: floorSeconds });
  const noopLevel = await noopResult;
  const noopCpu = process.cpuUsage(noopCpu0);
  await noop.close();
  const noopCount = noopLevel.latencies.length;
  const floorParts: FloorPart[] = [
    { name: 'HSM signature (signJws, from the raw loop)', cpuMs: signCpuMs },
    { name: 'Cedar decision (policies/default)', cpuMs: cedarCpuMs },
    { name: 'session signature check (JCS + ES256 verify)', cpuMs: verifyCpuMs },
    {
      name: `no-op HTTP round trip, server side (${(noopCount / floorSeconds).toFixed(0)}/s at c16)`,
      cpuMs: (noopCpu.user + noopCpu.system) / 1000 / noopCount,
    },
    {
      name: 'no-op HTTP round trip, client side (signing the request too)',
      cpuMs: noopLevel.cpuMs / noopCount,
    },
  ];

  await rig.app.listen({ host: '127.0.0.1', port: 0 });
  send(setup(`http://127.0.0.1:${(rig.app.server.address() as AddressInfo).port}/v1/grants`));

  const warm = answer();
  send({ kind: 'level', concurrency: 16, seconds: 1 });
  await warm;

  const rows: string[] = [];
  for (const concurrency of levels) {
    const audit0 = appliance.audit.stats();
    const cpu0 = process.cpuUsage();
    const elu0 = performance.eventLoopUtilization();
    const result = answer();
    send({ kind: 'level', concurrency, seconds });
    const { latencies, failures, cpuMs: clientCpuMs } = await result;
    const cpu = process.cpuUsage(cpu0);
    const elu = performance.eventLoopUtilization(elu0);
    const audit1 = appliance.audit.stats();
    latencies.sort((a, b) => a - b);
    const rate = latencies.length / seconds;
    const batches = audit1.batches - audit0.batches;
    const failed = Object.values(failures).reduce((a, b) => a + b, 0);
    rows.push(
      [
        String(concurrency).padStart(11),
        rate.toFixed(0).padStart(9),
        percentile(latencies, 50).toFixed(1).padStart(8),
        percentile(latencies, 99).toFixed(1).padStart(8),
        String(failed).padStart(8),
        `${((100 * rate) / rawRate).toFixed(0)}%`.padStart(9),
        `${((cpu.user + cpu.system) / 10_000 / seconds).toFixed(0)}%`.padStart(8),
        `${(100 * elu.utilization).toFixed(0)}%`.padStart(6),
        String(batches).padStart(8),
        (batches === 0 ? 0 : (audit1.appends - audit0.appends) / batches).toFixed(1).padStart(7),
        ((cpu.user + cpu.system) / 1000 / Math.max(1, latencies.length)).toFixed(2).padStart(7),
        (clientCpuMs / Math.max(1, latencies.length)).toFixed(2).padStart(7),
      ].join(' '),
    );
    if (failed > 0) console.log(`concurrency ${concurrency}: failures ${JSON.stringify(failures)}`);
  }
  console.log(`raw SoftHSM ES256 signJws: ${rawRate.toFixed(0)}/s (16 in flight, ${seconds} s)`);
  console.log(
    'concurrency  grants/s  p50 ms  p99 ms  failures  % of raw  srv CPU  srv EL  batches  /batch  srv ms  cli ms',
  );
  for (const r of rows) console.log(r);
  console.log('(srv ms, cli ms: CPU per grant of the appliance process and of the client process)');
  for (const line of floorReport(floorParts, 0.3 * rawRate)) console.log(line);
} finally {
  client.kill();
  await real.close();
  await rm(root, { recursive: true, force: true });
}
