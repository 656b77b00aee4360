/**
 * Audit entries as PROTOCOL.md §4: `{seq, time, type, subject, decision?, reasons?, digest,
 * prevHash, hash}` with `hash = SHA-256(JCS(entry without hash))`, chained by `prevHash`
 * (64 zeros before seq 0). Version 2 adds `v: 2` and the typed `facts` of its type
 * (facts.ts), both covered by the hash; an entry without them is version 1 and verifies as
 * it always did. Entries carry digests, ids and bounded names only, never parameters or
 * secrets: the event shape below has no field where a value could go.
 */
import { createHash } from 'node:crypto';
import { BadRequestError } from '../shared/errors.js';
import { jcs } from '../shared/jcs.js';
import { copyFacts, factsProblem, type Facts } from './facts.js';

export const GENESIS_PREV_HASH = '0'.repeat(64);

/** What a caller records: one decision or administrative act. */
export interface AuditEvent {
  /** What happened, e.g. `grant.decision`, `runtime.enrolled`, `key.rotated`. */
  readonly type: string;
  /** The id the event is about (`rt_...`, `gr_...`, a key id). */
  readonly subject: string;
  readonly decision?: string;
  readonly reasons?: readonly string[];
  /** Hex SHA-256 of the decision's inputs (the request), never the inputs themselves. */
  readonly digest: string;
  /** The typed facts of this type (facts.ts); makes the entry version 2. */
  readonly facts?: Facts;
  /**
   * The text whose SHA-256 is `digest` (the JCS of a request body without its signatures),
   * kept content-addressed beside the entry, in the same synced write; not in the entry.
   */
  readonly body?: string;
}

/** Largest request body kept by its digest (a grant request is far smaller). */
export const MAX_BODY_LENGTH = 64 * 1024;

/** An event as recorded: its fields but the body, placed in the chain. */
export interface AuditEntry extends Omit<AuditEvent, 'body'> {
  /** 2 for an entry with facts; absent on a version-1 entry. */
  readonly v?: 2;
  readonly seq: number;
  readonly time: string;
  readonly prevHash: string;
  readonly hash: string;
}

const ID = /^[A-Za-z0-9_.:@/+-]{1,128}$/;
const HEX32 = /^[0-9a-f]{64}$/;
const MAX_REASONS = 32;
const MAX_REASON_LENGTH = 256;

/** A text cut to fit one reason (at most 256 UTF-16 units, never half a surrogate pair). */
export function fitReason(text: string): string {
  if (text.length <= MAX_REASON_LENGTH) return text;
  let head = text.slice(0, MAX_REASON_LENGTH - 1);
  if (/[\uD800-\uDBFF]$/.test(head)) head = head.slice(0, -1);
  return `${head}…`;
}

/** Validate an event before it enters a batch; returns a frozen copy (no later mutation). */
export function checkEvent(event: AuditEvent): AuditEvent {
  const { type, subject, decision, reasons, digest, facts, body } = event;
  if (typeof type !== 'string' || !ID.test(type))
    throw new BadRequestError('audit event: bad type');
  if (typeof subject !== 'string' || !ID.test(subject)) {
    throw new BadRequestError('audit event: bad subject');
  }
  if (decision !== undefined && (typeof decision !== 'string' || !ID.test(decision))) {
    throw new BadRequestError('audit event: bad decision');
  }
  if (typeof digest !== 'string' || !HEX32.test(digest)) {
    throw new BadRequestError('audit event: digest must be 64 lowercase hex characters');
  }
  let reasonsCopy: readonly string[] | undefined;
  if (reasons !== undefined) {
    if (!Array.isArray(reasons) || reasons.length > MAX_REASONS) {
      throw new BadRequestError('audit event: bad reasons');
    }
    reasonsCopy = Object.freeze(
      reasons.map((r) => {
        if (typeof r !== 'string' || r.length === 0 || r.length > MAX_REASON_LENGTH) {
          throw new BadRequestError('audit event: bad reason');
        }
        return r;
      }),
    );
  }
  let factsCopy: Facts | undefined;
  if (facts !== undefined) {
    const problem = factsProblem(type, facts);
    if (problem !== undefined) throw new BadRequestError(`audit event: ${problem}`);
    factsCopy = copyFacts(facts);
  }
  if (body !== undefined) {
    // Content-addressed: the body must be exactly what the digest names.
    if (typeof body !== 'string' || body.length > MAX_BODY_LENGTH || sha256Hex(body) !== digest) {
      throw new BadRequestError('audit event: body does not match its digest');
    }
  }
  return Object.freeze({
    type,
    subject,
    ...(decision === undefined ? {} : { decision }),
    ...(reasonsCopy === undefined ? {} : { reasons: reasonsCopy }),
    digest,
    ...(factsCopy === undefined ? {} : { facts: factsCopy }),
    ...(body === undefined ? {} : { body }),
  });
}

function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/**
 * `SHA-256(JCS(entry without hash))`, hex. The members are known, so the canonical text is
 * written here in JCS order (keys sorted by code unit: decision, digest, facts, prevHash,
 * reasons, seq, subject, time, type, v) with each value through `jcs`, instead of
 * building an object for `jcs` to sort: one entry per grant, and the object and its sort
 * were most of an entry's cost (entry.test.ts pins the text against `jcs` of the object).
 * Members other than these (`hash`, anything else) are not covered.
 */
export function entryHash(entry: Omit<AuditEntry, 'hash'>): string {
  let text = '{';
  if (entry.decision !== undefined) text += `"decision":${jcs(entry.decision)},`;
  text += `"digest":${jcs(entry.digest)},`;
  if (entry.facts !== undefined) text += `"facts":${jcs(entry.facts)},`;
  text += `"prevHash":${jcs(entry.prevHash)},`;
  if (entry.reasons !== undefined) text += `"reasons":${jcs(entry.reasons)},`;
  text += `"seq":${jcs(entry.seq)},"subject":${jcs(entry.subject)},`;
  text += `"time":${jcs(entry.time)},"type":${jcs(entry.type)}`;
  if (entry.v !== undefined) text += `,"v":${jcs(entry.v)}`;
  return sha256Hex(`${text}}`);
}

type Building = { -readonly [K in keyof AuditEntry]?: AuditEntry[K] };

export function buildEntry(
  event: AuditEvent,
  seq: number,
  time: string,
  prevHash: string,
): AuditEntry {
  // Member by member in the stored order (v first, hash last): conditional spreads made a
  // fresh object per optional member, about a third of an entry's cost.
  const entry: Building = {};
  if (event.facts !== undefined) entry.v = 2;
  entry.seq = seq;
  entry.time = time;
  entry.type = event.type;
  entry.subject = event.subject;
  if (event.decision !== undefined) entry.decision = event.decision;
  if (event.reasons !== undefined) entry.reasons = event.reasons;
  entry.digest = event.digest;
  if (event.facts !== undefined) entry.facts = event.facts;
  entry.prevHash = prevHash;
  const body = entry as Omit<AuditEntry, 'hash'>;
  entry.hash = entryHash(body);
  return Object.freeze(entry as AuditEntry);
}

export type LinkProblem = 'seq' | 'prev_hash' | 'hash' | 'shape';

/** A LinkProblem as the offline verifiers report it (verify-export.ts, verify-bundle.ts). */
export const LINK_PROBLEM = {
  shape: 'entry_shape',
  seq: 'entry_seq',
  prev_hash: 'entry_prev_hash',
  hash: 'entry_hash',
} as const;

/**
 * Check one entry against its predecessor's hash and expected seq; `undefined` when good.
 * Used by the start-up check and the offline verifier.
 */
export function checkLink(
  entry: AuditEntry,
  expectedSeq: number,
  expectedPrev: string,
): LinkProblem | undefined {
  if (!isEntryShape(entry)) return 'shape';
  if (entry.seq !== expectedSeq) return 'seq';
  if (entry.prevHash !== expectedPrev) return 'prev_hash';
  if (entryHash(entry) !== entry.hash) return 'hash';
  return undefined;
}

const ENTRY_KEYS = new Set([
  'v',
  'facts',
  'seq',
  'time',
  'type',
  'subject',
  'decision',
  'reasons',
  'digest',
  'prevHash',
  'hash',
]);

/** Structural check of untrusted JSON (store contents, export files). */
export function isEntryShape(value: unknown): value is AuditEntry {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const v = value as Record<string, unknown>;
  for (const k of Object.keys(v)) if (!ENTRY_KEYS.has(k)) return false;
  return (
    typeof v.seq === 'number' &&
    Number.isSafeInteger(v.seq) &&
    v.seq >= 0 &&
    typeof v.time === 'string' &&
    typeof v.type === 'string' &&
    typeof v.subject === 'string' &&
    (v.decision === undefined || typeof v.decision === 'string') &&
    (v.reasons === undefined ||
      (Array.isArray(v.reasons) && v.reasons.every((r) => typeof r === 'string'))) &&
    typeof v.digest === 'string' &&
    // Version 2 (`v: 2`) and its facts come together, and the facts fit the type's schema.
    (v.v === undefined
      ? v.facts === undefined
      : v.v === 2 && factsProblem(v.type, v.facts) === undefined) &&
    typeof v.prevHash === 'string' &&
    HEX32.test(v.prevHash) &&
    typeof v.hash === 'string' &&
    HEX32.test(v.hash)
  );
}
