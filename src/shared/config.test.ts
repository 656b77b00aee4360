import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from './errors.js';
import { loadConfig, redactedConfig } from './config.js';

const dir = mkdtempSync(join(tmpdir(), 'grantor-config-'));
const pinFile = join(dir, 'pin');
writeFileSync(pinFile, 'not-a-real-pin-4711\n');

const base = {
  GRANTOR_TPM_TCTI: 'swtpm:host=127.0.0.1,port=2321',
  GRANTOR_PKCS11_MODULE: '/usr/lib/softhsm/libsofthsm2.so',
  GRANTOR_HSM_TOKEN_LABEL: 'grantor',
  GRANTOR_HSM_PIN_FILE: pinFile,
};

function configError(env: Record<string, string | undefined>): ConfigError {
  try {
    loadConfig(env, dir);
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('reads a complete environment with defaults', () => {
    const c = loadConfig(base, dir);
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 8443 });
    expect(c.tpm.tcti).toBe('swtpm:host=127.0.0.1,port=2321');
    expect(c.hsm.pin).toBe('not-a-real-pin-4711');
    expect(c.stateDir).toBe(join(dir, 'var'));
    expect(c.logLevel).toBe('info');
  });

  it('accepts the device TCTI and an IPv6 listen address', () => {
    const c = loadConfig(
      { ...base, GRANTOR_TPM_TCTI: 'device:/dev/tpmrm0', GRANTOR_LISTEN: '[::1]:9000' },
      dir,
    );
    expect(c.tpm.tcti).toBe('device:/dev/tpmrm0');
    expect(c.listen).toEqual({ host: '::1', port: 9000 });
  });

  it.each([
    [{ GRANTOR_TPM_TCTI: undefined }, 'GRANTOR_TPM_TCTI'],
    [{ GRANTOR_TPM_TCTI: 'mssim:host=x' }, 'GRANTOR_TPM_TCTI'],
    [{ GRANTOR_PKCS11_MODULE: 'libsofthsm2.so' }, 'GRANTOR_PKCS11_MODULE'],
    [{ GRANTOR_HSM_TOKEN_LABEL: ' ' }, 'GRANTOR_HSM_TOKEN_LABEL'],
    [{ GRANTOR_HSM_PIN_FILE: undefined }, 'GRANTOR_HSM_PIN_FILE'],
    [{ GRANTOR_HSM_PIN_FILE: join(dir, 'missing') }, 'GRANTOR_HSM_PIN_FILE'],
    [{ GRANTOR_HSM_PIN: '1234' }, 'GRANTOR_HSM_PIN'],
    [{ GRANTOR_LISTEN: 'localhost' }, 'GRANTOR_LISTEN'],
    [{ GRANTOR_LISTEN: '127.0.0.1:70000' }, 'GRANTOR_LISTEN'],
    [{ GRANTOR_LOG_LEVEL: 'loud' }, 'GRANTOR_LOG_LEVEL'],
  ])('refuses %o naming %s', (patch, key) => {
    const err = configError({ ...base, ...patch });
    expect(err.code).toBe('config_invalid');
    expect(err.key).toBe(key);
  });

  it('takes the PIN from the environment when no file is given', () => {
    const c = loadConfig(
      { ...base, GRANTOR_HSM_PIN_FILE: undefined, GRANTOR_HSM_PIN: 'env-pin-9' },
      dir,
    );
    expect(c.hsm.pin).toBe('env-pin-9');
    expect(c.hsm.pinSource).toBe('environment');
  });

  it('layers a JSON file under the environment and refuses unknown keys', () => {
    const file = join(dir, 'grantor.json');
    writeFileSync(file, JSON.stringify({ listen: '127.0.0.1:9999', hsmTokenLabel: 'from-file' }));
    const c = loadConfig(
      { ...base, GRANTOR_HSM_TOKEN_LABEL: undefined, GRANTOR_CONFIG: file },
      dir,
    );
    expect(c.listen.port).toBe(9999);
    expect(c.hsm.tokenLabel).toBe('from-file');
    writeFileSync(file, JSON.stringify({ colour: 'blue' }));
    expect(configError({ ...base, GRANTOR_CONFIG: file }).key).toBe('colour');
  });

  it('never shows the PIN in the printable form or in errors', () => {
    const c = loadConfig(base, dir);
    expect(JSON.stringify(redactedConfig(c))).not.toContain('not-a-real-pin-4711');
    const err = configError({ ...base, GRANTOR_HSM_PIN: 'secret-pin-77' });
    expect(err.message).not.toContain('secret-pin-77');
  });
});
