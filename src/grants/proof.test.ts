/** The proof of a request, session or quote (proof.ts), through the service with fakes. */
import { describe, expect, it } from 'vitest';
import { qualifyingData, type AttestedSession } from '../attestation/index.js';
import { GrantorError } from '../shared/errors.js';
import { jwkThumbprint } from '../shared/grant-claims.js';
import { withoutQuote } from './request.js';
import {
  AT,
  Fakes,
  NOW,
  RT,
  body,
  code,
  decodeClaims,
  sessionKey,
  signRequest,
} from './testing.js';

describe('GrantService.request: runtime and proof', () => {
  it('unknown runtime: unknown_runtime', async () => {
    const f = new Fakes();
    const req = signRequest(body({ runtimeId: 'rt_nobody' }), f.key.privateKey);
    expect(await code(f.service().request(req, NOW))).toBe('unknown_runtime');
  });

  it('runtime not active: runtime_not_active', async () => {
    const f = new Fakes();
    f.addRuntime('rt_revoked', {}, 'revoked');
    f.addSession('at_r', 'rt_revoked', f.key);
    const req = signRequest(
      body({ runtimeId: 'rt_revoked', session: { attestationId: 'at_r' } }),
      f.key.privateKey,
    );
    expect(await code(f.service().request(req, NOW))).toBe('runtime_not_active');
  });

  it('unknown or expired session: session_not_live', async () => {
    const f = new Fakes();
    const svc = f.service();
    const unknown = signRequest(body({ session: { attestationId: 'at_none' } }), f.key.privateKey);
    expect(await code(svc.request(unknown, NOW))).toBe('session_not_live');
    f.addSession('at_old', RT, f.key, NOW.getTime() - 1);
    const expired = signRequest(body({ session: { attestationId: 'at_old' } }), f.key.privateKey);
    expect(await code(svc.request(expired, NOW))).toBe('session_not_live');
  });

  it('a superseded session (not the runtime latest attestation): session_not_live', async () => {
    const f = new Fakes();
    const other = sessionKey();
    f.sessions.set('at_stale', {
      ...(f.sessions.get(AT) as AttestedSession),
      attestationId: 'at_stale',
      sessionKey: other.jwk,
    });
    const req = signRequest(body({ session: { attestationId: 'at_stale' } }), other.privateKey);
    expect(await code(f.service().request(req, NOW))).toBe('session_not_live');
  });

  it("another runtime's session: session_runtime_mismatch", async () => {
    const f = new Fakes();
    const k = sessionKey();
    f.addRuntime('rt_beta', {});
    f.addSession('at_beta', 'rt_beta', k);
    const req = signRequest(body({ session: { attestationId: 'at_beta' } }), k.privateKey);
    expect(await code(f.service().request(req, NOW))).toBe('session_runtime_mismatch');
  });

  it('signed by another key, or altered after signing: request_signature_invalid', async () => {
    const f = new Fakes();
    const svc = f.service();
    expect(await code(svc.request(signRequest(body(), sessionKey().privateKey), NOW))).toBe(
      'request_signature_invalid',
    );
    const altered = { ...signRequest(body(), f.key.privateKey), resource: 'ticket:43' };
    expect(await code(svc.request(altered, NOW))).toBe('request_signature_invalid');
    // On the record: one entry for the (runtime, code) window; the repeat is counted.
    expect(f.events).toMatchObject([
      {
        type: 'grant.refused',
        subject: RT,
        decision: 'request_signature_invalid',
        facts: { runtime: RT, code: 'request_signature_invalid', repeats: 0, dropped: 0 },
      },
    ]);
  });

  it('the cached session key follows the session: a key changed in place is used, the old one refused', async () => {
    const f = new Fakes();
    const svc = f.service();
    const first = await svc.request(signRequest(body(), f.key.privateKey), NOW);
    const firstJkt = await jwkThumbprint(f.key.jwk);
    expect(decodeClaims(first.grant)).toMatchObject({ cnf: { jkt: firstJkt } });
    // The same session object (the cache key) now holds another key.
    const next = sessionKey();
    Object.assign(f.key.jwk, { x: next.jwk.x, y: next.jwk.y });
    expect(await code(svc.request(signRequest(body(), f.key.privateKey), NOW))).toBe(
      'request_signature_invalid',
    );
    const second = await svc.request(signRequest(body(), next.privateKey), NOW);
    // The thumbprint is cached with the key and follows it: the grant is bound to the new key.
    const nextJkt = await jwkThumbprint(next.jwk);
    expect(nextJkt).not.toBe(firstJkt);
    expect(decodeClaims(second.grant)).toMatchObject({ cnf: { jkt: nextJkt } });
  });

  it('a new session (a new attestation, its own key) binds its grants to its own key (cnf.jkt)', async () => {
    const f = new Fakes();
    const svc = f.service();
    const first = await svc.request(signRequest(body(), f.key.privateKey), NOW);
    expect(decodeClaims(first.grant)).toMatchObject({
      cnf: { jkt: await jwkThumbprint(f.key.jwk) },
    });
    const next = sessionKey();
    f.addSession('at_next', RT, next);
    const req = signRequest(body({ session: { attestationId: 'at_next' } }), next.privateKey);
    const second = await svc.request(req, NOW);
    expect(decodeClaims(second.grant)).toMatchObject({
      cnf: { jkt: await jwkThumbprint(next.jwk) },
      att: { attestationId: 'at_next' },
    });
    // The old session is no longer the runtime's latest: refused, not served from a cache.
    expect(await code(svc.request(signRequest(body(), f.key.privateKey), NOW))).toBe(
      'session_not_live',
    );
  });

  it('quote mode: verifyQuote gets SHA-256(nonce || SHA-256(JCS(request - quote))); att from the quote', async () => {
    const f = new Fakes();
    const nonce = Buffer.alloc(32, 7).toString('base64');
    const req = body({
      session: undefined,
      action: 'payments.transfer',
      quote: { nonce, quote: 'AA==', signature: 'AA==', pcrs: { sha256: {} } },
    });
    delete req.session;
    const issued = await f.service().request(req, NOW);
    expect(f.quoteCalls).toHaveLength(1);
    expect(
      f.quoteCalls[0]?.qd.equals(qualifyingData(Buffer.from(nonce, 'base64'), withoutQuote(req))),
    ).toBe(true);
    expect(f.policyCalls[0]?.attestation.proofMode).toBe('quote');
    expect(decodeClaims(issued.grant)).toMatchObject({
      att: { akName: '000b' + 'cc'.repeat(32), pcrDigest: 'dd'.repeat(32), resetCount: 2 },
      cnf: { jkt: await jwkThumbprint(f.key.jwk) },
    });
  });

  it('quote mode: a failing quote keeps its own code; no live session to hold the grant: session_not_live', async () => {
    const f = new Fakes();
    const q = { nonce: 'AA==', quote: 'AA==', signature: 'AA==', pcrs: { sha256: {} } };
    const mk = () => {
      const b = body({ quote: q });
      delete b.session;
      return b;
    };
    f.verifyQuoteFails = () => new GrantorError('quote_signature_invalid', 'bad');
    expect(await code(f.service().request(mk(), NOW))).toBe('quote_signature_invalid');
    f.verifyQuoteFails = undefined;
    f.sessions.clear();
    expect(await code(f.service().request(mk(), NOW))).toBe('session_not_live');
  });
});
