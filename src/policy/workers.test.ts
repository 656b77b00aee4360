/**
 * The policy workers against the real Cedar build and policies/default: the same decisions
 * as the engine deciding in the event loop, reloads that reach the workers before any
 * decision uses them, and failing closed (a worker that dies, a deadline, closing).
 */
import fc from 'fast-check';
import { fileURLToPath } from 'node:url';
import { cp, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { tempDirs } from '../shared/testing/temp-dirs.js';
import { cedarWasm } from './cedar.wasm.js';
import { PolicyEngine, type PolicySlot } from './engine.js';
import { readPolicySource } from './policy-set.js';
import { policyReadinessProbe } from './probe.js';
import { PolicyUnavailableError } from './errors.js';
import { policyRequest } from './testing/request.js';
import { PolicyWorkers } from './workers.js';

vi.setConfig({ testTimeout: 60_000 });

const DEFAULT_DIR = fileURLToPath(new URL('../../policies/default', import.meta.url));
const SCHEMA_FILE = fileURLToPath(new URL('../../policies/grantor.cedarschema', import.meta.url));
const tmp = tempDirs('grantor-policy-workers-');
afterAll(() => tmp.removeAll());

const NOW = Date.parse('2026-11-27T10:00:00Z');

const request = policyRequest;

async function engineOver(policyDir: string): Promise<PolicyEngine> {
  const e = new PolicyEngine({
    policyDir,
    schemaFile: SCHEMA_FILE,
    cedar: cedarWasm,
    now: () => NOW,
  });
  await e.reload();
  return e;
}

const unavailable = async (p: Promise<unknown>): Promise<string> => {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(PolicyUnavailableError);
  return (e as PolicyUnavailableError).code;
};

describe('PolicyWorkers', () => {
  let engine: PolicyEngine;
  let workers: PolicyWorkers;
  let policyDir: string;

  beforeAll(async () => {
    policyDir = join(await tmp.make(), 'policies');
    await cp(DEFAULT_DIR, policyDir, { recursive: true });
    engine = await engineOver(policyDir);
    workers = PolicyWorkers.start(engine, { threads: 2 });
  });
  afterAll(() => workers.close());

  it('decides exactly as the engine in the event loop (property, policies/default)', async () => {
    const actions = [
      'tickets.read',
      'payments.transfer',
      'payments.notify',
      'audit.delete',
      'nope.undeclared',
    ];
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          action: fc.constantFrom(...actions),
          team: fc.constantFrom('support', 'payments', 'other'),
          proofMode: fc.constantFrom('session' as const, 'quote' as const),
          resetSeen: fc.boolean(),
          depth: fc.integer({ min: 0, max: 4 }),
          parentAction: fc.constantFrom(null, 'payments.transfer', 'tickets.read'),
          delegated: fc.boolean(),
          ttlSeconds: fc.integer({ min: 1, max: 7200 }),
        }),
        async (r) => {
          const req = request({
            runtime: { id: 'rt_p', name: 'p', labels: { team: r.team } },
            action: r.action,
            attestation: {
              pcrPolicy: 'base',
              resetSeen: r.resetSeen,
              sessionAgeSeconds: 1,
              proofMode: r.proofMode,
            },
            lineage: {
              depth: r.depth,
              root: r.depth > 0 ? 'gr_root' : '',
              parentAction: r.parentAction,
              delegated: r.delegated,
            },
            ttlSeconds: r.ttlSeconds,
          });
          expect(await workers.decide(req)).toEqual(engine.decide(req));
        },
      ),
      { numRuns: 150 },
    );
    // Both outcomes were reached (the property is not vacuous).
    expect((await workers.decide(request())).decision).toBe('allow');
    expect((await workers.decide(request({ action: 'audit.delete' }))).decision).toBe('deny');
  });

  it('decisions begun in one turn of the event loop go to a worker in one message, each answered', async () => {
    const pool = PolicyWorkers.start(engine, { threads: 1 });
    try {
      await pool.started();
      const before = pool.messages;
      const actions = ['tickets.read', 'audit.delete', 'nope.undeclared', 'payments.notify'];
      const reqs = Array.from({ length: 40 }, (_, i) =>
        request({ action: actions[i % actions.length] ?? 'tickets.read' }),
      );
      const decided = await Promise.all(reqs.map((r) => pool.decide(r)));
      // Each answer is its own request's (not another's of the batch).
      expect(decided).toEqual(reqs.map((r) => engine.decide(r)));
      expect(new Set(decided.map((d) => d.decision))).toEqual(new Set(['allow', 'deny']));
      // The undeclared action is denied without Cedar: 30 calls, one message.
      expect(pool.messages - before).toBe(1);
      // The next turn's decisions go in the next message.
      await pool.decide(request());
      expect(pool.messages - before).toBe(2);
    } finally {
      await pool.close();
    }
  });

  it('a reload reaches every worker before any decision can use it; one begun before keeps its set', async () => {
    const before = engine.info()?.hash;
    await writeFile(
      join(policyDir, 'tickets.cedar'),
      '@id("tickets-closed") @reason("tickets are closed today")\nforbid(principal, action == Action::"tickets.read", resource);\n',
    );
    const source = await readPolicySource(policyDir, SCHEMA_FILE);
    // Posted, then the swap, then more posted: all in one synchronous run.
    const begunBefore = Array.from({ length: 20 }, () => workers.decide(request()));
    const after = engine.activate(source).hash;
    const begunAfter = Array.from({ length: 20 }, () => workers.decide(request()));
    expect(after).not.toBe(before);
    for (const d of await Promise.all(begunBefore)) {
      expect(d).toMatchObject({ decision: 'allow', policyHash: before });
    }
    for (const d of await Promise.all(begunAfter)) {
      expect(d).toMatchObject({
        decision: 'deny',
        reasons: ['tickets are closed today'],
        policyHash: after,
      });
    }
  });

  it('a worker that dies fails what it held with policy_unavailable and is replaced with the active set', async () => {
    const hash = engine.info()?.hash;
    const held = Array.from({ length: 200 }, () =>
      workers.decide(request()).then(
        (d) => d.policyHash,
        (e: unknown) => (e instanceof PolicyUnavailableError ? e.code : 'other error'),
      ),
    );
    await workers.recycle();
    const outcomes = new Set(await Promise.all(held));
    for (const o of outcomes) expect([hash, 'policy_unavailable']).toContain(o);
    // Workers that die young are replaced after a pause.
    await vi.waitFor(
      () => {
        expect(workers.replaced).toBe(2);
      },
      { timeout: 10_000 },
    );
    const again = await workers.decide(request());
    expect(again.policyHash).toBe(hash);
  });

  it("a worker's start is not counted against the decisions waiting for it", async () => {
    // Starting a worker (its code, Cedar's wasm) takes far longer than this deadline; the
    // decision waits for the worker to be ready, and only then is its deadline running.
    const fresh = PolicyWorkers.start(engine, { threads: 1, deadlineMs: 500 });
    try {
      const d = await fresh.decide(request());
      expect(d.policyHash).toBe(engine.info()?.hash);
      expect(fresh.replaced).toBe(0);
    } finally {
      await fresh.close();
    }
  });

  it('with no worker running (one died young, its replacement is paused), decisions fail at once', async () => {
    const pool = PolicyWorkers.start(engine, { threads: 1 });
    try {
      await pool.recycle(); // dies at once: replaced only after a pause
      await vi.waitFor(() => {
        expect(pool.replaced).toBe(0);
      });
      // Before the fix this decision went to the dead worker and never settled.
      expect(await unavailable(pool.decide(request()))).toBe('policy_unavailable');
      // The replacement then decides.
      await vi.waitFor(
        async () => {
          expect((await pool.decide(request())).policyHash).toBe(engine.info()?.hash);
        },
        { timeout: 20_000, interval: 200 },
      );
    } finally {
      await pool.close();
    }
  }, 60_000);

  it('a decision past its deadline fails closed; a closed pool decides nothing', async () => {
    // No decision is answered within a millisecond of reaching a ready worker (a message
    // each way and Cedar's evaluation).
    const exits: number[] = [];
    const slow = PolicyWorkers.start(engine, {
      threads: 1,
      deadlineMs: 1,
      onExit: ({ code }) => exits.push(code),
    });
    expect(await unavailable(slow.decide(request()))).toBe('policy_unavailable');
    // The worker that missed its deadline may be stuck: it is replaced.
    await vi.waitFor(
      () => {
        expect(slow.replaced).toBe(1);
      },
      { timeout: 10_000 },
    );
    expect(exits).toHaveLength(1);
    await slow.close();
    expect(await unavailable(slow.decide(request()))).toBe('policy_unavailable');
  });

  it('decisions queued behind two quick reloads decide against the set they were begun with', async () => {
    const original = await engineOver(DEFAULT_DIR);
    const pool = PolicyWorkers.start(original, { threads: 1 });
    try {
      const first = await readPolicySource(DEFAULT_DIR, SCHEMA_FILE);
      const closed = await readPolicySource(policyDir, SCHEMA_FILE); // tickets closed
      const before = original.info()?.hash;
      const begun = Array.from({ length: 30 }, () => pool.decide(request()));
      // Slot B, then slot A again (the slot the queued decisions name), synchronously.
      original.activate(closed);
      original.activate({ ...first, files: [...first.files, { name: 'z.cedar', text: '' }] });
      for (const d of await Promise.all(begun)) {
        expect(d).toMatchObject({ decision: 'allow', policyHash: before });
      }
      const now = await pool.decide(request());
      expect(now.policyHash).toBe(original.info()?.hash);
      expect(now.policyHash).not.toBe(before);
    } finally {
      await pool.close();
    }
  });

  it('a set a worker failed to load never decides, not even under the old content of its slot', async () => {
    // A stand-in engine whose listener the test drives: the pool sees a load fail.
    const real = await engineOver(DEFAULT_DIR);
    let active: PolicySlot | undefined;
    real.onActivate((slot) => {
      active = slot;
    });
    let handTo: ((slot: PolicySlot) => void) | undefined;
    const driven = {
      onActivate: (l: (slot: PolicySlot) => void) => {
        handTo = l;
      },
      decideWith: real.decideWith.bind(real),
    } as unknown as PolicyEngine;
    const loadErrors: string[] = [];
    const pool = PolicyWorkers.start(driven, {
      threads: 1,
      onLoadError: (m) => loadErrors.push(m),
    });
    try {
      if (active === undefined || handTo === undefined) throw new Error('no slot');
      handTo(active);
      expect((await pool.decide(request())).decision).toBe('allow');
      // The same slot and hash, but a text the worker's Cedar refuses: its old content stays
      // in the wasm cache, and must not answer.
      handTo({ ...active, policies: { staticPolicies: 'permit(' } });
      expect(await unavailable(pool.decide(request()))).toBe('policy_unavailable');
      expect(loadErrors).toHaveLength(1);
    } finally {
      await pool.close();
    }
  });

  it('an activation a listener cannot take is refused, and the previous set stays', async () => {
    const e = await engineOver(DEFAULT_DIR);
    const active = e.info();
    const seen: string[] = [];
    e.onActivate((slot) => {
      seen.push(slot.hash);
      if (seen.length > 1) throw new Error('worker gone');
    });
    expect(seen).toEqual([active?.hash]);
    const source = await readPolicySource(policyDir, SCHEMA_FILE);
    expect(() => e.activate(source)).toThrow(/could not be handed to a worker/);
    expect(e.info()).toEqual(active);
  });

  it('readiness asks the workers: ready while they answer, not once they cannot', async () => {
    const pool = PolicyWorkers.start(engine, { threads: 1 });
    const probe = policyReadinessProbe(engine, pool);
    expect(await probe.check()).toEqual({ ok: true });
    await pool.close();
    expect(await probe.check()).toMatchObject({ ok: false });
    // The engine alone still answers: the probe really asked the pool.
    expect(await policyReadinessProbe(engine).check()).toEqual({ ok: true });
  });

  it('refuses a pool without threads', () => {
    expect(() => PolicyWorkers.start(engine, { threads: 0 })).toThrow(RangeError);
  });
});
