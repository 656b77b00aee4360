/**
 * `grantor audit export FILE [--from N] [--to N] [--since N] [--nonce HEX]` on the local
 * (stopped) appliance, and `grantor audit verify FILE ...` of an evidence bundle
 * (bundle.ts, verify-bundle.ts). A file that is not a bundle (the `grantor-audit-export/1`
 * JSON of `--legacy` exports) is verified by the older verifier (cli.ts). Exit codes: 0
 * good, 1 does not verify, 2 usage or I/O error.
 */
import { createReadStream } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { GrantorError } from '../shared/errors.js';
import { parseAnchorPin } from './anchor-pin.js';
import { openBundle, type BundlePolicySet, type BundleRequest } from './bundle.js';
import { parseVerifierKey } from './checkpoint.js';
import { runAuditCli, type AuditCliDeps, type CliOutput } from './cli.js';
import type { AuditService } from './service.js';
import { BundleInvalidError, verifyBundle, type BundleReport } from './verify-bundle.js';

export interface BundleCliDeps extends AuditCliDeps {
  /** The local appliance's audit service and policy archive (export only). */
  readonly openSources?: () => Promise<{
    audit: AuditService;
    policySet: (hash: string) => Promise<BundlePolicySet | undefined>;
    /** Most entries per bundle (GRANTOR_AUDIT_EXPORT_MAX_ENTRIES). */
    maxEntries?: number;
    close(): Promise<void>;
  }>;
}

const USAGE =
  'usage: grantor audit export FILE [--from N] [--to N] [--since N] [--nonce HEX] [--legacy]\n' +
  '       grantor audit verify FILE --key <verifier key> (--pin <anchor pin file> [--ak <base64 TPM2B_PUBLIC>] | --skip-tpm-evidence)\n' +
  '                            [--nonce HEX] [--since-checkpoint NOTE_FILE] [--allow-missing-policies]';

function option(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

/** A non-negative integer option, or a usage error. */
function count(args: readonly string[], name: string): number | undefined | 'bad' {
  const v = option(args, name);
  if (v === undefined) return undefined;
  return /^(0|[1-9]\d{0,15})$/.test(v) && Number.isSafeInteger(Number(v)) ? Number(v) : 'bad';
}

/** The range options of an export, or a message naming the bad one. */
export function bundleRequestFrom(args: readonly string[]): BundleRequest | string {
  const from = count(args, '--from');
  const to = count(args, '--to');
  const since = count(args, '--since');
  const nonce = option(args, '--nonce');
  for (const [name, v] of [
    ['--from', from],
    ['--to', to],
    ['--since', since],
  ] as const) {
    if (v === 'bad') return `${name} must be a non-negative integer`;
  }
  if (nonce !== undefined && !/^([0-9a-fA-F]{2}){1,32}$/.test(nonce)) {
    return '--nonce must be 1 to 32 bytes of hex';
  }
  return {
    ...(typeof from === 'number' ? { from } : {}),
    ...(typeof to === 'number' ? { to } : {}),
    ...(typeof since === 'number' ? { since } : {}),
    ...(nonce === undefined ? {} : { nonce: Buffer.from(nonce, 'hex') }),
  };
}

async function firstLine(path: string): Promise<string> {
  const handle = await open(path, 'r');
  try {
    const buf = Buffer.alloc(256);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead).toString('utf8').split('\n', 1)[0] ?? '';
  } finally {
    await handle.close();
  }
}

/** What the verifier checked, one line each (the report of `grantor audit verify`). */
export function describeReport(r: BundleReport, keyName: string): string[] {
  const range = r.to > r.from ? `entries ${r.from}..${r.to - 1}` : 'no entries';
  return [
    `OK: evidence bundle of ${r.origin}: ${range} of a tree of ${r.treeSize}`,
    `  checkpoint: note signed by ${keyName} (the key given), root ${r.rootHash}`,
    r.nvCertified
      ? `  TPM: NV_Certify by the pinned AK of the pinned NV indices over nonce ${r.nonceChecked ? '(the one given)' : '(NOT checked as yours: no --nonce)'}; nv-counter ${r.nvCounter} = pinned genesis + ${r.batches} batches; nv-extend = the extend chain of the batch roots`
      : `  TPM: NOT checked (--skip-tpm-evidence); nv-extend = the extend chain of the ${r.batches} batch roots`,
    `  entries: ${r.entries}, every shape, seq, link and hash; their leaves make the checkpoint root${r.to < r.treeSize ? ' (consistency proof from ' + String(r.to) + ')' : ''}`,
    `  batches: ${r.batches} boundaries in order; those inside the range recomputed from the entries`,
    `  request bodies: ${r.bodies} hash to their entries' digests${r.bodiesAbsent > 0 ? `; ${r.bodiesAbsent} not carried` : ''}`,
    `  policy sets: ${r.policies} re-hash to the hashes their entries name`,
    ...(r.since === null
      ? []
      : [`  since: the anchored tree at ${r.since} is consistent with the checkpoint`]),
  ];
}

export async function runBundleCli(
  argv: readonly string[],
  deps: BundleCliDeps,
  out: CliOutput,
): Promise<number> {
  const [command, file, ...rest] = argv;
  if (file === undefined || file.startsWith('--')) {
    out.err(USAGE);
    return 2;
  }
  if (command === 'export') {
    if (rest.includes('--legacy')) {
      return runAuditCli(['export', file], deps, out);
    }
    const request = bundleRequestFrom(rest);
    if (typeof request === 'string') {
      out.err(`audit export: ${request}`);
      return 2;
    }
    if (deps.openSources === undefined) {
      out.err('audit export: the appliance is not configured here');
      return 2;
    }
    const sources = await deps.openSources();
    try {
      await sources.audit.ready();
      const opened = await openBundle(sources, request);
      const handle = await open(file, 'wx', 0o600);
      let entries = 0;
      try {
        for await (const l of opened.lines()) {
          if (l.startsWith('{"type":"entry"')) entries += 1;
          await handle.write(l);
        }
      } finally {
        await handle.close();
      }
      out.out(`exported an evidence bundle of ${entries} entries to ${file}`);
      return 0;
    } catch (err) {
      out.err(
        `audit export failed: ${err instanceof GrantorError ? `${err.code}: ${err.message}` : String(err)}`,
      );
      return 2;
    } finally {
      await sources.close();
    }
  }
  if (command === 'verify') {
    let head: string;
    try {
      head = await firstLine(file);
    } catch (err) {
      out.err(
        `audit verify: cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`,
      );
      return 2;
    }
    // Older exports (one JSON document) keep their own verifier.
    if (!head.startsWith('{"type":"header"')) return runAuditCli(argv, deps, out);
    return verifyBundleFile(file, rest, out);
  }
  out.err(USAGE);
  return 2;
}

async function verifyBundleFile(
  file: string,
  rest: readonly string[],
  out: CliOutput,
): Promise<number> {
  const keyText = option(rest, '--key');
  const pinFile = option(rest, '--pin');
  const ak = option(rest, '--ak');
  const nonce = option(rest, '--nonce');
  const sinceFile = option(rest, '--since-checkpoint');
  const skipTpmEvidence = rest.includes('--skip-tpm-evidence');
  if (keyText === undefined) {
    out.err(USAGE);
    return 2;
  }
  if (nonce !== undefined && !/^([0-9a-fA-F]{2}){1,32}$/.test(nonce)) {
    out.err('audit verify: --nonce must be 1 to 32 bytes of hex');
    return 2;
  }
  let trustPin;
  let sinceNote: string | undefined;
  let verifierKey;
  try {
    verifierKey = parseVerifierKey(keyText);
    if (pinFile !== undefined) {
      const pin = parseAnchorPin(await readFile(pinFile, 'utf8'), '--pin');
      trustPin = {
        names: pin.names,
        genesisCounter: pin.genesisCounter,
        // The pin carries the AK provisioning pinned; --ak names another one explicitly.
        akPublic: ak === undefined ? pin.akPublic : Buffer.from(ak, 'base64'),
      };
    }
    if (sinceFile !== undefined) sinceNote = await readFile(sinceFile, 'utf8');
  } catch (err) {
    out.err(
      `audit verify: ${err instanceof GrantorError ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err)}`,
    );
    return 2;
  }
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  try {
    const report = await verifyBundle(lines, {
      verifierKey,
      ...(trustPin === undefined ? {} : { pin: trustPin }),
      ...(nonce === undefined ? {} : { nonce: nonce.toLowerCase() }),
      ...(sinceNote === undefined ? {} : { sinceNote }),
      skipTpmEvidence,
      allowMissingPolicies: rest.includes('--allow-missing-policies'),
    });
    for (const w of report.warnings) out.err(`warning: ${w}`);
    for (const l of describeReport(report, verifierKey.name)) out.out(l);
    return 0;
  } catch (err) {
    if (err instanceof BundleInvalidError) {
      out.out(
        `FAIL at line ${err.line}: ${err.message.replace(/^line \d+: /, '')} (${err.problem})`,
      );
      return 1;
    }
    out.err(
      `audit verify: cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`,
    );
    return 2;
  } finally {
    lines.close();
  }
}
