/**
 * `grantor doctor`: what would stop this appliance from starting or serving, found without
 * serving: the configuration, the TLS files, the policy set, the EK CA bundle and the other
 * trust files, each PKCS#11 token (module, label, PIN, mechanisms), the TPM (reachable,
 * answers) and the audit anchor in NV (its names agree with the pin). One line per check
 * with what to do; exit code 1 when any check fails. Writes nothing: the database is not
 * opened, no key is created, no NV index is defined.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expandPaths } from '../appliance.js';
import { loadReferencePolicies, loadEnrollmentRules } from '../attestation/index.js';
import { parseCaBundle } from '../attestation/ek-certificate.js';
import { readAnchorPin } from '../audit/index.js';
import { checkHsmToken } from '../keys/hsm-check.pkcs11.js';
import { createPolicyEngine } from '../policy/index.js';
import { loadConfig, type AppConfig } from '../shared/config.js';
import { databaseHeld } from '../shared/db.level.js';
import { ConfigError } from '../shared/errors.js';
import { describeTpmReach, socketOfTcti } from '../startup-cause.js';
import { openTpm } from '../tpm/tpm.native.js';
import { flag, type Parsed } from './args.js';
import { table, type Io } from './io.js';

export type CheckState = 'ok' | 'warn' | 'fail';

export interface Check {
  readonly check: string;
  readonly state: CheckState;
  readonly detail: string;
  /** What to do about it (warn and fail). */
  readonly fix?: string;
}

const DAY_MS = 86_400_000;
/** A listener certificate closer than this to its end is a warning. */
const EXPIRY_WARNING_DAYS = 30;

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function errno(e: unknown): string {
  const code = (e as { code?: unknown }).code;
  return typeof code === 'string' ? code : message(e);
}

async function readOr(path: string): Promise<{ text: string } | { error: string }> {
  try {
    return { text: await readFile(path, 'utf8') };
  } catch (e) {
    return { error: errno(e) };
  }
}

async function tlsChecks(config: AppConfig, now: Date): Promise<Check[]> {
  const tls = config.tls;
  if (tls === undefined) {
    return [
      {
        check: 'tls',
        state: 'ok',
        detail: `plain HTTP on loopback ${config.listen.host}:${config.listen.port} (no GRANTOR_TLS_CERT)`,
      },
    ];
  }
  const out: Check[] = [];
  const certText = await readOr(tls.certFile);
  const keyText = await readOr(tls.keyFile);
  if ('error' in certText || 'error' in keyText) {
    const [key, path, error] =
      'error' in certText
        ? ['GRANTOR_TLS_CERT', tls.certFile, certText.error]
        : ['GRANTOR_TLS_KEY', tls.keyFile, 'error' in keyText ? keyText.error : ''];
    return [
      {
        check: 'tls',
        state: 'fail',
        detail: `${key} ${path}: cannot read it (${error})`,
        fix: `point ${key} at a readable PEM file (mode 0600 for the key, owned by the service user)`,
      },
    ];
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certText.text);
  } catch (e) {
    return [
      {
        check: 'tls',
        state: 'fail',
        detail: `GRANTOR_TLS_CERT ${tls.certFile}: not a PEM certificate (${message(e)})`,
        fix: 'give the listener certificate (chain) in PEM',
      },
    ];
  }
  let matches: boolean;
  try {
    matches = cert.checkPrivateKey(createPrivateKey(keyText.text));
  } catch (e) {
    return [
      {
        check: 'tls',
        state: 'fail',
        detail: `GRANTOR_TLS_KEY ${tls.keyFile}: not a PEM private key (${message(e)})`,
        fix: 'give the private key of the listener certificate in PEM',
      },
    ];
  }
  if (!matches) {
    out.push({
      check: 'tls',
      state: 'fail',
      detail: `GRANTOR_TLS_KEY ${tls.keyFile} is not the key of GRANTOR_TLS_CERT ${tls.certFile}`,
      fix: 'pair the certificate with its own private key',
    });
  }
  const notAfter = new Date(cert.validTo);
  const notBefore = new Date(cert.validFrom);
  const days = Math.floor((notAfter.getTime() - now.getTime()) / DAY_MS);
  const subject = cert.subject.replace(/\n/g, ', ');
  if (now < notBefore) {
    out.push({
      check: 'tls',
      state: 'fail',
      detail: `certificate ${subject} is not valid before ${notBefore.toISOString()}`,
      fix: "check the appliance's clock, or issue a certificate valid now",
    });
  } else if (days < 0) {
    out.push({
      check: 'tls',
      state: 'fail',
      detail: `certificate ${subject} expired ${notAfter.toISOString()}`,
      fix: 'renew the listener certificate and restart',
    });
  } else if (matches) {
    out.push({
      check: 'tls',
      state: days < EXPIRY_WARNING_DAYS ? 'warn' : 'ok',
      detail: `certificate ${subject} and its key match; valid until ${notAfter.toISOString()} (${days} days)`,
      ...(days < EXPIRY_WARNING_DAYS ? { fix: 'renew the listener certificate soon' } : {}),
    });
  }
  if (tls.operatorCaFile !== undefined) {
    const ca = await readOr(tls.operatorCaFile);
    let state: CheckState = 'ok';
    let detail: string;
    if ('error' in ca) {
      state = 'fail';
      detail = `GRANTOR_OPERATOR_CA ${tls.operatorCaFile}: cannot read it (${ca.error})`;
    } else {
      try {
        const caCert = new X509Certificate(ca.text);
        detail = `operator CA ${caCert.subject.replace(/\n/g, ', ')} valid until ${new Date(caCert.validTo).toISOString()}`;
        if (new Date(caCert.validTo) < now) {
          state = 'fail';
          detail = `operator CA expired ${new Date(caCert.validTo).toISOString()}`;
        }
      } catch (e) {
        state = 'fail';
        detail = `GRANTOR_OPERATOR_CA ${tls.operatorCaFile}: not a PEM certificate (${message(e)})`;
      }
    }
    out.push({
      check: 'tls',
      state,
      detail,
      ...(state === 'ok' ? {} : { fix: 'give the operator CA certificate in PEM' }),
    });
  }
  return out;
}

async function policyCheck(config: AppConfig): Promise<Check> {
  try {
    const engine = await createPolicyEngine({
      policyDir: config.policy.dir,
      schemaFile: config.policy.schemaFile,
      watch: false,
    });
    try {
      const info = engine.info();
      return {
        check: 'policy',
        state: 'ok',
        detail: `${config.policy.dir}: ${info?.policyIds.length ?? 0} policies compile against ${config.policy.schemaFile} (hash ${info?.hash.slice(0, 16) ?? '?'}...)`,
      };
    } finally {
      engine.close();
    }
  } catch (e) {
    const cause = e instanceof Error && e.cause !== undefined ? ` (${errno(e.cause)})` : '';
    return {
      check: 'policy',
      state: 'fail',
      detail: `GRANTOR_POLICY_DIR ${config.policy.dir}: ${message(e)}${cause}`,
      fix: 'fix the named file (or GRANTOR_POLICY_DIR / GRANTOR_POLICY_SCHEMA); the server refuses to start on a set that does not compile',
    };
  }
}

async function trustChecks(config: AppConfig, now: Date): Promise<Check[]> {
  const out: Check[] = [];
  const bundle = config.attestation.ekCaBundle;
  try {
    const files = await expandPaths(bundle, '.pem');
    const pem = (await Promise.all(files.map((f) => readFile(f, 'utf8')))).join('\n');
    // As the server reads it: every certificate parses; an expired one only warns (a
    // vendor's old CA still anchors the EK certificates it issued).
    const certs = parseCaBundle(pem);
    const expired = certs.filter((c) => new Date(c.validTo) < now).length;
    out.push(
      certs.length === 0
        ? {
            check: 'ek-ca',
            state: 'fail',
            detail: `GRANTOR_EK_CA_BUNDLE ${bundle.join(',')}: no certificate`,
            fix: "give the TPM vendors' EK CA certificates (PEM)",
          }
        : {
            check: 'ek-ca',
            state: expired === 0 ? 'ok' : 'warn',
            detail: `${certs.length} EK CA certificate(s) from ${files.length} file(s)${expired === 0 ? '' : `, ${expired} expired`}`,
            ...(expired === 0 ? {} : { fix: 'check that the expired CAs are still wanted' }),
          },
    );
  } catch (e) {
    const path = (e as { path?: unknown }).path;
    out.push({
      check: 'ek-ca',
      state: 'fail',
      detail: `GRANTOR_EK_CA_BUNDLE ${typeof path === 'string' ? path : bundle.join(',')}: ${typeof path === 'string' ? errno(e) : message(e)}`,
      fix: "give the TPM vendors' EK CA certificates (PEM files or folders) that exist",
    });
  }
  try {
    const files = await expandPaths(config.attestation.referencePolicies, '.json');
    const policies = await loadReferencePolicies(files);
    const rules = await loadEnrollmentRules(config.attestation.enrollmentRules);
    out.push({
      check: 'trust-files',
      state: 'ok',
      detail: `${policies.length} reference policies, ${rules.rules.length} enrollment rules`,
    });
  } catch (e) {
    const path = (e as { path?: unknown }).path;
    out.push({
      check: 'trust-files',
      state: 'fail',
      detail:
        e instanceof ConfigError
          ? e.message
          : `GRANTOR_REFERENCE_POLICIES ${typeof path === 'string' ? path : ''}: ${errno(e)}`,
      fix: 'fix GRANTOR_REFERENCE_POLICIES / GRANTOR_ENROLLMENT_RULES or the named file',
    });
  }
  return out;
}

function hsmChecks(config: AppConfig): Check[] {
  const tokens = [
    {
      check: 'hsm',
      keys: 'GRANTOR_PKCS11_MODULE / GRANTOR_HSM_TOKEN_LABEL / GRANTOR_HSM_PIN_FILE',
      module: config.hsm.module,
      tokenLabel: config.hsm.tokenLabel,
      pin: config.hsm.pin,
      needs: config.auditHsm === undefined ? (['ES256', 'EdDSA'] as const) : (['ES256'] as const),
    },
    ...(config.auditHsm === undefined
      ? []
      : [
          {
            check: 'audit-hsm',
            keys: 'GRANTOR_AUDIT_PKCS11_MODULE / GRANTOR_AUDIT_HSM_TOKEN_LABEL / GRANTOR_AUDIT_HSM_PIN_FILE',
            module: config.auditHsm.module,
            tokenLabel: config.auditHsm.tokenLabel,
            pin: config.auditHsm.pin,
            needs: ['EdDSA'] as const,
          },
        ]),
  ];
  return tokens.map((t) => {
    const found = checkHsmToken({
      modulePath: t.module,
      tokenLabel: t.tokenLabel,
      pin: t.pin,
      needs: t.needs,
    });
    const bad = found.find((f) => !f.ok);
    return bad === undefined
      ? { check: t.check, state: 'ok', detail: found.map((f) => f.detail).join('; ') }
      : { check: t.check, state: 'fail', detail: bad.detail, fix: `check ${t.keys}` };
  });
}

async function tpmChecks(config: AppConfig, serverRunning: boolean): Promise<Check[]> {
  const tcti = config.tpm.tcti;
  if (socketOfTcti(tcti) !== undefined) {
    if (serverRunning) {
      return [
        {
          check: 'tpm',
          state: 'warn',
          detail: `not checked: the running server holds the simulator's one connection (${tcti})`,
          fix: 'stop the server to check the TPM and the anchor, or see `grantor status`',
        },
      ];
    }
    const reach = await describeTpmReach(tcti);
    if (reach !== undefined) {
      return [
        {
          check: 'tpm',
          state: 'fail',
          detail: `GRANTOR_TPM_TCTI ${tcti}: ${reach}`,
          fix: 'start the TPM (or its simulator) or fix GRANTOR_TPM_TCTI',
        },
      ];
    }
  }
  let tpm: Awaited<ReturnType<typeof openTpm>>;
  try {
    tpm = await openTpm(config.tpm);
  } catch (e) {
    return [
      {
        check: 'tpm',
        state: 'fail',
        detail: `GRANTOR_TPM_TCTI ${tcti}: ${message(e)}`,
        fix: 'check the device or resource manager and its permissions; stop the server if it holds a simulator connection',
      },
    ];
  }
  const out: Check[] = [];
  try {
    const random = await tpm.getRandom(8);
    out.push({
      check: 'tpm',
      state: 'ok',
      detail: `${tcti} answers (GetRandom ${random.length} bytes)`,
    });
    out.push(await anchorCheck(config, tpm));
  } catch (e) {
    out.push({
      check: 'tpm',
      state: 'fail',
      detail: `GRANTOR_TPM_TCTI ${tcti}: ${message(e)}`,
      fix: 'check the TPM',
    });
  } finally {
    await tpm.close();
  }
  return out;
}

async function anchorCheck(
  config: AppConfig,
  tpm: Awaited<ReturnType<typeof openTpm>>,
): Promise<Check> {
  let pin: Awaited<ReturnType<typeof readAnchorPin>>;
  try {
    pin = await readAnchorPin(config.audit.pinFile, 'GRANTOR_AUDIT_ANCHOR_PIN');
  } catch (e) {
    return {
      check: 'anchor',
      state: 'fail',
      detail: message(e),
      fix: 'restore the anchor pin from its backup (operator configuration, never regenerate it)',
    };
  }
  if (pin === undefined) {
    return {
      check: 'anchor',
      state: 'fail',
      detail: `not provisioned: no anchor pin at ${config.audit.pinFile}`,
      fix: 'run `grantor provision` (a new appliance only; on an existing one restore the pin from its backup)',
    };
  }
  // GRANTOR_AUDIT_NV_NAMES, when set, must agree with the pin; unset, the pin is the only source.
  const names = config.audit.pinnedNames ?? pin.names;
  const found: string[] = [];
  for (const [which, index, pinned] of [
    ['counter', pin.counterIndex, pin.names.counter],
    ['extend', pin.extendIndex, pin.names.extend],
  ] as const) {
    let name: string;
    try {
      name = (await tpm.nvReadPublic(index)).name.toString('hex');
    } catch (e) {
      return {
        check: 'anchor',
        state: 'fail',
        detail: `the audit ${which} NV index 0x${index.toString(16)} cannot be read: ${message(e)}`,
        fix: 'this is not the TPM the appliance was provisioned on, or its NV was cleared: restore, do not re-provision over a log',
      };
    }
    if (name !== pinned) {
      return {
        check: 'anchor',
        state: 'fail',
        detail: `the audit ${which} NV index 0x${index.toString(16)} has name ${name}, the pin says ${pinned}: it was redefined`,
        fix: 'treat as an incident (docs/audit.md): the anchor no longer vouches for the log',
      };
    }
    found.push(`0x${index.toString(16)}`);
  }
  const configured =
    names.counter === pin.names.counter && names.extend === pin.names.extend
      ? ''
      : ' (GRANTOR_AUDIT_NV_NAMES differs from the pin)';
  return {
    check: 'anchor',
    state: configured === '' ? 'ok' : 'fail',
    detail: `NV indices ${found.join(', ')} agree with the pin ${config.audit.pinFile}${configured}`,
    ...(configured === '' ? {} : { fix: 'make GRANTOR_AUDIT_NV_NAMES agree with the pin' }),
  };
}

/** Every check, in the order a start would meet them. */
export async function doctor(
  env: NodeJS.ProcessEnv = process.env,
  cwd = process.cwd(),
  now = new Date(),
): Promise<Check[]> {
  let config: AppConfig;
  try {
    config = loadConfig(env, cwd);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return [
      {
        check: 'config',
        state: 'fail',
        detail: e.message,
        fix: `set ${e.key} (README "Configuration"); nothing else can be checked until it is right`,
      },
    ];
  }
  const serverRunning = await databaseHeld(join(config.stateDir, 'db'));
  return [
    {
      check: 'config',
      state: 'ok',
      detail: `appliance ${config.applianceId}, state ${config.stateDir}`,
    },
    ...(serverRunning
      ? [
          {
            check: 'server',
            state: 'warn' as const,
            detail: `a running server holds the state in ${config.stateDir}`,
            fix: 'the checks below read only; `grantor status` asks the running server',
          },
        ]
      : []),
    ...(await tlsChecks(config, now)),
    await policyCheck(config),
    ...(await trustChecks(config, now)),
    ...hsmChecks(config),
    ...(await tpmChecks(config, serverRunning)),
  ];
}

export async function runDoctor(parsed: Parsed, io: Io): Promise<number> {
  const checks = await doctor();
  if (flag(parsed, 'json')) {
    io.out(JSON.stringify({ checks }, null, 2));
  } else {
    const rows = checks.map((c) => [
      c.state === 'ok' ? 'ok' : c.state === 'warn' ? 'WARN' : 'FAIL',
      c.check,
      c.fix === undefined ? c.detail : `${c.detail} -> ${c.fix}`,
    ]);
    for (const l of table(['', 'check', 'finding'], rows)) io.out(l);
  }
  return checks.some((c) => c.state === 'fail') ? 1 : 0;
}
