/**
 * The run's secret scan can fail: a planted PIN, token or private key is found with its
 * file and line, the report never repeats the secret, a redacted field is not a finding,
 * and createLogger copies every level to the capture file. Also checks that this run is
 * captured (log-capture.ts ran first) and that the rig's HSM PINs are registered.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer } from '../../src/http/app.js';
import { createLogger } from '../../src/shared/logger.js';
import { describeFindings, scanLogs } from './log-scan.js';
import { loadSecrets, registerSecret, type Secret } from './secrets.js';
import { testHsm } from './sim.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'grantor-log-scan-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const PIN = randomBytes(12).toString('hex');
const secrets: Secret[] = [{ label: 'HSM user PIN (planted)', value: PIN }];

describe('scanLogs', () => {
  it('finds a planted PIN (also base64-encoded), a token and a private key, by file and line', async () => {
    const file = join(dir, 'planted.log');
    const token = `gop_${randomBytes(8).toString('hex')}${randomBytes(32).toString('base64url')}`;
    const pem = generateKeyPairSync('ec', { namedCurve: 'P-256' })
      .privateKey.export({ format: 'pem', type: 'pkcs8' })
      .toString()
      .split('\n')[0];
    const jwk = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
      format: 'jwk',
    });
    await writeFile(
      file,
      [
        '{"level":30,"msg":"clean line"}',
        `{"level":20,"msg":"login with ${PIN}"}`,
        `{"level":30,"auth":"Bearer ${token}"}`,
        `{"level":30,"key":${JSON.stringify(pem)}}`,
        `{"level":30,"body":${JSON.stringify(JSON.stringify({ sessionKey: jwk }))}}`,
        `{"level":30,"blob":"${Buffer.from(PIN).toString('base64')}"}`,
        `{"level":30,"auth":"Bearer ggw_${randomBytes(8).toString('hex')}${randomBytes(32).toString('base64url')}"}`,
      ].join('\n') + '\n',
    );
    const findings = await scanLogs([file], secrets);
    expect(findings).toEqual([
      { file, line: 2, label: 'HSM user PIN (planted)' },
      { file, line: 3, label: 'operator bearer token' },
      { file, line: 4, label: 'PEM private key' },
      { file, line: 5, label: 'private JWK member "d"' },
      { file, line: 6, label: 'HSM user PIN (planted) (base64)' },
      { file, line: 7, label: 'gateway bearer token' },
    ]);
    const report = describeFindings(findings);
    expect(report).toContain(`${file}:2: HSM user PIN (planted)`);
    expect(report).not.toContain(PIN);
    expect(report).not.toContain(token);
  });

  it('a clean log, public keys and redacted fields are not findings', async () => {
    const file = join(dir, 'clean.log');
    const pub = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({
      format: 'jwk',
    });
    await writeFile(
      file,
      `{"level":30,"pin":"[redacted]","jwk":${JSON.stringify(pub)},"token":"[redacted]"}\n`,
    );
    expect(await scanLogs([file], secrets)).toEqual([]);
  });
});

describe('createLogger with GRANTOR_TEST_LOG_FILE', () => {
  it('copies every level to the capture file, redacted, and the scan finds what leaked', async () => {
    const file = join(dir, 'capture.log');
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString('utf8'));
        done();
      },
    });
    const saved = process.env.GRANTOR_TEST_LOG_FILE;
    process.env.GRANTOR_TEST_LOG_FILE = file;
    try {
      const logger = createLogger('info', sink);
      logger.info({ pin: PIN }, 'redacted by path');
      logger.trace(`a careless trace line: ${PIN}`);
      logger.debug('a debug line');
    } finally {
      process.env.GRANTOR_TEST_LOG_FILE = saved;
    }
    const captured = (await readFile(file, 'utf8')).trim().split('\n');
    expect(captured.map((l) => (JSON.parse(l) as { level: number }).level)).toEqual([30, 10, 20]);
    // The configured destination still gets only its own level.
    expect(lines).toHaveLength(1);
    expect(await scanLogs([file], secrets)).toEqual([
      { file, line: 2, label: 'HSM user PIN (planted)' },
    ]);
  });
});

describe('an app built without a logger, in a captured run', () => {
  it('still writes its request lines to the capture file', async () => {
    const file = join(dir, 'app-capture.log');
    const saved = process.env.GRANTOR_TEST_LOG_FILE;
    process.env.GRANTOR_TEST_LOG_FILE = file;
    try {
      const app = createServer();
      // Request lines come from buildApp's request-log plugin; a route's own line shows
      // that this bare server's logger writes to the capture file.
      app.get('/probe', { config: { public: true } }, (req) => {
        req.log.info({ probe: '/probe' }, 'probe handled');
        return { ok: true };
      });
      await app.ready();
      expect((await app.inject({ url: '/probe' })).statusCode).toBe(200);
      await app.close();
    } finally {
      process.env.GRANTOR_TEST_LOG_FILE = saved;
    }
    const captured = (await readFile(file, 'utf8')).trim().split('\n');
    const probes = captured.map((l) => (JSON.parse(l) as { probe?: unknown }).probe);
    expect(probes).toContain('/probe');
  });
});

describe('this run', () => {
  it('is captured, and the rig HSM PINs are registered for the scan', async () => {
    const logFile = process.env.GRANTOR_TEST_LOG_FILE;
    const secretsFile = process.env.GRANTOR_TEST_SECRETS_FILE;
    expect(logFile).toMatch(/suite\.log$/);
    expect(secretsFile).toBeDefined();
    const hsm = await testHsm();
    const registered = await loadSecrets(secretsFile ?? '');
    expect(registered.map((s) => s.value)).toContain(hsm.pin);
    expect(registered.some((s) => s.label.startsWith('HSM SO PIN'))).toBe(true);
    // Registering appends one JSON line per secret.
    const before = registered.length;
    registerSecret('log-scan test marker', randomBytes(16).toString('hex'));
    expect(await loadSecrets(secretsFile ?? '')).toHaveLength(before + 1);
  });
});
