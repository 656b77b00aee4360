/**
 * The live evidence bundle (`grantor-audit-bundle/1`, docs/audit.md "Evidence bundles"):
 * NDJSON, one typed record per line, written while the appliance serves. A signed (and
 * TPM-certified) checkpoint is taken first; everything after it is read relative to that
 * checkpoint's size, page by page, so memory stays bounded whatever the range.
 *
 * Order: header, checkpoint, frontier, batches ending at or before `from`, then each entry
 * followed by its request body, the policy sets it names for the first time and the batch
 * that ends with it, then the batches after `to`, the consistency proofs (`to` → checkpoint,
 * `since` → checkpoint) and an end record with the counts. The verifier is verify-bundle.ts.
 */
import { randomBytes } from 'node:crypto';
import { frontierFromInclusion } from './compact-range.js';
import type { AuditEntry } from './entry.js';
import { PERIOD_STARTED } from './periods.js';
import { AuditNotFoundError, AuditQueryInvalidError, AuditExportRangeError } from './errors.js';
import type { AuditService, BatchBoundary, LogService, SignedCheckpoint } from './service.js';

export const BUNDLE_FORMAT = 'grantor-audit-bundle/1';
/** Most entries one bundle (one call) may cover, unless configured otherwise. */
export const DEFAULT_MAX_BUNDLE_ENTRIES = 100_000;
const PAGE = 1000;

/** A policy set as the bundle carries it (the policy archive's record). */
export interface BundlePolicySet {
  readonly hash: string;
  readonly schema: string;
  readonly policies: Readonly<Record<string, string>>;
}

export type BundleRecord =
  | {
      readonly type: 'header';
      readonly format: typeof BUNDLE_FORMAT;
      readonly origin: string;
      readonly from: number;
      readonly to: number;
      readonly treeSize: number;
      readonly since: number | null;
      readonly nonce: string | null;
      /**
       * A frozen period's bundle: how many later periods' `successor` records follow the
       * checkpoint, down to the current (NV-certified) one. Absent for the current period.
       */
      readonly successors?: number;
    }
  | ({ readonly type: 'checkpoint' } & SignedCheckpoint)
  | {
      readonly type: 'successor';
      readonly period: number;
      /** That period's checkpoint: its final one while frozen, NV-certified for the last. */
      readonly checkpoint: SignedCheckpoint;
      /** Its entry 0, the link naming the period before it's end. */
      readonly link: AuditEntry;
      /** The inclusion path of the link, leaf 0, in that checkpoint's tree. */
      readonly path: readonly string[];
    }
  | ({ readonly type: 'successor_batch' } & BatchBoundary)
  | { readonly type: 'frontier'; readonly size: number; readonly hashes: readonly string[] }
  | { readonly type: 'link'; readonly entry: AuditEntry; readonly path: readonly string[] }
  | ({ readonly type: 'batch' } & BatchBoundary)
  | { readonly type: 'entry'; readonly entry: AuditEntry }
  | { readonly type: 'body'; readonly digest: string; readonly body: string }
  | ({ readonly type: 'policy' } & BundlePolicySet)
  | {
      readonly type: 'consistency';
      readonly of: 'range' | 'since';
      readonly from: number;
      readonly to: number;
      readonly path: readonly string[];
    }
  | {
      readonly type: 'end';
      readonly entries: number;
      readonly bodies: number;
      readonly policies: number;
      readonly batches: number;
    };

export interface BundleRequest {
  readonly from?: number;
  readonly to?: number;
  readonly since?: number;
  /** The auditor's nonce (1-32 bytes), certified by NV_Certify; random when absent. */
  readonly nonce?: Buffer;
  /** A log period (default the current one); a frozen one carries its chain to the current. */
  readonly period?: number;
}

export interface BundleSources {
  readonly audit: AuditService;
  /** A set from the policy archive (checked against its hash), or undefined. */
  readonly policySet: (hash: string) => Promise<BundlePolicySet | undefined>;
  readonly maxEntries?: number;
}

/** Entry types whose request body is kept by their digest (docs/protocol.md §4.1). */
const BODY_TYPES = new Set(['grant.decision', 'grant.refused', 'grant.issue_failed']);
const HASH = /^[0-9a-f]{64}$/;

/** The policy set hashes an entry names: its facts' policyHash, a `pol:` reason, a reload. */
export function policyHashesOf(entry: AuditEntry): string[] {
  const out = new Set<string>();
  const fact = (entry.facts as Readonly<Record<string, unknown>> | undefined)?.policyHash;
  if (typeof fact === 'string' && HASH.test(fact)) out.add(fact);
  const first = entry.reasons?.[0];
  if (entry.type === 'grant.decision' && first?.startsWith('pol:') === true) {
    const h = first.slice(4);
    if (HASH.test(h)) out.add(h);
  }
  if (entry.type === 'policy.reloaded' && HASH.test(entry.subject)) out.add(entry.subject);
  return [...out];
}

/** Whether an entry's body may be kept under its digest. */
export function keepsBody(entry: AuditEntry): boolean {
  return BODY_TYPES.has(entry.type) && HASH.test(entry.digest);
}

const line = (r: BundleRecord): string => `${JSON.stringify(r)}\n`;

/** Batch records in index order, one page in memory at a time. */
async function* batchesOf(audit: LogService, upTo: number): AsyncGenerator<BatchBoundary> {
  let index = 0;
  for (;;) {
    const page = await audit.batches(index, PAGE);
    for (const b of page) {
      if (b.size > upTo) return;
      yield b;
      if (b.size === upTo) return;
    }
    if (page.length === 0) return;
    index += page.length;
  }
}

/**
 * Checks the request and takes the checkpoint (so a refusal comes before any byte is
 * sent), then returns the bundle's lines. A failure while streaming ends the stream
 * without its end record: the verifier calls such a bundle truncated.
 */
export async function openBundle(
  sources: BundleSources,
  request: BundleRequest,
): Promise<{ readonly header: BundleRecord; lines(): AsyncGenerator<string> }> {
  const { audit } = sources;
  const max = sources.maxEntries ?? DEFAULT_MAX_BUNDLE_ENTRIES;
  const verifier = await audit.verifier();
  const nonce = request.nonce ?? (verifier.akPublic === undefined ? undefined : randomBytes(32));
  const chain = await periodChain(audit, request.period, nonce);
  const log: LogService = chain?.log ?? audit;
  const checkpoint =
    chain?.checkpoint ?? (await audit.checkpoint(nonce === undefined ? {} : { nonce }));
  const size = checkpoint.treeSize;
  const from = request.from ?? 0;
  const to = request.to ?? size;
  if (to > size) {
    throw new AuditQueryInvalidError(`to ${to} is beyond the checkpoint (size ${size})`, 'to');
  }
  if (from > to || (from === to && size > 0)) {
    throw new AuditQueryInvalidError('from must be before to', 'from');
  }
  if (to - from > max) {
    throw new AuditExportRangeError(
      `${to - from} entries asked; one bundle covers at most ${max}: export several ranges`,
      max,
    );
  }
  const since = request.since;
  if (since !== undefined && (since < 1 || since > size)) {
    throw new AuditQueryInvalidError(`since must be 1 to ${size}`, 'since');
  }
  const certified = chain?.successors.at(-1)?.checkpoint ?? checkpoint;
  const header: BundleRecord = {
    type: 'header',
    format: BUNDLE_FORMAT,
    origin: checkpoint.origin,
    from,
    to,
    treeSize: size,
    since: since ?? null,
    nonce: certified.nonce ?? null,
    ...(chain === undefined ? {} : { successors: chain.successors.length }),
  };
  async function* lines(): AsyncGenerator<string> {
    const counts = { entries: 0, bodies: 0, policies: 0, batches: 0 };
    yield line(header);
    yield line({ type: 'checkpoint', ...checkpoint });
    for (const s of chain?.successors ?? []) {
      const { service, ...record } = s;
      yield line({ type: 'successor', ...record });
      for await (const b of batchesOf(service, s.checkpoint.treeSize)) {
        yield line({ type: 'successor_batch', index: b.index, size: b.size, root: b.root });
      }
    }
    const frontier =
      from === 0
        ? []
        : frontierFromInclusion(
            from,
            to,
            (await log.inclusionProof(from, to)).path.map((h) => Buffer.from(h, 'hex')),
          );
    yield line({ type: 'frontier', size: from, hashes: frontier.map((h) => h.toString('hex')) });
    // A later log period: its link entry, proved as leaf 0, starts its anchor chain.
    const [first] = size === 0 ? [] : await log.entries(0, 1);
    if (first !== undefined && first.type === PERIOD_STARTED) {
      const path = (await log.inclusionProof(0, size)).path;
      yield line({ type: 'link', entry: first, path: [...path] });
    }
    const batches = size === 0 ? undefined : batchesOf(log, size);
    const following = async (): Promise<BatchBoundary | undefined> => {
      const r = await batches?.next();
      return r === undefined || r.done === true ? undefined : r.value;
    };
    let next = await following();
    const batch = async (b: BatchBoundary): Promise<string> => {
      counts.batches += 1;
      next = await following();
      return line({ type: 'batch', index: b.index, size: b.size, root: b.root });
    };
    while (next !== undefined && next.size <= from) yield await batch(next);
    const sent = new Set<string>();
    for (let seq = from; seq < to;) {
      for (const entry of await log.entries(seq, Math.min(PAGE, to - seq))) {
        counts.entries += 1;
        yield line({ type: 'entry', entry });
        if (keepsBody(entry)) {
          const body = await log.body(entry.digest).catch((e: unknown) => {
            if (e instanceof AuditNotFoundError) return undefined;
            throw e;
          });
          if (body !== undefined) {
            counts.bodies += 1;
            yield line({ type: 'body', digest: entry.digest, body });
          }
        }
        for (const hash of policyHashesOf(entry)) {
          if (sent.has(hash)) continue;
          sent.add(hash);
          const set = await sources.policySet(hash);
          if (set === undefined) continue;
          counts.policies += 1;
          yield line({ type: 'policy', hash, schema: set.schema, policies: set.policies });
        }
        seq = entry.seq + 1;
        while (next !== undefined && next.size === seq) yield await batch(next);
      }
    }
    while (next !== undefined) yield await batch(next);
    if (to < size) {
      const path = (await log.consistencyProof(to, size)).path;
      yield line({ type: 'consistency', of: 'range', from: to, to: size, path: [...path] });
    }
    if (since !== undefined) {
      const path = (await log.consistencyProof(since, size)).path;
      yield line({ type: 'consistency', of: 'since', from: since, to: size, path: [...path] });
    }
    yield line({ type: 'end', ...counts });
  }
  return { header, lines };
}

interface Successor {
  readonly period: number;
  readonly checkpoint: SignedCheckpoint;
  readonly link: AuditEntry;
  readonly path: readonly string[];
  readonly service: LogService;
}

/**
 * A frozen period's bundle: its service and final checkpoint, and each later period's
 * checkpoint (the current one certified over `nonce`), link entry and link proof, which
 * certify the frozen end (docs/audit.md "Exporting a frozen period"). Undefined for the
 * current period. The current checkpoint is taken last, so a switch on the way makes it
 * a frozen period's and the export fails rather than send an uncertified chain.
 */
async function periodChain(
  audit: AuditService,
  period: number | undefined,
  nonce: Buffer | undefined,
): Promise<{ log: LogService; checkpoint: SignedCheckpoint; successors: Successor[] } | undefined> {
  if (period === undefined) return undefined;
  const log = await audit.inPeriod(period);
  const current = audit.currentPeriod();
  if (current === undefined || period === current) return undefined;
  const checkpoint = await log.checkpoint();
  const successors: Successor[] = [];
  for (let p = period + 1; p <= current; p++) {
    const service = await audit.inPeriod(p);
    const cp =
      p === current
        ? await service.checkpoint(nonce === undefined ? {} : { nonce })
        : await service.checkpoint();
    const [link] = await service.entries(0, 1);
    if (link?.type !== PERIOD_STARTED) {
      throw new AuditNotFoundError(`log period ${p} has no link entry`);
    }
    const { path } = await service.inclusionProof(0, cp.treeSize);
    successors.push({ period: p, checkpoint: cp, link, path: [...path], service });
  }
  return { log, checkpoint, successors };
}
