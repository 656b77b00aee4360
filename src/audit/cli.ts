/**
 * `grantor audit export` and `grantor audit verify` on this machine: the one audit CLI. An
 * export is an evidence bundle (`grantor-audit-bundle/1`, bundle.ts) of the local (stopped)
 * appliance, or with `--legacy` the older `grantor-audit-export/1` JSON; `verify FILE` tells
 * the two formats apart by the first line and checks either offline (verify-bundle.ts,
 * verify-export.ts); `verify A B` checks two bundles so, then that B's period starts where
 * A's ends (verify-bundle-pair.ts); `verify --full` replays the local store (full-check.ts);
 * `retire PERIOD` retires a frozen period (retention.ts). The caller (src/cli/local.ts)
 * passes argv after `audit`, how to open the appliance or the store, and where to print.
 * Exit codes: 0 good; 1 does not verify, or a retirement refused; 2 usage or I/O error.
 */
import { createReadStream } from 'node:fs';
import { open, readFile, writeFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { GrantorError } from '../shared/errors.js';
import { parseAnchorPin } from './anchor-pin.js';
import { openBundle, type BundlePolicySet, type BundleRequest } from './bundle.js';
import { parseVerifierKey } from './checkpoint.js';
import { verifyPeriodsFull } from './full-check.js';
import type { PeriodStore } from './period-store.port.js';
import { ReplayProblem } from './replay.js';
import type { AuditService } from './service.js';
import { verifyBundle, type BundleReport, type BundleTrust } from './verify-bundle.js';
import { verifyBundlePair, type BundlePairReport } from './verify-bundle-pair.js';
import { verifyExport } from './verify-export.js';
import { BundleInvalidError, BundlePairInvalidError, ExportInvalidError } from './errors.js';

/** The local appliance's audit service and policy archive, for an export. */
export interface LocalAudit {
  readonly audit: AuditService;
  /** A set from the policy archive by hash (none: bundles carry no policy sets). */
  readonly policySet?: (hash: string) => Promise<BundlePolicySet | undefined>;
  /** Most entries per bundle (GRANTOR_AUDIT_EXPORT_MAX_ENTRIES). */
  readonly maxEntries?: number;
  close(): Promise<void>;
}

export interface AuditCliDeps {
  /** The local log periods and their stores, for `verify --full` (the server stopped). */
  readonly openPeriods?: () => Promise<PeriodStore>;
  /** Raw progress output (stderr): the bar of `verify --full`. */
  readonly progress?: (text: string) => void;
  /** Opens the local appliance's audit service (export only: verify never needs it). */
  readonly openAudit?: () => Promise<LocalAudit>;
  /** Where files are read (the legacy format, pins, notes) and written (a legacy export). */
  readonly readFile?: (path: string) => Promise<string>;
  readonly writeFile?: (path: string, text: string) => Promise<void>;
}

export interface CliOutput {
  out(line: string): void;
  err(line: string): void;
}

const USAGE =
  'usage: grantor audit export FILE [--from N] [--to N] [--since N] [--nonce HEX] [--period N] [--legacy]\n' +
  '       grantor audit verify FILE --key <verifier key> (--pin <anchor pin file> [--ak <base64 TPM2B_PUBLIC>] | --skip-tpm-evidence)\n' +
  '                            [--nonce HEX] [--since-checkpoint NOTE_FILE] [--allow-missing-policies]\n' +
  '       grantor audit verify PERIOD_M.ndjson PERIOD_M+1.ndjson --key <verifier key> (--pin <anchor pin file> [--ak <base64 TPM2B_PUBLIC>] | --skip-tpm-evidence)\n' +
  '                            [--allow-missing-policies]\n' +
  '       grantor audit verify --full\n' +
  '       grantor audit retire PERIOD';

/** An error as one line: its code first when it has one. */
function describeError(err: unknown): string {
  if (err instanceof GrantorError) return `${err.code}: ${err.message}`;
  return err instanceof Error ? err.message : String(err);
}

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
  const period = count(args, '--period');
  const nonce = option(args, '--nonce');
  for (const [name, v] of [
    ['--from', from],
    ['--to', to],
    ['--since', since],
    ['--period', period],
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
    ...(typeof period === 'number' ? { period } : {}),
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
    ...(r.successors === 0
      ? []
      : [
          `  frozen period: its final checkpoint is named by the links of the ${r.successors} later periods, each proved as leaf 0 of its signed tree and anchored by its batches, down to the certified checkpoint`,
        ]),
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

/**
 * `verify --full`: replays every local log period in order; exit 0 good, 1 does not verify,
 * 2 cannot read.
 */
async function verifyFull(deps: AuditCliDeps, out: CliOutput): Promise<number> {
  if (deps.openPeriods === undefined) {
    out.err('audit verify --full: the appliance is not configured here');
    return 2;
  }
  const write = deps.progress ?? (() => undefined);
  try {
    const r = await verifyPeriodsFull(await deps.openPeriods(), progressBar(write));
    write('\n');
    out.out(
      `OK: ${r.size} entries in ${r.batches} batches replayed from the first: every link, hash, ` +
        `batch root, tile and extend value recomputed; root ${r.root.toString('hex')}, ` +
        `extend value ${r.extend.toString('hex')} (start-up compares the last with the TPM anchor)`,
    );
    out.out(
      `  periods: ${r.periods} replayed in order${r.periods > 1 ? ', each link entry and registry record naming the recomputed end of the period before, the anchor chain run on across them' : ''}; ` +
        `current ${r.origin}, nv-counter ${r.counter}`,
    );
    if (r.retired.length > 0) {
      out.out(
        `  retired: period${r.retired.length > 1 ? 's' : ''} ${r.retired.join(', ')} replayed from ` +
          'their level-0 tiles (their entries are in the bundles verified when they were retired)',
      );
    }
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

export async function runAuditCli(
  argv: readonly string[],
  deps: AuditCliDeps,
  out: CliOutput,
): Promise<number> {
  const [command, file, ...rest] = argv;
  if (command === 'verify' && argv.includes('--full')) return verifyFull(deps, out);
  if (file === undefined || file.startsWith('--')) {
    out.err(USAGE);
    return 2;
  }
  if (command === 'export') return exportLocal(file, rest, deps, out);
  if (command === 'retire') return retireLocal(file, rest, deps, out);
  if (command === 'verify') {
    // A second file before the options: two consecutive periods' bundles, compared.
    const second = rest[0] !== undefined && !rest[0].startsWith('--') ? rest[0] : undefined;
    const files = second === undefined ? [file] : [file, second];
    const heads: string[] = [];
    for (const f of files) {
      try {
        // Files given by the caller (tests) come whole; a bundle on disk is only streamed.
        heads.push(
          deps.readFile === undefined
            ? await firstLine(f)
            : ((await deps.readFile(f)).split('\n', 1)[0] ?? ''),
        );
      } catch (err) {
        out.err(`audit verify: cannot read ${f}: ${describeError(err)}`);
        return 2;
      }
    }
    const read = deps.readFile ?? ((p: string) => readFile(p, 'utf8'));
    const bundles = heads.every((h) => h.startsWith('{"type":"header"'));
    if (second !== undefined) {
      if (bundles) return verifyBundleFiles(files, rest.slice(1), read, out);
      out.err('audit verify: two files are compared only as evidence bundles');
      return 2;
    }
    return bundles
      ? verifyBundleFiles(files, rest, read, out)
      : verifyLegacy(file, rest, read, out);
  }
  out.err(USAGE);
  return 2;
}

/** `export FILE`: a bundle, or with `--legacy` the older JSON, of the local appliance. */
async function exportLocal(
  file: string,
  rest: readonly string[],
  deps: AuditCliDeps,
  out: CliOutput,
): Promise<number> {
  const legacy = rest.includes('--legacy');
  const request = legacy ? {} : bundleRequestFrom(rest);
  if (typeof request === 'string') {
    out.err(`audit export: ${request}`);
    return 2;
  }
  return withLocalAudit('audit export', deps, out, 2, (local) =>
    legacy ? writeLegacy(local, file, deps) : writeBundle(local, file, request),
  );
}

/**
 * Opens the local appliance's log (server stopped), runs `use` once its start-up check
 * passed, prints the line it returns and closes the log. Exit codes: 0 done; 2 not
 * configured here; `failed` when the start-up check or `use` failed (printed as
 * `<name> failed: ...`).
 */
async function withLocalAudit(
  name: string,
  deps: AuditCliDeps,
  out: CliOutput,
  failed: number,
  use: (local: LocalAudit) => Promise<string>,
): Promise<number> {
  if (deps.openAudit === undefined) {
    out.err(`${name}: the appliance is not configured here`);
    return 2;
  }
  const local = await deps.openAudit();
  try {
    await local.audit.ready();
    out.out(await use(local));
    return 0;
  } catch (err) {
    out.err(`${name} failed: ${describeError(err)}`);
    return failed;
  } finally {
    await local.close();
  }
}

/** The actor a local ceremony records: the operator at the appliance's console. */
export const LOCAL_ACTOR = 'cli';

/**
 * `retire PERIOD`: the local form of POST /v1/audit/periods/{period}/retire (server
 * stopped): the frozen period's entries exported, verified, recorded and deleted
 * (docs/audit.md "Retention"); the act is audited with the actor `cli`.
 */
async function retireLocal(
  period: string,
  rest: readonly string[],
  deps: AuditCliDeps,
  out: CliOutput,
): Promise<number> {
  if (!/^(0|[1-9][0-9]{0,8})$/.test(period) || rest.length > 0) {
    out.err(USAGE);
    return 2;
  }
  return withLocalAudit('audit retire', deps, out, 1, async (local) => {
    const done = await local.audit.retirePeriod(
      Number(period),
      LOCAL_ACTOR,
      local.policySet ?? (() => Promise.resolve(undefined)),
    );
    return `retired period ${String(done.period)}: entries ${String(done.from)}..${String(done.to - 1)} moved to ${done.file} (sha256 ${done.bundleDigest}); its tiles and proofs stay`;
  });
}

/** Writes a bundle to a new file (never overwriting evidence); the line to print. */
async function writeBundle(
  local: LocalAudit,
  file: string,
  request: BundleRequest,
): Promise<string> {
  const opened = await openBundle(
    {
      audit: local.audit,
      policySet: local.policySet ?? (() => Promise.resolve(undefined)),
      ...(local.maxEntries === undefined ? {} : { maxEntries: local.maxEntries }),
    },
    request,
  );
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
  return `exported an evidence bundle of ${entries} entries to ${file}`;
}

/** Writes the older `grantor-audit-export/1` JSON; the line to print. */
async function writeLegacy(local: LocalAudit, file: string, deps: AuditCliDeps): Promise<string> {
  const write = deps.writeFile ?? ((p: string, t: string) => writeFile(p, t, { mode: 0o600 }));
  const exported = await local.audit.exportLog();
  await write(file, `${JSON.stringify(exported, null, 1)}\n`);
  return (
    `exported ${exported.entries.length} entries and a checkpoint of size ${exported.checkpoint.treeSize}` +
    `${exported.checkpoint.nvCertify === undefined ? '' : ' with NV_Certify'} to ${file}`
  );
}

/** What both formats' verify take: the verifier key and the pinned anchor (or none). */
interface Trust {
  readonly keyText: string;
  /** The pin file's NV names and genesis, with the AK it pins or the one `--ak` names. */
  readonly pin:
    | {
        readonly names: { readonly counter: string; readonly extend: string };
        readonly genesisCounter: bigint;
        readonly akPublic: Buffer;
      }
    | undefined;
  readonly skipTpmEvidence: boolean;
}

/** `--key`, `--pin`, `--ak`, `--skip-tpm-evidence`; undefined without `--key` (usage). */
async function readTrust(
  rest: readonly string[],
  read: (path: string) => Promise<string>,
): Promise<Trust | undefined> {
  const keyText = option(rest, '--key');
  if (keyText === undefined) return undefined;
  const pinFile = option(rest, '--pin');
  const ak = option(rest, '--ak');
  let pin: Trust['pin'];
  if (pinFile !== undefined) {
    const pinned = parseAnchorPin(await read(pinFile), '--pin');
    pin = {
      names: pinned.names,
      genesisCounter: pinned.genesisCounter,
      // The pin carries the AK provisioning pinned; --ak names another one explicitly.
      akPublic: ak === undefined ? pinned.akPublic : Buffer.from(ak, 'base64'),
    };
  }
  return { keyText, pin, skipTpmEvidence: rest.includes('--skip-tpm-evidence') };
}

/** `verify FILE` of an older `grantor-audit-export/1` JSON document. */
async function verifyLegacy(
  file: string,
  rest: readonly string[],
  read: (path: string) => Promise<string>,
  out: CliOutput,
): Promise<number> {
  let parsed: unknown;
  let trust: Trust | undefined;
  try {
    trust = await readTrust(rest, read);
    if (trust === undefined) {
      out.err(USAGE);
      return 2;
    }
    parsed = JSON.parse(await read(file)) as unknown;
  } catch (err) {
    out.err(`audit verify: cannot read ${file} or its trust files: ${describeError(err)}`);
    return 2;
  }
  try {
    // The pin's AK, or the one --ak names (also without a pin: the legacy export has none).
    const ak = option(rest, '--ak');
    const akPublic =
      trust.pin?.akPublic ?? (ak === undefined ? undefined : Buffer.from(ak, 'base64'));
    const r = verifyExport(parsed, trust.keyText, {
      ...(akPublic === undefined ? {} : { akPublic }),
      ...(trust.pin === undefined ? {} : { pin: trust.pin }),
      skipTpmEvidence: trust.skipTpmEvidence,
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

/**
 * `verify FILE` of an evidence bundle, streamed line by line; `verify A B`: two bundles,
 * each verified exactly so (each certified over the nonce in its own header), then compared
 * across the period switch between them (verify-bundle-pair.ts).
 */
async function verifyBundleFiles(
  files: readonly string[],
  rest: readonly string[],
  read: (path: string) => Promise<string>,
  out: CliOutput,
): Promise<number> {
  const nonce = option(rest, '--nonce');
  const sinceFile = option(rest, '--since-checkpoint');
  if (nonce !== undefined && !/^([0-9a-fA-F]{2}){1,32}$/.test(nonce)) {
    out.err('audit verify: --nonce must be 1 to 32 bytes of hex');
    return 2;
  }
  if (files.length > 1 && (nonce !== undefined || sinceFile !== undefined)) {
    // One nonce cannot be both bundles' own: check it with a single verify.
    out.err('audit verify: --nonce and --since-checkpoint apply to one bundle at a time');
    return 2;
  }
  let trust: Trust | undefined;
  let sinceNote: string | undefined;
  let verifierKey;
  try {
    trust = await readTrust(rest, read);
    if (trust === undefined) {
      out.err(USAGE);
      return 2;
    }
    verifierKey = parseVerifierKey(trust.keyText);
    if (sinceFile !== undefined) sinceNote = await read(sinceFile);
  } catch (err) {
    out.err(`audit verify: ${describeError(err)}`);
    return 2;
  }
  const bundleTrust: BundleTrust = {
    verifierKey,
    ...(trust.pin === undefined ? {} : { pin: trust.pin }),
    ...(nonce === undefined ? {} : { nonce: nonce.toLowerCase() }),
    ...(sinceNote === undefined ? {} : { sinceNote }),
    skipTpmEvidence: trust.skipTpmEvidence,
    allowMissingPolicies: rest.includes('--allow-missing-policies'),
  };
  const reports: BundleReport[] = [];
  for (const file of files) {
    const report = await verifyBundleFile(file, bundleTrust, files.length > 1, out);
    if (typeof report === 'number') return report;
    for (const w of report.warnings) out.err(`warning: ${files.length > 1 ? `${file}: ` : ''}${w}`);
    for (const l of describeReport(report, verifierKey.name)) out.out(l);
    reports.push(report);
  }
  const [a, b] = reports;
  if (a === undefined || b === undefined) return 0;
  try {
    const pair = verifyBundlePair(a, b);
    for (const w of pair.warnings) out.err(`warning: ${w}`);
    for (const l of describePair(pair, files, verifierKey.name, trust.pin !== undefined)) {
      out.out(l);
    }
    return 0;
  } catch (err) {
    if (err instanceof BundlePairInvalidError) {
      out.out(`FAIL across ${files.join(' and ')}: ${err.message} (${err.problem})`);
      return 1;
    }
    throw err;
  }
}

/** What tied two consecutive periods' bundles, one line per check. */
function describePair(
  p: BundlePairReport,
  files: readonly string[],
  keyName: string,
  pinned: boolean,
): string[] {
  const [fileA = '', fileB = ''] = files;
  const m = p.end.period;
  return [
    `OK: ${fileA} (period ${m}) and ${fileB} (period ${m + 1}) are consecutive periods of ${p.log}`,
    `  same log: both origins of ${p.log}, both notes signed by ${keyName} (the key given), ${pinned ? 'both anchors certified against the one pin given' : 'TPM evidence NOT checked (--skip-tpm-evidence)'}`,
    `  consecutive: period ${m + 1} follows period ${m}`,
    `  link: entry 0 of period ${m + 1} (hash ${p.linkHash}) names exactly the first bundle's checkpoint: ${p.end.origin}, size ${p.end.size}, root ${p.end.root}, nv-counter ${p.end.counter}, nv-extend ${p.end.extend}`,
    p.tiedBy === 'successor_chain'
      ? `  tied by: the first bundle's own successor chain carries this same link (exported frozen: its checkpoint is period ${m}'s final one)`
      : `  tied by: the link alone (the first bundle was exported while period ${m} was current, at exactly the end the link names: nothing was appended after it)`,
  ];
}

/** One bundle file, streamed: its report, or the exit code after printing why not. */
async function verifyBundleFile(
  file: string,
  trust: BundleTrust,
  named: boolean,
  out: CliOutput,
): Promise<BundleReport | number> {
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  try {
    return await verifyBundle(lines, trust);
  } catch (err) {
    if (err instanceof BundleInvalidError) {
      out.out(
        `FAIL ${named ? `in ${file} ` : ''}at line ${err.line}: ${err.message.replace(/^line \d+: /, '')} (${err.problem})`,
      );
      return 1;
    }
    out.err(`audit verify: cannot read ${file}: ${describeError(err)}`);
    return 2;
  } finally {
    lines.close();
  }
}
