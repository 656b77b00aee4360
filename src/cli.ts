#!/usr/bin/env node
/**
 * `grantor` ceremonies on the appliance itself, with the same service code as the server:
 *   grantor provision [--set-owner-auth FILE]  define and pin the audit anchor, create the log
 *                                          (resumes an interrupted run; then changes nothing);
 *                                          with --set-owner-auth, first set a random TPM owner
 *                                          authorisation (when empty) and keep it in FILE
 *   grantor keys list|rotate|retire|destroy  key ceremonies (the same KeyService)
 *   grantor audit export FILE             entries and a fresh checkpoint
 *   grantor audit verify FILE --key K     offline: needs no appliance, TPM or HSM
 *   grantor operators person add|list      offline bootstrap of the operator registry
 *   grantor operators token create|list|revoke  (with GRANTOR_URL and GRANTOR_OPERATOR_TOKEN:
 *                                          over the operator API of a running appliance)
 *   grantor operators token create|list|revoke
 *   grantor reference-policies learn --event-log FILE [--ima FILE] --name NAME  (offline)
 * The CLI opens the TPM, the HSM and the database itself: run it while the server is
 * stopped (LevelDB and the simulator's TPM connection are exclusive), or use the
 * operator routes of a running appliance.
 */
import { openAppliance, provisionAppliance } from './appliance.js';
import { runAuditCli } from './audit/cli.js';
import { runKeysCli } from './keys/cli.js';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { runOperatorsCli } from './operators/cli.js';
import { RemoteTokens } from './operators/remote.js';
import { runReferencePoliciesCli } from './attestation/measured-boot/learn-cli.js';
import { loadConfig } from './shared/config.js';
import { ConfigError, GrantorError } from './shared/errors.js';
import { openTpm } from './tpm/tpm.native.js';
import { setRandomOwnerAuth } from './tpm/owner-auth.js';

const USAGE = `usage: grantor provision [--set-owner-auth FILE]
       grantor keys list|rotate|retire|destroy ...
       grantor audit export FILE | verify FILE --key <verifier key> [--ak <base64>]
       grantor operators token create|list|revoke ...
       grantor reference-policies learn --event-log FILE [--ima FILE] --name NAME ...`;

const out = {
  log: (line: string): void => {
    process.stdout.write(`${line}\n`);
  },
  error: (line: string): void => {
    process.stderr.write(`${line}\n`);
  },
};

async function run(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h') {
    out.error(USAGE);
    return command === undefined ? 2 : 0;
  }
  if (command === 'audit') {
    // verify is offline; export opens the local appliance.
    return runAuditCli(
      rest,
      {
        openAudit: async () => {
          const a = await openAppliance(loadConfig());
          return { audit: a.audit, close: () => a.close() };
        },
      },
      { out: out.log, err: out.error },
    );
  }
  if (command === 'operators') {
    // A running appliance: token create|list|revoke over its operator API (no local config).
    const url = process.env.GRANTOR_URL;
    const token = process.env.GRANTOR_OPERATOR_TOKEN;
    if (url !== undefined && url !== '' && token !== undefined && token !== '') {
      const caFile = process.env.GRANTOR_URL_CA;
      const ca = caFile === undefined || caFile === '' ? undefined : readFileSync(caFile, 'utf8');
      const client = new RemoteTokens({ url, token, ...(ca === undefined ? {} : { ca }) });
      return runOperatorsCli(rest, client, out);
    }
  }
  if (command === 'reference-policies')
    return runReferencePoliciesCli(rest, { out: out.log, err: out.error });
  let config = loadConfig();
  switch (command) {
    case 'provision': {
      const [flag, file, ...extra] = rest;
      const setOwnerAuth = flag === '--set-owner-auth' && file !== undefined && file !== '';
      if ((rest.length > 0 && !setOwnerAuth) || extra.length > 0) {
        out.error(USAGE);
        return 2;
      }
      const tpm = await openTpm(config.tpm);
      try {
        if (setOwnerAuth) {
          const path = resolve(file);
          await setRandomOwnerAuth(tpm, path);
          // The value stays in the file: never printed, never logged.
          out.log(
            `tpm: owner authorisation set to a random value, kept in ${path} (mode 0400): keep it offline; provisioning and undefining the audit anchor need it (GRANTOR_TPM_OWNER_AUTH_FILE)`,
          );
          config = { ...config, tpm: { ...config.tpm, ownerAuthFile: path } };
        }
        for (const line of await provisionAppliance(config, tpm)) out.log(line);
      } finally {
        await tpm.close();
      }
      // Opening the appliance runs the audit start-up check and creates missing keys.
      const a = await openAppliance(config);
      try {
        out.log(
          `keys: ${a.keys
            .list()
            .map((k) => `${k.purpose}:${k.state}:${k.kid}`)
            .join(', ')}`,
        );
        out.log(
          a.lockdown === undefined
            ? 'audit log: consistent with its TPM anchor'
            : `audit log: REFUSED (${a.lockdown.code}): ${a.lockdown.message}`,
        );
        return a.lockdown === undefined ? 0 : 1;
      } finally {
        await a.close();
      }
    }
    case 'keys': {
      const a = await openAppliance(config);
      try {
        return await runKeysCli(rest, a.keys, out.log);
      } finally {
        await a.close();
      }
    }
    case 'operators': {
      const a = await openAppliance(config);
      try {
        return await runOperatorsCli(rest, a.operators.tokens, out);
      } finally {
        await a.close();
      }
    }
    default:
      out.error(USAGE);
      return 2;
  }
}

run(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    if (e instanceof ConfigError) out.error(`grantor: configuration error: ${e.message}`);
    else if (e instanceof GrantorError) out.error(`grantor: ${e.code}: ${e.message}`);
    else out.error(`grantor: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    process.exitCode = 1;
  },
);
