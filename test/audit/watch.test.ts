/**
 * `grantor audit watch` against real logs: a whole appliance (swtpm, SoftHSM2, LevelDB,
 * Fastify over HTTPS) appended between visits, and forked histories made for real: a second
 * log on its own swtpm and LevelDB signed with the SAME checkpoint key and origin (what an
 * attacker holding the key, or a rebuilt store, would serve), a third log of another origin,
 * and a tiny HTTP proxy that tampers with the answers on the way. Each alarm exits with its
 * own code, leaves the state file as it was and keeps the evidence beside it.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TpmAuditAnchor } from '../../src/audit/anchor.tpm.js';
import { noteVerifierKey, type CheckpointSigner } from '../../src/audit/checkpoint.js';
import { createAudit } from '../../src/audit/index.js';
import type { AuditService } from '../../src/audit/service.js';
import { entryHash, type AuditEntry } from '../../src/audit/entry.js';
import type { PeriodStartedFacts } from '../../src/audit/facts.js';
import { WATCH_STATE_FORMAT } from '../../src/audit/watch.js';
import { run } from '../../src/cli/main.js';
import { createServer } from '../../src/http/app.js';
import { auditRoutes } from '../../src/http/routes/audit.js';
import type { RunningServer } from '../../src/http/server.js';
import { openDatabase, type Database } from '../../src/shared/db.level.js';
import { NativeTpm } from '../../src/tpm/tpm.native.js';
import { repoRoot, startSimTpm, type SimTpm } from '../rig/sim.js';
import { startHttpsAppliance, type HttpsAppliance } from './https-appliance.js';
import { event, provisionAnchor, tempDir } from './helpers.js';
import { testSigner } from './signer.js';

interface Result {
  code: number;
  out: string;
  err: string;
}

let work: string;
let emptyProfile: string;

/** The real CLI entry (argv to exit code), in this process. */
async function grantor(args: readonly string[]): Promise<Result> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await run(args, {
    out: (l) => out.push(l),
    err: (l) => err.push(l),
  });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/** One audit log on its own swtpm and LevelDB, served over http on loopback. */
interface Log {
  readonly url: string;
  readonly audit: AuditService;
  close(): Promise<void>;
}

async function startLog(name: string, origin: string, signer: CheckpointSigner): Promise<Log> {
  const sim: SimTpm = await startSimTpm();
  const tpm = await NativeTpm.open(sim.tcti);
  const dir = await tempDir(`grantor-watch-${name}-`);
  let db: Database | undefined;
  let audit: AuditService | undefined;
  let app: ReturnType<typeof createServer> | undefined;
  const close = async (): Promise<void> => {
    try {
      await app?.close();
      await audit?.close();
      await db?.close();
      await tpm.close();
    } finally {
      await sim.destroy();
      await rm(dir, { recursive: true, force: true });
    }
  };
  try {
    const config = await provisionAnchor(tpm);
    db = await openDatabase(join(dir, 'db'));
    audit = createAudit(
      { origin, minAnchorIntervalMs: 0 },
      { db, anchor: new TpmAuditAnchor(tpm, config), signer },
    );
    await audit.provision();
    await audit.ready();
    app = createServer();
    await app.register(auditRoutes, { audit });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const port = (app.server.address() as AddressInfo).port;
    return { url: `http://127.0.0.1:${port}`, audit, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/** Appends one at a time: each its own batch, so the TPM counter moves once per entry. */
async function appendEach(log: Log, n: number, salt: number): Promise<void> {
  for (let i = 0; i < n; i++) await log.audit.append(event(salt + i));
}

/** Appends all at once: they share few batches, so the counter moves less than the size. */
async function appendTogether(log: Log, n: number, salt: number): Promise<void> {
  await Promise.all(Array.from({ length: n }, (_, i) => log.audit.append(event(salt + i))));
}

/** A proxy on loopback in front of `target`, rewriting JSON answers with `rewrite`. */
interface Proxy {
  readonly url: string;
  target: string;
  rewrite: (path: string, body: Record<string, unknown>) => Record<string, unknown>;
  close(): Promise<void>;
}

async function startProxy(target: string): Promise<Proxy> {
  const proxy: Proxy = {
    url: '',
    target,
    rewrite: (_p, b) => b,
    close: () => Promise.resolve(),
  };
  const server: Server = createHttpServer((req, res) => {
    const upstream = request(new URL(req.url ?? '/', proxy.target), { method: 'GET' }, (up) => {
      const chunks: Buffer[] = [];
      up.on('data', (c: Buffer) => chunks.push(c));
      up.on('end', () => {
        let text = Buffer.concat(chunks).toString('utf8');
        if (up.statusCode === 200) {
          const body = JSON.parse(text) as Record<string, unknown>;
          text = JSON.stringify(proxy.rewrite(new URL(req.url ?? '/', 'http://x').pathname, body));
        }
        res.writeHead(up.statusCode ?? 502, { 'content-type': 'application/json' });
        res.end(text);
      });
    });
    upstream.on('error', () => {
      res.writeHead(502);
      res.end();
    });
    upstream.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return Object.assign(proxy, {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => {
          resolve();
        });
      }),
  });
}

const ORIGIN = 'grantor.test/watch';
const OTHER_ORIGIN = 'grantor.test/watch-other';
const signer = testSigner(ORIGIN);
const otherSigner = testSigner(OTHER_ORIGIN);
const KEY = noteVerifierKey(ORIGIN, signer.publicKey);
const OTHER_KEY = noteVerifierKey(OTHER_ORIGIN, otherSigner.publicKey);

let a: Log;
let b: Log;
let c: Log;
let proxy: Proxy;

beforeAll(async () => {
  work = await tempDir('grantor-watch-');
  emptyProfile = join(work, 'profile.json');
  await writeFile(emptyProfile, '{}');
  [a, b, c] = await Promise.all([
    startLog('a', ORIGIN, signer),
    startLog('b', ORIGIN, signer),
    startLog('c', OTHER_ORIGIN, otherSigner),
  ]);
  proxy = await startProxy(a.url);
}, 120_000);

afterAll(async () => {
  await proxy.close();
  await Promise.all([a.close(), b.close(), c.close()]);
  await rm(work, { recursive: true, force: true });
});

/** One visit of `url` with `state`, the pinned key(s) given. */
function watchOnce(url: string, state: string, keys: readonly string[] = [KEY]): Promise<Result> {
  return grantor([
    'audit',
    'watch',
    '--once',
    '--state',
    state,
    ...keys.flatMap((k) => ['--verifier', k]),
    '--url',
    url,
    '--profile',
    emptyProfile,
  ]);
}

/** The TPM counters of the two forks' checkpoints (A's, B's). */
async function counters(): Promise<[bigint, bigint]> {
  const [cpA, cpB] = await Promise.all([a.audit.checkpoint({}), b.audit.checkpoint({})]);
  return [BigInt(cpA.nvCounter), BigInt(cpB.nvCounter)];
}

async function alarms(state: string): Promise<string[]> {
  const base = state.split('/').pop() ?? '';
  return (await readdir(work)).filter((f) => f.startsWith(`${base}.alarm-`));
}

describe('grantor audit watch against forked and tampered logs', () => {
  const state = (): string => join(work, 'forks.json');
  let verified = '';

  it('first visit keeps the checkpoint, a grown log is proved consistent, then unchanged', async () => {
    await appendEach(a, 4, 0);
    const first = await watchOnce(a.url, state());
    expect(first.err).toBe('');
    expect(first.code).toBe(0);
    expect(first.out).toMatch(/ok grantor\.test\/watch size 4: first visit/);
    const saved = JSON.parse(await readFile(state(), 'utf8')) as Record<string, unknown>;
    expect(Object.keys(saved).sort()).toEqual(['format', 'note', 'verifiedAt']);
    expect(saved.format).toBe(WATCH_STATE_FORMAT);
    expect((await stat(state())).mode & 0o777).toBe(0o600);

    await appendEach(a, 6, 100);
    const grew = await watchOnce(a.url, state());
    expect(grew.code).toBe(0);
    expect(grew.out).toContain('size 4 -> 10: consistency proof verified');
    const same = await watchOnce(a.url, state());
    expect(same.code).toBe(0);
    expect(same.out).toContain('size 10: unchanged');
    // No temporary file is left beside the state.
    expect((await readdir(work)).filter((f) => f.includes('.tmp-'))).toEqual([]);
    verified = await readFile(state(), 'utf8');
  }, 60_000);

  const expectAlarm = async (r: Result, code: number, alarm: string): Promise<void> => {
    expect(r.code, r.err).toBe(code);
    const lines = r.err.split('\n').filter((l) => l !== '');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`audit watch: ALARM ${alarm} \\(exit ${code}\\)`));
    // The state is not advanced: the next visit alarms again.
    expect(await readFile(state(), 'utf8')).toBe(verified);
  };

  it('a second log with the same key and a smaller tree: tree_shrunk (12), with evidence', async () => {
    await appendEach(b, 3, 1000);
    const before = (await alarms(state())).length;
    const r = await watchOnce(b.url, state());
    await expectAlarm(r, 12, 'tree_shrunk');
    const kept = (await alarms(state())).filter((f) => r.err.includes(f));
    expect(kept).toHaveLength(1);
    expect((await alarms(state())).length).toBe(before + 1);
    const evidence = JSON.parse(await readFile(join(work, kept[0] ?? ''), 'utf8')) as {
      alarm: string;
      verifiedNote: string;
      note: string;
    };
    expect(evidence.alarm).toBe('tree_shrunk');
    // Two notes the same key signed: the proof of a fork, for whoever answers the alarm.
    expect(evidence.verifiedNote).toBe((JSON.parse(verified) as { note: string }).note);
    expect(evidence.note).toMatch(/^grantor\.test\/watch\n3\n/);
  }, 60_000);

  /** A visit that must alarm: `arrange` readies the log and names the URL visited. */
  const itAlarms = (
    title: string,
    code: number,
    alarm: string,
    arrange: () => Promise<string>,
    keys: readonly string[] = [KEY],
  ): void => {
    it(`${title}: ${alarm} (${code})`, async () => {
      await expectAlarm(await watchOnce(await arrange(), state(), keys), code, alarm);
    }, 60_000);
  };

  itAlarms('the same size with another history', 13, 'root_mismatch', async () => {
    await appendTogether(b, 7, 2000);
    return b.url;
  });

  itAlarms('a larger tree whose TPM counter did not move', 16, 'anchor_regressed', async () => {
    await appendTogether(b, 4, 3000);
    const [counterA, counterB] = await counters();
    // The precondition the case needs: B's 14 entries in fewer batches than A's 10.
    expect(counterB).toBeLessThanOrEqual(counterA);
    return b.url;
  });

  itAlarms('a larger forked tree', 14, 'proof_invalid', async () => {
    await appendEach(b, 10, 4000);
    const [counterA, counterB] = await counters();
    expect(counterB).toBeGreaterThan(counterA);
    return b.url;
  });

  itAlarms('another log whose key is not pinned', 10, 'signature_invalid', async () => {
    await appendEach(c, 12, 5000);
    return c.url;
  });

  itAlarms(
    'another log whose key is pinned too',
    11,
    'origin_changed',
    () => Promise.resolve(c.url),
    [KEY, OTHER_KEY],
  );

  it('through a proxy: a tampered signature (10), note (15) and proof (14)', async () => {
    await appendEach(a, 2, 6000);
    proxy.target = a.url;
    const tampered: [number, string, Proxy['rewrite']][] = [
      [
        10,
        'signature_invalid',
        (path, body) => {
          if (path !== '/v1/audit/checkpoint') return body;
          const note = body.note as string;
          // Flip one bit of the Ed25519 signature (after the 4-byte key id).
          const m = /— (\S+) (\S+)\n$/.exec(note);
          const raw = Buffer.from(m?.[2] ?? '', 'base64');
          raw[10] = (raw[10] ?? 0) ^ 1;
          return { ...body, note: note.replace(m?.[2] ?? '', raw.toString('base64')) };
        },
      ],
      [
        15,
        'checkpoint_malformed',
        (path, body) => (path === '/v1/audit/checkpoint' ? { ...body, note: 'not a note' } : body),
      ],
      [
        14,
        'proof_invalid',
        (path, body) => {
          if (path !== '/v1/audit/proof/consistency') return body;
          const p = [...(body.path as string[])];
          p[0] = randomBytes(32).toString('hex');
          return { ...body, path: p };
        },
      ],
      [
        14,
        'proof_invalid',
        (path, body) => (path === '/v1/audit/proof/consistency' ? { ...body, path: [] } : body),
      ],
    ];
    for (const [code, alarm, rewrite] of tampered) {
      proxy.rewrite = rewrite;
      await expectAlarm(await watchOnce(proxy.url, state()), code, alarm);
    }

    // Untouched, the same log through the same proxy is consistent.
    proxy.rewrite = (_p, body) => body;
    const ok = await watchOnce(proxy.url, state());
    expect(ok.code).toBe(0);
    expect(ok.out).toContain('size 10 -> 12: consistency proof verified');
    verified = await readFile(state(), 'utf8');
  }, 60_000);

  it('a corrupt, edited or foreign state file is refused (3), never reset', async () => {
    const cases: [string, string][] = [
      ['not JSON', '{"format":'],
      ['another format', verified.replace(WATCH_STATE_FORMAT, 'grantor-audit-watch/9')],
      ['an extra field', verified.replace('{', '{"size":3,')],
      // A smaller size written into the note: the pinned key no longer vouches for it.
      ['an edited note', verified.replace(/\\n12\\n/, '\\n3\\n')],
    ];
    const file = join(work, 'corrupt.json');
    for (const [what, text] of cases) {
      expect(text, what).not.toBe(verified);
      await writeFile(file, text);
      const r = await watchOnce(a.url, file);
      expect(r.code, what).toBe(3);
      expect(r.err, what).toMatch(/state refused \(exit 3\)/);
      expect(await readFile(file, 'utf8'), what).toBe(text);
    }
    // A good state whose signer is not pinned (another log's): refused as well.
    await writeFile(file, verified);
    const foreign = await watchOnce(c.url, file, [OTHER_KEY]);
    expect(foreign.code).toBe(3);
    expect(foreign.err).toContain('keep the key that signed it pinned');
  }, 60_000);

  it('usage: no pinned key or no state is 2; an unreachable appliance is 1, state kept', async () => {
    const none = await grantor(['audit', 'watch', '--once', '--state', state(), '--url', a.url]);
    expect(none.code).toBe(2);
    expect(none.err).toContain('pin the checkpoint key');
    const noState = await grantor(['audit', 'watch', '--once', '--verifier', KEY, '--url', a.url]);
    expect(noState.code).toBe(2);
    const badKey = await watchOnce(a.url, state(), ['grantor+00+AA']);
    expect(badKey.code).toBe(2);
    await proxy.close();
    const down = await watchOnce(proxy.url, state());
    expect(down.code).toBe(1);
    expect(down.err).toContain('visit failed: remote_unreachable');
    expect(await readFile(state(), 'utf8')).toBe(verified);
  }, 60_000);
});

/** `grantor audit watch` in loop mode, one visit a second, as a process. */
function watchLoop(
  state: string,
  key: string,
  remote: readonly string[],
): ReturnType<typeof spawnGrantor> {
  return spawnGrantor([
    'audit',
    'watch',
    '--state',
    state,
    '--verifier',
    key,
    '--interval',
    '1',
    ...remote,
  ]);
}

/** The CLI as a process (loop mode needs signals). */
function spawnGrantor(args: readonly string[]): {
  lines: string[];
  waitFor: (re: RegExp) => Promise<void>;
  exit: Promise<number>;
  kill: (signal: NodeJS.Signals) => void;
} {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(repoRoot, 'src/cli.ts'), ...args],
    {
      cwd: repoRoot,
      env: { ...process.env, GRANTOR_PROFILE: emptyProfile },
    },
  );
  const lines: string[] = [];
  const waiters: { re: RegExp; resolve: () => void }[] = [];
  const push = (chunk: Buffer): void => {
    for (const l of chunk.toString('utf8').split('\n')) if (l !== '') lines.push(l);
    for (const w of [...waiters]) {
      if (lines.some((l) => w.re.test(l))) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  };
  child.stdout.on('data', push);
  child.stderr.on('data', push);
  const exit = new Promise<number>((resolve) => {
    child.on('exit', (code) => {
      resolve(code ?? -1);
    });
  });
  return {
    lines,
    exit,
    kill: (signal) => child.kill(signal),
    waitFor: (re) =>
      lines.some((l) => re.test(l))
        ? Promise.resolve()
        : Promise.race([
            new Promise<void>((resolve) => waiters.push({ re, resolve })),
            exit.then((code) => {
              throw new Error(`exited ${code} before ${re}: ${lines.join('\n')}`);
            }),
          ]),
  };
}

describe('grantor audit watch against the whole appliance over HTTPS', () => {
  let https: HttpsAppliance | undefined;
  let server: RunningServer | undefined;
  let url: string;
  let key: string;
  let tlsArgs: string[];

  beforeAll(async () => {
    https = await startHttpsAppliance('watch');
    ({ server, url } = https);
    // Pinned out of band: read on the appliance itself, not from the network it is watched on.
    const appliance = server.appliance;
    if (appliance === undefined) throw new Error('the appliance did not start');
    key = (await appliance.audit.verifier()).noteVerifierKey;
    tlsArgs = ['--url', url, '--cacert', join(https.rig.tls, 'server-ca.pem')];
  }, 180_000);

  afterAll(async () => {
    await https?.close();
  });

  it('appended between visits (policy reloads, audited): each visit proves consistency', async () => {
    const appliance = server?.appliance;
    if (appliance === undefined || https === undefined) throw new Error('no appliance');
    const state = join(https.rig.dir, 'witness.json');
    const visit = (): Promise<Result> =>
      grantor(['audit', 'watch', '--once', '--state', state, '--verifier', key, ...tlsArgs]);
    const first = await visit();
    expect(first.err).toBe('');
    expect(first.code).toBe(0);
    const size = (await appliance.audit.checkpoint({})).treeSize;
    await appliance.reloadPolicy('auditor-test');
    await appliance.reloadPolicy('auditor-test');
    const next = (await appliance.audit.checkpoint({})).treeSize;
    expect(next).toBeGreaterThan(size);
    const second = await visit();
    expect(second.err).toBe('');
    expect(second.code).toBe(0);
    expect(second.out).toContain(`size ${size} -> ${next}: consistency proof verified`);
  }, 120_000);

  it('loop mode: visits every interval, proves growth, stops cleanly on SIGTERM', async () => {
    const appliance = server?.appliance;
    if (appliance === undefined || https === undefined) throw new Error('no appliance');
    const state = join(https.rig.dir, 'loop.json');
    const child = watchLoop(state, key, tlsArgs);
    await child.waitFor(/first visit/);
    await appliance.reloadPolicy('auditor-test');
    await child.waitFor(/ -> \d+: consistency proof verified/);
    child.kill('SIGTERM');
    expect(await child.exit).toBe(0);
    expect(child.lines.filter((l) => l.includes('ALARM'))).toEqual([]);
  }, 120_000);
});

describe('loop mode alarms', () => {
  it('exits with the alarm code when the log it watches turns out forked', async () => {
    const state = join(work, 'loop-fork.json');
    const front = await startProxy(a.url);
    try {
      const child = watchLoop(state, KEY, ['--url', front.url]);
      await child.waitFor(/first visit/);
      // The address now answers with the other history (same key, same origin).
      await appendEach(b, 1, 7000);
      front.target = b.url;
      expect(await child.exit).toBeGreaterThanOrEqual(12);
      expect(
        child.lines.some((l) =>
          /ALARM (proof_invalid|tree_shrunk|root_mismatch|anchor_regressed)/.test(l),
        ),
      ).toBe(true);
    } finally {
      await front.close();
    }
  }, 120_000);
});

describe('grantor audit watch across a log period switch', () => {
  const switchState = (): string => join(work, 'switch.json');
  const forkState = (): string => join(work, 'switch-fork.json');

  it('follows a clean switch: the watched period ended consistently, its link is leaf 0', async () => {
    await appendEach(a, 1, 8000);
    const first = await watchOnce(a.url, switchState());
    expect(first.code, first.err).toBe(0);
    // The old period grows after the visit and before the switch: proved consistent too.
    await appendEach(a, 2, 8100);
    const started = await a.audit.startPeriod('olga');
    expect(started.period).toBe(1);
    await appendEach(a, 2, 8200);
    // The state written before the switch (format grantor-audit-watch/1) reads and is followed.
    const followed = await watchOnce(a.url, switchState());
    expect(followed.err).toBe('');
    expect(followed.code).toBe(0);
    expect(followed.out).toContain(
      `ok ${ORIGIN}/period-1 size 3: followed a log period switch from ${ORIGIN} (ended at size`,
    );
    const saved = JSON.parse(await readFile(switchState(), 'utf8')) as Record<string, unknown>;
    expect(Object.keys(saved).sort()).toEqual(['format', 'note', 'verifiedAt']);
    expect(saved.note).toMatch(new RegExp(`^${ORIGIN}/period-1\\n3\\n`));
    // Then the new period is watched as any log.
    await appendEach(a, 1, 8300);
    const grew = await watchOnce(a.url, switchState());
    expect(grew.code, grew.err).toBe(0);
    expect(grew.out).toContain(`ok ${ORIGIN}/period-1 size 3 -> 4: consistency proof verified`);
  }, 60_000);

  const expectLinkAlarm = async (r: Result, state: string, kept: string): Promise<unknown> => {
    expect(r.code, r.err).toBe(17);
    expect(r.err).toMatch(/audit watch: ALARM period_link_mismatch \(exit 17\)/);
    expect(await readFile(state, 'utf8')).toBe(kept);
    const file = (await alarms(state)).find((f) => r.err.includes(f));
    expect(file).toBeDefined();
    const evidence = JSON.parse(await readFile(join(work, file ?? ''), 'utf8')) as {
      alarm: string;
      proof: { link?: unknown };
    };
    expect(evidence.alarm).toBe('period_link_mismatch');
    return evidence.proof.link;
  };

  it('a forged link naming another root of the watched period: period_link_mismatch (17)', async () => {
    const first = await watchOnce(b.url, forkState());
    expect(first.code, first.err).toBe(0);
    const kept = await readFile(forkState(), 'utf8');
    await b.audit.startPeriod('olga');
    await appendEach(b, 1, 9000);
    const front = await startProxy(b.url);
    try {
      front.rewrite = (path, body) => {
        if (path !== '/v1/audit/periods/1/link') return body;
        const { hash: _hash, ...entry } = body.entry as AuditEntry;
        const forged = {
          ...entry,
          facts: { ...(entry.facts as PeriodStartedFacts), previousRoot: 'ab'.repeat(32) },
        };
        return { ...body, entry: { ...forged, hash: entryHash(forged) } };
      };
      const r = await watchOnce(front.url, forkState());
      const link = (await expectLinkAlarm(r, forkState(), kept)) as AuditEntry;
      expect(r.err).toContain('another root or anchor state');
      expect((link.facts as PeriodStartedFacts).previousRoot).toBe('ab'.repeat(32));
      // Untouched, the same switch is followed.
      front.rewrite = (_p, body) => body;
      const ok = await watchOnce(front.url, forkState());
      expect(ok.code, ok.err).toBe(0);
      expect(ok.out).toContain('followed a log period switch');
    } finally {
      await front.close();
    }
  }, 60_000);

  it("another history's switch (same key and origins): period_link_mismatch (17)", async () => {
    // A state of B's first period, then an address answering A's second period: A's link
    // names A's end, which B's verified checkpoint is no prefix of.
    const state = join(work, 'switch-other.json');
    // The alarm file of the last test kept B's period-0 note, as a state would hold it.
    const files = await alarms(forkState());
    const evidence = JSON.parse(await readFile(join(work, files[0] ?? ''), 'utf8')) as {
      verifiedNote: string;
    };
    const old = `${JSON.stringify({ format: WATCH_STATE_FORMAT, note: evidence.verifiedNote, verifiedAt: new Date(0).toISOString() }, null, 1)}\n`;
    await writeFile(state, old);
    const r = await watchOnce(a.url, state);
    await expectLinkAlarm(r, state, old);
  }, 60_000);
});
