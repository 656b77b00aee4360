/** Test doubles shared by the attestation service tests. */
import { generateKeyPairSync } from 'node:crypto';
import type { AuditSink, EcSessionJwk } from '../service.js';

/** An audit sink that keeps what it is given, or fails when told to. */
export class FakeAudit implements AuditSink {
  events: Parameters<AuditSink['record']>[0][] = [];
  failing = false;
  record(event: Parameters<AuditSink['record']>[0]): Promise<void> {
    if (this.failing) return Promise.reject(new Error('disk full'));
    this.events.push(event);
    return Promise.resolve();
  }
}

/** A fresh EC P-256 session key, public part as a JWK. */
export function sessionKey(): EcSessionJwk {
  const jwk = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({
    format: 'jwk',
  });
  return { kty: 'EC', crv: 'P-256', x: jwk.x ?? '', y: jwk.y ?? '' };
}

/** The error code a promise rejects with, or 'ok'. */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return (e as { code: string }).code;
  }
  return 'ok';
}
