/**
 * Faults during appends, on the real adapters: the TPM (swtpm) stopped and the store
 * failing. Appends are refused with audit_unavailable while the fault lasts, nothing is
 * acknowledged that is not durable and anchored, and the log recovers once it clears.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TpmAuditAnchor } from '../../src/audit/anchor.tpm.js';
import type { TpmAnchorConfig } from '../../src/audit/anchor.tpm.js';
import { LevelAuditStore } from '../../src/audit/audit-store.level.js';
import type { AuditStore } from '../../src/audit/audit-store.port.js';
import type { Appended } from '../../src/audit/log.js';
import { AuditLog } from '../../src/audit/log.js';
import { openDatabase, type Database } from '../../src/shared/db.level.js';
import { NativeTpm } from '../../src/tpm/tpm.native.js';
import { freePortPair, startSimTpm, type SimTpm } from '../rig/sim.js';
import {
  LOG_OPTIONS,
  event,
  logAt,
  provisionAnchor,
  storeWith,
  tempDir,
  tearDownTpm,
} from './helpers.js';

let sim: SimTpm;
let tpm: NativeTpm;
let config: TpmAnchorConfig;
let work: string;
let link: TpmLink;

/**
 * A TCP hop between the adapter and swtpm that the test can cut: "TPM stopped" without
 * giving up swtpm's port (another test file could take it before a restart).
 */
interface TpmLink {
  readonly tcti: string;
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

function forward(
  listenPort: number,
  port: number,
  state: { up: boolean; sockets: Set<Socket> },
): Promise<Server> {
  const server = createServer((client) => {
    if (!state.up) {
      client.destroy();
      return;
    }
    const upstream = createConnection({ host: '127.0.0.1', port });
    for (const s of [client, upstream]) {
      state.sockets.add(s);
      s.on('close', () => {
        state.sockets.delete(s);
      });
      s.on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
  });
  return new Promise<Server>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listenPort, '127.0.0.1', () => {
      resolve(server);
    });
  });
}

/** Both swtpm ports (commands on P, control on P+1) behind a pair of forwarders. */
async function tpmLink(port: number): Promise<TpmLink> {
  const state = { up: true, sockets: new Set<Socket>() };
  for (let attempt = 0; ; attempt++) {
    const listen = await freePortPair();
    try {
      const servers = [await forward(listen, port, state)];
      try {
        servers.push(await forward(listen + 1, port + 1, state));
      } catch (err) {
        servers[0]?.close();
        throw err;
      }
      return {
        tcti: `swtpm:host=127.0.0.1,port=${listen}`,
        cut: () => {
          state.up = false;
          for (const s of state.sockets) s.destroy();
        },
        restore: () => {
          state.up = true;
        },
        close: async () => {
          for (const s of state.sockets) s.destroy();
          await Promise.all(
            servers.map(
              (srv) =>
                new Promise<void>((resolve) => {
                  srv.close(() => {
                    resolve();
                  });
                }),
            ),
          );
        },
      };
    } catch (err) {
      if (attempt >= 10) throw err;
    }
  }
}

beforeAll(async () => {
  sim = await startSimTpm();
  link = await tpmLink(sim.port);
  tpm = await NativeTpm.open(link.tcti);
  config = await provisionAnchor(tpm);
  work = await tempDir('grantor-audit-fault-');
});

afterAll(() =>
  tearDownTpm(
    async () => {
      await tpm.close();
      await link.close();
    },
    [sim],
    work,
  ),
);

type FaultMode = 'ok' | 'fail' | 'fail-after-write';

/** A LevelDB store whose writes can be made to fail, before or after reaching the disk. */
function flakyStore(db: Database): AuditStore & { mode: FaultMode } {
  const inner = new LevelAuditStore(db);
  const store: AuditStore & { mode: FaultMode } = {
    ...storeWith(inner, {
      appendBatch: async (write) => {
        if (store.mode === 'fail') throw new Error('EIO: simulated disk failure');
        await inner.appendBatch(write);
        if (store.mode === 'fail-after-write')
          throw new Error('EIO: simulated failure after write');
      },
    }),
    mode: 'ok',
  };
  return store;
}

interface Outcome {
  readonly acked: Appended[];
  readonly refusedCodes: Set<string>;
}

/** Appends from `workers` loops until `stop()`; collects acks and refusal codes. */
function load(log: AuditLog, workers: number): { stop(): Promise<Outcome>; refusals(): number } {
  let running = true;
  let n = 0;
  let refusals = 0;
  const acked: Appended[] = [];
  const refusedCodes = new Set<string>();
  const loops = Array.from({ length: workers }, async () => {
    while (running) {
      try {
        acked.push(await log.append(event(n++)));
      } catch (err) {
        refusedCodes.add((err as { code?: string }).code ?? 'none');
        refusals += 1;
        await new Promise((r) => setTimeout(r, 5));
      }
    }
  });
  return {
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return { acked, refusedCodes };
    },
    refusals: () => refusals,
  };
}

const until = async (cond: () => boolean): Promise<void> => {
  for (let i = 0; i < 2000 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
};

/** Every acknowledged append is in a freshly opened log, which matches the TPM. */
async function expectDurable(
  path: string,
  acked: readonly Appended[],
  anchorConfig: TpmAnchorConfig = config,
): Promise<void> {
  const reopened = await logAt(path, tpm, anchorConfig);
  await reopened.log.open();
  const size = reopened.log.head().size;
  const entries = [];
  while (entries.length < size) entries.push(...(await reopened.log.entries(entries.length, 1000)));
  for (const a of acked) expect(entries[a.seq]?.hash, `seq ${a.seq}`).toBe(a.hash);
  await reopened.close();
}

describe('faults during appends', () => {
  it('TPM unreachable: appends refused with audit_unavailable, acks durable, recovers on restart', async () => {
    const path = join(work, 'tpm-stop');
    const opened = await logAt(path, tpm, config);
    await opened.log.provision();
    await opened.log.open();
    const before = load(opened.log, 8);
    await until(() => opened.log.stats().appends > 50);
    link.cut();
    const during = await before.stop();
    // While the TPM is down nothing is acknowledged.
    const acksAtStop = opened.log.stats().appends;
    await expect(opened.log.append(event(10_000))).rejects.toMatchObject({
      code: 'audit_unavailable',
    });
    expect(opened.log.stats().appends).toBe(acksAtStop);
    link.restore();
    // The facade reconnects; the log reconciles (the interrupted batch included) and serves.
    let recovered: Appended | undefined;
    for (let i = 0; i < 50 && recovered === undefined; i++) {
      recovered = await opened.log.append(event(20_000 + i)).catch(() => undefined);
      if (recovered === undefined) await new Promise((r) => setTimeout(r, 50));
    }
    expect(recovered).toBeDefined();
    const after = load(opened.log, 8);
    await until(() => opened.log.stats().appends > acksAtStop + 20);
    const resumed = await after.stop();
    await opened.close();
    expect(during.acked.length).toBeGreaterThan(0);
    expect(resumed.refusedCodes.size).toBe(0);
    await expectDurable(path, [...during.acked, recovered!, ...resumed.acked]);
  });

  it.each(['fail', 'fail-after-write'] as const)(
    'store failing (%s): refused with audit_unavailable, acks durable, recovers',
    async (mode) => {
      const path = join(work, `store-${mode}`);
      // A fresh pair of anchor indices for this store.
      const base = mode === 'fail' ? 0x01500030 : 0x01500040;
      const anchorConfig = await provisionAnchor(tpm, {
        counterIndex: base,
        extendIndex: base + 1,
      });
      const db = await openDatabase(path);
      const store = flakyStore(db);
      const log = new AuditLog(store, new TpmAuditAnchor(tpm, anchorConfig), LOG_OPTIONS);
      await log.provision();
      await log.open();
      const first = load(log, 8);
      await until(() => log.stats().appends > 30);
      store.mode = mode;
      const acksAtFault = log.stats().appends;
      // Until every loop has been refused at least once (not a fixed time: on a loaded
      // machine the batch in flight at the fault can outlast any fixed window).
      await until(() => first.refusals() >= 8);
      const faulted = await first.stop();
      expect(faulted.refusedCodes).toEqual(new Set(['audit_unavailable']));
      // At most the batch in flight when the fault began was acknowledged after it.
      expect(log.stats().appends - acksAtFault).toBeLessThanOrEqual(LOG_OPTIONS.maxBatchSize);
      await expect(log.append(event(99_999))).rejects.toMatchObject({ code: 'audit_unavailable' });
      store.mode = 'ok';
      const recovered = await log.append(event(100_000));
      const more = load(log, 8);
      await until(() => log.stats().appends > acksAtFault + 20);
      const resumed = await more.stop();
      expect(resumed.refusedCodes.size).toBe(0);
      await log.close();
      await db.close();
      await expectDurable(path, [...faulted.acked, recovered, ...resumed.acked], anchorConfig);
    },
  );
});
