/**
 * The log monitor behind `grantor audit watch`, as certificate-transparency witnesses watch
 * a log: it keeps the last checkpoint it verified and, at each visit, accepts a new one only
 * when it is signed by a key the auditor pinned and is consistent with the old one (an
 * RFC 9162 consistency proof). Anything else is an alarm with its own class; the state is
 * then left as it was, so the next visit alarms again.
 *
 * Who writes what: the appliance (or whatever answers at its address) writes the checkpoint
 * and the proof, so neither is trusted before the checks; the auditor writes the pinned keys
 * and the state file. The state is the last verified signed note itself, verified again with
 * the pinned keys whenever it is read: a state file edited to forget a larger tree no longer
 * verifies, and a corrupt one is refused, never silently reset.
 *
 * Log periods (periods.ts): when the appliance answers for a later period of the same log,
 * the watcher first proves that the period it watched ended where its link entry says, in a
 * state consistent with the one it verified, and that the link is leaf 0 of the new
 * period's signed tree; then it follows the new period. The state file keeps the same
 * format: it holds the new period's note.
 */
import { constants } from 'node:fs';
import { open, readFile, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import {
  parseCheckpoint,
  verifyNote,
  type CheckpointBody,
  type VerifierKey,
} from './checkpoint.js';
import { rootFromPath } from '../gateway/batch.js';
import { verifyConsistency } from './consistency.js';
import { GENESIS_PREV_HASH, checkLink, isEntryShape, type AuditEntry } from './entry.js';
import { leafHash } from './merkle.js';
import { MAX_PERIOD, endFromLink, type PeriodEnd } from './periods.js';
import {
  NoteMalformedError,
  NoteSignatureError,
  WatchAlarmError,
  WatchStateError,
} from './errors.js';

export const WATCH_STATE_FORMAT = 'grantor-audit-watch/1';

/**
 * What a visit can find wrong with the log. Each is its own exit code of `grantor audit
 * watch` (docs/audit.md "Watching the log"), stable like an error code.
 */
export const WATCH_ALARMS = {
  /** The note is not signed by any pinned key (or its signature does not verify). */
  signature_invalid: 10,
  /** The new checkpoint names another log than the state does. */
  origin_changed: 11,
  /** The new tree is smaller than the one already verified. */
  tree_shrunk: 12,
  /** Same size, another root (or other anchor lines): two histories of one size. */
  root_mismatch: 13,
  /** The consistency proof from the verified size to the new one does not verify. */
  proof_invalid: 14,
  /** The answer is no checkpoint (no note, a note that does not parse). */
  checkpoint_malformed: 15,
  /** The tree grew but the TPM counter line did not move forward. */
  anchor_regressed: 16,
  /**
   * A later log period whose link does not prove the watched period ended consistent with
   * the verified checkpoint (another end, no valid proof, not leaf 0 of the signed tree).
   */
  period_link_mismatch: 17,
} as const;

export type WatchAlarm = keyof typeof WATCH_ALARMS;

/** Exit codes that are not alarms. */
export const WATCH_EXIT = {
  ok: 0,
  /** The visit could not be made (appliance unreachable, an HTTP error): not a verdict. */
  visit_failed: 1,
  usage: 2,
  /** The state file is unreadable, corrupt or not signed by a pinned key: refused. */
  state_invalid: 3,
} as const;

/** The last verified checkpoint, as the state file holds it. */
export interface WatchState {
  readonly note: string;
  readonly checkpoint: CheckpointBody;
  /** RFC 3339: when this note was verified. */
  readonly verifiedAt: string;
}

/** Where a visit reads from: the appliance's public checkpoint, proof and period routes. */
export interface WatchSource {
  /** `GET /v1/audit/checkpoint[?period=]`'s body (untrusted); the current period without one. */
  checkpoint(period?: number): Promise<unknown>;
  /** `GET /v1/audit/proof/consistency?from=&to=[&period=]`'s body (untrusted). */
  consistency(from: number, to: number, period?: number): Promise<unknown>;
  /** `GET /v1/audit/proof/inclusion?period=&seq=&size=`'s body (untrusted). */
  inclusion(period: number, seq: number, size: number): Promise<unknown>;
  /** `GET /v1/audit/periods/{period}/link`'s body (untrusted). */
  link(period: number): Promise<unknown>;
}

export type VisitResult =
  | { readonly kind: 'first'; readonly state: WatchState }
  | { readonly kind: 'unchanged'; readonly state: WatchState }
  | { readonly kind: 'grew'; readonly from: number; readonly state: WatchState }
  | {
      readonly kind: 'switched';
      /** The watched period's origin and the end its successor's link proved. */
      readonly fromOrigin: string;
      readonly end: PeriodEnd;
      readonly state: WatchState;
    };

/**
 * Verify `note` with the pinned keys; returns the signed text. A note with no line of a
 * pinned key, or a pinned key's line that does not verify, is `signature_invalid`.
 */
function verifyWithPinned(note: string, keys: readonly VerifierKey[]): string {
  let last: unknown;
  for (const key of keys) {
    try {
      return verifyNote(note, key);
    } catch (e) {
      if (e instanceof NoteMalformedError) {
        throw new WatchAlarmError('checkpoint_malformed', e.message, { cause: e });
      }
      if (!(e instanceof NoteSignatureError)) throw e;
      last = e;
    }
  }
  throw new WatchAlarmError(
    'signature_invalid',
    `checkpoint not signed by a pinned key (${keys.map((k) => k.name).join(', ')})`,
    { cause: last },
  );
}

function parsedCheckpoint(text: string): CheckpointBody {
  try {
    return parseCheckpoint(text);
  } catch (e) {
    if (e instanceof NoteMalformedError) {
      throw new WatchAlarmError('checkpoint_malformed', e.message, { cause: e });
    }
    throw e;
  }
}

const HEX32 = /^[0-9a-f]{64}$/;

/**
 * A proof answer's path (at most 128 hashes, hex), when each field of `asked` has exactly
 * the value asked for; otherwise undefined.
 */
function answerPath(body: unknown, asked: Readonly<Record<string, number>>): Buffer[] | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const b = body as Record<string, unknown>;
  for (const [field, value] of Object.entries(asked)) if (b[field] !== value) return undefined;
  if (!Array.isArray(b.path) || b.path.length > 128) return undefined;
  const path: Buffer[] = [];
  for (const h of b.path as unknown[]) {
    if (typeof h !== 'string' || !HEX32.test(h)) return undefined;
    path.push(Buffer.from(h, 'hex'));
  }
  return path;
}

/** The proof's path, when the answer is one for exactly (from, to). */
function proofPath(body: unknown, from: number, to: number): Buffer[] | undefined {
  return answerPath(body, { from, to });
}

const PERIOD_SUFFIX = /^(.*)\/period-(\d{1,8})$/;

/**
 * When `next` is a later period of the log whose period `current` is (periods.ts
 * `periodOrigin`: the first period's origin is the log's, period n's `<log>/period-<n>`),
 * the two period numbers; otherwise undefined (another log: `origin_changed`).
 */
export function laterPeriod(
  current: string,
  next: string,
): { readonly from: number; readonly to: number } | undefined {
  const n = PERIOD_SUFFIX.exec(next);
  if (n === null) return undefined;
  const [, base, toText] = n;
  const to = Number(toText);
  if (base === undefined || !Number.isSafeInteger(to) || to > MAX_PERIOD) return undefined;
  let from: number | undefined;
  if (current === base) from = 0;
  else {
    const c = PERIOD_SUFFIX.exec(current);
    if (c?.[1] === base) from = Number(c[2]);
  }
  return from === undefined || to <= from ? undefined : { from, to };
}

/** The signed checkpoint in an answer of the checkpoint route, verified with the pinned keys. */
function signedCheckpoint(
  answer: unknown,
  keys: readonly VerifierKey[],
): { note: string; checkpoint: CheckpointBody } {
  const note =
    typeof answer === 'object' && answer !== null ? (answer as { note?: unknown }).note : undefined;
  if (typeof note !== 'string' || note.length > 64 * 1024) {
    throw new WatchAlarmError('checkpoint_malformed', 'the answer holds no signed note');
  }
  return { note, checkpoint: parsedCheckpoint(verifyWithPinned(note, keys)) };
}

/** The period an answer says it is of (untrusted: it only picks the period a proof is of). */
function answerPeriod(answer: unknown): number | undefined {
  const p =
    typeof answer === 'object' && answer !== null
      ? (answer as { period?: unknown }).period
      : undefined;
  return typeof p === 'number' && Number.isSafeInteger(p) && p >= 0 && p <= MAX_PERIOD
    ? p
    : undefined;
}

/**
 * One switch, from the verified checkpoint `old` of period `period - 1` to the signed
 * checkpoint `next` of period `period`: the link entry of `period` (its hash recomputed)
 * must name an end of the old period that is the verified state or a consistent extension
 * of it, be leaf 0 of `next`'s tree, and `next`'s anchor must run on from that end.
 * Returns the end; any failure is `period_link_mismatch`, with the link and the proofs kept.
 */
async function followSwitch(
  old: CheckpointBody,
  next: CheckpointBody,
  period: number,
  note: string,
  source: WatchSource,
): Promise<PeriodEnd> {
  const kept: Record<string, unknown> = {};
  const fail = (why: string): WatchAlarmError =>
    new WatchAlarmError(
      'period_link_mismatch',
      `log period ${period}'s link does not prove that ${old.origin} (verified at size ${old.size}) ended consistently: ${why}`,
      { evidence: { note, proof: kept } },
    );
  const answer = await source.link(period);
  const entry =
    typeof answer === 'object' && answer !== null
      ? (answer as { entry?: unknown }).entry
      : undefined;
  kept.link = entry ?? null;
  // Shape, seq 0, the first entry's prevHash and its hash recomputed from its content.
  if (!isEntryShape(entry) || checkLink(entry, 0, GENESIS_PREV_HASH) !== undefined) {
    throw fail('the link is not a well-formed first entry');
  }
  const link: AuditEntry = entry;
  const end = endFromLink(link);
  const facts = link.facts as { period?: unknown } | undefined;
  if (end === undefined || facts?.period !== period || end.period !== period - 1) {
    throw fail('the first entry is not the link of this period');
  }
  if (end.origin !== old.origin) throw fail(`the link names the end of ${end.origin}`);
  const endRoot = Buffer.from(end.root, 'hex');
  const endCounter = BigInt(end.counter);
  if (end.size < old.size) throw fail(`the link says it ended at size ${end.size}`);
  if (end.size === old.size) {
    if (
      !endRoot.equals(old.root) ||
      endCounter !== old.counter ||
      !Buffer.from(end.extend, 'hex').equals(old.extendValue)
    ) {
      throw fail(`the link names another root or anchor state at size ${old.size}`);
    }
  } else {
    if (endCounter <= old.counter) {
      throw fail(
        `the old period grew to ${end.size} but nv-counter ${end.counter} is not above ${old.counter}`,
      );
    }
    if (old.size > 0) {
      const proof = await source.consistency(old.size, end.size, period - 1);
      kept.consistency = proof;
      const path = proofPath(proof, old.size, end.size);
      if (path === undefined || !verifyConsistency(old.size, end.size, old.root, endRoot, path)) {
        throw fail(`no valid consistency proof from size ${old.size} to its end ${end.size}`);
      }
    }
  }
  // The link is leaf 0 of the new period's signed tree (RFC 9162 §2.1.3.2).
  const inclusion = await source.inclusion(period, 0, next.size);
  kept.inclusion = inclusion;
  const path = inclusionPath(inclusion, next.size);
  const root =
    path === undefined
      ? undefined
      : rootFromPath(0, next.size, leafHash(Buffer.from(link.hash, 'hex')), path);
  if (root === undefined || !root.equals(next.root)) {
    throw fail(`the link is not leaf 0 of the signed tree of size ${next.size}`);
  }
  // The anchor runs on: the new period's first batch (the link) is counted after the end.
  if (next.counter <= endCounter) {
    throw fail(
      `nv-counter ${next.counter} of the new period is not above the end's ${end.counter}`,
    );
  }
  return end;
}

/** The path of an inclusion proof answer for leaf 0 of a tree of `size`, or undefined. */
function inclusionPath(body: unknown, size: number): Buffer[] | undefined {
  return answerPath(body, { seq: 0, treeSize: size });
}

/**
 * One visit: fetch, verify, compare; the new state on success, a WatchAlarmError on any
 * inconsistency. Nothing is written here (the caller saves the state it returns).
 */
export async function visit(
  previous: WatchState | undefined,
  keys: readonly VerifierKey[],
  source: WatchSource,
  now: () => number,
): Promise<VisitResult> {
  const answer = await source.checkpoint();
  // Copied before the next await: the answer is not read again.
  const { note, checkpoint } = signedCheckpoint(answer, keys);
  const period = answerPeriod(answer);
  const state: WatchState = { note, checkpoint, verifiedAt: new Date(now()).toISOString() };
  if (previous === undefined) return { kind: 'first', state };
  const old = previous.checkpoint;
  if (checkpoint.origin !== old.origin) {
    const step = laterPeriod(old.origin, checkpoint.origin);
    if (step === undefined) {
      throw new WatchAlarmError(
        'origin_changed',
        `checkpoint of ${checkpoint.origin}, the verified one is of ${old.origin}`,
        { evidence: { note } },
      );
    }
    // Period by period: each frozen one's final checkpoint, signed, then the current one.
    let from = old;
    let end: PeriodEnd | undefined;
    for (let p = step.from + 1; p <= step.to; p++) {
      const at =
        p === step.to ? { note, checkpoint } : signedCheckpoint(await source.checkpoint(p), keys);
      // Each step is to the very next period of the same log.
      if (laterPeriod(from.origin, at.checkpoint.origin)?.to !== p) {
        throw new WatchAlarmError(
          'period_link_mismatch',
          `log period ${p} answered a checkpoint of ${at.checkpoint.origin}`,
          { evidence: { note: at.note } },
        );
      }
      end = await followSwitch(from, at.checkpoint, p, at.note, source);
      from = at.checkpoint;
    }
    if (end === undefined) throw new WatchAlarmError('origin_changed', 'no later period');
    return { kind: 'switched', fromOrigin: old.origin, end, state };
  }
  if (checkpoint.size < old.size) {
    throw new WatchAlarmError(
      'tree_shrunk',
      `tree size ${checkpoint.size} is smaller than the verified ${old.size}`,
      { evidence: { note } },
    );
  }
  if (checkpoint.size === old.size) {
    // One size, one history: the root, the counter and the extend value are all determined.
    if (
      !checkpoint.root.equals(old.root) ||
      checkpoint.counter !== old.counter ||
      !checkpoint.extendValue.equals(old.extendValue)
    ) {
      throw new WatchAlarmError(
        'root_mismatch',
        `tree size ${old.size} with another root or anchor than the verified checkpoint`,
        { evidence: { note } },
      );
    }
    return { kind: 'unchanged', state };
  }
  // A larger tree holds at least one more anchored batch: the TPM counter moved forward.
  if (checkpoint.counter <= old.counter) {
    throw new WatchAlarmError(
      'anchor_regressed',
      `tree grew from ${old.size} to ${checkpoint.size} but nv-counter ${checkpoint.counter} is not above ${old.counter}`,
      { evidence: { note } },
    );
  }
  // The empty tree is a prefix of every tree: nothing to prove from size 0.
  if (old.size > 0) {
    const proof = await source.consistency(old.size, checkpoint.size, period);
    const path = proofPath(proof, old.size, checkpoint.size);
    if (
      path === undefined ||
      !verifyConsistency(old.size, checkpoint.size, old.root, checkpoint.root, path)
    ) {
      throw new WatchAlarmError(
        'proof_invalid',
        `no valid consistency proof from size ${old.size} to ${checkpoint.size}`,
        { evidence: { note, proof } },
      );
    }
  }
  return { kind: 'grew', from: old.size, state };
}

const STATE_KEYS = ['format', 'note', 'verifiedAt'] as const;

/** The state file's text (versioned JSON). */
export function formatState(state: WatchState): string {
  return `${JSON.stringify({ format: WATCH_STATE_FORMAT, note: state.note, verifiedAt: state.verifiedAt }, null, 1)}\n`;
}

/**
 * Parse a state file and verify its note again with the pinned keys: a state the auditor's
 * keys do not vouch for is refused (WatchStateError), never reset.
 */
export function parseState(text: string, keys: readonly VerifierKey[]): WatchState {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new WatchStateError('state file is not JSON', { cause: e });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new WatchStateError('state file is not a JSON object');
  }
  const s = parsed as Record<string, unknown>;
  const keysOf = Object.keys(s).sort();
  if (keysOf.join() !== [...STATE_KEYS].sort().join()) {
    throw new WatchStateError(`state file must hold exactly ${STATE_KEYS.join(', ')}`);
  }
  if (s.format !== WATCH_STATE_FORMAT) {
    throw new WatchStateError(`state file format is not ${WATCH_STATE_FORMAT}`);
  }
  if (typeof s.note !== 'string' || typeof s.verifiedAt !== 'string') {
    throw new WatchStateError('state file: note and verifiedAt must be strings');
  }
  if (Number.isNaN(Date.parse(s.verifiedAt))) {
    throw new WatchStateError('state file: verifiedAt is not a time');
  }
  let checkpoint: CheckpointBody;
  try {
    checkpoint = parsedCheckpoint(verifyWithPinned(s.note, keys));
  } catch (e) {
    throw new WatchStateError(
      `state file: its checkpoint does not verify with the pinned keys (${e instanceof Error ? e.message : String(e)}); keep the key that signed it pinned beside a new one`,
      { cause: e },
    );
  }
  return { note: s.note, checkpoint, verifiedAt: s.verifiedAt };
}

/** The state at `path`, or undefined when there is none yet (the first visit). */
export async function readState(
  path: string,
  keys: readonly VerifierKey[],
): Promise<WatchState | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as { code?: unknown }).code === 'ENOENT') return undefined;
    throw new WatchStateError(`cannot read the state file ${path}`, { cause: e });
  }
  return parseState(text, keys);
}

/**
 * Replace the state file whole or not at all: a temporary file beside it (mode 0600),
 * fsync, rename over the old one, fsync of the folder. A crash leaves the old state or the
 * new one, never a mix.
 */
export async function writeState(path: string, state: WatchState): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  const file = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600);
  try {
    await file.writeFile(formatState(state));
    await file.sync();
  } finally {
    await file.close();
  }
  try {
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  const dir = await open(dirname(path), constants.O_RDONLY);
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
