/**
 * The audited reloads (reloads.ts) on the real engine over files of this test's own, into a
 * real audit log (LevelDB, in-memory anchor), counted in real metrics. The appliance's
 * routes and watch over the same code: test/appliance/policy-reload.test.ts.
 */
import { generateKeyPairSync, sign } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { MemoryAnchor } from '../audit/anchor.memory.js';
import { createAudit, type AuditService } from '../audit/index.js';
import { openDatabase, type Database } from '../shared/db.level.js';
import { jcsSha256Hex } from '../shared/jcs.js';
import { createMetrics, type GrantorMetrics } from '../shared/metrics.js';
import { tempDirs } from '../shared/testing/temp-dirs.js';
import { PolicySetInvalidError } from './errors.js';
import { createAuditedPolicyEngine, type AuditedPolicyEngine } from './index.js';

vi.setConfig({ testTimeout: 30_000 });

const SCHEMA_FILE = new URL('../../policies/grantor.cedarschema', import.meta.url).pathname;
const ALLOW = `@id("read") permit(principal, action == Action::"tickets.read", resource);`;
const FREEZE = `@id("freeze") @reason("frozen") forbid(principal, action == Action::"tickets.read", resource);`;
const BROKEN = `@id("broken") permit(principal, action, resource) when { context.nope ==== };`;

const tmp = tempDirs('grantor-policy-reloads-');
const dbs: Database[] = [];
afterAll(async () => {
  for (const db of dbs) await db.close();
  await tmp.removeAll();
});

interface Logged {
  level: 'info' | 'warn' | 'error';
  obj: Record<string, unknown>;
}

let audit: AuditService;
let metrics: GrantorMetrics;
let logged: Logged[];
let policyDir: string;
let appendFails: boolean;
let audited: AuditedPolicyEngine;

async function start(watch = false): Promise<AuditedPolicyEngine> {
  return createAuditedPolicyEngine(
    { policyDir, schemaFile: SCHEMA_FILE, watch, watchDebounceMs: 20 },
    {
      audit: {
        append: (event) =>
          appendFails ? Promise.reject(new Error('log down (test)')) : audit.append(event),
      },
      metrics,
      logger: {
        info: (obj) => logged.push({ level: 'info', obj: obj as Record<string, unknown> }),
        warn: (obj) => logged.push({ level: 'warn', obj: obj as Record<string, unknown> }),
        error: (obj) => logged.push({ level: 'error', obj: obj as Record<string, unknown> }),
      },
    },
  );
}

beforeEach(async () => {
  const dir = await tmp.make();
  const db = await openDatabase(join(dir, 'db'));
  dbs.push(db);
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  audit = createAudit(
    { origin: 'grantor.test/reloads', minAnchorIntervalMs: 0 },
    {
      db,
      anchor: new MemoryAnchor(),
      signer: {
        keyName: 'grantor.test/reloads',
        publicKey: publicKey.export({ format: 'der', type: 'spki' }).subarray(-32),
        sign: (m) => Promise.resolve(sign(null, m, privateKey)),
      },
    },
  );
  await audit.provision();
  await audit.ready();
  metrics = createMetrics({ defaultMetrics: false });
  logged = [];
  appendFails = false;
  policyDir = join(dir, 'policies');
  const { mkdir } = await import('node:fs/promises');
  await mkdir(policyDir);
  await writeFile(join(policyDir, 'read.cedar'), ALLOW);
  audited = await start();
});

const policyEntries = async () =>
  audit.treeSize() === 0
    ? []
    : (await audit.entries(0, 1000)).filter((e) => e.type.startsWith('policy.'));

async function count(outcome: string, trigger: string): Promise<number> {
  const m = await metrics.policyReloads.get();
  return (
    m.values.find((v) => v.labels.outcome === outcome && v.labels.trigger === trigger)?.value ?? 0
  );
}

describe('audited policy reloads', () => {
  it('the set loaded at start is not a reload: nothing audited or counted', async () => {
    expect(audited.engine.info()?.version).toBe(1);
    expect(await policyEntries()).toEqual([]);
    expect(await count('applied', 'watch')).toBe(0);
  });

  it("an operator's reload resolves after its policy.reloaded entry, by the operator", async () => {
    await writeFile(join(policyDir, 'freeze.cedar'), FREEZE);
    const info = await audited.reload('op_alice');
    expect(info.version).toBe(2);
    expect(await policyEntries()).toEqual([
      expect.objectContaining({
        type: 'policy.reloaded',
        subject: info.hash,
        reasons: ['version:2', 'by:op_alice'],
        digest: jcsSha256Hex(info),
      }),
    ]);
    expect(await count('applied', 'operator')).toBe(1);
    expect(logged).toContainEqual({
      level: 'info',
      obj: { event: 'policy_reloaded', hash: info.hash, version: 2, by: 'op_alice' },
    });
  });

  it('a refused set: policy_set_invalid, policy.reload_refused under the active hash, the set unchanged', async () => {
    const before = audited.engine.info();
    await writeFile(join(policyDir, 'broken.cedar'), BROKEN);
    const err = await audited.reload('op_bob').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PolicySetInvalidError);
    expect(err).toMatchObject({ code: 'policy_set_invalid' });
    expect(audited.engine.info()).toEqual(before);
    const [entry] = await policyEntries();
    expect(entry).toMatchObject({
      type: 'policy.reload_refused',
      subject: before?.hash,
      decision: 'policy_set_invalid',
    });
    expect(entry?.reasons?.[0]).toBe('by:op_bob');
    expect(await count('refused', 'operator')).toBe(1);
  });

  it("an operator's reload fails when its entry cannot be written (the set is active, and logged)", async () => {
    await writeFile(join(policyDir, 'freeze.cedar'), FREEZE);
    appendFails = true;
    await expect(audited.reload('op_alice')).rejects.toThrow('log down (test)');
    expect(audited.engine.info()?.version).toBe(2);
    expect(logged.some((l) => l.obj.event === 'policy_reload_unaudited')).toBe(true);
  });

  it('the file watch: a reload audited by:watch, a refused one too', async () => {
    audited.engine.close();
    audited = await start(true);
    await writeFile(join(policyDir, 'freeze.cedar'), FREEZE);
    await vi.waitFor(
      async () => {
        expect(await policyEntries()).toHaveLength(1);
      },
      {
        timeout: 10_000,
      },
    );
    await writeFile(join(policyDir, 'broken.cedar'), BROKEN);
    await vi.waitFor(
      async () => {
        expect(await policyEntries()).toHaveLength(2);
      },
      {
        timeout: 10_000,
      },
    );
    const [applied, refused] = await policyEntries();
    expect(applied).toMatchObject({ type: 'policy.reloaded', reasons: ['version:2', 'by:watch'] });
    expect(refused).toMatchObject({
      type: 'policy.reload_refused',
      decision: 'policy_set_invalid',
    });
    expect(refused?.reasons?.[0]).toBe('by:watch');
    expect(await count('applied', 'watch')).toBe(1);
    expect(await count('refused', 'watch')).toBe(1);
    audited.engine.close();
  });
});
