import { createHash, generateKeyPairSync } from 'node:crypto';
import { calculateJwkThumbprint } from 'jose';
import { describe, expect, it } from 'vitest';
import { jwkThumbprint, type EcPublicJwk as EcSessionJwk } from './grant-claims.js';

/** A fresh P-256 public key as the JWK a runtime sends for its session. */
function randomP256Jwk(): EcSessionJwk {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const { x, y } = publicKey.export({ format: 'jwk' });
  if (x === undefined || y === undefined) throw new Error('the exported JWK has no x or y');
  return { kty: 'EC', crv: 'P-256', x, y };
}

describe('jwkThumbprint (RFC 7638)', () => {
  it('jose, the oracle below, reproduces the RFC 7638 §3.1 example (an RSA key)', async () => {
    // jwkThumbprint takes EC keys only, so the RFC's own example pins the oracle instead.
    const n =
      '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPeb' +
      'WKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQ' +
      'MicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2Nc' +
      'Rwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw';
    await expect(calculateJwkThumbprint({ kty: 'RSA', e: 'AQAB', n })).resolves.toBe(
      'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs',
    );
  });

  it('matches the published thumbprint of the P-256 key in RFC 9449 (DPoP) §4.1/§6.1', async () => {
    const jwk: EcSessionJwk = {
      kty: 'EC',
      crv: 'P-256',
      x: 'l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs',
      y: '9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA',
    };
    expect(await jwkThumbprint(jwk)).toBe('0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I');
  });

  it('equals SHA-256 of the RFC 7638 §3.2 members written out by hand, for random P-256 keys', async () => {
    const thumbprints = new Set<string>();
    for (let i = 0; i < 32; i++) {
      const jwk = randomP256Jwk();
      const ours = await jwkThumbprint(jwk);
      const members = `{"crv":"${jwk.crv}","kty":"${jwk.kty}","x":"${jwk.x}","y":"${jwk.y}"}`;
      expect(ours).toBe(createHash('sha256').update(members, 'utf8').digest('base64url'));
      expect(ours).toMatch(/^[A-Za-z0-9_-]{43}$/);
      thumbprints.add(ours);
    }
    // A constant or input-blind result would also "match" itself: each key gets its own.
    expect(thumbprints.size).toBe(32);
  });

  it('ignores members outside the required ones, as RFC 7638 §3.2 and jose do', async () => {
    const jwk = randomP256Jwk();
    const decorated = { ...jwk, kid: 'session-1', alg: 'ES256', use: 'sig' };
    expect(await jwkThumbprint(decorated)).toBe(await jwkThumbprint(jwk));
    expect(await jwkThumbprint(decorated)).toBe(await calculateJwkThumbprint(decorated, 'sha256'));
  });

  it('depends on the member values, not just their presence', async () => {
    const jwk = randomP256Jwk();
    const other = randomP256Jwk();
    expect(await jwkThumbprint({ ...jwk, y: other.y })).not.toBe(await jwkThumbprint(jwk));
    expect(await jwkThumbprint({ ...jwk, x: other.x })).not.toBe(await jwkThumbprint(jwk));
  });
});
