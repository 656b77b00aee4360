/**
 * The set-up the audit benches share (bench/audit-export.ts, bench/audit-scale.ts): one
 * swtpm and one SoftHSM2 token, the anchor provisioned as `grantor provision` does it
 * (policy-written NV indices, the write key in the token, every read certified against
 * the pinned AK), and a `LogSpec` that any process can open the same log from. Each figure
 * is measured in a forked probe (bench/audit-probe.ts), so the RSS reported is the
 * measuring process's own, not the process that filled the log.
 */
import { fork } from 'node:child_process';
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
} from 'node:crypto';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { TpmAuditAnchor, provisionTpmAnchor } from '../src/audit/anchor.tpm.js';
import { Pkcs11AnchorKey } from '../src/audit/anchor-key.pkcs11.js';
import type { BundlePolicySet } from '../src/audit/bundle.js';
import type { AuditStore } from '../src/audit/audit-store.port.js';
import type { AuditEvent } from '../src/audit/entry.js';
import { createAudit, provisionAuditStore, type AuditConfig } from '../src/audit/index.js';
import type { AuditService, VerifierInfo } from '../src/audit/service.js';
import { openDatabase, type Database } from '../src/shared/db.level.js';
import { jcsSha256Hex } from '../src/shared/jcs.js';
import { marshalTpmtPublic } from '../src/tpm/marshal/public.js';
import { NativeTpm } from '../src/tpm/tpm.native.js';
import { APPLIANCE_AK_TEMPLATE } from '../src/tpm/templates.js';
import { provisionSimHsm, provisionTpmTemplate, startSimTpm } from '../test/rig/sim.js';

/** Everything a process needs to open the bench's log (plain JSON, sent to the probe). */
export interface LogSpec {
  readonly origin: string;
  readonly dbPath: string;
  readonly tcti: string;
  /** SOFTHSM2_CONF and the token of the anchor write key. */
  readonly hsm: {
    readonly conf: string;
    readonly module: string;
    readonly tokenLabel: string;
    readonly pin: string;
  };
  readonly counterIndex: number;
  readonly extendIndex: number;
  readonly names: { readonly counter: string; readonly extend: string };
  readonly genesis: string;
  /** The indices' authPolicy, hex. */
  readonly writePolicy: string | null;
  /** TPM2B_PUBLIC of the pinned AK, base64. */
  readonly akPublic: string;
  /** The checkpoint key (Ed25519 PKCS#8 DER, base64); the appliance keeps it in the HSM. */
  readonly signerKey: string;
}

/** An open log: the audit service over its own TPM connection, token session and LevelDB. */
export interface OpenLog {
  readonly audit: AuditService;
  close(): Promise<void>;
}

/**
 * The appliance's audit settings (batches of at most 512), without the minimum anchor
 * interval, as bench/audit.ts: the rate measured is what the log and the TPM allow.
 */
export const APPLIANCE_LOG: Omit<AuditConfig, 'origin'> = { minAnchorIntervalMs: 0 };

/** The anchor of `spec` as the appliance configures it (pins, write key, AK). */
export function anchorOf(spec: LogSpec, tpm: NativeTpm, writeKey: Pkcs11AnchorKey): TpmAuditAnchor {
  return new TpmAuditAnchor(tpm, {
    counterIndex: spec.counterIndex,
    extendIndex: spec.extendIndex,
    pinnedNames: spec.names,
    pinnedGenesis: BigInt(spec.genesis),
    akTemplate: marshalTpmtPublic(APPLIANCE_AK_TEMPLATE),
    pinnedAkPublic: Buffer.from(spec.akPublic, 'base64'),
    writeKey,
    ...(spec.writePolicy === null
      ? {}
      : { pinnedWritePolicy: Buffer.from(spec.writePolicy, 'hex') }),
  });
}

/** Runs `use` with the TPM, the token and the database of `spec` open; closes all three. */
export async function withParts<T>(
  spec: LogSpec,
  use: (parts: { tpm: NativeTpm; writeKey: Pkcs11AnchorKey; db: Database }) => Promise<T>,
): Promise<T> {
  process.env.SOFTHSM2_CONF = spec.hsm.conf;
  const tpm = await NativeTpm.open(spec.tcti);
  const writeKey = new Pkcs11AnchorKey({
    modulePath: spec.hsm.module,
    tokenLabel: spec.hsm.tokenLabel,
    pin: spec.hsm.pin,
  });
  try {
    const db = await openDatabase(spec.dbPath);
    try {
      return await use({ tpm, writeKey, db });
    } finally {
      await db.close();
    }
  } finally {
    await writeKey.close();
    await tpm.close();
  }
}

/**
 * Opens the log of `spec` as the appliance does and runs `use` once its start-up check
 * passed (`startedMs`: opening LevelDB, the start-up check and the certified anchor read).
 * `config` changes the batch size for fills.
 */
export function withLog<T>(
  spec: LogSpec,
  use: (
    audit: AuditService,
    startedMs: number,
    db: Database,
    /** `startedMs` split: the TPM, token and LevelDB opened; then `AuditService.ready()`. */
    phases: { readonly openMs: number; readonly readyMs: number },
  ) => Promise<T>,
  config: Omit<AuditConfig, 'origin'> = APPLIANCE_LOG,
  decorateStore?: (store: AuditStore) => AuditStore,
): Promise<T> {
  const t0 = performance.now();
  return withParts(spec, async ({ tpm, writeKey, db }) => {
    const opened = performance.now();
    const privateKey = createPrivateKey({
      key: Buffer.from(spec.signerKey, 'base64'),
      format: 'der',
      type: 'pkcs8',
    });
    const publicKey = createPublicKey(privateKey)
      .export({ format: 'der', type: 'spki' })
      .subarray(-32);
    const audit = createAudit(
      { origin: spec.origin, ...config },
      {
        db,
        anchor: anchorOf(spec, tpm, writeKey),
        ...(decorateStore === undefined ? {} : { decorateStore }),
        signer: {
          keyName: spec.origin,
          publicKey,
          sign: (m: Uint8Array) => Promise.resolve(sign(null, m, privateKey)),
        },
      },
    );
    try {
      const readying = performance.now();
      await audit.ready();
      const done = performance.now();
      return await use(audit, done - t0, db, { openMs: opened - t0, readyMs: done - readying });
    } finally {
      await audit.close();
    }
  });
}

/** A swtpm and a token with one provisioned, empty log; `close()` stops and deletes them. */
export interface AuditRig {
  readonly spec: LogSpec;
  close(): Promise<void>;
}

export async function startAuditRig(root: string, origin: string): Promise<AuditRig> {
  await provisionTpmTemplate(join(root, 'tpm-template'));
  const sim = await startSimTpm(join(root, 'tpm-template'));
  try {
    const hsm = await provisionSimHsm(join(root, 'hsm'), 'grantor-bench');
    process.env.SOFTHSM2_CONF = hsm.conf;
    const writeKey = new Pkcs11AnchorKey(
      { modulePath: hsm.module, tokenLabel: hsm.tokenLabel, pin: hsm.pin },
      { create: true },
    );
    const tpm = await NativeTpm.open(sim.tcti);
    const indices = { counterIndex: 0x01500100, extendIndex: 0x01500101 };
    let spec: LogSpec;
    try {
      const pin = await provisionTpmAnchor(tpm, indices, { writeKey });
      const akPublic = await new TpmAuditAnchor(tpm, {
        ...indices,
        pinnedNames: pin.names,
        akTemplate: marshalTpmtPublic(APPLIANCE_AK_TEMPLATE),
      }).akPublic();
      if (akPublic === undefined) throw new Error('the swtpm gave no AK');
      spec = {
        origin,
        dbPath: join(root, 'db'),
        tcti: sim.tcti,
        hsm: { conf: hsm.conf, module: hsm.module, tokenLabel: hsm.tokenLabel, pin: hsm.pin },
        ...indices,
        names: pin.names,
        genesis: pin.genesisCounter.toString(),
        writePolicy: pin.writeKey?.policy ?? null,
        akPublic: Buffer.from(akPublic).toString('base64'),
        signerKey: generateKeyPairSync('ed25519')
          .privateKey.export({ format: 'der', type: 'pkcs8' })
          .toString('base64'),
      };
    } finally {
      await writeKey.close();
      await tpm.close();
    }
    // The store step of `grantor provision`.
    await withParts(spec, ({ tpm: t, writeKey: k, db }) =>
      provisionAuditStore({ origin }, { db, anchor: anchorOf(spec, t, k) }),
    );
    return { spec, close: () => sim.destroy() };
  } catch (e) {
    await sim.destroy();
    throw e;
  }
}

/** What the note verifier key and pin of `spec` are, as an auditor holds them. */
export async function verifierOf(spec: LogSpec): Promise<VerifierInfo> {
  return withLog(spec, (audit) => audit.verifier());
}

/** The policy set every bench decision names, as the policy archive keeps it. */
export const BENCH_POLICY_SET: BundlePolicySet = (() => {
  const set = {
    schema:
      'entity Runtime; action "tickets.read" appliesTo { principal: Runtime, resource: Ticket };',
    policies: {
      'allow-support-read': 'permit(principal, action == Action::"tickets.read", resource);',
      'forbid-after-hours': 'forbid(principal, action, resource) when { context.afterHours };',
    },
  };
  return { hash: jcsSha256Hex(set), ...set };
})();
const POLICY_HASH = BENCH_POLICY_SET.hash;

/**
 * The k-th grant decision as the grant pipeline writes it (src/grants/pipeline.ts
 * `#issue`): typed facts, `pol:` and the matched policy as reasons, the digest of the
 * request body and the body itself, which the log keeps by that digest; one in five a
 * deny. Every request is distinct, as real ones are (request id, resource, times).
 */
export function decisionEvent(k: number): AuditEvent {
  const runtime = `rt_bench${(k % 97).toString().padStart(4, '0')}`;
  const allow = k % 5 !== 0;
  // Unique per request like the pipeline's random ids, derived from k (one hash, not two
  // CSPRNG calls: the fill is CPU-bound and this is the bench's share of it).
  const unique = createHash('sha256').update(`bench ${k}`).digest();
  const parametersDigest = unique.toString('hex');
  const requestId = `req-${k}-${unique.subarray(0, 6).toString('hex')}`;
  const body = JSON.stringify({
    action: 'tickets.read',
    audience: 'gw_tickets',
    issuedAt: new Date(1_795_000_000_000 + k).toISOString(),
    parametersDigest,
    proof: { mode: 'session' },
    requestId,
    resource: `ticket:${k}`,
    runtimeId: runtime,
    ttlSeconds: 120,
  });
  const matched = allow ? ['allow-support-read'] : ['forbid-after-hours'];
  return {
    type: 'grant.decision',
    subject: `gr_${unique.subarray(8, 24).toString('base64url')}`,
    decision: allow ? 'allow' : 'deny',
    reasons: [`pol:${POLICY_HASH}`, ...matched],
    digest: createHash('sha256').update(body).digest('hex'),
    body,
    facts: {
      runtime,
      action: 'tickets.read',
      resource: `ticket:${k}`,
      audience: 'gw_tickets',
      parent: null,
      requestId,
      parametersDigest,
      proofMode: 'session',
      attestationId: `at_${(k % 97).toString().padStart(4, '0')}`,
      policyHash: POLICY_HASH,
      matchedPolicies: matched,
      keyId: allow ? 'grant-bench-1' : null,
      expiresAt: allow ? new Date(1_795_000_120_000 + k).toISOString() : null,
    },
  };
}

/**
 * Fills the log of `spec` from its size up to `target` entries through the real append
 * path (entries, facts, index terms, bodies and tiles in one synced batch, then the TPM
 * anchor), in batches of `fillBatch`, or with `bulk` (bench/audit-fill.ts `directFill`:
 * the same records written directly); the last `tail` entries go through the real path in
 * the appliance's own batches (at most 512), so a start-up check re-hashes a batch of the
 * usual size. With `until` (a Date.now() time) the bulk part stops there and the log ends
 * smaller than `target`. Resolves with the size reached and the fill rate (entries per
 * second).
 */
export async function fillLog(
  spec: LogSpec,
  target: number,
  options: {
    readonly fillBatch: number;
    readonly tail: number;
    readonly until?: number;
    readonly progress?: (n: number) => void;
    readonly bulk?: BulkFill;
  },
): Promise<{ size: number; rate: number }> {
  const t0 = performance.now();
  let first: number | undefined;
  let size = 0;
  const upTo = Math.max(0, target - options.tail);
  const { bulk } = options;
  const run = async (audit: AuditService, upTo: number, window: number): Promise<void> => {
    let k = audit.treeSize() ?? 0;
    first ??= k;
    // Two windows in flight: one is committed while the next fills the queue.
    let pending: Promise<unknown> = Promise.resolve();
    while (k < upTo && Date.now() < (options.until ?? Infinity)) {
      const n = Math.min(window, upTo - k);
      const chunk = Promise.all(
        Array.from({ length: n }, (_, i) => audit.append(decisionEvent(k + i))),
      );
      k += n;
      await pending;
      pending = chunk;
      options.progress?.(k);
    }
    await pending;
    size = k;
  };
  if (bulk === undefined) {
    await withLog(spec, (audit) => run(audit, upTo, options.fillBatch), {
      ...APPLIANCE_LOG,
      maxBatchSize: options.fillBatch,
    });
  } else {
    first = await withLog(spec, (audit) => Promise.resolve(audit.treeSize() ?? 0));
    size = (
      await bulk(spec, upTo, {
        ...(options.until === undefined ? {} : { until: options.until }),
        ...(options.progress === undefined ? {} : { progress: options.progress }),
      })
    ).size;
  }
  const end = Math.min(target, size + options.tail);
  await withLog(spec, async (audit) => {
    const k = audit.treeSize() ?? 0;
    await Promise.all(
      Array.from({ length: end - k }, (_, i) => audit.append(decisionEvent(k + i))),
    );
    size = end;
  });
  return { size, rate: (size - (first ?? size)) / ((performance.now() - t0) / 1000) };
}

/** A fill of the bulk part that writes the store directly (bench/audit-fill.ts). */
export type BulkFill = (
  spec: LogSpec,
  target: number,
  options: { readonly until?: number; readonly progress?: (size: number) => void },
) => Promise<{ size: number }>;

/**
 * One synced LevelDB batch of one put of `value` (by default a grant decision's size), as
 * fast as they go for `seconds`: the baseline of the append rates (bench/audit.ts too).
 */
export async function rawSyncedBatchRate(
  path: string,
  seconds: number,
  value = JSON.stringify(decisionEvent(0)),
): Promise<number> {
  const db = await openDatabase(path);
  let n = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  while (performance.now() < end) {
    await db.batch([{ type: 'put', key: `k${n}`, value }], { sync: true });
    n++;
  }
  const rate = n / ((performance.now() - start) / 1000);
  await db.close();
  return rate;
}

/** Runs one job in a forked probe process (bench/audit-probe.ts) and returns its answer. */
export function probe<T>(job: object): Promise<T> {
  const child = fork(fileURLToPath(new URL('./audit-probe.ts', import.meta.url)), [], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise<T>((resolve, reject) => {
    let answer: { ok: true; result: T } | { ok: false; error: string } | undefined;
    child.on('message', (m: { ok: true; result: T } | { ok: false; error: string }) => {
      answer = m;
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (answer === undefined) reject(new Error(`the probe exited (${code}) without an answer`));
      else if (answer.ok) resolve(answer.result);
      else reject(new Error(`the probe failed: ${answer.error}`));
    });
    child.send(job);
  });
}

/** `value / base`, printed with two decimals (`n/a` when the base is 0 or missing). */
export function ratio(value: number, base: number | undefined): string {
  if (base === undefined || !(base > 0) || !Number.isFinite(value)) return 'n/a';
  return (value / base).toFixed(2);
}

/**
 * The machine-readable summary line a bench ends with: `SUMMARY <bench> key=value ...`,
 * numbers rounded to three significant digits, one line for scripts to grep.
 */
export function summaryLine(
  bench: string,
  figures: Readonly<Record<string, number | string>>,
): string {
  const parts = Object.entries(figures).map(([k, v]) => {
    const text =
      typeof v === 'number'
        ? Number.isFinite(v)
          ? Number(v.toPrecision(3)).toString()
          : 'n/a'
        : v;
    return `${k}=${text}`;
  });
  return `SUMMARY ${bench} ${parts.join(' ')}`;
}

/** Megabytes, one decimal. */
export const mb = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1);
