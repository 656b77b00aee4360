import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { HsmUnavailableError } from './keys/errors.js';
import { lineAndColumn } from './policy/policy-set.js';
import { loadConfig } from './shared/config.js';
import { ConfigError, GrantorError } from './shared/errors.js';
import {
  componentOfCode,
  describeStartupFailure,
  fileConfigError,
  socketOfTcti,
} from './startup-cause.js';

describe('socketOfTcti', () => {
  it('reads host and port of the socket TCTIs only', () => {
    expect(socketOfTcti('swtpm:host=10.0.0.2,port=2400')).toEqual({ host: '10.0.0.2', port: 2400 });
    expect(socketOfTcti('mssim:port=2321')).toEqual({ host: 'localhost', port: 2321 });
    expect(socketOfTcti('device:/dev/tpmrm0')).toBeUndefined();
    expect(socketOfTcti('swtpm:host=a,port=99999')).toBeUndefined();
  });

  it('answers any string with a socket or undefined', () => {
    fc.assert(
      fc.property(fc.string(), (s) => {
        const r = socketOfTcti(`swtpm:${s}`);
        if (r !== undefined) expect(r.port).toBeGreaterThan(0);
      }),
    );
  });
});

describe('fileConfigError', () => {
  it('names the key and the path of a missing file', () => {
    const enoent = Object.assign(new Error('ENOENT: no such file'), {
      code: 'ENOENT',
      path: '/etc/grantor/ek.pem',
    });
    const e = fileConfigError('GRANTOR_EK_CA_BUNDLE', ['/etc/grantor'], enoent);
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.code).toBe('config_invalid');
    expect(e.message).toBe(
      'GRANTOR_EK_CA_BUNDLE: cannot read /etc/grantor/ek.pem: no such file or directory',
    );
    const own = new GrantorError('tpm_unavailable', 'x');
    expect(fileConfigError('K', [], own)).toBe(own);
  });

  it('maps codes to components', () => {
    expect(componentOfCode('hsm_pin_locked')).toBe('hsm');
    expect(componentOfCode('not_ready')).toBe('appliance');
  });
});

describe('describeStartupFailure', () => {
  const dir = mkdtempSync(join(tmpdir(), 'grantor-cause-'));
  writeFileSync(join(dir, 'pin'), 'not-a-real-pin-4711\n');
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  const config = loadConfig(
    {
      GRANTOR_TPM_TCTI: 'device:/dev/tpmrm0',
      GRANTOR_PKCS11_MODULE: '/usr/lib/softhsm/libsofthsm2.so',
      GRANTOR_HSM_TOKEN_LABEL: 'grantor',
      GRANTOR_HSM_PIN_FILE: join(dir, 'pin'),
    },
    dir,
  );

  it('names the token label from the error details, whatever the message says', async () => {
    for (const [count, found] of [
      [0, 'no token'],
      [2, 'more than one token'],
    ] as const) {
      const e = new HsmUnavailableError('token lookup failed', {
        details: { tokenLabel: 'grantor', tokensWithLabel: count },
      });
      expect(await describeStartupFailure(e, config)).toEqual({
        component: 'hsm',
        code: 'hsm_unavailable',
        cause: `GRANTOR_PKCS11_MODULE / GRANTOR_HSM_TOKEN_LABEL: ${found} labelled "grantor" in /usr/lib/softhsm/libsofthsm2.so`,
      });
    }
  });
});

describe('lineAndColumn', () => {
  it('is 1-based', () => {
    expect(lineAndColumn('ab\ncd', 0)).toBe('1:1');
    expect(lineAndColumn('ab\ncd', 4)).toBe('2:2');
    expect(lineAndColumn('ab', 99)).toBe('1:3');
  });
});
