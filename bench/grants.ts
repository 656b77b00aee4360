/**
 * End-to-end grants per second in session mode over HTTP at concurrency 1, 16 and 64, with
 * p50/p99 latency, for four appliances in one run: the grant key in SoftHSM2 or in the
 * appliance's TPM (tpm2-pkcs11 behind tpm2-abrmd, the audit key then in SoftHSM2), each
 * signing one JWS per grant or one root per batch (GRANTOR_GRANT_BATCH). Beside them: the
 * raw sign rate of each key store and the floor. Every appliance is the production one
 * (test/appliance/real.ts: `startApplianceServer` with every plugin, the default limits and
 * the policy workers) over real parts (swtpm for the runtime and the audit anchor, Cedar,
 * LevelDB, audit on), plain HTTP on loopback.
 *
 *   npx tsx bench/grants.ts [seconds-per-level] [levels, default 1,16,64]
 *       [configs, default softhsm-jws,softhsm-batch,tpm-jws,tpm-batch]
 *   GRANTOR_BENCH_ROUNDS=N npx tsx bench/grants.ts ...   (default 3; see below)
 *   GRANTOR_POLICY_THREADS=0 npx tsx bench/grants.ts ...   (decisions in the event loop)
 *   GRANTOR_BENCH_CPU_PROFILE=DIR npx tsx bench/grants.ts ...
 *       (the V8 CPU profile of the appliance's event loop during each level, as --cpu-prof
 *       takes it but without the set-up: DIR/<config>-c<N>-r<round>.cpuprofile; read it with
 *       bench/cpuprofile-summary.ts)
 *
 * The appliance (this process) and the clients (bench/grants-client.ts, a forked process)
 * run apart, as they would in production; they still share the machine's cores. The
 * clients sign each request with the session key, as a runtime would, over keep-alive
 * HTTP/1.1 (one connection per request in flight). One warm-up second at concurrency 16
 * runs first for each appliance and is not counted. Per level the appliance's CPU
 * (user+system, all its threads, % of one core), its event-loop utilisation, the key
 * operations per grant (from GET /metrics), the audit log's cycle (entries per batch, wall
 * time per batch and the time in TPM commands per batch: the group commit paces the grants
 * when the event loop is not busy), the CPU per grant of both processes, and the appliance's
 * garbage collections (perf_hooks `gc` entries: how many per 100 grants, their pause per grant).
 *
 * The raw rate of a key store is the key service's signJws (one JWS, one key operation)
 * with 16 in flight, before any HTTP load. The floor (bench/grants-floor.ts) is the CPU per
 * grant of the parts every design pays (the SoftHSM signature, Cedar, the signature check,
 * a no-op HTTP round trip with the same client) and the ceiling those allow on this
 * machine's cores.
 *
 * This machine's speed drifts by tens of percent within minutes, and the configurations run
 * one after another, so one pass can favour one side of a ratio. The bench therefore runs
 * every configuration in N rounds, in alternating order (the second round backwards), and
 * measures the raw rates and the floor again in each. Each round prints its table and its
 * own three ratios; the last three lines are the median of those per-round ratios, for
 * scripts (the summary lines).
 */
import { fork } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import type { AddressInfo } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { provisionTpmTemplate, repoRoot, startSessionBus } from '../test/rig/sim.js';
import { createEccAk } from '../test/attestation/tools.js';
import type { Level, Result, Setup } from './grants-client.js';
import {
  cedarCpu,
  floorCeiling,
  floorReport,
  noopServer,
  verifyCpu,
  type FloorPart,
} from './grants-floor.js';

const CONFIGS = {
  'softhsm-jws': { label: 'SoftHSM JWS', store: 'SoftHSM', tpm: false, batch: false },
  'softhsm-batch': { label: 'SoftHSM batch', store: 'SoftHSM', tpm: false, batch: true },
  'tpm-jws': { label: 'TPM JWS', store: 'TPM', tpm: true, batch: false },
  'tpm-batch': { label: 'TPM batch', store: 'TPM', tpm: true, batch: true },
} as const;
type ConfigName = keyof typeof CONFIGS;

const seconds = Number(process.argv[2] ?? '5');
const levels = (process.argv[3] ?? '1,16,64').split(',').map(Number);
const chosen = (process.argv[4] ?? Object.keys(CONFIGS).join(',')).split(',');
for (const c of chosen) if (!(c in CONFIGS)) throw new Error(`unknown configuration ${c}`);
const configs = chosen as ConfigName[];

const root = await mkdtemp(join(tmpdir(), 'grantor-bench-grants-'));
await provisionTpmTemplate(join(root, 'tpm-template'));
process.env.GRANTOR_TEST_TPM_TEMPLATE = join(root, 'tpm-template');
// The bus of tpm2-abrmd, which the addon and tpm2-pkcs11 share the appliance's TPM through.
const stopBus = await startSessionBus();

// Imported after the environment is set: the PKCS#11 module reads SOFTHSM2_CONF at init.
const { attest, enroll, grantBody, signed } = await import('../test/grants/rig.js');
const { startRealAppliance } = await import('../test/appliance/real.js');

const profileDir = process.env.GRANTOR_BENCH_CPU_PROFILE;
const inspector = profileDir === undefined ? undefined : new Session();
if (inspector !== undefined && profileDir !== undefined) {
  inspector.connect();
  await inspector.post('Profiler.enable');
  await mkdir(profileDir, { recursive: true });
}

// The appliance's garbage collections (this process's heap: the event loop and its allocations).
const gc = { count: 0, ms: 0 };
const gcObserver = new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    gc.count += 1;
    gc.ms += entry.duration;
  }
});
gcObserver.observe({ entryTypes: ['gc'] });

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

interface LevelRow {
  readonly concurrency: number;
  readonly rate: number;
  /** The whole machine's CPU per grant (ms). */
  readonly boxMs: number;
  readonly line: string;
}

/** One pass over every configuration, with its own raw rates and floor. */
interface Round {
  /** 1-based. */
  readonly index: number;
  readonly rawRates: Partial<Record<'SoftHSM' | 'TPM', number>>;
  readonly results: Map<ConfigName, LevelRow[]>;
  floor: FloorPart[] | undefined;
}

const roundCount = Number(process.env.GRANTOR_BENCH_ROUNDS ?? '3');
if (!Number.isInteger(roundCount) || roundCount < 1) {
  throw new Error('GRANTOR_BENCH_ROUNDS must be a positive whole number');
}

/**
 * The whole machine's busy CPU time in ms since boot (/proc/stat's first line: user, nice,
 * system, irq and softirq, in USER_HZ ticks, 10 ms on Linux). Over a level it counts every
 * process the grant costs: the appliance, the clients, swtpm, the kernel's network and disk
 * work, and anything else running, which is why a quiet box matters.
 */
function boxBusyMs(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
  const ticks = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0);
  // user nice system idle iowait irq softirq; not steal (another guest's), and guest time is
  // already in user.
  return 10 * (ticks.slice(0, 7).reduce((a, b) => a + b, 0) - idle);
}

/** One appliance: its raw sign rate, the round's floor (first SoftHSM one), then every level. */
async function runConfig(name: ConfigName, round: Round): Promise<void> {
  const { rawRates } = round;
  const c = CONFIGS[name];
  const threads = process.env.GRANTOR_POLICY_THREADS;
  const real = await startRealAppliance(
    `bench-${name}`,
    {
      GRANTOR_LOG_LEVEL: 'error',
      ...(threads === undefined ? {} : { GRANTOR_POLICY_THREADS: threads }),
      ...(c.batch ? { GRANTOR_GRANT_BATCH: 'true' } : {}),
    },
    { grantKeys: c.tpm ? 'tpm' : 'hsm' },
  );
  try {
    const appliance = real.server.appliance;
    if (appliance === undefined) throw new Error('the appliance did not start');
    const rig = real.rig;
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

    // The key store's raw rate: signJws (one key operation each), 16 in flight.
    let signCpuMs: number | undefined;
    if (rawRates[c.store] === undefined) {
      const rawEnd = Date.now() + seconds * 1000;
      let raw = 0;
      const rawCpu0 = process.cpuUsage();
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (Date.now() < rawEnd) {
            const exp = Math.floor(Date.now() / 1000) + 60;
            await appliance.keys.signJws({ typ: 'grant+jwt' }, { exp });
            raw += 1;
          }
        }),
      );
      rawRates[c.store] = raw / seconds;
      const rawCpu = process.cpuUsage(rawCpu0);
      signCpuMs = (rawCpu.user + rawCpu.system) / 1000 / raw;
    }

    const setup = (url: string): Setup => ({
      kind: 'setup',
      url,
      runtime: rt,
      attestationId: session.attestationId,
      privateKeyPem: session.key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    });

    if (round.floor === undefined && c.store === 'SoftHSM' && signCpuMs !== undefined) {
      round.floor = await measureFloor(
        signCpuMs,
        signed(grantBody(rt), session.attestationId, session.key.privateKey),
        createPublicKey({ key: { ...session.key.jwk }, format: 'jwk' }),
        setup,
      );
    }

    await rig.app.listen({ host: '127.0.0.1', port: 0 });
    send(setup(`http://127.0.0.1:${(rig.app.server.address() as AddressInfo).port}/v1/grants`));
    const warm = answer();
    send({ kind: 'level', concurrency: 16, seconds: 1 });
    await warm;

    /** Key operations, and the seconds spent in TPM commands (every command, summed). */
    const counters = async (): Promise<{ ops: number; tpmSeconds: number; tpmCalls: number }> => {
      const lines = (await rig.app.inject({ url: '/metrics' })).body.split('\n');
      const series = 'grantor_hsm_call_duration_seconds_count{op="sign"}';
      const line = lines.find((l) => l.startsWith(`${series} `));
      let tpmSeconds = 0;
      let tpmCalls = 0;
      for (const l of lines) {
        const value = Number(l.slice(l.lastIndexOf(' ') + 1));
        if (l.startsWith('grantor_tpm_call_duration_seconds_sum{')) tpmSeconds += value;
        if (l.startsWith('grantor_tpm_call_duration_seconds_count{')) tpmCalls += value;
      }
      return {
        ops: line === undefined ? 0 : Number(line.slice(series.length + 1)),
        tpmSeconds,
        tpmCalls,
      };
    };
    const rows: LevelRow[] = [];
    for (const concurrency of levels) {
      const audit0 = appliance.audit.stats();
      const before = await counters();
      const cpu0 = process.cpuUsage();
      const box0 = boxBusyMs();
      const elu0 = performance.eventLoopUtilization();
      const gc0 = { ...gc };
      await inspector?.post('Profiler.start');
      const result = answer();
      send({ kind: 'level', concurrency, seconds });
      const { latencies, failures, cpuMs: clientCpuMs } = await result;
      if (inspector !== undefined && profileDir !== undefined) {
        const { profile } = await inspector.post('Profiler.stop');
        await writeFile(
          join(profileDir, `${name}-c${String(concurrency)}-r${String(round.index)}.cpuprofile`),
          JSON.stringify(profile),
        );
      }
      const cpu = process.cpuUsage(cpu0);
      const boxBusy = boxBusyMs() - box0;
      const elu = performance.eventLoopUtilization(elu0);
      const gcs = { count: gc.count - gc0.count, ms: gc.ms - gc0.ms };
      const audit1 = appliance.audit.stats();
      const after = await counters();
      const ops = after.ops - before.ops;
      latencies.sort((a, b) => a - b);
      const rate = latencies.length / seconds;
      const batches = audit1.batches - audit0.batches;
      const failed = Object.values(failures).reduce((a, b) => a + b, 0);
      const n = Math.max(1, latencies.length);
      rows.push({
        concurrency,
        rate,
        boxMs: boxBusy / n,
        line: [
          c.label.padEnd(14),
          String(concurrency).padStart(4),
          rate.toFixed(0).padStart(9),
          percentile(latencies, 50).toFixed(1).padStart(8),
          percentile(latencies, 99).toFixed(1).padStart(8),
          String(failed).padStart(8),
          (ops / n).toFixed(2).padStart(8),
          `${((cpu.user + cpu.system) / 10_000 / seconds).toFixed(0)}%`.padStart(8),
          `${(100 * elu.utilization).toFixed(0)}%`.padStart(6),
          (batches === 0 ? 0 : (audit1.appends - audit0.appends) / batches).toFixed(1).padStart(7),
          // The audit commit's cycle (wall time per batch) and its TPM part.
          (batches === 0 ? 0 : (1000 * seconds) / batches).toFixed(1).padStart(8),
          (batches === 0 ? 0 : (1000 * (after.tpmSeconds - before.tpmSeconds)) / batches)
            .toFixed(1)
            .padStart(7),
          (batches === 0 ? 0 : (after.tpmCalls - before.tpmCalls) / batches).toFixed(1).padStart(6),
          ((cpu.user + cpu.system) / 1000 / n).toFixed(2).padStart(7),
          (clientCpuMs / n).toFixed(2).padStart(7),
          // Every process on the machine: its busy share of all cores, and its CPU per grant.
          `${((100 * boxBusy) / (1000 * seconds * availableParallelism())).toFixed(0)}%`.padStart(
            6,
          ),
          (boxBusy / n).toFixed(2).padStart(7),
          // Collections per 100 grants and their pause per grant (the event loop stops).
          ((100 * gcs.count) / n).toFixed(1).padStart(7),
          (gcs.ms / n).toFixed(3).padStart(6),
        ].join(' '),
      });
      if (failed > 0)
        console.log(`${c.label} at ${concurrency}: failures ${JSON.stringify(failures)}`);
    }
    round.results.set(name, rows);
  } finally {
    await real.close();
  }
}

/** The floor's parts other than the signature, measured next to the SoftHSM appliance. */
async function measureFloor(
  signCpuMs: number,
  body: Record<string, unknown>,
  sessionKey: ReturnType<typeof createPublicKey>,
  setup: (url: string) => Setup,
): Promise<FloorPart[]> {
  const floorSeconds = Math.max(1, seconds / 2);
  const cedarCpuMs = await cedarCpu(
    join(repoRoot, 'policies/default'),
    join(repoRoot, 'policies/grantor.cedarschema'),
    floorSeconds,
  );
  const verifyCpuMs = verifyCpu(body, sessionKey, floorSeconds);
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
  return [
    { name: 'HSM signature (SoftHSM signJws, from the raw loop)', cpuMs: signCpuMs },
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
}

const at = (round: Round, name: ConfigName, concurrency: number): LevelRow | undefined =>
  round.results.get(name)?.find((r) => r.concurrency === concurrency);
const quotient = (a: number | undefined, b: number | undefined): number | undefined =>
  a === undefined || b === undefined || b === 0 ? undefined : a / b;
const shown = (r: number | undefined): string => (r === undefined ? 'n/a' : r.toFixed(2));
const median = (values: readonly (number | undefined)[]): number | undefined => {
  const known = values.filter((v): v is number => v !== undefined).sort((a, b) => a - b);
  if (known.length === 0) return undefined;
  const mid = Math.floor(known.length / 2);
  return known.length % 2 === 1 ? known[mid] : ((known[mid - 1] ?? NaN) + (known[mid] ?? NaN)) / 2;
};

/**
 * A round's three ratios (each against its own baseline), and the CPU bound of SoftHSM JWS
 * at c64: the rate its `box ms` allows (`boundRate`) and that rate over the ceiling.
 */
function ratios(round: Round): {
  tpm: number | undefined;
  softhsm: number | undefined;
  floor: number | undefined;
  boundRate: number | undefined;
  bound: number | undefined;
} {
  const ceiling = round.floor === undefined ? undefined : floorCeiling(round.floor);
  const jws = at(round, 'softhsm-jws', 64);
  // What the pipeline's own CPU allows, however its work were spread over the cores.
  const boundRate = quotient(availableParallelism() * 1000, jws?.boxMs);
  return {
    tpm: quotient(at(round, 'tpm-batch', 64)?.rate, at(round, 'tpm-jws', 64)?.rate),
    softhsm: quotient(at(round, 'softhsm-batch', 64)?.rate, jws?.rate),
    floor: quotient(jws?.rate, ceiling),
    boundRate,
    bound: quotient(boundRate, ceiling),
  };
}

const HEADER =
  'configuration     c  grants/s  p50 ms  p99 ms  failures  ops/gr  srv CPU  srv EL  /batch  ms/batch  tpm ms  tpm/b  srv ms  cli ms    box  box ms  gc/100  gc ms';

try {
  const rounds: Round[] = [];
  for (let k = 0; k < roundCount; k++) {
    const round: Round = { index: k + 1, rawRates: {}, results: new Map(), floor: undefined };
    rounds.push(round);
    // Alternating order: drift over the run does not always favour the same side.
    const order = k % 2 === 0 ? configs : [...configs].reverse();
    for (const name of order) await runConfig(name, round);
  }
  for (const round of rounds) {
    console.log(`\nround ${String(round.index)} of ${String(roundCount)}`);
    console.log(
      `raw key store rates (signJws, 16 in flight, ${seconds} s): ` +
        Object.entries(round.rawRates)
          .map(([store, rate]) => `${store} ${rate.toFixed(0)}/s`)
          .join(', '),
    );
    console.log(HEADER);
    for (const name of configs) for (const r of round.results.get(name) ?? []) console.log(r.line);
    if (round.floor !== undefined) {
      for (const line of floorReport(round.floor, 0.3 * (round.rawRates.SoftHSM ?? 0))) {
        console.log(line);
      }
    }
    const jws = at(round, 'softhsm-jws', 64);
    const r = ratios(round);
    if (jws !== undefined && r.boundRate !== undefined) {
      console.log(
        `SoftHSM JWS at c64 cost the box ${jws.boxMs.toFixed(2)} ms of CPU a grant: at most ` +
          `${r.boundRate.toFixed(0)} grants/s on ` +
          `${String(availableParallelism())} cores kept 100% busy, ${shown(r.bound)} of the floor's ceiling`,
      );
    }
    console.log(
      `round ${String(round.index)} ratios at c64: TPM batch/JWS ${shown(r.tpm)}, SoftHSM batch/JWS ` +
        `${shown(r.softhsm)}, SoftHSM JWS/floor ceiling ${shown(r.floor)}`,
    );
  }
  console.log(
    '(ops/gr: key operations per grant; /batch: audit entries per audit batch; ms/batch: wall time per audit batch; tpm ms, tpm/b: time in TPM commands and their number per audit batch (calls of the TPM port, each one or several commands); srv ms, cli ms: CPU per grant of the appliance and of the client process; box, box ms: the whole machine, its busy share of all its cores and its CPU per grant (every process: appliance, clients, swtpm, kernel); gc/100, gc ms: the appliance garbage collections per 100 grants and their pause per grant)',
  );
  const all = rounds.map(ratios);
  console.log(
    `median of ${String(roundCount)} round(s), each ratio against its own round: the CPU ` +
      `bound of SoftHSM JWS at c64 is ${shown(median(all.map((r) => r.bound)))} of the floor's ceiling`,
  );
  console.log(`TPM batch / TPM JWS at c64 = ${shown(median(all.map((r) => r.tpm)))}`);
  console.log(`SoftHSM batch / SoftHSM JWS at c64 = ${shown(median(all.map((r) => r.softhsm)))}`);
  console.log(`SoftHSM JWS at c64 / floor ceiling = ${shown(median(all.map((r) => r.floor)))}`);
} finally {
  gcObserver.disconnect();
  client.kill();
  await stopBus();
  await rm(root, { recursive: true, force: true });
}
