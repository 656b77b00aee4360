import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { lineAndColumn } from './policy/policy-set.js';
import { ConfigError, GrantorError } from './shared/errors.js';
import { componentOfCode, fileConfigError, socketOfTcti } from './startup-cause.js';

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

describe('lineAndColumn', () => {
  it('is 1-based', () => {
    expect(lineAndColumn('ab\ncd', 0)).toBe('1:1');
    expect(lineAndColumn('ab\ncd', 4)).toBe('2:2');
    expect(lineAndColumn('ab', 99)).toBe('1:3');
  });
});
