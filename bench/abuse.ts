/**
 * Legitimate grant traffic while abusive clients attack the same appliance. The appliance
 * is the real one (startApplianceServer, as src/main.ts runs it) in a child process over
 * its own swtpm (audit anchor) and SoftHSM2 token; an enrolled runtime (a second swtpm,
 * tpm2-tools) attests once, then autocannon sends session-mode grant requests signed with
 * the session key, each with its own requestId (built in setupRequest), to POST /v1/grants.
 *
 *   npx tsx bench/abuse.ts [seconds-per-phase]    (default 12; loopback only)
 *
 * Phase 1 (baseline): the legitimate runtime alone. Phase 2: the same, while abusive
 * clients run: a challenge flood for one runtime (trips its per-runtime 429), grant
 * requests with a forged signature for the honest runtime's id, oversized bodies,
 * malformed JSON, and slow bodies (a byte every 500 ms). /readyz is polled throughout.
 * Abusive clients bind 127.0.0.2-127.0.0.6 (Linux routes all of 127/8 to loopback), so
 * the per-address limits apply to them and not to the honest runtime on 127.0.0.1.
 * Reports the legitimate grant rate alone and under abuse, their ratio, every abusive
 * client's status counts, and /readyz. Exits 1 on any 5xx, any /readyz other than 200, or
 * an abusive request that was accepted.
 */
import { generateKeyPairSync } from 'node:crypto';
import { Agent, request as httpRequest } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { provisionTpmTemplate } from '../test/rig/sim.js';

interface AutocannonResult {
  requests: { total: number };
  statusCodeStats: Record<string, { count: number } | undefined>;
  errors: number;
  timeouts: number;
  duration: number;
}
interface AutocannonRequest {
  method: 'POST';
  path: string;
  headers: Record<string, string>;
  setupRequest: (req: AutocannonRequest) => AutocannonRequest & { body: string };
}
interface AutocannonOptions {
  url: string;
  connections: number;
  duration: number;
  requests: AutocannonRequest[];
}
type Autocannon = (options: AutocannonOptions) => Promise<AutocannonResult>;

// autocannon ships no types; this is the part used here.
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;
const seconds = Number(process.argv[2] ?? '12');
const LEGIT_CONNECTIONS = 8;

const root = await mkdtemp(join(tmpdir(), 'grantor-bench-abuse-'));
await provisionTpmTemplate(join(root, 'tpm-template'));
// startSimTpm copies this template; the appliance provisions its own SoftHSM2 token.
process.env.GRANTOR_TEST_TPM_TEMPLATE = join(root, 'tpm-template');

const { startApplianceRig, enrollOverHttp, attestOverHttp } =
  await import('../test/grants/crash-rig.js');
const { grantBody, signed } = await import('../test/grants/rig.js');

type Tally = Map<string, number>;
const bump = (t: Tally, key: string): void => {
  t.set(key, (t.get(key) ?? 0) + 1);
};
const show = (t: Tally): string =>
  [...t]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, n]) => `${k}:${n}`)
    .join(' ');

/** `concurrency` loops of one request each until `stop()` says so; statuses tallied. */
async function flood(
  base: URL,
  localAddress: string,
  concurrency: number,
  make: () => { path: string; body?: string | Buffer; method?: 'GET' | 'POST' },
  stop: () => boolean,
  pauseMs = 0,
): Promise<Tally> {
  const tally: Tally = new Map();
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency, localAddress });
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const r = make();
      const req = httpRequest(
        {
          host: base.hostname,
          port: base.port,
          method: r.method ?? 'POST',
          path: r.path,
          agent,
          headers: r.body === undefined ? {} : { 'content-type': 'application/json' },
        },
        (res) => {
          bump(tally, String(res.statusCode));
          res.resume();
          res.on('end', resolve);
          res.on('error', () => {
            resolve();
          });
        },
      );
      req.on('error', (e: NodeJS.ErrnoException) => {
        // The server may answer an oversized body early and close before reading it all.
        bump(tally, e.code ?? 'error');
        resolve();
      });
      req.end(r.body);
    });
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (!stop()) {
        await one();
        if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
      }
    }),
  );
  agent.destroy();
  return tally;
}

/** Connections that send a request body a byte every 500 ms; what each one ends with. */
async function slowBodies(
  base: URL,
  localAddress: string,
  count: number,
  stop: () => boolean,
): Promise<Tally> {
  const tally: Tally = new Map();
  await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<void>((resolve) => {
          const socket = connect({ host: base.hostname, port: Number(base.port), localAddress });
          let answered = false;
          let timer: NodeJS.Timeout | undefined;
          const done = (outcome: string): void => {
            if (answered) return;
            answered = true;
            clearInterval(timer);
            bump(tally, outcome);
            socket.destroy();
            resolve();
          };
          socket.on('connect', () => {
            socket.write(
              'POST /v1/grants HTTP/1.1\r\nHost: 127.0.0.1\r\n' +
                'Content-Type: application/json\r\nContent-Length: 4096\r\n\r\n{',
            );
            timer = setInterval(() => {
              if (stop()) done('still-open');
              else socket.write(' ');
            }, 500);
          });
          socket.on('data', (d: Buffer) => {
            done(/^HTTP\/1\.1 (\d{3})/.exec(d.toString('latin1'))?.[1] ?? 'garbage');
          });
          socket.on('close', () => {
            done('closed');
          });
          socket.on('error', (e: NodeJS.ErrnoException) => {
            done(e.code ?? 'error');
          });
        }),
    ),
  );
  return tally;
}

const count = (r: AutocannonResult, prefix: string): number =>
  Object.entries(r.statusCodeStats)
    .filter(([code]) => code.startsWith(prefix))
    .reduce((n, [, s]) => n + (s?.count ?? 0), 0);

const rig = await startApplianceRig({
  env: {
    // The honest runtime must not be the limit being measured; a flood of challenges for
    // one runtime must trip its own limit quickly.
    GRANTOR_RATE_LIMIT_GRANTS_PER_RUNTIME: '1000000:1000000',
    GRANTOR_RATE_LIMIT_GRANTS_PER_ADDRESS: '1000000:1000000',
    GRANTOR_RATE_LIMIT_CHALLENGES_PER_RUNTIME: '10:5',
  },
});
const child = await rig.start();
let failed = false;
try {
  const port = await child.listening;
  const base = new URL(`http://127.0.0.1:${port}`);
  const rt = await enrollOverHttp(base.origin, rig.tools, 'bench-honest', { team: 'support' });
  const session = await attestOverHttp(base.origin, rig.tools, rt);
  const forger = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;

  const legit = (): Promise<AutocannonResult> =>
    autocannon({
      url: base.origin,
      connections: LEGIT_CONNECTIONS,
      duration: seconds,
      requests: [
        {
          method: 'POST',
          path: '/v1/grants',
          headers: { 'content-type': 'application/json' },
          // A new requestId and issuedAt for every request, signed as a runtime signs.
          setupRequest: (req) => ({
            ...req,
            body: JSON.stringify(
              signed(grantBody(rt), session.attestationId, session.key.privateKey),
            ),
          }),
        },
      ],
    });

  const readyz: Tally = new Map();
  let probing = true;
  const probe = flood(
    base,
    '127.0.0.6',
    1,
    () => ({ method: 'GET', path: '/readyz' }),
    () => !probing,
    200,
  ).then((t) => {
    for (const [k, n] of t) readyz.set(k, (readyz.get(k) ?? 0) + n);
  });

  const baseline = await legit();

  let abusing = true;
  const stop = (): boolean => !abusing;
  const oversized = JSON.stringify({ ...grantBody(rt), resource: 'x'.repeat(256 * 1024) });
  const abuse = Promise.all([
    flood(base, '127.0.0.2', 16, () => ({ path: '/v1/runtimes/rt_flooder/challenges' }), stop),
    flood(
      base,
      '127.0.0.3',
      4,
      () => ({
        path: '/v1/grants',
        body: JSON.stringify(signed(grantBody(rt), session.attestationId, forger)),
      }),
      stop,
    ),
    flood(base, '127.0.0.4', 4, () => ({ path: '/v1/grants', body: oversized }), stop),
    flood(
      base,
      '127.0.0.4',
      4,
      () => ({ path: '/v1/grants', body: '{"runtimeId":"rt_x","requestId":' }),
      stop,
    ),
    slowBodies(base, '127.0.0.5', 32, stop),
  ]);
  const underAbuse = await legit();
  abusing = false;
  const [challenges, forged, big, malformed, slow] = await abuse;
  probing = false;
  await probe;

  const rate = (r: AutocannonResult): number => count(r, '201') / r.duration;
  const legitLine = (name: string, r: AutocannonResult): string =>
    [
      name.padEnd(30),
      `${rate(r).toFixed(0).padStart(6)} grants/s`,
      `non-201 ${r.requests.total - count(r, '201')}`,
      `5xx ${count(r, '5')}`,
      `errors ${r.errors + r.timeouts}`,
    ].join('  ');
  console.log(
    `abuse bench: real appliance (child process) on ${base.origin}, ${seconds} s per phase, ` +
      `${LEGIT_CONNECTIONS} legitimate connections`,
  );
  console.log(legitLine('legitimate, alone', baseline));
  console.log(legitLine('legitimate, under abuse', underAbuse));
  console.log(`ratio under abuse / alone: ${(rate(underAbuse) / rate(baseline)).toFixed(2)}`);
  const abusive: [string, Tally][] = [
    ['challenge flood (one runtime)', challenges],
    ['forged signatures', forged],
    ['oversized bodies (256 KiB)', big],
    ['malformed JSON', malformed],
    ['slow bodies (1 B / 500 ms)', slow],
  ];
  for (const [name, t] of abusive) console.log(`${name.padEnd(30)}  ${show(t)}`);
  console.log(`${'/readyz (every 200 ms)'.padEnd(30)}  ${show(readyz)}`);

  const fiveXx = (t: Tally): number =>
    [...t].filter(([k]) => k.startsWith('5')).reduce((n, [, v]) => n + v, 0);
  const accepted = (t: Tally): number =>
    [...t].filter(([k]) => k.startsWith('2')).reduce((n, [, v]) => n + v, 0);
  failed =
    count(baseline, '5') + count(underAbuse, '5') > 0 ||
    abusive.some(([, t]) => fiveXx(t) > 0) ||
    [forged, big, malformed, slow].some((t) => accepted(t) > 0) ||
    (challenges.get('429') ?? 0) === 0 ||
    [...readyz.keys()].some((k) => k !== '200');
} finally {
  await child.stop();
  await rig.close();
  await rm(root, { recursive: true, force: true });
}
if (failed) {
  console.log('FAILED: a 5xx, an accepted abusive request, no 429, or /readyz not 200');
  process.exitCode = 1;
}
