/**
 * The commands that run on the appliance itself (provision, keys, audit export, the
 * operator registry) or on files (audit verify, reference-policies learn), with the same
 * service code as the server. Loaded only when such a command runs, so that help and
 * usage errors never load the TPM addon or read the configuration.
 */
import { join, resolve as resolvePath } from 'node:path';
import { openAppliance, provisionAppliance } from '../appliance.js';
import { runReferencePoliciesCli } from '../attestation/measured-boot/learn-cli.js';
import { runAuditCli } from '../audit/cli.js';
import { runKeysCli } from '../keys/cli.js';
import { runOperatorsCli } from '../operators/cli.js';
import { loadConfig, type AppConfig } from '../shared/config.js';
import { LevelPeriodStore } from '../audit/period-store.level.js';
import { databaseHeld, openDatabase } from '../shared/db.level.js';
import { GrantorError } from '../shared/errors.js';
import { openTpm } from '../tpm/tpm.native.js';
import { setRandomOwnerAuth } from '../tpm/owner-auth.js';
import type { Command } from './commands.js';
import type { Io } from './io.js';

/** The running server holds the state: say so, and what to do instead. */
export class StateHeldError extends GrantorError {
  constructor(stateDir: string) {
    super(
      'state_held',
      `the running grantor server holds the state in ${stateDir} (LevelDB lock on db/LOCK): stop the server to run this command, or operate the running appliance remotely (grantor --help: status, runtimes, keys list, approvals, policy, audit entries with --url or --profile)`,
    );
  }
}

async function ensureNotHeld(config: AppConfig): Promise<void> {
  if (await databaseHeld(join(config.stateDir, 'db'))) throw new StateHeldError(config.stateDir);
}

async function provision(given: AppConfig, args: readonly string[], io: Io): Promise<number> {
  let config = given;
  const flag = args.indexOf('--set-owner-auth');
  const file = flag === -1 ? undefined : args[flag + 1];
  const tpm = await openTpm(config.tpm);
  try {
    if (file !== undefined && file !== '') {
      const path = resolvePath(file);
      await setRandomOwnerAuth(tpm, path);
      // The value stays in the file: never printed, never logged.
      io.out(
        `tpm: owner authorisation set to a random value, kept in ${path} (mode 0400): keep it offline; provisioning and undefining the audit anchor need it (GRANTOR_TPM_OWNER_AUTH_FILE)`,
      );
      config = { ...config, tpm: { ...config.tpm, ownerAuthFile: path } };
    }
    for (const line of await provisionAppliance(config, tpm)) io.out(line);
  } finally {
    await tpm.close();
  }
  // Opening the appliance runs the audit start-up check and creates missing keys.
  const a = await openAppliance(config);
  try {
    io.out(
      `keys: ${a.keys
        .list()
        .map((k) => `${k.purpose}:${k.state}:${k.kid}`)
        .join(', ')}`,
    );
    io.out(
      a.lockdown === undefined
        ? 'audit log: consistent with its TPM anchor'
        : `audit log: REFUSED (${a.lockdown.code}): ${a.lockdown.message}`,
    );
    return a.lockdown === undefined ? 0 : 1;
  } finally {
    await a.close();
  }
}

/** Runs a local or offline command; `args` are its checked arguments after its path. */
export async function runLocal(command: Command, args: readonly string[], io: Io): Promise<number> {
  const [group, verb] = command.path;
  const sub = command.path.slice(1);
  if (group === 'reference-policies') {
    return runReferencePoliciesCli([...sub, ...args], { out: io.out, err: io.err });
  }
  if (group === 'audit' && verb === 'verify' && !args.includes('--full')) {
    return runAuditCli([...sub, ...args], {}, { out: io.out, err: io.err });
  }
  const config = loadConfig();
  await ensureNotHeld(config);
  if (group === 'audit' && verb === 'verify') {
    // The full replay reads the stores only: no TPM, no HSM, no appliance start.
    const db = await openDatabase(join(config.stateDir, 'db'));
    try {
      return await runAuditCli(
        [...sub, ...args],
        {
          openPeriods: () => Promise.resolve(new LevelPeriodStore(db)),
          progress: (text) => process.stderr.write(text),
        },
        { out: io.out, err: io.err },
      );
    } finally {
      await db.close();
    }
  }
  if (group === 'provision') return provision(config, args, io);
  const a = await openAppliance(config);
  try {
    if (group === 'keys') return await runKeysCli([...sub, ...args], a.keys, io.out);
    if (group === 'audit') {
      return await runAuditCli(
        [...sub, ...args],
        {
          openAudit: () =>
            Promise.resolve({
              audit: a.audit,
              policySet: (hash: string) => a.policyArchive.get(hash),
              maxEntries: config.audit.exportMaxEntries,
              close: () => Promise.resolve(),
            }),
        },
        { out: io.out, err: io.err },
      );
    }
    return await runOperatorsCli([...sub, ...args], a.operators.tokens, {
      log: io.out,
      error: io.err,
    });
  } finally {
    await a.close();
  }
}
