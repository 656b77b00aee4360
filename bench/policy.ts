/**
 * Policy decisions per second on this machine: the engine's path (preparsed policy set and
 * schema, `statefulIsAuthorized`, as PolicyEngine.decide uses it) next to the stateless
 * `isAuthorized`, which parses the policy set (and schema) on every call.
 *
 *   npx tsx bench/policy.ts [seconds-per-case]
 *
 * Run it on an idle machine: the numbers are only comparable within one run.
 */
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { createPolicyEngine, readPolicySource, type PolicyRequest } from '../src/policy/index.js';

const seconds = Number(process.argv[2] ?? '2');
const policyDir = fileURLToPath(new URL('../policies/default', import.meta.url));
const schemaFile = fileURLToPath(new URL('../policies/grantor.cedarschema', import.meta.url));

const request: PolicyRequest = {
  runtime: { id: 'rt_bench', name: 'agent', labels: { team: 'payments' } },
  action: 'payments.transfer',
  resource: 'acct:1234',
  attestation: { pcrPolicy: 'base', resetSeen: false, sessionAgeSeconds: 0, proofMode: 'quote' },
  lineage: { depth: 0, root: '', parentAction: null, delegated: false },
  ttlSeconds: 60,
};

function rate(name: string, fn: () => void): number {
  // Warm up (JIT, wasm caches) for half the measuring time.
  const warm = performance.now() + (seconds * 1000) / 2;
  while (performance.now() < warm) fn();
  const end = performance.now() + seconds * 1000;
  let n = 0;
  const start = performance.now();
  while (performance.now() < end) {
    for (let i = 0; i < 50; i++) fn();
    n += 50;
  }
  const perSecond = n / ((performance.now() - start) / 1000);
  console.log(`${name.padEnd(58)} ${Math.round(perSecond).toString().padStart(8)} decisions/s`);
  return perSecond;
}

const engine = await createPolicyEngine({ policyDir, schemaFile });
const source = await readPolicySource(policyDir, schemaFile);
const policies = source.files.map((f) => f.text).join('\n');
const call = {
  principal: { type: 'Runtime', id: 'rt_bench' },
  action: { type: 'Action', id: 'payments.transfer' },
  resource: { type: 'Resource', id: 'acct:1234' },
  context: {
    attestation: { pcrPolicy: 'base', resetSeen: false, sessionAgeSeconds: 0, proofMode: 'quote' },
    lineage: { depth: 0, root: '', parentAction: '', delegated: false },
    time: { epochSeconds: 1_800_000_000, hourUtc: 9 },
    ttlSeconds: 60,
  },
  entities: [
    {
      uid: { type: 'Runtime', id: 'rt_bench' },
      attrs: { name: 'agent', labels: { team: 'payments' } },
      parents: [],
    },
    { uid: { type: 'Resource', id: 'acct:1234' }, attrs: {}, parents: [] },
  ],
};
cedar.preparsePolicySet('bench', { staticPolicies: policies });
cedar.preparseSchema('bench-schema', source.schema);

console.log(`policy set ${engine.info()?.hash ?? '?'}, ${seconds} s per case`);
const check = engine.decide(request);
if (check.decision !== 'allow') throw new Error('bench request should be allowed');
const decide = rate('PolicyEngine.decide (stateful, request validated)', () =>
  engine.decide(request),
);
const stateful = rate('statefulIsAuthorized, validated against the schema', () =>
  cedar.statefulIsAuthorized({
    ...call,
    preparsedPolicySetId: 'bench',
    preparsedSchemaName: 'bench-schema',
    validateRequest: true,
  }),
);
rate('statefulIsAuthorized, no schema', () =>
  cedar.statefulIsAuthorized({ ...call, preparsedPolicySetId: 'bench', validateRequest: false }),
);
const stateless = rate('isAuthorized, validated against the schema', () =>
  cedar.isAuthorized({
    ...call,
    policies: { staticPolicies: policies },
    schema: source.schema,
    validateRequest: true,
  }),
);
rate('isAuthorized, no schema', () =>
  cedar.isAuthorized({ ...call, policies: { staticPolicies: policies }, validateRequest: false }),
);
console.log(
  `stateful / isAuthorized (both validated): ${(stateful / stateless).toFixed(1)}x; engine overhead over the raw call: ${((stateful / decide - 1) * 100).toFixed(0)}%`,
);
