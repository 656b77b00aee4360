/**
 * The demo's auditor story (issue 16): while the appliance serves, `grantor audit export`
 * (remote, with the auditor's credential) takes an evidence bundle; `grantor audit verify`
 * checks it offline, trusting only the verifier key, the anchor pin and the auditor's own
 * nonce; then "what did this runtime do" is answered from the bundle alone
 * (src/audit/bundle-story.ts): an allow, a deny and a refusal, each with its `seq`.
 */
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { bundleRecords, runtimeStory, type StoryLine } from '../../src/audit/bundle-story.js';
import { run } from '../../src/cli/main.js';
import { StepFailed, short, type AuditorCredential, type Step } from './story.js';

export interface AuditorContext {
  readonly url: string;
  readonly auditor: AuditorCredential | undefined;
  /** The appliance's note verifier key (the auditor holds it from provisioning). */
  readonly verifierKey: string;
  /** The anchor pin file of the appliance, from provisioning; without it no TPM evidence. */
  readonly pinFile: string | undefined;
  readonly step: Step;
}

/** The CLI, in this process, its lines collected. */
async function cli(argv: readonly string[]): Promise<{ code: number; lines: string[] }> {
  const lines: string[] = [];
  const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
  const code = await run(argv, io);
  return { code, lines };
}

function credentialArgs(auditor: AuditorCredential): string[] {
  if ('token' in auditor) return ['--token', auditor.token];
  if (auditor.certFile === undefined || auditor.keyFile === undefined)
    throw new StepFailed('the auditor certificate was given without its files');
  return ['--cert', auditor.certFile, '--key', auditor.keyFile];
}

function describe(line: StoryLine): string {
  const { entry } = line;
  const facts = (entry.facts ?? {}) as Readonly<Record<string, unknown>>;
  const parts = [`#${entry.seq}`, entry.type, entry.decision ?? ''];
  if (typeof facts.action === 'string') parts.push(`${facts.action} on ${String(facts.resource)}`);
  const said = [
    line.policy === undefined
      ? ''
      : `under policy set ${short(line.policy.hash)} (${Object.keys(line.policy.policies).join(', ')})`,
    line.body === undefined ? '' : 'its request body in the bundle',
  ].filter((p) => p !== '');
  return `${parts.filter((p) => p !== '').join(' ')}${said.length === 0 ? '' : `, ${said.join(', ')}`}`;
}

/** Exports the bundle to `file`, verifies it, and answers for `runtime`. */
export async function auditorStory(
  ctx: AuditorContext,
  file: string,
  runtime: { readonly label: string; readonly runtimeId: string },
): Promise<void> {
  const { step } = ctx;
  const nonce = randomBytes(32).toString('hex');
  await step('export', async () => {
    if (ctx.auditor === undefined)
      throw new StepFailed(
        'no auditor credential: set GRANTOR_DEMO_AUDITOR_TOKEN (grantor operators token create --role auditor, while the appliance is stopped) or pass --auditor-cert/--auditor-key',
      );
    const r = await cli([
      'audit',
      'export',
      file,
      '--url',
      ctx.url,
      ...credentialArgs(ctx.auditor),
      // An https appliance: its server CA, as ./scripts/demo gives it to node.
      ...(ctx.url.startsWith('https:') && process.env.NODE_EXTRA_CA_CERTS !== undefined
        ? ['--cacert', process.env.NODE_EXTRA_CA_CERTS]
        : []),
      '--nonce',
      nonce,
    ]);
    const said = r.lines.find((l) => l.startsWith('exported'));
    if (r.code !== 0 || said === undefined)
      throw new StepFailed(`grantor audit export: exit ${r.code}: ${r.lines.at(-1) ?? ''}`);
    // To verify again later: the key comes from the appliance, not from the file it verifies.
    await writeFile(`${file}.key`, `${ctx.verifierKey}\n`);
    return `grantor audit export --url ${ctx.url} (auditor, while the appliance serves, nonce ${nonce.slice(0, 8)}…): ${said}`;
  });
  await step('verify', async () => {
    const trust =
      ctx.pinFile === undefined
        ? ['--skip-tpm-evidence']
        : ['--pin', ctx.pinFile, '--nonce', nonce];
    const r = await cli(['audit', 'verify', file, '--key', ctx.verifierKey, ...trust]);
    const ok = r.lines.find((l) => l.startsWith('OK:'));
    if (r.code !== 0 || ok === undefined)
      throw new StepFailed(`grantor audit verify: exit ${r.code}: ${r.lines.join(' / ')}`);
    return `grantor audit verify, offline (verifier key${ctx.pinFile === undefined ? ', no anchor pin: TPM evidence skipped' : ', anchor pin and the nonce'}): ${ok}`;
  });
  const story = runtimeStory(
    bundleRecords((await readFile(file, 'utf8')).split('\n')),
    runtime.runtimeId,
  );
  const find = (what: string, test: (l: StoryLine) => boolean): StoryLine => {
    const line = story.find(test);
    if (line === undefined)
      throw new StepFailed(`the bundle holds no ${what} of ${runtime.runtimeId}`);
    return line;
  };
  await step('auditor', () =>
    Promise.resolve(
      `what did ${runtime.label} (${runtime.runtimeId}) do? From the bundle alone: ${story.length} entries (${[...new Set(story.map((l) => l.entry.type))].join(', ')})`,
    ),
  );
  for (const [what, test] of [
    ['allow', (l: StoryLine) => l.entry.type === 'grant.decision' && l.entry.decision === 'allow'],
    ['deny', (l: StoryLine) => l.entry.type === 'grant.decision' && l.entry.decision === 'deny'],
    ['refusal', (l: StoryLine) => l.entry.type === 'grant.refused'],
  ] as const) {
    await step(what, () => Promise.resolve(describe(find(what, test))));
  }
}
