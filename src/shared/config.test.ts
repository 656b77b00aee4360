import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_MAX_BUNDLE_ENTRIES } from '../audit/bundle.js';
import { ConfigError } from './errors.js';
import { bucketLimits, DEFAULT_RATE_LIMIT_BUCKETS, loadConfig, redactedConfig } from './config.js';

const dir = mkdtempSync(join(tmpdir(), 'grantor-config-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});
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

/** The configuration key a ConfigError names for `env` over the base environment. */
function configKeyOfError(env: Record<string, string>): string {
  return configError({ ...base, ...env }).key;
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

  it('bounds NV anchor writes to one pair a second by default (hardware TPM wear); 0 for swtpm', () => {
    expect(loadConfig(base, dir).audit.minAnchorIntervalMs).toBe(1000);
    expect(
      loadConfig({ ...base, GRANTOR_AUDIT_MIN_ANCHOR_INTERVAL_MS: '0' }, dir).audit
        .minAnchorIntervalMs,
    ).toBe(0);
    expect(configKeyOfError({ GRANTOR_AUDIT_MIN_ANCHOR_INTERVAL_MS: '60001' })).toBe(
      'GRANTOR_AUDIT_MIN_ANCHOR_INTERVAL_MS',
    );
  });

  it('bounds one evidence bundle to 100,000 entries by default, configurable, validated', () => {
    expect(loadConfig(base, dir).audit.exportMaxEntries).toBe(DEFAULT_MAX_BUNDLE_ENTRIES);
    expect(
      loadConfig({ ...base, GRANTOR_AUDIT_EXPORT_MAX_ENTRIES: '2500' }, dir).audit.exportMaxEntries,
    ).toBe(2500);
    for (const bad of ['0', '-1', '1.5', 'many', '100000001']) {
      expect(configKeyOfError({ GRANTOR_AUDIT_EXPORT_MAX_ENTRIES: bad })).toBe(
        'GRANTOR_AUDIT_EXPORT_MAX_ENTRIES',
      );
    }
  });

  it('starts log periods on demand only by default; GRANTOR_AUDIT_PERIOD_HOURS is whole hours up to ten years', () => {
    expect(loadConfig(base, dir).audit.periodHours).toBeUndefined();
    expect(loadConfig({ ...base, GRANTOR_AUDIT_PERIOD_HOURS: '0' }, dir).audit.periodHours).toBe(
      undefined,
    );
    expect(loadConfig({ ...base, GRANTOR_AUDIT_PERIOD_HOURS: '24' }, dir).audit.periodHours).toBe(
      24,
    );
    for (const bad of ['1.5', '-1', '87601', 'daily']) {
      expect(configKeyOfError({ GRANTOR_AUDIT_PERIOD_HOURS: bad })).toBe(
        'GRANTOR_AUDIT_PERIOD_HOURS',
      );
    }
  });

  it('activates no reference policy unless one is configured (fail closed)', () => {
    expect(loadConfig(base, dir).attestation.referencePolicies).toEqual([]);
    expect(
      loadConfig({ ...base, GRANTOR_REFERENCE_POLICIES: 'a.json,b' }, dir).attestation
        .referencePolicies,
    ).toEqual([join(dir, 'a.json'), join(dir, 'b')]);
  });

  it('reads the policy worker threads: cores - 1 (at most 4) by default, 0 decides in the loop', () => {
    expect(loadConfig(base, dir).policy.threads).toBe(Math.min(4, availableParallelism() - 1));
    expect(loadConfig({ ...base, GRANTOR_POLICY_THREADS: '0' }, dir).policy.threads).toBe(0);
    expect(configError({ ...base, GRANTOR_POLICY_THREADS: '65' }).message).toContain(
      'GRANTOR_POLICY_THREADS',
    );
  });

  it('reads the HSM session and signing-thread counts, and refuses them out of range', () => {
    expect(loadConfig(base, dir).keys).toMatchObject({
      sessions: 4,
      signThreads: availableParallelism(),
    });
    const c = loadConfig(
      { ...base, GRANTOR_HSM_SESSIONS: '8', GRANTOR_HSM_SIGN_THREADS: '1' },
      dir,
    );
    expect(c.keys).toMatchObject({ sessions: 8, signThreads: 1 });
    expect(configError({ ...base, GRANTOR_HSM_SIGN_THREADS: '0' }).message).toContain(
      'GRANTOR_HSM_SIGN_THREADS',
    );
    expect(configError({ ...base, GRANTOR_HSM_SESSIONS: '65' }).message).toContain(
      'GRANTOR_HSM_SESSIONS',
    );
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
    [{ GRANTOR_LISTEN: '0.0.0.0:8443' }, 'GRANTOR_LISTEN'],
    [{ GRANTOR_LISTEN: '192.0.2.7:8443' }, 'GRANTOR_LISTEN'],
    [{ GRANTOR_LISTEN: '[::]:8443' }, 'GRANTOR_LISTEN'],
    [{ GRANTOR_LISTEN: 'grantor.example:8443' }, 'GRANTOR_LISTEN'],
    [{ GRANTOR_TLS_CERT: 'tls/server.pem' }, 'GRANTOR_TLS_KEY'],
    [{ GRANTOR_TLS_KEY: 'tls/server.key' }, 'GRANTOR_TLS_CERT'],
    [{ GRANTOR_OPERATOR_CA: 'tls/operator-ca.pem' }, 'GRANTOR_OPERATOR_CA'],
  ])('refuses %o naming %s', (patch, key) => {
    const err = configError({ ...base, ...patch });
    expect(err.code).toBe('config_invalid');
    expect(err.key).toBe(key);
  });

  it('listens in plain HTTP without TLS settings, on loopback only', () => {
    expect(loadConfig(base, dir).tls).toBeUndefined();
    for (const listen of ['127.0.0.1:8443', '127.8.9.10:1', 'localhost:8443', '[::1]:8443']) {
      const c = loadConfig({ ...base, GRANTOR_LISTEN: listen }, dir);
      expect(c.tls).toBeUndefined();
    }
    const err = configError({ ...base, GRANTOR_LISTEN: '0.0.0.0:8443' });
    expect(err.message).toContain('GRANTOR_TLS_CERT');
  });

  it('reads the TLS settings, resolving paths, and then allows any listen host', () => {
    const c = loadConfig(
      {
        ...base,
        GRANTOR_LISTEN: '0.0.0.0:8443',
        GRANTOR_TLS_CERT: 'tls/server.pem',
        GRANTOR_TLS_KEY: '/etc/grantor/server.key',
      },
      dir,
    );
    expect(c.listen).toEqual({ host: '0.0.0.0', port: 8443 });
    expect(c.tls).toEqual({
      certFile: join(dir, 'tls/server.pem'),
      keyFile: '/etc/grantor/server.key',
    });
    expect(c.tls !== undefined && 'operatorCaFile' in c.tls).toBe(false);
    const withCa = loadConfig(
      {
        ...base,
        GRANTOR_TLS_CERT: 'tls/server.pem',
        GRANTOR_TLS_KEY: 'tls/server.key',
        GRANTOR_OPERATOR_CA: 'tls/operator-ca.pem',
      },
      dir,
    );
    expect(withCa.tls?.operatorCaFile).toBe(join(dir, 'tls/operator-ca.pem'));
  });

  it('reads the TLS settings from the JSON file too', () => {
    const file = join(dir, 'grantor-tls.json');
    writeFileSync(
      file,
      JSON.stringify({
        listen: '0.0.0.0:9443',
        tlsCert: 'a.pem',
        tlsKey: 'a.key',
        operatorCa: 'ca.pem',
      }),
    );
    const c = loadConfig({ ...base, GRANTOR_CONFIG: file }, dir);
    expect(c.tls).toEqual({
      certFile: join(dir, 'a.pem'),
      keyFile: join(dir, 'a.key'),
      operatorCaFile: join(dir, 'ca.pem'),
    });
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

  it('reads an appliance-wide limit for any bucket; certify has one by default', () => {
    const c = loadConfig(
      {
        ...base,
        GRANTOR_RATE_LIMIT_CERTIFY_PER_APPLIANCE: '5:1',
        GRANTOR_RATE_LIMIT_GRANTS_PER_APPLIANCE: '100:50',
      },
      dir,
    );
    expect(c.rateLimits.buckets.certify.perAppliance).toEqual({ burst: 5, perSecond: 1 });
    expect(c.rateLimits.buckets.grants.perAppliance).toEqual({ burst: 100, perSecond: 50 });
    expect(loadConfig(base, dir).rateLimits.buckets.grants.perAppliance).toBeUndefined();
    expect(DEFAULT_RATE_LIMIT_BUCKETS.certify.perAppliance).toBeDefined();
    expect(configKeyOfError({ GRANTOR_RATE_LIMIT_CERTIFY_PER_APPLIANCE: '0:1' })).toBe(
      'GRANTOR_RATE_LIMIT_CERTIFY_PER_APPLIANCE',
    );
  });

  it('refuses malformed limits and fewer than two approvals, naming the key', () => {
    for (const bad of ['5', '0:1', '5:0', 'five:1', '5:-1']) {
      expect(configKeyOfError({ GRANTOR_RATE_LIMIT_ENROLL_PER_ADDRESS: bad })).toBe(
        'GRANTOR_RATE_LIMIT_ENROLL_PER_ADDRESS',
      );
    }
    expect(configKeyOfError({ GRANTOR_APPROVALS_REQUIRED: '1' })).toBe(
      'GRANTOR_APPROVALS_REQUIRED',
    );
    expect(configKeyOfError({ GRANTOR_RATE_LIMIT_MAX_KEYS: '10' })).toBe(
      'GRANTOR_RATE_LIMIT_MAX_KEYS',
    );
    expect(configKeyOfError({ GRANTOR_OPERATOR_REFUSAL_MAX_PER_WINDOW: '0' })).toBe(
      'GRANTOR_OPERATOR_REFUSAL_MAX_PER_WINDOW',
    );
  });
});

describe('grant keys in the TPM (tpm2-pkcs11) and batch-signed grants', () => {
  const tpmModule = '/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so';
  const auditPinFile = join(dir, 'audit-pin');
  writeFileSync(auditPinFile, 'audit-pin-not-real-0815\n');
  const tpmBase = {
    ...base,
    GRANTOR_TPM_TCTI: 'tabrmd:bus_name=com.intel.tss2.Tabrmd,bus_type=session',
    GRANTOR_PKCS11_MODULE: tpmModule,
    GRANTOR_AUDIT_PKCS11_MODULE: '/usr/lib/softhsm/libsofthsm2.so',
    GRANTOR_AUDIT_HSM_TOKEN_LABEL: 'grantor-audit',
    GRANTOR_AUDIT_HSM_PIN_FILE: auditPinFile,
  };

  it('reads the audit key token beside a TPM grant token, and the resource manager TCTI', () => {
    const c = loadConfig(tpmBase, dir);
    expect(c.tpm.tcti).toBe(tpmBase.GRANTOR_TPM_TCTI);
    expect(c.hsm.module).toBe(tpmModule);
    expect(c.auditHsm).toMatchObject({
      module: '/usr/lib/softhsm/libsofthsm2.so',
      tokenLabel: 'grantor-audit',
      pin: 'audit-pin-not-real-0815',
    });
    expect(loadConfig(base, dir).auditHsm).toBeUndefined();
  });

  it('refuses a TPM grant token without an Ed25519-capable audit token', () => {
    expect(configKeyOfError({ ...tpmBase, GRANTOR_AUDIT_PKCS11_MODULE: '' })).toBe(
      'GRANTOR_AUDIT_PKCS11_MODULE',
    );
    expect(configKeyOfError({ ...tpmBase, GRANTOR_AUDIT_PKCS11_MODULE: tpmModule })).toBe(
      'GRANTOR_AUDIT_PKCS11_MODULE',
    );
    expect(configKeyOfError({ ...tpmBase, GRANTOR_AUDIT_PKCS11_MODULE: 'libsofthsm2.so' })).toBe(
      'GRANTOR_AUDIT_PKCS11_MODULE',
    );
    expect(configKeyOfError({ ...tpmBase, GRANTOR_AUDIT_HSM_TOKEN_LABEL: '' })).toBe(
      'GRANTOR_AUDIT_HSM_TOKEN_LABEL',
    );
    expect(configKeyOfError({ ...tpmBase, GRANTOR_AUDIT_HSM_PIN_FILE: join(dir, 'missing') })).toBe(
      'GRANTOR_AUDIT_HSM_PIN_FILE',
    );
    expect(configKeyOfError({ ...tpmBase, GRANTOR_AUDIT_HSM_PIN: 'x' })).toBe(
      'GRANTOR_AUDIT_HSM_PIN',
    );
    expect(configKeyOfError({ GRANTOR_TPM_TCTI: 'tabrmd:bus_name=x;rm -rf' })).toBe(
      'GRANTOR_TPM_TCTI',
    );
  });

  it('never shows the audit token PIN in the printable form', () => {
    const printed = JSON.stringify(redactedConfig(loadConfig(tpmBase, dir)));
    expect(printed).not.toContain('audit-pin-not-real-0815');
    expect(printed).not.toContain('not-a-real-pin-4711');
  });

  it('reads the batch mode (off by default) and bounds its size and wait', () => {
    expect(loadConfig(base, dir).keys.grantBatch).toEqual({
      enabled: false,
      maxSize: 64,
      maxWaitMs: 2,
    });
    const on = loadConfig(
      {
        ...base,
        GRANTOR_GRANT_BATCH: 'true',
        GRANTOR_GRANT_BATCH_SIZE: '128',
        GRANTOR_GRANT_BATCH_WAIT_MS: '5',
      },
      dir,
    );
    expect(on.keys.grantBatch).toEqual({ enabled: true, maxSize: 128, maxWaitMs: 5 });
    expect(configKeyOfError({ GRANTOR_GRANT_BATCH: 'sometimes' })).toBe('GRANTOR_GRANT_BATCH');
    expect(configKeyOfError({ GRANTOR_GRANT_BATCH_SIZE: '1' })).toBe('GRANTOR_GRANT_BATCH_SIZE');
    expect(configKeyOfError({ GRANTOR_GRANT_BATCH_WAIT_MS: '5000' })).toBe(
      'GRANTOR_GRANT_BATCH_WAIT_MS',
    );
  });

  it('trust changes cascade by default; a value that is not a boolean stops the start', () => {
    expect(loadConfig(base, dir).attestation.trustChangeCascade).toBe(true);
    const off = loadConfig({ ...base, GRANTOR_TRUST_CHANGE_CASCADE: 'false' }, dir);
    expect(off.attestation.trustChangeCascade).toBe(false);
    expect(configKeyOfError({ GRANTOR_TRUST_CHANGE_CASCADE: 'off' })).toBe(
      'GRANTOR_TRUST_CHANGE_CASCADE',
    );
  });

  it('the revocation feed limits: defaults, values from the environment or the file, bad values named', () => {
    expect(loadConfig(base, dir).revocationFeed).toEqual({
      maxSubscribers: 256,
      maxWaitMs: 25_000,
      sendTimeoutMs: 10_000,
      snapshotTtlSeconds: 300,
    });
    const set = loadConfig(
      {
        ...base,
        GRANTOR_REVOCATION_FEED_MAX_SUBSCRIBERS: '16',
        GRANTOR_REVOCATION_FEED_MAX_WAIT_MS: '0',
        GRANTOR_REVOCATION_FEED_SEND_TIMEOUT_MS: '2500',
        GRANTOR_REVOCATION_SNAPSHOT_TTL_SECONDS: '60',
      },
      dir,
    );
    expect(set.revocationFeed).toEqual({
      maxSubscribers: 16,
      maxWaitMs: 0,
      sendTimeoutMs: 2500,
      snapshotTtlSeconds: 60,
    });
    const file = join(dir, 'feed.json');
    writeFileSync(file, JSON.stringify({ revocationFeedMaxSubscribers: 8 }));
    expect(loadConfig({ ...base, GRANTOR_CONFIG: file }, dir).revocationFeed.maxSubscribers).toBe(
      8,
    );
    for (const [key, bad] of [
      ['GRANTOR_REVOCATION_FEED_MAX_SUBSCRIBERS', '0'],
      ['GRANTOR_REVOCATION_FEED_MAX_SUBSCRIBERS', 'many'],
      ['GRANTOR_REVOCATION_FEED_MAX_WAIT_MS', '60001'],
      ['GRANTOR_REVOCATION_FEED_MAX_WAIT_MS', '-1'],
      ['GRANTOR_REVOCATION_FEED_SEND_TIMEOUT_MS', '99'],
      ['GRANTOR_REVOCATION_SNAPSHOT_TTL_SECONDS', '9'],
      ['GRANTOR_REVOCATION_SNAPSHOT_TTL_SECONDS', '1.5'],
    ] as const) {
      const e = configError({ ...base, [key]: bad });
      expect(e.key, `${key}=${bad}`).toBe(key);
      expect(e.code).toBe('config_invalid');
      expect(e.message).toMatch(/expected an integer from \d+ to \d+/);
    }
  });
});

describe('bucketLimits', () => {
  it('reads each pair as [burst, perSecond] and adds a per-appliance bucket only when given', () => {
    expect(bucketLimits([3, 1], [2, 0.5])).toEqual({
      perAddress: { burst: 3, perSecond: 1 },
      perRuntime: { burst: 2, perSecond: 0.5 },
    });
    expect(bucketLimits([3, 1], [2, 0.5], [1, 0.25]).perAppliance).toEqual({
      burst: 1,
      perSecond: 0.25,
    });
    expect(DEFAULT_RATE_LIMIT_BUCKETS.rotate.perAppliance?.perSecond).toBe(1 / 300);
  });
});
