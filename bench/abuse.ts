/**
 * Legitimate traffic while an abusive client floods: autocannon against the attestation
 * route (the grant path's stand-in until the grants route exists) and a protected operator
 * route, at the rates an honest runtime and an honest operator use, while a flood client
 * hammers the same route as another runtime with as many requests as it can. Reports
 * both rates: the legitimate requests should all succeed, the flood should be answered
 * 429 (and never 5xx).
 *
 *   npx tsx bench/abuse.ts [seconds]
 *
 * Everything runs in this one process (server and clients share 2 cores), and every
 * client is 127.0.0.1, so the per-address limit is opened wide here: the per-runtime
 * limit is what protects the honest runtime in this run.
 */
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { buildAbuseApp } from '../test/abuse/app.js';

interface AutocannonResult {
  requests: { average: number; total: number };
  statusCodeStats: Record<string, { count: number } | undefined>;
  non2xx: number;
  errors: number;
  timeouts: number;
  duration: number;
}
interface AutocannonOptions {
  url: string;
  method: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  connections: number;
  duration: number;
  overallRate?: number;
}
type Autocannon = (options: AutocannonOptions) => Promise<AutocannonResult>;

// autocannon ships no types; this is the part used here.
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;
const seconds = Number(process.argv[2] ?? '10');

const { app, tokens } = await buildAbuseApp({
  logLevel: 'silent',
  maxEntries: 10_000,
  limits: {
    challenges: {
      perAddress: { burst: 1e9, perSecond: 1e9 },
      perRuntime: { burst: 10, perSecond: 5 },
    },
    enroll: { perAddress: { burst: 1e9, perSecond: 1e9 }, perRuntime: { burst: 5, perSecond: 1 } },
    grants: {
      perAddress: { burst: 1e9, perSecond: 1e9 },
      perRuntime: { burst: 100, perSecond: 60 },
    },
  },
});
await app.listen({ host: '127.0.0.1', port: 0 });
const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
const { token } = await tokens.create({ role: 'auditor', actor: 'bench' });

const quote = JSON.stringify({
  nonce: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=',
  quote: Buffer.alloc(145, 1).toString('base64'),
  signature: Buffer.alloc(70, 2).toString('base64'),
  pcrs: { sha256: { '0': '00'.repeat(32), '7': '11'.repeat(32) } },
});
const json = { 'content-type': 'application/json' };

const [legit, operator, flood] = await Promise.all([
  autocannon({
    url: `${base}/v1/runtimes/rt_honest/attestations`,
    method: 'POST',
    headers: json,
    body: quote,
    connections: 4,
    duration: seconds,
    overallRate: 40,
  }),
  autocannon({
    url: `${base}/v1/approvals`,
    method: 'GET',
    headers: { authorization: `Bearer ${token}` },
    connections: 2,
    duration: seconds,
    overallRate: 20,
  }),
  autocannon({
    url: `${base}/v1/runtimes/rt_flood/attestations`,
    method: 'POST',
    headers: json,
    body: quote,
    connections: 32,
    duration: seconds,
  }),
]);
await app.close();

function count(r: AutocannonResult, prefix: string): number {
  return Object.entries(r.statusCodeStats)
    .filter(([code]) => code.startsWith(prefix))
    .reduce((n, [, s]) => n + (s?.count ?? 0), 0);
}

function line(name: string, r: AutocannonResult): string {
  const ok = count(r, '2');
  const limited = r.statusCodeStats['429']?.count ?? 0;
  const s5xx = count(r, '5');
  return [
    name.padEnd(34),
    `${(r.requests.total / r.duration).toFixed(0).padStart(7)} req/s`,
    `${(ok / r.duration).toFixed(0).padStart(7)} 2xx/s`,
    `${(limited / r.duration).toFixed(0).padStart(7)} 429/s`,
    `5xx ${s5xx}`,
    `errors ${r.errors + r.timeouts}`,
  ].join('  ');
}

console.log(`abuse bench, ${seconds} s, one process on ${base}`);
console.log(line('honest runtime (40 req/s target)', legit));
console.log(line('operator reads (20 req/s target)', operator));
console.log(line('flooding runtime (unbounded)', flood));
const honestShare = count(legit, '2') / Math.max(1, legit.requests.total);
console.log(`honest requests served: ${(honestShare * 100).toFixed(1)} %`);
if (count(legit, '5') + count(operator, '5') + count(flood, '5') > 0) process.exitCode = 1;
