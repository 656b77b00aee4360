/**
 * Abuse of the public and operator surfaces: every hostile request is answered 4xx, never
 * 5xx, the service stays ready, and no secret reaches a log line.
 */
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MeasuredBoot } from '../../src/attestation/measured-boot/measured-boot.js';
import { SoftTpm } from '../../src/attestation/testing/soft-tpm.js';
import { redactedConfig, type AppConfig } from '../../src/shared/config.js';
import { newSessionKey } from '../attestation/harness.js';
import { buildAbuseApp, type AbuseApp } from './app.js';

let s: AbuseApp;
const secrets: string[] = [];
const statuses: number[] = [];
const PIN = '73914620-hsm-user-pin';

async function hit(opts: InjectOptions) {
  const res = await s.app.inject(opts);
  statuses.push(res.statusCode);
  return res;
}

const codeOf = (res: { json: () => unknown }) =>
  (res.json() as { error: { code: string } }).error.code;

beforeAll(async () => {
  s = await buildAbuseApp();
  for (const role of ['auditor', 'operator', 'key_custodian'] as const) {
    secrets.push((await s.tokens.create({ role, actor: `${role}-1` })).token);
  }
  const revoked = await s.tokens.create({ role: 'operator', actor: 'gone' });
  await s.tokens.revoke(revoked.info.id);
  secrets.push(revoked.token, PIN);
});

afterAll(async () => {
  await s.app.close();
});

// A quote as a runtime sends it (a software TPM's), with a session key: the real route's
// schema and the service's parsing accept it, so each variation below is refused for itself.
const quote = {
  ...new SoftTpm('ecc').quote(randomBytes(32), randomBytes(32)),
  sessionKey: newSessionKey(),
};
const json = { 'content-type': 'application/json' };
const attest = '/v1/runtimes/rt_abuse/attestations';

describe('hostile bodies', () => {
  it('accepts the well-formed request the others are variations of', async () => {
    const res = await hit({ method: 'POST', url: attest, payload: quote });
    expect(res.statusCode).toBe(201);
  });

  it('refuses an oversized body with 413 payload_too_large', async () => {
    const res = await hit({
      method: 'POST',
      url: attest,
      // The limit grows with the measured-boot log limits (docs/measured-boot.md).
      payload: { ...quote, quote: 'A'.repeat(new MeasuredBoot().bodyLimit + 1024) },
    });
    expect(res.statusCode).toBe(413);
    expect(codeOf(res)).toBe('payload_too_large');
  });

  it('refuses malformed JSON with 400 bad_request', async () => {
    for (const payload of ['{"nonce":', '{nonce: 1}', '', 'null', '[]', '"x"', '{"a":1}}']) {
      const res = await hit({ method: 'POST', url: attest, headers: json, payload });
      expect(res.statusCode, payload).toBe(400);
      expect(codeOf(res)).toBe('bad_request');
    }
  });

  it('refuses deeply nested JSON with 4xx', async () => {
    const depth = 5000;
    for (const payload of [
      '['.repeat(depth) + ']'.repeat(depth),
      JSON.stringify({ ...quote, pcrs: 0 }).replace(
        '"pcrs":0',
        '"pcrs":' + '{"a":'.repeat(depth) + '1' + '}'.repeat(depth),
      ),
    ]) {
      const res = await hit({ method: 'POST', url: attest, headers: json, payload });
      expect(res.statusCode).toBeGreaterThanOrEqual(400);
      expect(res.statusCode).toBeLessThan(500);
    }
  });

  it('refuses prototype-poisoning payloads with 400', async () => {
    const rest = JSON.stringify(quote).slice(1);
    for (const payload of [
      `{"__proto__":{"admin":true},${rest}`,
      `{"constructor":{"prototype":{"admin":true}},${rest}`,
      JSON.stringify({ ...quote, pcrs: {} }).replace(
        '"pcrs":{}',
        '"pcrs":{"__proto__":{"0":"00"}}',
      ),
    ]) {
      const res = await hit({ method: 'POST', url: attest, headers: json, payload });
      expect(res.statusCode, payload).toBe(400);
      expect(codeOf(res)).toBe('bad_request');
    }
    expect(({} as Record<string, unknown>).admin).toBeUndefined();
  });

  // Not base64 at all: the schema; base64 of no TPM structure: the quote's parser.
  it.each([
    ['AAA', 'quote_malformed'],
    ['AA=A', 'bad_request'],
    ['!!!!', 'bad_request'],
    ['AAAA====', 'bad_request'],
    ['AAAA AAAA', 'bad_request'],
    ['AB==', 'quote_malformed'],
    ['QUJD\n', 'bad_request'],
  ])('refuses the quote %j with 400 %s', async (bad, code) => {
    const res = await hit({ method: 'POST', url: attest, payload: { ...quote, quote: bad } });
    expect(res.statusCode).toBe(400);
    expect(codeOf(res)).toBe(code);
  });

  it('refuses unknown members, wrong types and a wrong content type with 4xx', async () => {
    const extra = await hit({ method: 'POST', url: attest, payload: { ...quote, admin: true } });
    expect(extra.statusCode).toBe(400);
    const wrong = await hit({ method: 'POST', url: attest, payload: { ...quote, nonce: 12 } });
    expect(wrong.statusCode).toBe(400);
    const text = await hit({
      method: 'POST',
      url: attest,
      headers: { 'content-type': 'application/xml' },
      payload: '<quote/>',
    });
    expect(text.statusCode).toBe(415);
    expect(codeOf(text)).toBe('unsupported_media_type');
    const badParam = await hit({
      method: 'POST',
      url: '/v1/runtimes/..%2f..%2fetc/attestations',
      payload: quote,
    });
    expect(badParam.statusCode).toBe(400);
  });
});

describe('floods', () => {
  it('answers a challenge flood from one runtime with 429 + Retry-After, others unaffected, memory bounded', async () => {
    const url = (rt: string) => `/v1/runtimes/${rt}/challenges`;
    const answers: number[] = [];
    for (let i = 0; i < 50; i++)
      answers.push((await hit({ method: 'POST', url: url('rt_flood') })).statusCode);
    expect(answers.filter((c) => c === 201)).toHaveLength(5);
    const limited = await hit({ method: 'POST', url: url('rt_flood') });
    expect(limited.statusCode).toBe(429);
    expect(codeOf(limited)).toBe('rate_limited');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect((await hit({ method: 'POST', url: url('rt_honest') })).statusCode).toBe(201);
    // A flood of made-up runtime ids cannot grow the limiter's memory past its cap.
    for (let i = 0; i < 1500; i++) await s.app.inject({ method: 'POST', url: url(`rt_fake${i}`) });
    expect(s.limiter.size).toBeLessThanOrEqual(s.limiter.maxEntries);
  });

  it('refuses operator routes without a credential before reading the body', async () => {
    const res = await hit({
      method: 'POST',
      url: '/v1/approvals',
      headers: json,
      payload: '{"act":',
    });
    expect(res.statusCode).toBe(401);
    expect(codeOf(res)).toBe('unauthenticated');
  });

  it('refuses an operator token on a runtime route, and a garbage one on an operator route', async () => {
    const op = await hit({
      method: 'POST',
      url: '/v1/runtimes/rt_x/challenges',
      headers: { authorization: `Bearer ${secrets[1] ?? ''}` },
    });
    expect(op.statusCode).toBe(403);
    for (const token of [secrets[3] ?? '', `${secrets[0] ?? ''}x`, 'gop_', 'a'.repeat(5000)]) {
      const res = await hit({
        url: '/v1/approvals',
        headers: { authorization: `Bearer ${token}` },
      });
      expect(res.statusCode).toBe(401);
    }
  });
});

describe('slow and oversized bodies on a real socket', () => {
  let port: number;

  beforeAll(async () => {
    await s.app.listen({ host: '127.0.0.1', port: 0 });
    port = (s.app.server.address() as AddressInfo).port;
  });

  function exchange(send: (socket: Socket) => void): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => {
        send(socket);
      });
      let text = '';
      socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
      socket.on('close', () => {
        resolve(text);
      });
      socket.on('error', reject);
    });
  }

  it('answers 413 from the Content-Length alone, without waiting for the body', async () => {
    const text = await exchange((socket) => {
      socket.write(
        `POST ${attest} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\nConnection: close\r\n\r\n{"nonce":`,
      );
      // The rest of the 10 MB never comes; the answer must not depend on it.
    });
    expect(text).toMatch(/^HTTP\/1\.1 413/);
    expect(text).toContain('payload_too_large');
  });

  it('cuts a body that never finishes', async () => {
    const text = await exchange((socket) => {
      socket.write(
        `POST ${attest} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"nonce":"AAAA`,
      );
    });
    // The request timeout (2 s here, checked every second) answers 408 and closes.
    expect(text).toMatch(/^HTTP\/1\.1 408/);
  });
});

describe('afterwards', () => {
  it('is still ready and answered no request with a 5xx', async () => {
    const ready = await hit({ url: '/readyz' });
    expect(ready.statusCode).toBe(200);
    expect(statuses.length).toBeGreaterThan(40);
    expect(statuses.filter((c) => c >= 500)).toEqual([]);
    const metrics = await s.app.inject({ url: '/metrics' });
    expect(metrics.body).not.toMatch(/status="5\d\d"/);
  });

  it('wrote no secret to any log line', () => {
    // The real code path that logs the configuration, with the PIN in it.
    const config = {
      hsm: { module: '/x.so', tokenLabel: 't', pin: PIN, pinSource: 'environment' },
    };
    s.app.log.info({ config: redactedConfig(config as unknown as AppConfig) }, 'configuration');
    s.app.log.info({ hsm: { pin: PIN }, token: secrets[0] }, 'redaction by path');
    const logs = s.logLines.join('');
    expect(s.logLines.length).toBeGreaterThan(40);
    for (const secret of secrets) {
      expect(logs).not.toContain(secret);
      // Nor the secret part of a token alone.
      expect(logs).not.toContain(secret.slice(-43));
    }
  });
});
