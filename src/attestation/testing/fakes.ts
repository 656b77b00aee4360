/** Test doubles shared by the attestation service tests. */
import { generateKeyPairSync } from 'node:crypto';
import type { AttestationService, AuditSink, EcSessionJwk } from '../service.js';
import { qualifyingData } from '../verify-quote.js';
import { SoftEk, SoftTpm } from './soft-tpm.js';

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

/** Enroll `tpm`'s AK under `ek` with a bare EK public key; the EK's answer to MakeCredential. */
export async function enrollRuntime(
  svc: AttestationService,
  ek: SoftEk,
  tpm: SoftTpm,
  name: string,
  labels: Record<string, string> = {},
): Promise<{ runtimeId: string; secret: string }> {
  const enrolled = await svc.enroll({
    name,
    labels,
    ekPublic: ek.ekPublicBytes.toString('base64'),
    akPublic: tpm.akPublicBytes.toString('base64'),
  });
  return { runtimeId: enrolled.runtimeId, secret: ek.activateEnrollment(enrolled, tpm) };
}

/**
 * Where each service test starts: a fixed clock, an empty audit, a fresh EK and an ECC TPM
 * whose PCR 7 has measured `boot` (so a policy written from its values is not all zeros).
 */
export function freshRuntime(): { now: Date; audit: FakeAudit; tpm: SoftTpm; ek: SoftEk } {
  const tpm = new SoftTpm('ecc');
  tpm.extend('sha256', 7, 'boot');
  return { now: new Date('2030-01-01T00:00:00Z'), audit: new FakeAudit(), tpm, ek: new SoftEk() };
}

/** `tpm`'s quote answering a fresh challenge of `svc` for `runtimeId`, bound to a new session key. */
export async function answerChallenge(
  svc: AttestationService,
  tpm: SoftTpm,
  runtimeId: string,
  options: Parameters<SoftTpm['quote']>[2] = {},
): Promise<ReturnType<SoftTpm['quote']> & { sessionKey: EcSessionJwk }> {
  const { nonce } = await svc.challenge(runtimeId);
  const key = sessionKey();
  const n = Buffer.from(nonce, 'base64');
  return { ...tpm.quote(n, qualifyingData(n, key), options), sessionKey: key };
}
