/**
 * `npx tsx bench/gateway.ts [grants] [concurrency]`: what enforcement costs, on the real
 * appliance (test/gateway-proxy/harness.ts), in one run:
 *
 * 1. raw: an ES256 verify loop (jose compactVerify of a real grant with the JWKS key), the
 *    ceiling of any verifier on this machine;
 * 2. grantor-gateway (proxy mode): verified, proven (PoP challenge fetched first) and
 *    redeemed requests per second forwarded to a test upstream, with p50/p99;
 * 3. nginx alone forwarding the same request to the same upstream (no grant), and nginx
 *    with auth_request through grantor-gateway.
 *
 * It prints ratios (gateway / raw verify, gateway vs nginx); nothing here asserts timing.
 * Grants are issued before the clock starts (issuing is the appliance's cost, bench/grants.ts).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { request as httpRequest, Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compactVerify, createLocalJWKSet, type JSONWebKeySet } from 'jose';
import { createGateway, parseGatewayConfig } from '../src/gateway-proxy/index.js';
import type { Issued } from '../test/gateway-proxy/harness.js';
import { provisionSimHsm, provisionTpmTemplate } from '../test/rig/sim.js';

// What the integration tests' global setup provides: a TPM template and a SoftHSM2 token.
const root = await mkdtemp(join(tmpdir(), 'grantor-bench-gateway-'));
await provisionTpmTemplate(join(root, 'tpm-template'));
process.env.GRANTOR_TEST_TPM_TEMPLATE = join(root, 'tpm-template');
const hsm = await provisionSimHsm(join(root, 'hsm'));
process.env.GRANTOR_TEST_HSM_DIR = hsm.dir;
process.env.SOFTHSM2_CONF = hsm.conf;
const { AUDIENCE, ISSUER, startAppliance, startUpstream } =
  await import('../test/gateway-proxy/harness.js');
const { startNginx } = await import('../examples/nginx.js');

const GRANTS = Number(process.argv[2] ?? 200);
const CONCURRENCY = Number(process.argv[3] ?? 8);
const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY * 2 });

interface Stats {
  readonly n: number;
  readonly perSecond: number;
  readonly p50: number;
  readonly p99: number;
  readonly failures: number;
}

function stats(latencies: number[], wallMs: number, failures: number): Stats {
  const sorted = [...latencies].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
  return {
    n: latencies.length,
    perSecond: (latencies.length / wallMs) * 1000,
    p50: at(0.5),
    p99: at(0.99),
    failures,
  };
}

function send(
  url: string,
  method: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** Runs `one(i)` for i in 0..n-1 with `CONCURRENCY` in flight; latencies of successes. */
async function load(n: number, one: (i: number) => Promise<boolean>): Promise<Stats> {
  const latencies: number[] = [];
  let failures = 0;
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let i = next++; i < n; i = next++) {
        const t = performance.now();
        if (await one(i)) latencies.push(performance.now() - t);
        else failures += 1;
      }
    }),
  );
  return stats(latencies, performance.now() - start, failures);
}

const fmt = (s: Stats) =>
  `${s.perSecond.toFixed(0).padStart(7)} /s  p50 ${s.p50.toFixed(2).padStart(7)} ms  p99 ${s.p99.toFixed(2).padStart(7)} ms  (n=${s.n}, failed ${s.failures})`;

const appliance = await startAppliance();
const upstream = await startUpstream();
const routes = [
  {
    method: 'GET',
    path: '/tickets/:id',
    action: 'tickets.read',
    resource: 'ticket:{id}',
    parameters: 'path',
  },
];
const gateway = createGateway(
  parseGatewayConfig({
    listen: { host: '127.0.0.1', port: 0 },
    upstream: upstream.url,
    appliance: { url: appliance.url, issuer: ISSUER, audience: AUDIENCE },
    authRequestPath: '/grantor-auth',
    routes,
  }),
  { gatewayToken: appliance.rig.gateway.token },
);
const gwUrl = await gateway.listen();
// The same proxy with redemption in memory (first call wins): the gateway's own cost.
const redeemed = new Set<string>();
const localGateway = createGateway(
  parseGatewayConfig({
    listen: { host: '127.0.0.1', port: 0 },
    upstream: upstream.url,
    appliance: { url: appliance.url, issuer: ISSUER, audience: AUDIENCE },
    routes,
  }),
  {
    gatewayToken: appliance.rig.gateway.token,
    redeemer: {
      redeem: (grantId) => {
        if (redeemed.has(grantId)) return Promise.reject(new Error('already redeemed'));
        redeemed.add(grantId);
        return Promise.resolve();
      },
      reportOutcome: () => Promise.resolve(),
    },
  },
);
const localUrl = await localGateway.listen();
const authGateway = createGateway(
  parseGatewayConfig({
    listen: { host: '127.0.0.1', port: 0 },
    appliance: { url: appliance.url, issuer: ISSUER, audience: AUDIENCE },
    authRequestPath: '/grantor-auth',
    clientAddressHeader: 'x-real-ip',
    routes,
  }),
  { gatewayToken: appliance.rig.gateway.token },
);
const authUrl = await authGateway.listen();
const plainNginx = await startNginx(upstream.url, undefined);
const gatedNginx = await startNginx(upstream.url, `http://127.0.0.1:${authUrl.port}`);

try {
  process.stdout.write(`issuing ${GRANTS * 2} grants...\n`);
  const issue = async (): Promise<Issued[]> => {
    const out: Issued[] = [];
    for (let i = 0; i < GRANTS; i++) {
      out.push(await appliance.issue(`ticket:${i}`, { id: String(i) }));
    }
    return out;
  };
  const forProxy = await issue();
  const forNginx = await issue();

  // 1. The raw ES256 verify loop over a real grant and the appliance's JWKS.
  const jwks = (await (
    await fetch(new URL('.well-known/jwks.json', appliance.url))
  ).json()) as JSONWebKeySet;
  const keys = createLocalJWKSet(jwks);
  const sample = forProxy[0]?.grant ?? '';
  const rawLatencies: number[] = [];
  const rawStart = performance.now();
  while (performance.now() - rawStart < 2000) {
    const t = performance.now();
    await compactVerify(sample, keys, { algorithms: ['ES256'] });
    rawLatencies.push(performance.now() - t);
  }
  const raw = stats(rawLatencies, performance.now() - rawStart, 0);

  // 2. grantor-gateway as the proxy: challenge, then the gated request.
  const run = (base: string, grants: Issued[]) =>
    load(grants.length, async (i) => {
      const g = grants[i];
      if (g === undefined) return false;
      const ch = await send(`${base}/grantor/pop/challenge`, 'POST');
      const { challenge } = JSON.parse(ch.body) as { challenge: string };
      const res = await send(`${base}/tickets/${i}`, 'GET', {
        authorization: `Grant ${g.grant}`,
        'grant-pop': appliance.pop(g.grantId, challenge),
      });
      return res.status === 200;
    });
  const proxied = await run(`http://127.0.0.1:${gwUrl.port}`, forProxy);
  const gated = await run(gatedNginx.url, forNginx);
  const local = await run(`http://127.0.0.1:${localUrl.port}`, forProxy);

  // 3. nginx alone, to the same upstream, the same number of requests (no grant).
  const plain = await load(GRANTS, async (i) => {
    const res = await send(`${plainNginx.url}/tickets/${i}`, 'GET');
    return res.status === 200;
  });

  process.stdout.write(
    [
      `concurrency ${CONCURRENCY}, ${GRANTS} requests per path`,
      `raw ES256 verify (jose)         ${fmt(raw)}`,
      `grantor-gateway (proxy)         ${fmt(proxied)}`,
      `nginx + auth_request + gateway  ${fmt(gated)}`,
      `grantor-gateway, local redeem   ${fmt(local)}`,
      `nginx alone (no grant)          ${fmt(plain)}`,
      `gateway / raw verify:  ${(proxied.perSecond / raw.perSecond).toFixed(3)} of the verify ceiling`,
      `gateway vs nginx alone: ${(plain.perSecond / proxied.perSecond).toFixed(1)}x fewer requests/s, p99 ${(proxied.p99 / Math.max(plain.p99, 0.001)).toFixed(1)}x`,
      `gateway's own cost (local redeem) vs nginx alone: ${(plain.perSecond / local.perSecond).toFixed(1)}x fewer requests/s, p99 ${(local.p99 / Math.max(plain.p99, 0.001)).toFixed(1)}x`,
      `nginx+auth vs nginx alone: ${(plain.perSecond / gated.perSecond).toFixed(1)}x fewer requests/s`,
      '',
    ].join('\n'),
  );
} finally {
  await gatedNginx.stop();
  await plainNginx.stop();
  await authGateway.close();
  await localGateway.close();
  await gateway.close();
  await upstream.close();
  await appliance.close();
  agent.destroy();
  await rm(root, { recursive: true, force: true });
}
