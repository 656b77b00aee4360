/**
 * Legitimate grant traffic while abusive clients attack the same appliance. The appliance
 * is the real one (startApplianceServer, as src/main.ts runs it) in a child process over
 * its own swtpm (audit anchor) and SoftHSM2 token; an enrolled runtime (a second swtpm,
 * tpm2-tools) attests once, then autocannon sends session-mode grant requests signed with
 * the session key, each with its own requestId (built in setupRequest), to POST /v1/grants.
 *
 *   npx tsx bench/abuse.ts [seconds-per-phase]    (default 12; loopback only)
 *   GRANTOR_ABUSE_ONLY=challenges,forged,oversized,malformed,slow   (a subset of the clients)
 *
 * Phase 1 (baseline): the legitimate runtime alone. Phase 2: the same, while abusive
 * clients run: a challenge flood for one runtime (trips its per-runtime 429), grant
 * requests with a forged signature for the honest runtime's id, oversized bodies,
 * malformed JSON, slow bodies (a byte every 500 ms), junk operator tokens on an operator
 * route and 300 half-open connections from one address (more than the per-address cap).
 * Phase 3: the legitimate runtime under the junk-token and half-open floods alone (issue
 * 14), against the same baseline. /readyz is polled throughout.
 * Abusive clients bind 127.0.0.2-127.0.0.8 (Linux routes all of 127/8 to loopback), so
 * the per-address limits apply to them and not to the honest runtime on 127.0.0.1.
 * Reports the legitimate grant rate alone and under abuse, their ratio, every abusive
 * client's status counts, and /readyz. Exits 1 on any 5xx, any /readyz other than 200, or
 * an abusive request that was accepted.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fork } from 'node:child_process';
import { provisionTpmTemplate } from '../test/rig/sim.js';
import {
  ABUSERS,
  OPERATOR_PLANE_ABUSERS,
  flood,
  type AbuseReport,
  type AbuseClientsData,
  type AbuserName,
} from './abuse-clients.js';

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

const { startCrashRig, enrollOverHttp, attestOverHttp } =
  await import('../test/grants/crash-rig.js');
const { grantBody, signed } = await import('../test/grants/rig.js');

type Tally = Map<string, number>;

const show = (t: Tally): string =>
  [...t]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, n]) => `${k}:${n}`)
    .join(' ');

const count = (r: AutocannonResult, prefix: string): number =>
  Object.entries(r.statusCodeStats)
    .filter(([code]) => code.startsWith(prefix))
    .reduce((n, [, s]) => n + (s?.count ?? 0), 0);

// The appliance's default rate limits (src/shared/config.ts), as an operator would run it.
const rig = await startCrashRig();
const child = await rig.start();
let failed = false;
try {
  const port = await child.listening;
  const base = new URL(`http://127.0.0.1:${port}`);
  const rt = await enrollOverHttp(base.origin, rig.tools, 'bench-honest', { team: 'support' });
  const session = await attestOverHttp(base.origin, rig.tools, rt);

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

  // The abusive clients run in a child process (bench/abuse-clients.ts), so that their
  // loops do not starve this process's legitimate client. GRANTOR_ABUSE_ONLY=forged,slow
  // runs only those (to see what costs what).
  const only = process.env.GRANTOR_ABUSE_ONLY?.split(',').map((c) => c.trim());
  const selected = (names: readonly AbuserName[]): AbuserName[] =>
    names.filter((name) => only === undefined || only.includes(name));
  /** The legitimate client while the `enabled` abusive clients run; both results. */
  const abusePhase = async (
    enabled: readonly AbuserName[],
  ): Promise<{ result: AutocannonResult; reported: AbuseReport }> => {
    const abusers = fork(fileURLToPath(new URL('./abuse-clients.ts', import.meta.url)), [], {
      execArgv: ['--import', 'tsx'],
      env: {
        ...process.env,
        GRANTOR_ABUSE_DATA: JSON.stringify({
          base: base.origin,
          runtimeId: rt.runtimeId,
          attestationId: session.attestationId,
          enabled,
        } satisfies AbuseClientsData),
      },
    });
    const report = new Promise<AbuseReport>((resolve, reject) => {
      abusers.once('message', (m) => {
        resolve(m as AbuseReport);
      });
      abusers.once('exit', (code) => {
        reject(new Error(`the abusive clients exited (${code ?? 'signal'}) without a report`));
      });
    });
    // Awaited after the legitimate phase; a failure must still reach the finally below.
    report.catch(() => undefined);
    const result = await legit();
    abusers.send('stop');
    return { result, reported: await report };
  };
  const enabled = selected(ABUSERS);
  const { result: underAbuse, reported } = await abusePhase(enabled);
  // The flood cases of issue 14 alone: junk operator tokens and half-open connections.
  const operatorPlane = selected(OPERATOR_PLANE_ABUSERS);
  const planePhase = operatorPlane.length > 0 ? await abusePhase(operatorPlane) : undefined;
  const tally = (name: AbuserName): Tally => new Map(reported[name] ?? []);
  const [challenges, forged, big, malformed, slow, junkTokens, halfOpenConns] = ABUSERS.map(
    tally,
  ) as [Tally, Tally, Tally, Tally, Tally, Tally, Tally];
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
  if (planePhase !== undefined) {
    console.log(legitLine('legitimate, under 14 floods', planePhase.result));
    console.log(
      `ratio under junk tokens + half-open / alone: ${(rate(planePhase.result) / rate(baseline)).toFixed(2)}`,
    );
  }
  const abusive: [string, Tally][] = [
    ['challenge flood (one runtime)', challenges],
    ['forged signatures', forged],
    ['oversized bodies (256 KiB)', big],
    ['malformed JSON', malformed],
    ['slow bodies (1 B / 500 ms)', slow],
    ['junk operator tokens', junkTokens],
    ['half-open connections (300)', halfOpenConns],
  ];
  if (planePhase !== undefined) {
    for (const name of operatorPlane) {
      abusive.push([`${name} (own phase)`, new Map(planePhase.reported[name] ?? [])]);
    }
  }
  for (const [name, t] of abusive) console.log(`${name.padEnd(30)}  ${show(t) || 'off'}`);
  console.log(`${'/readyz (every 200 ms)'.padEnd(30)}  ${show(readyz)}`);

  const fiveXx = (t: Tally): number =>
    [...t].filter(([k]) => k.startsWith('5')).reduce((n, [, v]) => n + v, 0);
  const accepted = (t: Tally): number =>
    [...t].filter(([k]) => k.startsWith('2')).reduce((n, [, v]) => n + v, 0);
  failed =
    count(baseline, '5') +
      count(underAbuse, '5') +
      (planePhase ? count(planePhase.result, '5') : 0) >
      0 ||
    abusive.some(([, t]) => fiveXx(t) > 0) ||
    [forged, big, malformed, slow, junkTokens].some((t) => accepted(t) > 0) ||
    (enabled.includes('challenges') && (challenges.get('429') ?? 0) === 0) ||
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
