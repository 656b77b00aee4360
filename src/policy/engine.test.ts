import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { CedarPort } from './cedar.port.js';
import { cedarWasm } from './cedar.wasm.js';
import { PolicyEngine, grantTtlSeconds, type PolicyEngineOptions } from './engine.js';
import { PolicySetInvalidError, PolicyUnavailableError } from './errors.js';
import { policySetHash } from './policy-set.js';
import { policyReadinessProbe } from './probe.js';
import type { PolicyRequest } from './types.js';
import { policyRequest } from './testing/request.js';

// Loading a set costs a few hundred ms of wasm work; the machine is shared.
vi.setConfig({ testTimeout: 30_000 });

const SCHEMA_FILE = new URL('../../policies/grantor.cedarschema', import.meta.url);

const ALLOW_READ = `@id("read") permit(principal, action == Action::"tickets.read", resource);`;
const FORBID_ACME = `@id("no-acme") @reason("acme is off limits")
forbid(principal, action, resource) when { resource == Resource::"acme" };`;

const request = policyRequest;

let dir: string;
let schemaFile: string;
let policyDir: string;

async function writeSet(files: Record<string, string | Buffer>): Promise<void> {
  await rm(policyDir, { recursive: true, force: true });
  const { mkdir } = await import('node:fs/promises');
  await mkdir(policyDir);
  for (const [name, text] of Object.entries(files)) await writeFile(join(policyDir, name), text);
}

function engine(extra: Partial<PolicyEngineOptions> = {}): PolicyEngine {
  return new PolicyEngine({ policyDir, schemaFile, cedar: cedarWasm, ...extra });
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'grantor-policy-'));
  schemaFile = join(dir, 'grantor.cedarschema');
  policyDir = join(dir, 'set');
  await writeFile(schemaFile, await readFile(SCHEMA_FILE));
  await writeSet({ 'a.cedar': ALLOW_READ, 'b.cedar': FORBID_ACME });
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('decisions', () => {
  it('allows what a permit matches and reports the determining policy', async () => {
    const e = engine();
    const info = await e.reload();
    const d = e.decide(request());
    expect(d).toEqual({
      decision: 'allow',
      reasons: [],
      determiningPolicies: ['read'],
      policyHash: info.hash,
      policyVersion: 1,
      obligations: { requireQuote: false },
    });
  });

  it.each([
    [
      'by default with a reason',
      { action: 'payments.transfer' },
      'no policy permits this request',
      [],
    ],
    [
      'with the @reason of the determining forbid',
      { resource: 'acme' },
      'acme is off limits',
      ['no-acme'],
    ],
  ] as const)('denies %s', async (_case, over, reason, determining) => {
    const e = engine();
    await e.reload();
    const d = e.decide(request(over));
    expect(d.decision).toBe('deny');
    expect(d.reasons).toEqual([reason]);
    expect(d.determiningPolicies).toEqual(determining);
  });

  it('names a forbid without @reason', async () => {
    await writeSet({
      'a.cedar': ALLOW_READ,
      'b.cedar': `@id("quiet") forbid(principal, action, resource) when { context.ttlSeconds > 100 };`,
    });
    const e = engine();
    await e.reload();
    expect(e.decide(request({ ttlSeconds: 101 })).reasons).toEqual(['denied by policy "quiet"']);
  });

  it('denies an action the schema does not declare without asking the engine', async () => {
    const e = engine();
    await e.reload();
    const d = e.decide(request({ action: 'rockets.launch' }));
    expect(d.decision).toBe('deny');
    expect(d.reasons[0]).toMatch(/not declared/);
  });

  it('drops labels the schema does not declare instead of failing', async () => {
    const e = engine();
    await e.reload();
    const d = e.decide(
      request({ runtime: { id: 'rt_1', name: 'n', labels: { team: 'x', color: 'red' } } }),
    );
    expect(d.decision).toBe('allow');
  });

  it('exposes the injected clock as context.time', async () => {
    await writeSet({
      'a.cedar': `@id("office-hours") permit(principal, action, resource)
        when { context.time.hourUtc >= 8 && context.time.hourUtc < 18 && context.time.epochSeconds > 0 };`,
    });
    let now = Date.UTC(2026, 0, 1, 9, 30);
    const e = engine({ now: () => now });
    await e.reload();
    expect(e.decide(request()).decision).toBe('allow');
    now = Date.UTC(2026, 0, 1, 22, 0);
    expect(e.decide(request()).decision).toBe('deny');
  });

  it('refuses a request that does not fit the model', async () => {
    const e = engine();
    await e.reload();
    expect(() => e.decide(request({ ttlSeconds: -1 }))).toThrow(
      expect.objectContaining({ code: 'bad_request' }),
    );
    expect(() => e.decide(request({ ttlSeconds: 1.5 }))).toThrow(
      expect.objectContaining({ code: 'bad_request' }),
    );
    const bad = { ...request(), attestation: { ...request().attestation, proofMode: 'tpm' } };
    expect(() => e.decide(bad as unknown as PolicyRequest)).toThrow(
      expect.objectContaining({ code: 'bad_request' }),
    );
    expect(() => e.decide(request({ resource: '' }))).toThrow(
      expect.objectContaining({ code: 'bad_request' }),
    );
  });
});

describe('obligations', () => {
  const OBLIGED = `@id("transfer") @requireQuote("true") @maxTtlSeconds("120") @maxDepth("1")
permit(principal, action == Action::"payments.transfer", resource);
@id("transfer-short") @maxTtlSeconds("30")
permit(principal, action == Action::"payments.transfer", resource) when { resource == Resource::"acct:1" };`;

  it('returns the strictest obligations of the determining permits', async () => {
    await writeSet({ 'o.cedar': OBLIGED });
    const e = engine();
    await e.reload();
    const quote = { ...request().attestation, proofMode: 'quote' as const };
    const d = e.decide(
      request({ action: 'payments.transfer', resource: 'acct:1', attestation: quote }),
    );
    expect(d.decision).toBe('allow');
    expect(d.obligations).toEqual({ requireQuote: true, maxTtlSeconds: 30, maxDepth: 1 });
    expect(d.determiningPolicies).toEqual(['transfer', 'transfer-short']);
    expect(grantTtlSeconds(300, d.obligations)).toBe(30);
    expect(grantTtlSeconds(10, d.obligations)).toBe(10);
    expect(grantTtlSeconds(10, { requireQuote: false })).toBe(10);
  });

  it('denies a session-mode request to a permit that requires a quote', async () => {
    await writeSet({ 'o.cedar': OBLIGED });
    const e = engine();
    await e.reload();
    const d = e.decide(request({ action: 'payments.transfer', resource: 'acct:2' }));
    expect(d.decision).toBe('deny');
    expect(d.reasons).toEqual(['policy "transfer" requires quote mode']);
    expect(d.obligations.requireQuote).toBe(true);
  });

  it('denies a lineage deeper than @maxDepth', async () => {
    await writeSet({ 'o.cedar': OBLIGED });
    const e = engine();
    await e.reload();
    const quote = { ...request().attestation, proofMode: 'quote' as const };
    const lineage = { depth: 2, root: 'gr_1', parentAction: 'payments.transfer', delegated: false };
    const d = e.decide(
      request({ action: 'payments.transfer', resource: 'acct:2', attestation: quote, lineage }),
    );
    expect(d.decision).toBe('deny');
    expect(d.reasons).toEqual(['policy "transfer" allows a lineage depth of at most 1']);
  });
});

describe('loading', () => {
  it.each([
    ['a syntax error', { 'a.cedar': 'permit(principal, action, resource) when {' }],
    [
      'a type error against the schema',
      {
        'a.cedar': `@id("x") permit(principal, action, resource) when { context.ttlSeconds == "long" };`,
      },
    ],
    [
      'an unknown attribute',
      { 'a.cedar': `@id("x") permit(principal, action, resource) when { context.nope };` },
    ],
    [
      'an undeclared action',
      { 'a.cedar': `@id("x") permit(principal, action == Action::"rockets.launch", resource);` },
    ],
    ['a missing @id', { 'a.cedar': `permit(principal, action, resource);` }],
    ['a duplicate @id', { 'a.cedar': ALLOW_READ, 'b.cedar': ALLOW_READ }],
    [
      'a misspelt obligation',
      { 'a.cedar': `@id("x") @maxTTLSeconds("5") permit(principal, action, resource);` },
    ],
    [
      'a bad obligation value',
      { 'a.cedar': `@id("x") @maxTtlSeconds("-5") permit(principal, action, resource);` },
    ],
    [
      'an obligation on a forbid',
      { 'a.cedar': `@id("x") @requireQuote("true") forbid(principal, action, resource);` },
    ],
    [
      'a reason on a permit',
      { 'a.cedar': `@id("x") @reason("r") permit(principal, action, resource);` },
    ],
    ['a template', { 'a.cedar': `@id("x") permit(principal == ?principal, action, resource);` }],
    ['no policy file', { 'README.md': 'no policies here' }],
    ['no policy', { 'a.cedar': '// nothing\n' }],
    [
      'invalid UTF-8',
      { 'a.cedar': Buffer.concat([Buffer.from(ALLOW_READ), Buffer.from([0xff, 0xfe])]) },
    ],
  ])('refuses %s and keeps the previous set', async (_name, files) => {
    const e = engine();
    const first = await e.reload();
    await writeSet(files);
    await expect(e.reload()).rejects.toMatchObject({ code: 'policy_set_invalid' });
    expect(e.info()).toEqual(first);
    const d = e.decide(request());
    expect(d.policyHash).toBe(first.hash);
    expect(d.decision).toBe('allow');
  });

  it('refuses a schema that does not parse, keeping the previous set', async () => {
    const e = engine();
    const first = await e.reload();
    await writeFile(schemaFile, 'entity Runtime = {');
    await expect(e.reload()).rejects.toBeInstanceOf(PolicySetInvalidError);
    expect(e.decide(request()).policyHash).toBe(first.hash);
  });

  it('refuses a schema without Runtime.labels', async () => {
    await writeFile(
      schemaFile,
      'entity Runtime; entity Resource; action "tickets.read" appliesTo { principal: [Runtime], resource: [Resource] };',
    );
    await expect(engine().reload()).rejects.toMatchObject({ code: 'policy_set_invalid' });
  });

  // Decisions skip Cedar's per-request validation; activation does it once per action.
  it.each([
    [
      'an action that does not apply to runtimes',
      (schema: string) =>
        schema.replace(
          'action "tickets.read", ',
          'action "tickets.read" appliesTo { principal: [Resource], resource: [Resource], context: GrantContext };\naction ',
        ),
    ],
    [
      'a context attribute of another type',
      (schema: string) => schema.replace('ttlSeconds: Long,', 'ttlSeconds: String,'),
    ],
  ])('refuses a schema that the requests do not fit: %s', async (_label, edit) => {
    const original = await readFile(schemaFile, 'utf8');
    const edited = edit(original);
    expect(edited).not.toBe(original);
    await writeFile(schemaFile, edited);
    const e = engine();
    await expect(e.reload()).rejects.toMatchObject({
      code: 'policy_set_invalid',
      message: expect.stringContaining('do not fit the schema') as unknown,
    });
    expect(e.info()).toBeUndefined();
  });

  it('validates the request shape at activation, not on every decision', async () => {
    const calls: (boolean | undefined)[] = [];
    const spy: CedarPort = {
      ...cedarWasm,
      statefulIsAuthorized: (call) => {
        calls.push(call.validateRequest);
        return cedarWasm.statefulIsAuthorized(call);
      },
    };
    const e = engine({ cedar: spy });
    const info = await e.reload();
    expect(calls).toEqual(info.actions.map(() => true));
    calls.length = 0;
    expect(e.decide(request()).decision).toBe('allow');
    expect(calls).toEqual([false]);
  });

  it('fails closed before any set is loaded', () => {
    const e = engine();
    expect(() => e.decide(request())).toThrow(PolicyUnavailableError);
  });

  it('fails to load from a missing directory', async () => {
    await rm(policyDir, { recursive: true });
    await expect(engine().reload()).rejects.toMatchObject({ code: 'policy_set_invalid' });
  });
});

describe('hash', () => {
  it('is SHA-256 over JCS of {schema, policies: {name: text}}', async () => {
    const schema = await readFile(schemaFile, 'utf8');
    const canonical = `{"policies":{"a.cedar":${JSON.stringify(ALLOW_READ)},"b.cedar":${JSON.stringify(FORBID_ACME)}},"schema":${JSON.stringify(schema)}}`;
    const expected = createHash('sha256').update(canonical).digest('hex');
    const e = engine();
    expect((await e.reload()).hash).toBe(expected);
  });

  it('does not depend on file order and changes with any name or byte', () => {
    const base = {
      schema: 's',
      files: [
        { name: 'a.cedar', text: 'A' },
        { name: 'b.cedar', text: 'B' },
      ],
    };
    const h = policySetHash(base);
    expect(h).toMatch(/^[0-9a-f]{64}$/);
    expect(policySetHash({ ...base, files: [...base.files].reverse() })).toBe(h);
    expect(policySetHash({ ...base, schema: 's ' })).not.toBe(h);
    const withFiles = (...files: [name: string, text: string][]): string =>
      policySetHash({ ...base, files: files.map(([name, text]) => ({ name, text })) });
    // A file renamed, or text moved from one file to the next: another set.
    expect(withFiles(['a.cedar', 'A'], ['c.cedar', 'B'])).not.toBe(h);
    expect(withFiles(['a.cedar', 'AB'], ['b.cedar', ''])).not.toBe(h);
  });

  it('is stable across reloads of the same files and bumps the version', async () => {
    const e = engine();
    const a = await e.reload();
    const b = await e.reload();
    expect(b.hash).toBe(a.hash);
    expect(b.version).toBe(a.version + 1);
    await writeFile(join(policyDir, 'b.cedar'), FORBID_ACME + '\n');
    const c = await e.reload();
    expect(c.hash).not.toBe(a.hash);
  });
});

describe('atomic reload', () => {
  it('every decision matches exactly one set, whatever the interleaving', async () => {
    const setA = { 'a.cedar': ALLOW_READ };
    const setB = {
      'a.cedar': `@id("deny-read") forbid(principal, action == Action::"tickets.read", resource);\n${ALLOW_READ}`,
    };
    const e = engine();
    await writeSet(setA);
    const hashA = (await e.reload()).hash;
    await writeSet(setB);
    const hashB = (await e.reload()).hash;
    const expected = new Map([
      [hashA, 'allow'],
      [hashB, 'deny'],
    ]);
    const seen = new Set<string>();
    const flag = { stop: false };
    const decider = (async () => {
      while (!flag.stop) {
        const d = e.decide(request());
        expect(expected.get(d.policyHash)).toBe(d.decision);
        seen.add(d.policyHash);
        await new Promise<void>((r) => setImmediate(r));
      }
    })();
    for (let i = 0; i < 20; i++) {
      await writeSet(i % 2 === 0 ? setA : setB);
      await e.reload();
    }
    flag.stop = true;
    await decider;
    expect(seen.size).toBeGreaterThan(0);
  }, 60_000);

  it('serialises concurrent reloads in call order', async () => {
    const e = engine();
    const results = await Promise.all([e.reload(), e.reload(), e.reload()]);
    expect(results.map((r) => r.version)).toEqual([1, 2, 3]);
    expect(e.info()?.version).toBe(3);
  });

  it('reloads on file change (watched) and reports refused sets', async () => {
    const reloaded: string[] = [];
    const refused: string[] = [];
    let onReload: () => void = () => undefined;
    let onError: () => void = () => undefined;
    const e = engine({
      watchDebounceMs: 20,
      onReload: (info) => {
        reloaded.push(info.hash);
        onReload();
      },
      onReloadError: (err) => {
        refused.push(err.code);
        onError();
      },
    });
    const first = await e.reload();
    e.watch();
    try {
      const changed = new Promise<void>((r) => (onReload = r));
      await writeFile(
        join(policyDir, 'c.cedar'),
        `@id("c") permit(principal, action == Action::"audit.read", resource);`,
      );
      await changed;
      const current = e.info();
      expect(current?.hash).not.toBe(first.hash);
      expect(e.decide(request({ action: 'audit.read' })).decision).toBe('allow');
      const failed = new Promise<void>((r) => (onError = r));
      await writeFile(join(policyDir, 'd.cedar'), 'permit(');
      await failed;
      expect(refused).toContain('policy_set_invalid');
      expect(e.info()?.hash).toBe(current?.hash);
    } finally {
      e.close();
      e.close();
    }
  }, 60_000);
  it('reloads when the schema file changes (watched)', async () => {
    let onReload: (hash: string) => void = () => undefined;
    const e = engine({
      watchDebounceMs: 20,
      onReload: (info) => {
        onReload(info.hash);
      },
    });
    const first = await e.reload();
    e.watch();
    try {
      const changed = new Promise<string>((r) => (onReload = r));
      await writeFile(schemaFile, `${await readFile(schemaFile, 'utf8')}\n// edited\n`);
      expect(await changed).not.toBe(first.hash);
    } finally {
      e.close();
    }
  }, 60_000);
});

describe('engine failure fails closed', () => {
  it('an evaluation error in a forbid is policy_unavailable, never an allow', async () => {
    // Cedar skips an erroring policy: without the check this forbid would be ignored.
    await writeSet({
      'a.cedar': ALLOW_READ,
      'b.cedar': `@id("overflow") forbid(principal, action, resource) when { context.ttlSeconds + 9223372036854775807 > 0 };`,
    });
    const e = engine();
    await e.reload();
    expect(() => e.decide(request())).toThrow(
      expect.objectContaining({ code: 'policy_unavailable' }),
    );
  });

  it('a throwing wasm call is policy_unavailable', async () => {
    let broken = false;
    const flaky: CedarPort = {
      ...cedarWasm,
      statefulIsAuthorized: (call) => {
        if (broken) throw new Error('RuntimeError: unreachable');
        return cedarWasm.statefulIsAuthorized(call);
      },
    };
    const e = engine({ cedar: flaky });
    await e.reload();
    expect(e.decide(request()).decision).toBe('allow');
    broken = true;
    expect(() => e.decide(request())).toThrow(
      expect.objectContaining({ code: 'policy_unavailable' }),
    );
    const probe = await policyReadinessProbe(e).check();
    expect(probe.ok).toBe(false);
  });

  it('an engine failure answer is policy_unavailable', async () => {
    let broken = false;
    const failing: CedarPort = {
      ...cedarWasm,
      statefulIsAuthorized: (call) =>
        broken
          ? {
              type: 'failure',
              errors: [{ message: 'lost', help: null, code: null, url: null, severity: null }],
              warnings: [],
            }
          : cedarWasm.statefulIsAuthorized(call),
    };
    const e = engine({ cedar: failing });
    await e.reload();
    broken = true;
    expect(() => e.decide(request())).toThrow(
      expect.objectContaining({ code: 'policy_unavailable' }),
    );
  });

  it('a failing preparse refuses the set', async () => {
    const failing: CedarPort = {
      ...cedarWasm,
      preparsePolicySet: () => {
        throw new Error('out of memory');
      },
    };
    const e = engine({ cedar: failing });
    await expect(e.reload()).rejects.toMatchObject({ code: 'policy_unavailable' });
    expect(e.info()).toBeUndefined();
  });

  it('the readiness probe passes with a working engine and fails without a set', async () => {
    const e = engine();
    expect((await policyReadinessProbe(e).check()).ok).toBe(false);
    await e.reload();
    expect(await policyReadinessProbe(e).check()).toEqual({ ok: true });
  });
});

describe('the request whole in the context (issue 18)', () => {
  const child = (over: Partial<PolicyRequest['lineage']> = {}): PolicyRequest['lineage'] => ({
    depth: 1,
    root: 'gr_root',
    parentAction: 'tickets.read',
    delegated: true,
    parentResource: 'ticket:1',
    parentRuntime: { id: 'rt_parent', labels: { team: 'ops', undeclared: 'x' } },
    ...over,
  });

  it('the parent resource compares with the resource; a root grant has Resource::""', async () => {
    await writeSet({
      'a.cedar': `@id("same") permit(principal, action, resource)
        when { resource == context.lineage.parentResource };`,
    });
    const e = engine();
    await e.reload();
    expect(e.decide(request({ lineage: child() })).decision).toBe('allow');
    expect(e.decide(request({ lineage: child({ parentResource: 'ticket:2' }) })).decision).toBe(
      'deny',
    );
    // A root grant: "" is no resource a request can name.
    expect(e.decide(request()).decision).toBe('deny');
  });

  it("the parent's runtime and its declared labels (undeclared ones dropped)", async () => {
    await writeSet({
      'a.cedar': `@id("ops-parent") permit(principal, action, resource)
        when { context.lineage.parentRuntime == "rt_parent" &&
               context.lineage.parentLabels has team && context.lineage.parentLabels.team == "ops" };`,
    });
    const e = engine();
    await e.reload();
    expect(e.decide(request({ lineage: child() })).decision).toBe('allow');
    const other = child({ parentRuntime: { id: 'rt_parent', labels: { team: 'support' } } });
    expect(e.decide(request({ lineage: other })).decision).toBe('deny');
    expect(e.decide(request()).decision).toBe('deny');
  });

  it('the audience and the gateways holding it, as sets of ids and names', async () => {
    await writeSet({
      'a.cedar': `@id("gw") permit(principal, action, resource)
        when { context.audience.name == "gw_tickets" &&
               !context.audience.gateways.isEmpty() &&
               ["gw_a", "gw_b"].containsAll(context.audience.gateways) &&
               context.audience.gatewayNames.contains("tickets-1") };`,
    });
    const e = engine();
    await e.reload();
    const aud = (gateways: { id: string; name: string }[], name = 'gw_tickets') => ({
      audience: { name, gateways },
    });
    const a = { id: 'gw_a', name: 'tickets-1' };
    expect(e.decide(request(aud([a, a]))).decision).toBe('allow');
    expect(e.decide(request(aud([a, { id: 'gw_c', name: 'tickets-1' }]))).decision).toBe('deny');
    expect(e.decide(request(aud([]))).decision).toBe('deny');
    expect(e.decide(request(aud([a], 'gw_payments'))).decision).toBe('deny');
    // No audience given: "" and no gateway.
    expect(e.decide(request()).decision).toBe('deny');
  });

  it('a malformed context value is bad_request, never a decision', async () => {
    const e = engine();
    await e.reload();
    const bad = [
      request({ audience: { name: 'x', gateways: [{ id: '', name: 'n' }] } }),
      request({ audience: { name: 'x'.repeat(5000), gateways: [] } }),
      request({ lineage: child({ parentResource: '' }) }),
      request({ lineage: child({ parentRuntime: { id: '', labels: {} } }) }),
    ];
    for (const r of bad) {
      expect(() => e.decide(r)).toThrow(expect.objectContaining({ code: 'bad_request' }));
    }
  });
});
