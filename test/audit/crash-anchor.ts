/**
 * What the crash children (crash-child.ts, period-crash-child.ts) open the same way: their
 * environment and stdout protocol, the database and TPM, the real TpmAuditAnchor configured
 * from CRASH_ANCHOR (JSON) and the same anchor with a hook right after each extend and
 * increment, the store with a hook right after each durable batch (where a child SIGKILLs
 * itself at an aimed crash point), and a logger that keeps what the start-up check
 * recovered.
 */
import { readFile } from 'node:fs/promises';
import type { AuditAnchor } from '../../src/audit/anchor.port.js';
import { TpmAuditAnchor } from '../../src/audit/anchor.tpm.js';
import type { AuditStore } from '../../src/audit/audit-store.port.js';
import { openDatabase, type Database } from '../../src/shared/db.level.js';
import type { DomainLogger } from '../../src/shared/log.js';
import { NativeTpm } from '../../src/tpm/tpm.native.js';
import { storeWith } from './helpers.js';

export function env(name: string): string {
  const v = process.env[name];
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
}

/** One protocol line on stdout (read by crash-harness.ts). */
export function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** The database at CRASH_DB and the TPM at CRASH_TCTI. */
export async function openCrashTarget(): Promise<{ db: Database; tpm: NativeTpm }> {
  const db = await openDatabase(env('CRASH_DB'));
  return { db, tpm: await NativeTpm.open(env('CRASH_TCTI')) };
}

/** The acknowledged appends of earlier runs (CRASH_ACKS: `key hash` lines). */
export async function readAcks(): Promise<string[][]> {
  return (await readFile(env('CRASH_ACKS'), 'utf8').catch(() => ''))
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split(' '));
}

/** A logger that keeps what the start-up check recovered (`equal`: nothing to complete). */
export function recoveryLogger(): { readonly logger: DomainLogger; recovered: () => string } {
  let recovered = 'equal';
  const logger: DomainLogger = {
    info: () => undefined,
    error: () => undefined,
    warn: (obj) => {
      const o = obj as { event?: string; recovered?: string };
      if (o.event === 'audit_anchor_completed' && o.recovered !== undefined)
        recovered = o.recovered;
    },
  };
  return { logger, recovered: () => recovered };
}

/** The log's store with `afterStored` called right after each batch is durable. */
export function crashStore(afterStored: () => void): (store: AuditStore) => AuditStore {
  return (store) =>
    storeWith(store, {
      appendBatch: async (write) => {
        await store.appendBatch(write);
        afterStored();
      },
    });
}

export interface AnchorHooks {
  readonly afterExtend?: () => void;
  readonly afterIncrement?: () => void;
}

export function crashAnchor(
  tpm: NativeTpm,
  hooks: AnchorHooks,
): { readonly anchor: TpmAuditAnchor; readonly aimed: AuditAnchor } {
  const text = process.env.CRASH_ANCHOR;
  if (text === undefined) throw new Error('CRASH_ANCHOR is not set');
  const config = JSON.parse(text) as {
    counterIndex: number;
    extendIndex: number;
    pinnedNames: { counter: string; extend: string };
    pinnedGenesis: string;
    pinnedAkPublic: string;
    akTemplate: string;
  };
  const anchor = new TpmAuditAnchor(tpm, {
    ...config,
    pinnedGenesis: BigInt(config.pinnedGenesis),
    pinnedAkPublic: Buffer.from(config.pinnedAkPublic, 'base64'),
    akTemplate: Buffer.from(config.akTemplate, 'base64'),
  });
  const aimed: AuditAnchor = {
    genesis: anchor.genesis,
    pinnedNames: anchor.pinnedNames,
    checkPinned: () => anchor.checkPinned(),
    read: () => anchor.read(),
    readAfterWrite: () => anchor.readAfterWrite(),
    extend: async (data) => {
      await anchor.extend(data);
      hooks.afterExtend?.();
    },
    increment: async () => {
      await anchor.increment();
      hooks.afterIncrement?.();
    },
    // The appliance's path: the same hooks, called as each write lands.
    writeBatch: (root, stored, landed) =>
      anchor.writeBatch(root, stored, (write) => {
        landed(write);
        if (write === 'extend') hooks.afterExtend?.();
        else hooks.afterIncrement?.();
      }),
    certify: (q) => anchor.certify(q),
    akPublic: () => anchor.akPublic(),
  };
  return { anchor, aimed };
}
