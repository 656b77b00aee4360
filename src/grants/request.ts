/**
 * The grant request (PROTOCOL.md §3): a deep copy of the untrusted body, taken before the
 * first await, and the semantic checks the route schema cannot express.
 */
import { createHash } from 'node:crypto';
import { jcs, type QuoteRequest } from '../attestation/index.js';
import type { GrantRequestBody } from '../shared/grant-request.js';
import { GrantRequestInvalidError } from './errors.js';

export type { GrantRequestBody };

export interface SessionProof {
  readonly attestationId: string;
  /** base64url of the ES256 r‖s signature. */
  readonly signature: string;
}

/** A grant request as received: `parentGrantId` may be absent, and one proof is attached. */
export interface GrantRequest extends Omit<GrantRequestBody, 'parentGrantId'> {
  readonly parentGrantId?: string | null;
  readonly session?: SessionProof;
  readonly quote?: QuoteRequest;
}

/** The checked copy the pipeline works on. */
export interface CheckedRequest {
  /** The body exactly as received (deep copy): what the signature and digests cover. */
  readonly body: Readonly<Record<string, unknown>>;
  readonly runtimeId: string;
  readonly requestId: string;
  /** issuedAt, epoch ms. */
  readonly issuedAtMs: number;
  readonly action: string;
  readonly resource: string;
  readonly parametersDigest: string;
  readonly audience: string;
  readonly parentGrantId: string | null;
  readonly ttlSeconds: number;
  readonly proof:
    | { readonly mode: 'session'; readonly attestationId: string; readonly signature: string }
    | { readonly mode: 'quote'; readonly quote: QuoteRequest };
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/i;
const HEX64 = /^[0-9a-f]{64}$/;
const B64URL_SIG = /^[A-Za-z0-9_-]{86}$/;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(body: Record<string, unknown>, name: string, max = 256): string {
  const v = body[name];
  if (typeof v !== 'string' || v === '' || v.length > max) {
    throw new GrantRequestInvalidError(`${name} must be a non-empty string`, {
      details: { field: name },
    });
  }
  return v;
}

/** Deep copy: the caller's object can change after this returns without effect. */
export function snapshot(body: unknown): unknown {
  try {
    return JSON.parse(JSON.stringify(body)) as unknown;
  } catch (cause) {
    throw new GrantRequestInvalidError('the request is not JSON', { cause });
  }
}

/** Copy and check a grant request; `maxTtlSeconds` is the appliance-wide bound. */
export function checkRequest(untrusted: unknown, maxTtlSeconds: number): CheckedRequest {
  const body = snapshot(untrusted);
  if (!isObject(body)) throw new GrantRequestInvalidError('the request must be an object');
  const runtimeId = str(body, 'runtimeId', 64);
  const requestId = str(body, 'requestId', 128);
  const issuedAt = str(body, 'issuedAt', 40);
  const issuedAtMs = Date.parse(issuedAt);
  if (!RFC3339.test(issuedAt) || Number.isNaN(issuedAtMs)) {
    throw new GrantRequestInvalidError('issuedAt must be an RFC 3339 time', {
      details: { field: 'issuedAt' },
    });
  }
  const action = str(body, 'action', 128);
  const resource = str(body, 'resource', 512);
  const parametersDigest = str(body, 'parametersDigest', 64);
  if (!HEX64.test(parametersDigest)) {
    throw new GrantRequestInvalidError('parametersDigest must be 64 lowercase hex digits', {
      details: { field: 'parametersDigest' },
    });
  }
  const audience = str(body, 'audience', 128);
  const parent = body.parentGrantId;
  if (parent !== undefined && parent !== null && (typeof parent !== 'string' || parent === '')) {
    throw new GrantRequestInvalidError('parentGrantId must be a grant id or null', {
      details: { field: 'parentGrantId' },
    });
  }
  const ttl = body.ttlSeconds;
  if (typeof ttl !== 'number' || !Number.isSafeInteger(ttl) || ttl < 1 || ttl > maxTtlSeconds) {
    throw new GrantRequestInvalidError(`ttlSeconds must be an integer in 1..${maxTtlSeconds}`, {
      details: { field: 'ttlSeconds', max: maxTtlSeconds },
    });
  }
  const { session, quote } = body;
  if ((session === undefined) === (quote === undefined)) {
    throw new GrantRequestInvalidError('exactly one of session and quote is required', {
      details: { field: 'session|quote' },
    });
  }
  let proof: CheckedRequest['proof'];
  if (session !== undefined) {
    if (!isObject(session)) throw new GrantRequestInvalidError('session must be an object');
    const attestationId = str(session, 'attestationId', 64);
    const signature = str(session, 'signature', 86);
    if (!B64URL_SIG.test(signature)) {
      throw new GrantRequestInvalidError('session.signature must be 64 bytes, base64url', {
        details: { field: 'session.signature' },
      });
    }
    proof = { mode: 'session', attestationId, signature };
  } else {
    if (!isObject(quote)) throw new GrantRequestInvalidError('quote must be an object');
    proof = { mode: 'quote', quote: quote as unknown as QuoteRequest };
  }
  return {
    body,
    runtimeId,
    requestId,
    issuedAtMs,
    action,
    resource,
    parametersDigest,
    audience,
    parentGrantId: typeof parent === 'string' ? parent : null,
    ttlSeconds: ttl,
    proof,
  };
}

/** The request without `session.signature`: what a session key signs (JCS bytes). */
export function sessionSigningInput(body: Readonly<Record<string, unknown>>): string {
  const { session, ...rest } = body;
  const s = isObject(session) ? session : {};
  const { signature: _signature, ...unsigned } = s;
  return jcs({ ...rest, session: unsigned });
}

/** The request without its `quote` member (what a quote-mode quote is qualified with). */
export function withoutQuote(body: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const { quote: _quote, ...rest } = body;
  return rest;
}

/** JCS(request without signatures): the text the audit log keeps under the entry's digest. */
export function unsignedRequestText(body: Readonly<Record<string, unknown>>): string {
  const { session, quote, ...rest } = body;
  const unsigned: Record<string, unknown> = { ...rest };
  if (isObject(session)) {
    const { signature: _s, ...s } = session;
    unsigned.session = s;
  }
  if (isObject(quote)) {
    const { signature: _s, ...q } = quote;
    unsigned.quote = q;
  }
  return jcs(unsigned);
}

/** Hex SHA-256 of JCS(request without signatures): the audit entry's digest. */
export function requestDigest(body: Readonly<Record<string, unknown>>): string {
  return createHash('sha256').update(unsignedRequestText(body), 'utf8').digest('hex');
}
