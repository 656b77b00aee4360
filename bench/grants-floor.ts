/**
 * The floor of bench/grants.ts: what one grant costs, in CPU, in the parts that no design
 * of the pipeline can skip, measured in the same run on the same machine:
 *
 *   - the HSM signature (the key service's signJws, as in the raw loop),
 *   - the Cedar decision (policies/default, the bench's request),
 *   - the session signature check (JCS of the request + ES256 verify, as the pipeline does),
 *   - one HTTP round trip to a route that does nothing (the same client process and body,
 *     a Fastify route answering a grant-sized 201): the server's and the client's CPU.
 *
 * Their sum, against the machine's cores, bounds the grant rate of *any* pipeline here,
 * before LevelDB, the audit log, the TPM anchor, JSON, JWS or GC cost anything.
 */
import { randomBytes, verify, type KeyObject } from 'node:crypto';
import { availableParallelism } from 'node:os';
import type { AddressInfo } from 'node:net';
import Fastify from 'fastify';
import { sessionSigningInput } from '../src/grants/index.js';
import { cedarWasm } from '../src/policy/cedar.wasm.js';
import { PolicyEngine, type PolicyRequest } from '../src/policy/index.js';

export interface FloorPart {
  readonly name: string;
  /** CPU per grant, ms. */
  readonly cpuMs: number;
}

/** CPU (user + system, all threads, ms) per call of a synchronous `fn`, after a warm-up. */
export function cpuPerCall(fn: () => void, seconds: number): number {
  const warm = Date.now() + Math.min(1000, seconds * 250);
  while (Date.now() < warm) fn();
  let n = 0;
  const end = Date.now() + seconds * 1000;
  const cpu0 = process.cpuUsage();
  while (Date.now() < end) {
    for (let i = 0; i < 20; i++) fn();
    n += 20;
  }
  const cpu = process.cpuUsage(cpu0);
  return (cpu.user + cpu.system) / 1000 / n;
}

/** The Cedar decision of the bench's grant request (tickets.read by a support runtime). */
export async function cedarCpu(policyDir: string, schemaFile: string, seconds: number) {
  const engine = new PolicyEngine({ policyDir, schemaFile, cedar: cedarWasm });
  await engine.reload();
  const request: PolicyRequest = {
    runtime: { id: 'rt_floor', name: 'bench-agent', labels: { team: 'support' } },
    action: 'tickets.read',
    resource: 'ticket:42',
    attestation: {
      pcrPolicy: 'base',
      resetSeen: false,
      sessionAgeSeconds: 3,
      proofMode: 'session',
    },
    lineage: { depth: 0, root: '', parentAction: null, delegated: false },
    ttlSeconds: 60,
  };
  if (engine.decide(request).decision !== 'allow') throw new Error('floor request not allowed');
  return cpuPerCall(() => engine.decide(request), seconds);
}

/** The session signature check of one signed request body, as GrantService#prove does it. */
export function verifyCpu(body: Record<string, unknown>, key: KeyObject, seconds: number): number {
  const session = body.session as { signature: string };
  return cpuPerCall(() => {
    const ok = verify(
      'sha256',
      Buffer.from(sessionSigningInput(body), 'utf8'),
      { key, dsaEncoding: 'ieee-p1363' },
      Buffer.from(session.signature, 'base64url'),
    );
    if (!ok) throw new Error('floor signature does not verify');
  }, seconds);
}

/** A route that does nothing but parse the body and answer a grant-sized 201. */
export async function noopServer(): Promise<{ url: string; close: () => Promise<void> }> {
  const app = Fastify({ logger: false });
  const grant = randomBytes(700).toString('base64url');
  app.post('/v1/grants', async (_req, reply) =>
    reply.code(201).send({
      grantId: 'gr_noop',
      grant,
      expiresAt: new Date().toISOString(),
      auditSeq: 1,
    }),
  );
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/v1/grants`, close: () => app.close() };
}

/** The rate the floor's parts alone allow with every core of this machine busy with them. */
export function floorCeiling(parts: readonly FloorPart[]): number {
  const sum = parts.reduce((a, p) => a + p.cpuMs, 0);
  return (availableParallelism() * 1000) / sum;
}

/** The floor's lines: each part, the sum and the rate it allows on this machine's cores. */
export function floorReport(parts: readonly FloorPart[], target: number): string[] {
  const cores = availableParallelism();
  const sum = parts.reduce((a, p) => a + p.cpuMs, 0);
  const ceiling = floorCeiling(parts);
  return [
    `floor: CPU per grant in the parts every design pays (measured in this round):`,
    ...parts.map((p) => `  ${p.name.padEnd(58)} ${p.cpuMs.toFixed(3).padStart(6)} ms`),
    `  ${'sum'.padEnd(58)} ${sum.toFixed(3).padStart(6)} ms`,
    `  -> at most ${ceiling.toFixed(0)} grants/s on ${cores} cores kept 100% busy by nothing else; ` +
      `the target at concurrency 16 is ${target.toFixed(0)}/s (30% of raw), ` +
      `${((100 * target) / ceiling).toFixed(0)}% of that ceiling`,
  ];
}
