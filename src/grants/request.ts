/**
 * The grant request (PROTOCOL.md §3): a deep copy of the untrusted body, taken before the
 * first await, checked against the one schema of its limits (request.schema.ts, which the
 * route declares too), then the semantic checks a schema cannot express.
 */
import { createHash } from 'node:crypto';
import { Compile } from 'typebox/compile';
import { Errors } from 'typebox/value';
import { jcs, type QuoteEvidenceBody } from '../attestation/index.js';
import type { GrantRequestBody } from '../shared/grant-request.js';
import { GrantRequestInvalidError } from './errors.js';
import { GrantRequestSchema } from './request.schema.js';

/**
 * The schema compiled once, as the route's validator is (Fastify's Ajv): the interpreted
 * check cost ~0.27 ms a request, ten times this (measured on the bench machine).
 */
const grantRequest = Compile(GrantRequestSchema);

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
  readonly quote?: QuoteEvidenceBody;
}

/** The checked copy the pipeline works on. */
export interface CheckedRequest extends Omit<GrantRequestBody, 'issuedAt'> {
  /** The body exactly as received (deep copy): what the signature and digests cover. */
  readonly body: Readonly<Record<string, unknown>>;
  /** issuedAt, epoch ms. */
  readonly issuedAtMs: number;
  readonly proof:
    | { readonly mode: 'session'; readonly attestationId: string; readonly signature: string }
    | { readonly mode: 'quote'; readonly quote: QuoteEvidenceBody };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Deep copy: the caller's object can change after this returns without effect. */
export function snapshot(body: unknown): unknown {
  try {
    return JSON.parse(JSON.stringify(body)) as unknown;
  } catch (cause) {
    throw new GrantRequestInvalidError('the request is not JSON', { cause });
  }
}

/** The member the schema refused first, as a dotted path (`quote.nonce`); never its value. */
function refusedField(body: unknown): string {
  const first = Errors(GrantRequestSchema, body)[0];
  const path = first?.instancePath.split('/').filter((p) => p !== '') ?? [];
  // A missing or extra member is reported on its object: name the member itself.
  const params = first?.params as { requiredProperties?: unknown; additionalProperties?: unknown };
  const member = [params.requiredProperties, params.additionalProperties]
    .map((m) => (Array.isArray(m) && typeof m[0] === 'string' ? m[0] : undefined))
    .find((m) => m !== undefined);
  return [...path, ...(member === undefined ? [] : [member])].join('.').slice(0, 128);
}

/** Copy and check a grant request; `maxTtlSeconds` is the appliance-wide bound. */
export function checkRequest(untrusted: unknown, maxTtlSeconds: number): CheckedRequest {
  const body = snapshot(untrusted);
  if (!isObject(body)) throw new GrantRequestInvalidError('the request must be an object');
  if (!grantRequest.Check(body)) {
    const field = refusedField(body);
    throw new GrantRequestInvalidError(`the request does not match its schema at ${field}`, {
      details: { field },
    });
  }
  const issuedAtMs = Date.parse(body.issuedAt);
  if (Number.isNaN(issuedAtMs)) {
    throw new GrantRequestInvalidError('issuedAt must be an RFC 3339 time', {
      details: { field: 'issuedAt' },
    });
  }
  const ttl = body.ttlSeconds;
  if (!Number.isSafeInteger(ttl) || ttl > maxTtlSeconds) {
    throw new GrantRequestInvalidError(`ttlSeconds must be an integer in 1..${maxTtlSeconds}`, {
      details: { field: 'ttlSeconds', max: maxTtlSeconds },
    });
  }
  const { session, quote } = body;
  let proof: CheckedRequest['proof'];
  if (session !== undefined && quote === undefined) {
    proof = { mode: 'session', attestationId: session.attestationId, signature: session.signature };
  } else if (quote !== undefined && session === undefined) {
    proof = { mode: 'quote', quote };
  } else {
    throw new GrantRequestInvalidError('exactly one of session and quote is required', {
      details: { field: 'session|quote' },
    });
  }
  return {
    body,
    runtimeId: body.runtimeId,
    requestId: body.requestId,
    issuedAtMs,
    action: body.action,
    resource: body.resource,
    parametersDigest: body.parametersDigest,
    audience: body.audience,
    parentGrantId: body.parentGrantId ?? null,
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
