/**
 * `grantor audit export FILE` and `grantor audit verify FILE --key <verifier key>
 * (--pin <anchor pin file> [--ak <base64 TPM2B_PUBLIC>] | --skip-tpm-evidence)`. The caller (src/cli) passes argv after `audit`, a way to
 * open the local audit service (export only: verify never needs the appliance) and where
 * to print. Returns the exit code: 0 good, 1 does not verify, 2 usage or I/O error.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { GrantorError } from '../shared/errors.js';
import type { AuditService } from './service.js';
import { parseAnchorPin } from './anchor-pin.js';
import { ExportInvalidError, verifyExport } from './verify-export.js';
import type { AuditStore } from './audit-store.port.js';
import { verifyStoreFull } from './full-check.js';
import { ReplayProblem } from './replay.js';

export interface AuditCliDeps {
  /** The local store, for `verify --full` (the server stopped). */
  readonly openStore?: () => Promise<AuditStore>;
  /** Raw progress output (stderr): the bar of `verify --full`. */
  readonly progress?: (text: string) => void;
  /** Opens the local appliance's audit service; `close` releases what it opened. */
  readonly openAudit?: () => Promise<{ audit: AuditService; close(): Promise<void> }>;
  readonly readFile?: (path: string) => Promise<string>;
  readonly writeFile?: (path: string, text: string) => Promise<void>;
}

export interface CliOutput {
  out(line: string): void;
  err(line: string): void;
}

const USAGE =
  'usage: grantor audit export FILE\n       grantor audit verify FILE --key <verifier key> (--pin <anchor pin file> [--ak <base64 TPM2B_PUBLIC>] | --skip-tpm-evidence)\n       grantor audit verify --full';

/** A one-line bar, redrawn in place, at most once per percent. */
function progressBar(write: (text: string) => void): (done: number, total: number) => void {
  let shown = -1;
  return (done, total) => {
    const pct = total === 0 ? 100 : Math.min(100, Math.floor((done * 100) / total));
    if (pct === shown) return;
    shown = pct;
    const filled = Math.round(pct / 5);
    write(`\r[${'#'.repeat(filled)}${'.'.repeat(20 - filled)}] ${pct}% ${done}/${total} entries`);
  };
}

/** `verify --full`: replays the local store; exit 0 good, 1 does not verify, 2 cannot read. */
async function verifyFull(deps: AuditCliDeps, out: CliOutput): Promise<number> {
  if (deps.openStore === undefined) {
    out.err('audit verify --full: the appliance is not configured here');
    return 2;
  }
  const write = deps.progress ?? (() => undefined);
  try {
    const r = await verifyStoreFull(await deps.openStore(), progressBar(write));
    write('\n');
    out.out(
      `OK: ${r.size} entries in ${r.batches} batches replayed from the first: every link, hash, ` +
        `batch root, tile and extend value recomputed; root ${r.root.toString('hex')}, ` +
        `extend value ${r.extend.toString('hex')} (start-up compares the last with the TPM anchor)`,
    );
    return 0;
  } catch (err) {
    write('\n');
    if (err instanceof ReplayProblem) {
      out.out(`FAIL: ${err.message} (${err.details.reason})`);
      return 1;
    }
    out.err(
      `audit verify --full: cannot read the store: ${err instanceof Error ? err.message : String(err)}`,
    );
    return 2;
  }
}

function option(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

export async function runAuditCli(
  argv: readonly string[],
  deps: AuditCliDeps,
  out: CliOutput,
): Promise<number> {
  const [command, file, ...rest] = argv;
  if (command === 'verify' && argv.includes('--full')) return verifyFull(deps, out);
  const read = deps.readFile ?? ((p: string) => readFile(p, 'utf8'));
  const write = deps.writeFile ?? ((p: string, t: string) => writeFile(p, t, { mode: 0o600 }));
  if (file === undefined || file.startsWith('--')) {
    out.err(USAGE);
    return 2;
  }
  if (command === 'export') {
    if (deps.openAudit === undefined) {
      out.err('audit export: the appliance is not configured here');
      return 2;
    }
    const opened = await deps.openAudit();
    try {
      await opened.audit.ready();
      const exported = await opened.audit.exportLog();
      await write(file, `${JSON.stringify(exported, null, 1)}\n`);
      out.out(
        `exported ${exported.entries.length} entries and a checkpoint of size ${exported.checkpoint.treeSize}` +
          `${exported.checkpoint.nvCertify === undefined ? '' : ' with NV_Certify'} to ${file}`,
      );
      return 0;
    } catch (err) {
      out.err(
        `audit export failed: ${err instanceof GrantorError ? `${err.code}: ${err.message}` : String(err)}`,
      );
      return 2;
    } finally {
      await opened.close();
    }
  }
  if (command === 'verify') {
    const key = option(rest, '--key');
    const ak = option(rest, '--ak');
    const pinFile = option(rest, '--pin');
    const skipTpmEvidence = rest.includes('--skip-tpm-evidence');
    if (key === undefined) {
      out.err(USAGE);
      return 2;
    }
    let parsed: unknown;
    let pin;
    try {
      parsed = JSON.parse(await read(file)) as unknown;
      if (pinFile !== undefined) pin = parseAnchorPin(await read(pinFile), '--pin');
    } catch (err) {
      out.err(
        `audit verify: cannot read ${file}${pinFile === undefined ? '' : ` or ${pinFile}`}: ${err instanceof Error ? err.message : String(err)}`,
      );
      return 2;
    }
    try {
      const r = verifyExport(parsed, key, {
        // The pin carries the AK provisioning pinned; --ak names another one explicitly.
        ...(ak !== undefined
          ? { akPublic: Buffer.from(ak, 'base64') }
          : pin === undefined
            ? {}
            : { akPublic: pin.akPublic }),
        ...(pin === undefined ? {} : { pin }),
        skipTpmEvidence,
      });
      for (const w of r.warnings) out.err(`warning: ${w}`);
      out.out(
        `OK: ${r.treeSize} entries of ${r.origin} verify: every link, every leaf, root ${r.rootHash}, ` +
          `checkpoint signature, ${r.batches} batches and their extend chain, ` +
          `NV counter ${r.nvCounter}${r.nvCertified ? ' (pinned genesis), NV_Certify of the pinned indices' : ' (not checked)'}` +
          (r.uncovered > 0
            ? ` (${r.uncovered} later entries are not covered by the checkpoint)`
            : ''),
      );
      return 0;
    } catch (err) {
      if (err instanceof ExportInvalidError && err.index !== undefined) {
        out.out(`FAIL at index ${err.index}: ${err.message} (${err.problem})`);
      } else if (err instanceof GrantorError) {
        out.out(`FAIL: ${err.message} (${err.code})`);
      } else {
        throw err;
      }
      return 1;
    }
  }
  out.err(USAGE);
  return 2;
}
