/**
 * Every `grantor` command, its options and its help, as data: help, `--version` and the
 * refusal of unknown commands and options need no configuration, no TPM, no HSM and no
 * database. The runners (src/cli/local.ts, src/cli/remote.ts) are loaded only to run.
 *
 * Where a command runs:
 *   offline  files only (audit verify, reference-policies learn)
 *   local    this appliance's TPM, HSM and database (the server must be stopped)
 *   config   the configuration and the hardware, read-only (doctor)
 *   remote   a running appliance over its HTTP API (--url/--profile)
 */
import type { Options } from './args.js';

export type Where = 'offline' | 'local' | 'config' | 'remote';

export interface Command {
  /** The words that name it: `['keys', 'list']`. */
  readonly path: readonly string[];
  readonly summary: string;
  /**
   * Arguments after the path, for the usage line and the check: each word is one argument,
   * a `[bracketed]` one is optional (`KID`: exactly one; `[grant|audit]`: at most one).
   */
  readonly args: string;
  readonly options: Options;
  readonly description: string;
  readonly examples: readonly string[];
  /** Where it runs; `local` commands listed with `remote` too accept the remote options. */
  readonly where: readonly Where[];
}

const json = {
  json: { type: 'boolean', help: 'print JSON for scripts instead of a table' },
} as const satisfies Options;

/** How a remote command reaches the appliance (flags over GRANTOR_* variables over profile). */
export const REMOTE_OPTIONS = {
  url: {
    type: 'string',
    value: 'https://host:port',
    help: 'the appliance (or GRANTOR_URL, or "url" in the profile)',
  },
  cacert: {
    type: 'string',
    value: 'FILE',
    help: "PEM CA of the appliance's certificate (or GRANTOR_URL_CA)",
  },
  cert: { type: 'string', value: 'FILE', help: 'operator client certificate (PEM), with --key' },
  key: { type: 'string', value: 'FILE', help: 'its private key (PEM)' },
  token: {
    type: 'string',
    value: 'TOKEN',
    help: 'operator bearer token (prefer GRANTOR_OPERATOR_TOKEN or "tokenFile" in the profile)',
  },
  profile: {
    type: 'string',
    value: 'FILE',
    help: 'profile file (default $GRANTOR_PROFILE or ~/.config/grantor/profile.json)',
  },
} as const satisfies Options;

const help = { help: { type: 'boolean', short: 'h', help: 'this help' } } as const;

export const COMMANDS: readonly Command[] = [
  {
    path: ['provision'],
    summary: 'define and pin the audit anchor in the TPM, create the audit log',
    args: '',
    options: {
      'set-owner-auth': {
        type: 'string',
        value: 'FILE',
        help: 'first set a random TPM owner authorisation (only when it is empty) and keep it in FILE (mode 0400, never overwritten, never printed)',
      },
    },
    description:
      "The one explicit act that starts an audit log: defines the NV indices of the audit anchor in the appliance TPM (writable only through the key store's anchor write key), pins their names, write policy and genesis counter in GRANTOR_AUDIT_ANCHOR_PIN, creates the log, then opens the appliance once (creates the HSM keys). Resumes an interrupted run; on a provisioned appliance it changes nothing. Run it while the server is stopped. Provisioning and undefining the anchor need the TPM owner authorisation (GRANTOR_TPM_OWNER_AUTH_FILE when it is not empty); the running appliance does not.",
    examples: [
      'grantor provision',
      './scripts/cli provision',
      'grantor provision --set-owner-auth /etc/grantor/tpm-owner-auth',
    ],
    where: ['local'],
  },
  {
    path: ['doctor'],
    summary: 'check the configuration and the hardware without serving',
    args: '',
    options: { ...json },
    description:
      'Checks, one line each with what to do: the configuration, the TLS files (present, parse, key matches certificate, expiry), the policy set (compiles), the EK CA bundle, the PKCS#11 module, token and mechanisms, TPM reachability and the audit anchor in NV (agrees with its pin). Opens nothing for writing and starts no server; run it with the server stopped (the TPM simulator takes one connection). Exit code 1 when any check fails.',
    examples: ['grantor doctor', './scripts/cli doctor --json'],
    where: ['config'],
  },
  {
    path: ['status'],
    summary: "a running appliance's readiness, component by component",
    args: '',
    options: { ...json },
    description:
      'GET /readyz of a running appliance: each component (tpm, hsm, audit, policy) and, when it is down, why. Exit code 1 when it is not ready.',
    examples: [
      'grantor status --url https://127.0.0.1:8443 --cacert var/tls/server-ca.pem',
      'grantor status --profile ~/.config/grantor/prod.json --json',
    ],
    where: ['remote'],
  },
  {
    path: ['runtimes', 'list'],
    summary: 'list enrolled runtimes',
    args: '',
    options: {
      ...json,
      state: { type: 'string', value: 'STATE', help: 'only runtimes in this state' },
      limit: { type: 'string', value: 'N', help: 'at most N runtimes (1-200, default 50)' },
    },
    description: 'GET /v1/runtimes (auditor, operator), one page in runtime id order.',
    examples: [
      'grantor runtimes list --profile prod.json',
      'grantor runtimes list --state active --json',
    ],
    where: ['remote'],
  },
  {
    path: ['runtimes', 'show'],
    summary: 'one runtime',
    args: 'ID',
    options: { ...json },
    description: 'GET /v1/runtimes/{id} (auditor, operator).',
    examples: ['grantor runtimes show rt_0123456789abcdef'],
    where: ['remote'],
  },
  {
    path: ['keys', 'list'],
    summary: 'the grant and audit keys and their states',
    args: '',
    options: {
      ...json,
      purpose: { type: 'string', value: 'grant|audit', help: 'only keys of this purpose' },
    },
    description:
      'Local (server stopped): the key store of this appliance. Remote (--url/--profile): GET /v1/keys (operator, key custodian).',
    examples: ['grantor keys list', 'grantor keys list --purpose audit --json --profile prod.json'],
    where: ['local', 'remote'],
  },
  {
    path: ['keys', 'rotate'],
    summary: 'make a new active key (the previous one starts retiring)',
    args: '[grant|audit]',
    options: {},
    description:
      'A key ceremony on this appliance (server stopped), through the same KeyService as POST /v1/keys/rotate. Default purpose: grant.',
    examples: ['grantor keys rotate', 'grantor keys rotate audit'],
    where: ['local'],
  },
  {
    path: ['keys', 'retire'],
    summary: 'retire a retiring key',
    args: 'KID',
    options: { force: { type: 'boolean', help: 'before its grants have expired' } },
    description: 'Ends the use of a key for verification (server stopped).',
    examples: ['grantor keys retire 5f2c9e...'],
    where: ['local'],
  },
  {
    path: ['keys', 'destroy'],
    summary: 'destroy a retired key in the HSM (irreversible)',
    args: 'KID',
    options: { yes: { type: 'boolean', help: 'confirm: this cannot be undone' } },
    description:
      'Destroys the private key object in the HSM (server stopped). On a running appliance this is POST /v1/keys/{kid}/destroy under dual control.',
    examples: ['grantor keys destroy 5f2c9e... --yes'],
    where: ['local'],
  },
  {
    path: ['audit', 'export'],
    summary: 'write an evidence bundle (entries, bodies, policy sets, proofs) to FILE',
    args: 'FILE',
    options: {
      from: { type: 'string', value: 'N', help: 'first entry (default 0)' },
      to: { type: 'string', value: 'N', help: 'tree size to stop at (default the checkpoint)' },
      since: {
        type: 'string',
        value: 'N',
        help: 'a tree size you hold a checkpoint of: adds a consistency proof from it',
      },
      nonce: {
        type: 'string',
        value: 'HEX',
        help: 'your nonce for the NV_Certify (default random)',
      },
      period: {
        type: 'string',
        value: 'N',
        help: "a log period (default the current one); a frozen one carries the later periods' links to a certified checkpoint",
      },
      legacy: {
        type: 'boolean',
        help: 'the older grantor-audit-export/1 JSON instead (local only)',
      },
    },
    description:
      'Writes a grantor-audit-bundle/1 evidence bundle (NDJSON, docs/audit.md "Evidence bundles"): the entries, their batch boundaries, request bodies and policy sets, a signed checkpoint with NV_Certify over the nonce, and consistency proofs. Locally with the server stopped, or from a running appliance over HTTPS with an auditor credential (--url/--profile: GET /v1/audit/export, with a progress bar on stderr). Never overwrites FILE.',
    examples: [
      'grantor audit export audit.ndjson',
      'grantor audit export audit.ndjson --from 0 --to 5000 --nonce $(openssl rand -hex 32) --profile auditor.json',
    ],
    where: ['local', 'remote'],
  },
  {
    path: ['audit', 'retire'],
    summary: "move a frozen log period's entries out into a verified bundle (server stopped)",
    args: 'PERIOD',
    options: {},
    description:
      'Retention (docs/audit.md "Retention"): exports the frozen period\'s evidence bundle to <state>/audit-retired/, verifies it as an auditor would (nothing is deleted if it does not: audit_retire_bundle_invalid), appends audit.period.retired with the actor cli, then deletes the entries, bodies and indexes; the tiles, batch records and checkpoints stay, so proofs still answer. Refused for the current period (audit_period_current), an unknown one (audit_period_not_found) or one retired already (audit_period_retired). On a running appliance this is POST /v1/audit/periods/{period}/retire with an operator credential.',
    examples: ['grantor audit retire 0'],
    where: ['local'],
  },
  {
    path: ['audit', 'verify'],
    summary:
      "verify a bundle or an export offline (no appliance needed), two consecutive periods' bundles across their link, or the local store with --full",
    args: '[FILE] [NEXT_PERIOD_FILE]',
    options: {
      full: {
        type: 'boolean',
        help: 'replay every local log period from its first entry, in order (server stopped; no FILE)',
      },
      key: {
        type: 'string',
        value: 'VERIFIER',
        help: 'the note verifier key (/v1/audit/verifier)',
      },
      pin: { type: 'string', value: 'FILE', help: 'the anchor pin file (TPM evidence)' },
      ak: {
        type: 'string',
        value: 'BASE64',
        help: "another AK public (TPM2B_PUBLIC) than the pin's",
      },
      'skip-tpm-evidence': { type: 'boolean', help: 'check signatures and hashes only' },
      nonce: {
        type: 'string',
        value: 'HEX',
        help: 'bundles: the nonce you exported with; the NV_Certify must be over it',
      },
      'since-checkpoint': {
        type: 'string',
        value: 'FILE',
        help: 'bundles: a checkpoint note you kept; the bundle must extend it (export with --since)',
      },
      'allow-missing-policies': {
        type: 'boolean',
        help: 'bundles: warn instead of failing when a named policy set is not carried',
      },
    },
    description:
      "Checks an evidence bundle line by line: the checkpoint signature, the TPM NV_Certify against the pin (and your nonce), every entry, leaf and batch root, the extend chain, the consistency proofs, every request body and policy set against the digests the entries name; reports what it checked, or the first bad line. Older grantor-audit-export/1 files are checked as before. Two bundles (period m, then period m+1; archived bundles of retired periods) are each checked so, over the nonce in its own header (no --nonce, no --since-checkpoint), then across: one log (one base origin, the one key and pin given), consecutive periods in that order, and period m+1's link naming exactly the first bundle's checkpoint and being the link the first bundle's successor chain carries (pair_other_log, pair_order, pair_not_consecutive, pair_link_mismatch, pair_not_final, pair_chain_mismatch). --full replays the local stores instead: every log period in order, each entry, tile, batch root and extend value recomputed, each period's registry record and link entry compared with the recomputed end of the period before, the anchor chain run on across them. Exit code 1 when it does not verify.",
    examples: [
      "grantor audit verify audit.ndjson --key 'grantor+1a2b3c4d+AQ...' --pin var/appliance.anchor-pin.json --nonce <the hex you exported with>",
      "grantor audit verify period-3.ndjson period-4.ndjson --key 'grantor+1a2b3c4d+AQ...' --pin var/appliance.anchor-pin.json",
      'grantor audit verify --full',
    ],
    where: ['offline'],
  },
  {
    path: ['audit', 'entries'],
    summary: "read a running appliance's audit entries",
    args: '',
    options: {
      ...json,
      from: { type: 'string', value: 'N', help: 'first sequence number (default 0)' },
      limit: { type: 'string', value: 'N', help: 'at most N entries (1-1000, default 100)' },
    },
    description: 'GET /v1/audit/entries (auditor).',
    examples: ['grantor audit entries --from 0 --limit 20 --profile auditor.json'],
    where: ['remote'],
  },
  {
    path: ['audit', 'checkpoint'],
    summary: "a running appliance's signed audit checkpoint",
    args: '',
    options: { ...json },
    description: 'GET /v1/audit/checkpoint (public): the tree size, root hash and signed note.',
    examples: [
      'grantor audit checkpoint --url https://127.0.0.1:8443 --cacert var/tls/server-ca.pem',
    ],
    where: ['remote'],
  },
  {
    path: ['audit', 'watch'],
    summary: "monitor a running appliance's log: each checkpoint consistent with the last",
    args: '',
    options: {
      state: {
        type: 'string',
        value: 'FILE',
        help: 'the last verified checkpoint (created at the first visit)',
      },
      verifier: {
        type: 'string',
        value: 'VERIFIER',
        help: 'a pinned note verifier key, <name>+<id>+<key> (repeatable)',
        multiple: true,
      },
      'verifier-file': { type: 'string', value: 'FILE', help: 'pinned verifier keys, one a line' },
      once: { type: 'boolean', help: 'one visit, then exit' },
      interval: { type: 'string', value: 'SECONDS', help: 'between visits (default 300)' },
    },
    description:
      "At each visit: GET /v1/audit/checkpoint, its signature against a pinned key (never one the appliance serves), and a consistency proof from the size in --state to the new one; then --state is replaced atomically. Any inconsistency is one ALARM line on stderr, the evidence kept beside the state, and an exit code of its own: 10 signature_invalid, 11 origin_changed, 12 tree_shrunk, 13 root_mismatch, 14 proof_invalid, 15 checkpoint_malformed, 16 anchor_regressed, 17 period_link_mismatch; 3 a corrupt state file (never reset), 1 a visit that failed (--once; the loop retries). After a log period switch (the checkpoint of <origin>/period-<n>) it proves the watched period ended consistently with --state (the new period's link entry, GET /v1/audit/periods/<n>/link, leaf 0 of the signed tree; a consistency proof when the old period grew before the switch) and follows the new period. Loops until SIGINT/SIGTERM without --once.",
    examples: [
      "grantor audit watch --once --state witness.json --verifier 'grantor+1a2b3c4d+AQ...' --profile auditor.json",
      'grantor audit watch --state witness.json --verifier-file pinned-keys.txt --interval 60 --profile auditor.json',
    ],
    where: ['remote'],
  },
  {
    path: ['approvals', 'list'],
    summary: 'dual-control requests and their approvals',
    args: '',
    options: {
      ...json,
      limit: { type: 'string', value: 'N', help: 'at most N requests' },
    },
    description: 'GET /v1/approvals (auditor, operator, key custodian).',
    examples: ['grantor approvals list --profile prod.json'],
    where: ['remote'],
  },
  {
    path: ['approvals', 'show'],
    summary: 'one dual-control request',
    args: 'ID',
    options: { ...json },
    description: 'GET /v1/approvals/{id}.',
    examples: ['grantor approvals show apr_0123456789abcdef'],
    where: ['remote'],
  },
  {
    path: ['policy', 'show'],
    summary: 'the active Cedar policy set',
    args: '',
    options: { ...json },
    description: 'GET /v1/policy (auditor, operator): its hash, version, files and policy ids.',
    examples: ['grantor policy show --profile prod.json'],
    where: ['remote'],
  },
  {
    path: ['policy', 'reload'],
    summary: 're-read the policy directory (audited)',
    args: '',
    options: { ...json },
    description:
      'POST /v1/policy/reload (operator): activates the policy directory as it is now, or keeps the active set and prints why the new one was refused.',
    examples: ['grantor policy reload --profile operator.json'],
    where: ['remote'],
  },
  {
    path: ['operators', 'person', 'add'],
    summary: 'register an operator person (offline bootstrap)',
    args: 'ID',
    options: {
      role: { type: 'string', value: 'ROLE', help: 'auditor, operator or key_custodian' },
      name: { type: 'string', value: 'NAME', help: 'display name' },
    },
    description:
      'Adds a person to the operator registry of this appliance (server stopped). On a running appliance: PUT /v1/operators/{id} under dual control.',
    examples: ['grantor operators person add alice --role key_custodian --name "Alice A."'],
    where: ['local'],
  },
  {
    path: ['operators', 'person', 'list'],
    summary: 'the operator registry',
    args: '',
    options: {},
    description: 'Lists the registered people and their roles (server stopped).',
    examples: ['grantor operators person list'],
    where: ['local'],
  },
  {
    path: ['operators', 'token', 'create'],
    summary: 'issue an operator bearer token (printed once)',
    args: '',
    options: {
      role: { type: 'string', value: 'ROLE', help: 'auditor, operator or key_custodian' },
      actor: { type: 'string', value: 'PERSON', help: 'the person it is for (local only)' },
      ttl: { type: 'string', value: '90d|12h|30m|SECONDS', help: 'lifetime' },
    },
    description:
      'Local (server stopped): a token for --actor. With GRANTOR_URL and GRANTOR_OPERATOR_TOKEN set: a token for your own person from the running appliance (GRANTOR_URL_CA: its CA).',
    examples: ['grantor operators token create --role key_custodian --actor alice --ttl 12h'],
    where: ['local'],
  },
  {
    path: ['operators', 'token', 'list'],
    summary: 'issued operator tokens (never the tokens themselves)',
    args: '',
    options: {},
    description: 'Local, or remote with GRANTOR_URL and GRANTOR_OPERATOR_TOKEN.',
    examples: ['grantor operators token list'],
    where: ['local'],
  },
  {
    path: ['operators', 'token', 'revoke'],
    summary: 'revoke an operator token',
    args: 'TOKEN_ID',
    options: {},
    description: 'Local, or remote with GRANTOR_URL and GRANTOR_OPERATOR_TOKEN.',
    examples: ['grantor operators token revoke tok_0123456789abcdef'],
    where: ['local'],
  },
  {
    path: ['reference-policies', 'learn'],
    summary: 'golden PCR values from an event log (offline)',
    args: '',
    options: {
      'event-log': { type: 'string', value: 'FILE', help: 'TCG binary event log' },
      ima: { type: 'string', value: 'FILE', help: 'IMA measurement list' },
      'ima-format': { type: 'string', value: 'ascii|binary', help: 'its format' },
      name: { type: 'string', value: 'NAME', help: 'the reference policy name' },
      selector: { type: 'string', value: 'K=V', help: 'runtime label selector', multiple: true },
      bank: { type: 'string', value: 'ALG', help: 'PCR bank (default sha256)' },
      out: { type: 'string', value: 'FILE', help: 'write here instead of stdout' },
    },
    description:
      'Replays a measured-boot event log into a reference policy (docs/measured-boot.md).',
    examples: [
      'grantor reference-policies learn --event-log binary_bios_measurements --name fleet-2026 --out fleet.json',
    ],
    where: ['offline'],
  },
];

/** The options a command accepts in the mode it runs in (plus --help). */
export function optionsOf(command: Command, remote: boolean): Options {
  return { ...command.options, ...help, ...(remote ? REMOTE_OPTIONS : {}) };
}

/** How many arguments a command takes, read from its usage words (`args`). */
export function positionalsOf(c: Command): { min: number; max: number } {
  const words = c.args.split(' ').filter((w) => w !== '');
  return { min: words.filter((w) => !w.startsWith('[')).length, max: words.length };
}

/** The command named by the first words of `argv`, and the rest; or the group it starts. */
export function resolve(
  argv: readonly string[],
): { command: Command; rest: string[] } | { group: string[]; unknown?: string } {
  const words: string[] = [];
  for (const w of argv) {
    if (w.startsWith('-')) break;
    words.push(w);
    const exact = COMMANDS.find(
      (c) => c.path.length === words.length && c.path.every((p, i) => p === words[i]),
    );
    if (exact !== undefined) return { command: exact, rest: argv.slice(words.length) };
    const prefix = COMMANDS.some((c) => words.every((p, i) => c.path[i] === p));
    if (!prefix) return { group: words.slice(0, -1), unknown: w };
  }
  return { group: words };
}

function usageLine(c: Command): string {
  return ['grantor', ...c.path, c.args, '[options]'].filter((s) => s !== '').join(' ');
}

function optionLines(options: Options): string[] {
  return Object.entries(options).map(([name, o]) => {
    const left = `${o.short === undefined ? '    ' : `-${o.short}, `}--${name}${o.value === undefined ? '' : ` <${o.value}>`}`;
    return `  ${left.padEnd(34)} ${o.help}`;
  });
}

export function commandHelp(c: Command): string {
  const remote = c.where.includes('remote');
  return [
    `usage: ${usageLine(c)}`,
    '',
    `${c.summary}.`,
    c.description,
    '',
    `runs: ${c.where.map((w) => WHERE[w]).join('; or ')}`,
    '',
    'options:',
    ...optionLines({ ...c.options, ...help }),
    ...(remote ? ['', 'remote options:', ...optionLines(REMOTE_OPTIONS)] : []),
    '',
    'examples:',
    ...c.examples.map((e) => `  ${e}`),
  ].join('\n');
}

const WHERE: Readonly<Record<Where, string>> = {
  offline: 'anywhere, on files only',
  local: 'on the appliance, with its configuration, while the server is stopped',
  config: 'on the appliance, with its configuration (read-only checks)',
  remote: 'against a running appliance (--url, --profile, or GRANTOR_URL)',
};

export function groupHelp(group: readonly string[]): string {
  const members = COMMANDS.filter((c) => group.every((p, i) => c.path[i] === p));
  const width = Math.max(...members.map((c) => c.path.join(' ').length)) + 2;
  const top = group.length === 0;
  return [
    top
      ? 'usage: grantor <command> [options]'
      : `usage: grantor ${group.join(' ')} <command> [options]`,
    '',
    ...(top
      ? [
          'grantor: the trust appliance, its ceremonies on the appliance and a client of a running one.',
          '',
        ]
      : []),
    'commands:',
    ...members.map((c) => `  ${c.path.join(' ').padEnd(width)}${c.summary}`),
    '',
    top
      ? "grantor <command> --help shows a command's options and examples; grantor --version the version."
      : `grantor ${group.join(' ')} <command> --help shows its options and examples.`,
    ...(top
      ? [
          'Local commands open the TPM, the HSM and the database: stop the server first, or use',
          'the remote commands (--url/--cacert with --cert/--key or --token, or a profile file).',
        ]
      : []),
  ].join('\n');
}
