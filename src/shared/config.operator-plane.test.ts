import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_RATE_LIMIT_BUCKETS, loadConfig } from './config.js';
import { ConfigError } from './errors.js';

const dir = mkdtempSync(join(tmpdir(), 'grantor-config-op-'));
const pinFile = join(dir, 'pin');
writeFileSync(pinFile, 'not-a-real-pin-4711\n');
const base = {
  GRANTOR_TPM_TCTI: 'swtpm:host=127.0.0.1,port=2321',
  GRANTOR_PKCS11_MODULE: '/usr/lib/softhsm/libsofthsm2.so',
  GRANTOR_HSM_TOKEN_LABEL: 'grantor',
  GRANTOR_HSM_PIN_FILE: pinFile,
};

function keyOfError(env: Record<string, string>): string {
  try {
    loadConfig({ ...base, ...env }, dir);
  } catch (e) {
    if (e instanceof ConfigError) return e.key;
    throw e;
  }
  throw new Error('expected a ConfigError');
}

describe('operator-plane configuration', () => {
  it('has defaults: rate limits, 2 approvals, refusal windows', () => {
    const c = loadConfig(base, dir);
    expect(c.rateLimits.buckets).toEqual(DEFAULT_RATE_LIMIT_BUCKETS);
    expect(c.rateLimits.maxKeys).toBe(10_000);
    expect(c.approvals).toEqual({
      required: 2,
      requestTtlSeconds: 86_400,
      approvalTtlSeconds: 3600,
    });
    expect(c.operatorRefusals).toEqual({ windowSeconds: 60, maxEntriesPerWindow: 100 });
  });

  it('reads BURST:PER_SECOND per bucket and scope, from the environment and the file', () => {
    const file = join(dir, 'grantor.json');
    writeFileSync(file, JSON.stringify({ rateLimitGrantsPerAddress: '100:50' }));
    const c = loadConfig(
      {
        ...base,
        GRANTOR_CONFIG: file,
        GRANTOR_RATE_LIMIT_CHALLENGES_PER_RUNTIME: '5:0.5',
        GRANTOR_APPROVALS_REQUIRED: '3',
      },
      dir,
    );
    expect(c.rateLimits.buckets.challenges.perRuntime).toEqual({ burst: 5, perSecond: 0.5 });
    expect(c.rateLimits.buckets.grants.perAddress).toEqual({ burst: 100, perSecond: 50 });
    expect(c.rateLimits.buckets.grants.perRuntime).toEqual(
      DEFAULT_RATE_LIMIT_BUCKETS.grants.perRuntime,
    );
    expect(c.approvals.required).toBe(3);
  });

  it('refuses malformed limits and fewer than two approvals, naming the key', () => {
    for (const bad of ['5', '0:1', '5:0', 'five:1', '5:-1']) {
      expect(keyOfError({ GRANTOR_RATE_LIMIT_ENROLL_PER_ADDRESS: bad })).toBe(
        'GRANTOR_RATE_LIMIT_ENROLL_PER_ADDRESS',
      );
    }
    expect(keyOfError({ GRANTOR_APPROVALS_REQUIRED: '1' })).toBe('GRANTOR_APPROVALS_REQUIRED');
    expect(keyOfError({ GRANTOR_RATE_LIMIT_MAX_KEYS: '10' })).toBe('GRANTOR_RATE_LIMIT_MAX_KEYS');
    expect(keyOfError({ GRANTOR_OPERATOR_REFUSAL_MAX_PER_WINDOW: '0' })).toBe(
      'GRANTOR_OPERATOR_REFUSAL_MAX_PER_WINDOW',
    );
  });
});
