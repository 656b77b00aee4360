/**
 * The grantor story, runnable (issue 6): what `./scripts/demo` drives.
 *
 * Two simulated runtimes, each on its own swtpm, enroll with their EK certificates,
 * activate and attest through the attester library (attester/attester.ts). The shipped
 * policy set (policies/default) lets the support team read tickets and the payments team
 * move money, so the story needs one runtime of each: "support" reads a ticket in session
 * mode; "payments" asks to move money in session mode (denied: policy wants a quote), then
 * in quote mode (allowed), then for a child grant (payments.notify). The example gateway
 * (in-process) executes each allowed action once and refuses its replay. Then the
 * enforcement stories (enforcement.ts): a transfer through the real nginx in front of
 * grantor-gateway, its outcome in the lineage; an offline gateway refusing the payments
 * runtime's grant within its bound once an operator revoked the runtime, which is then
 * refused a new grant. The measured-boot refusals follow (support). Finally the auditor
 * (auditor.ts): `grantor audit export` while the appliance serves, `grantor audit verify`
 * offline, and "what did the payments runtime do" answered from the bundle alone.
 *
 * Each step prints one line: `ok   <what happened>` or `FAIL <what went wrong>`; the first
 * failure stops the story. Exit code 0 only when every step went as the story says.
 *
 *   GRANTOR_DEMO_AUDITOR_TOKEN=gop_... npx tsx examples/demo/demo.ts \
 *     --url http://127.0.0.1:8443 --support-tcti swtpm:host=127.0.0.1,port=2333 \
 *     --payments-tcti swtpm:host=127.0.0.1,port=2331 [--export var/demo/audit-bundle.ndjson] \
 *     [--pin var/demo/appliance.anchor-pin.json] [--nginx-dir var/demo/nginx]
 *   (an https appliance: NODE_EXTRA_CA_CERTS=<its server CA>; the auditor may instead be a
 *   client certificate: --auditor-cert var/tls/operators/auditor.pem --auditor-key ...)
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Attester, AttesterError, type GrantRequestBody } from '../../attester/attester.js';
import {
  JwksClient,
  RedemptionClient,
  createGrantVerifier,
  createPopChallenge,
  parametersDigest,
} from '../../src/gateway/index.js';
import { GrantorError } from '../../src/shared/errors.js';
import { openTpm } from '../../src/tpm/tpm.native.js';
import type { PcrBankSelection, TpmPort } from '../../src/tpm/tpm.port.js';
import { createGatewayExample } from '../gateway/app.js';
import { auditorStory } from './auditor.js';
import { MeasuredRuntime, bootEvents, eventLog } from './boot.js';
import { nginxStory, offlineRevocationStory, type EnforcementContext } from './enforcement.js';
import {
  StepFailed,
  call,
  describeError,
  errorCode,
  reasonsOf,
  short,
  type AuditorCredential,
  type Issued,
} from './story.js';

export type { AuditorCredential } from './story.js';

export interface DemoOptions {
  /** The appliance, e.g. http://127.0.0.1:8443 */
  readonly url: string;
  /** TCTI of the support runtime's swtpm. */
  readonly supportTcti: string;
  /** TCTI of the payments runtime's swtpm. */
  readonly paymentsTcti: string;
  /** Reads the audit log for the export, and the runtimes; without it those steps fail. */
  readonly auditor?: AuditorCredential;
  /**
   * Assigns the runtimes their labels when no enrollment rule did (an appliance whose
   * rules do not know the demo's TPMs, e.g. ./scripts/start's).
   */
  readonly operator?: AuditorCredential;
  /**
   * The example gateway's token at the appliance (`ggw_...`). Without it the demo enrolls
   * a gateway for its audience with the operator credential (`POST /v1/gateways`).
   */
  readonly gatewayToken?: string;
  /** Where `grantor audit export` writes the evidence bundle (default: a temporary file). */
  readonly exportFile?: string;
  /** The appliance's anchor pin file (from provisioning): the bundle's TPM evidence is checked. */
  readonly pinFile?: string;
  /** nginx's prefix folder (its configuration and logs); default: a temporary one. */
  readonly nginxDir?: string;
  /** The offline gateway's revocation bound, seconds (default 60, above the 25 s long-poll). */
  readonly offlineBoundSeconds?: number;
  /** Makes runtime names unique against an appliance that already knows earlier runs. */
  readonly runId?: string;
  readonly print: (line: string) => void;
}

export interface DemoResult {
  readonly ok: boolean;
  readonly steps: readonly { readonly step: string; readonly ok: boolean }[];
}

/** 0 and 7 for the raw values, 2, 4 and 8 replayed from the event log, 10 for IMA. */
const PCRS: readonly PcrBankSelection[] = [{ bank: 'sha256', pcrs: [0, 2, 4, 7, 8, 10] }];
const AUDIENCE = 'gw_demo';

/** One runtime: its TPM, the attester over it, and what the attestation gave it. */
interface Runtime {
  readonly label: string;
  readonly tpm: TpmPort;
  readonly attester: Attester;
  runtimeId: string;
  /** Its measured boot (event log, IMA list), once the `boot` step ran. */
  boot?: MeasuredRuntime;
}

let counter = 0;

type GrantAsk = Pick<GrantRequestBody, 'action' | 'resource' | 'parametersDigest'> &
  Partial<Pick<GrantRequestBody, 'parentGrantId' | 'ttlSeconds'>>;

function grantBody(rt: Runtime, over: GrantAsk): GrantRequestBody {
  counter += 1;
  return {
    runtimeId: rt.runtimeId,
    requestId: `demo-${randomBytes(6).toString('hex')}-${counter}`,
    issuedAt: new Date().toISOString(),
    parentGrantId: null,
    ttlSeconds: 60,
    audience: AUDIENCE,
    ...over,
  };
}

/** A grant request in session mode: signed with the runtime's attested session key. */
function sessionBody(rt: Runtime, ask: GrantAsk): GrantRequestBody {
  return rt.attester.sessionSigned(grantBody(rt, ask));
}

export async function runDemo(options: DemoOptions): Promise<DemoResult> {
  const { url, print } = options;
  const steps: { step: string; ok: boolean }[] = [];
  const runId = options.runId ?? randomBytes(3).toString('hex');
  const runtimes: Runtime[] = [];
  const closers: (() => Promise<void>)[] = [];

  const step = async (name: string, run: () => Promise<string>): Promise<void> => {
    try {
      const line = await run();
      steps.push({ step: name, ok: true });
      print(`ok   ${name.padEnd(9)} ${line}`);
    } catch (e) {
      steps.push({ step: name, ok: false });
      print(`FAIL ${name.padEnd(9)} ${describeError(e)}`);
      throw new StepFailed(name);
    }
  };

  const expectGrant = async (body: GrantRequestBody): Promise<Issued> => {
    const res = await call(url, 'POST', '/v1/grants', body);
    if (res.status !== 201)
      throw new StepFailed(
        `expected 201, got ${res.status} ${errorCode(res.body)} ${reasonsOf(res.body).join('; ')}`,
      );
    return res.body as unknown as Issued;
  };

  try {
    // --- the appliance ------------------------------------------------------------------
    let issuer = '';
    let verifierKey = '';
    await step('appliance', async () => {
      const ready = await call(url, 'GET', '/readyz');
      if (ready.status !== 200)
        throw new StepFailed(
          `${url}/readyz answered ${ready.status}: ${JSON.stringify(ready.body)}`,
        );
      const v = await call(url, 'GET', '/v1/audit/verifier');
      if (v.status !== 200 || typeof v.body.origin !== 'string')
        throw new StepFailed(`/v1/audit/verifier answered ${v.status}`);
      issuer = v.body.origin;
      verifierKey = String(v.body.noteVerifierKey);
      return `grantor "${issuer}" is ready at ${url} (TPM, HSM, audit log and policy answer)`;
    });

    // --- enroll, activate, attest -------------------------------------------------------
    const open = async (label: string, tcti: string): Promise<Runtime> => {
      const tpm = await openTpm({ tcti });
      const rt: Runtime = {
        label,
        tpm,
        attester: new Attester(tpm, { url }),
        runtimeId: '',
      };
      runtimes.push(rt);
      return rt;
    };
    const support = await open(`support-agent-${runId}`, options.supportTcti);
    const payments = await open(`payments-agent-${runId}`, options.paymentsTcti);

    for (const [rt, team] of [
      [support, 'support'],
      [payments, 'payments'],
    ] as const) {
      await step('enroll', async () => {
        // The labels a runtime sends are a request: operators decide what it is.
        const state = await rt.attester.enroll(rt.label, { team });
        rt.runtimeId = rt.attester.state.runtimeId ?? '';
        if (state !== 'active') throw new StepFailed(`${rt.label} is ${state}, not active`);
        return `${rt.label} enrolled with its TPM's EK certificate (requesting team=${team}), activated the credential in its TPM: ${rt.runtimeId} is active`;
      });
      await step('identity', async () => {
        const auditor = options.auditor;
        if (auditor === undefined)
          throw new StepFailed('no auditor credential to read the runtime with');
        const path = `/v1/runtimes/${rt.runtimeId}`;
        const read = await call(url, 'GET', path, undefined, auditor);
        if (read.status !== 200) throw new StepFailed(`GET ${path} answered ${read.status}`);
        const view = read.body as { labels?: Record<string, string>; labelSource?: unknown };
        if (view.labels?.team === team)
          return `the operators' enrollment rule assigned it team=${team} (${String(view.labelSource)}): what the policies will see`;
        if (options.operator === undefined)
          throw new StepFailed(
            `${rt.label} has labels ${JSON.stringify(view.labels ?? {})}: no enrollment rule matched its EK and no operator credential was given (--operator-cert/--operator-key or GRANTOR_DEMO_OPERATOR_TOKEN)`,
          );
        const put = await call(
          url,
          'PUT',
          `${path}/labels`,
          { labels: { team, boot: 'measured' } },
          options.operator,
        );
        if (put.status !== 200) throw new StepFailed(`PUT ${path}/labels answered ${put.status}`);
        return `no rule knew its EK: an operator assigned team=${team} (audited runtime.labels.assign)`;
      });
    }
    const measured = (rt: Runtime): MeasuredRuntime => {
      if (rt.boot === undefined) throw new StepFailed(`${rt.label} has not booted`);
      return rt.boot;
    };
    for (const rt of [support, payments]) {
      await step('boot', async () => {
        rt.boot = await MeasuredRuntime.boot(rt.tpm);
        return `${rt.label}'s firmware measured shim, GRUB, the kernel and its command line into PCRs 2, 4, 8 (event log: ${bootEvents().length} events) and IMA ${rt.boot.imaEntries} files into PCR 10`;
      });
    }
    for (const rt of [support, payments]) {
      await step('attest', async () => {
        const r = await rt.attester.attest(PCRS, measured(rt).source());
        if (r.verdict !== 'trusted')
          throw new StepFailed(`${rt.label}: verdict ${r.verdict} (${r.reasons.join('; ')})`);
        if (r.measuredBoot === undefined)
          throw new StepFailed(`${rt.label}: the appliance did not replay the logs`);
        return `${rt.label} quoted PCRs 0,2,4,7,8,10 over a fresh nonce and session key, with its event log (${r.measuredBoot.events} events replayed) and IMA list (${r.measuredBoot.imaEntries} entries): trusted, session ${short(r.attestationId)} until ${r.validUntil ?? '?'}`;
      });
    }

    // --- the gateway --------------------------------------------------------------------
    // Redemption and outcomes come only from an enrolled gateway, for its own audiences.
    let gatewayToken = options.gatewayToken ?? '';
    await step('gateway', async () => {
      if (gatewayToken !== '') return `the gateway for ${AUDIENCE} uses the token it was given`;
      if (options.operator === undefined)
        throw new StepFailed(
          'no gateway credential: set GRANTOR_DEMO_GATEWAY_TOKEN or give an operator credential (GRANTOR_DEMO_OPERATOR_TOKEN or --operator-cert/--operator-key)',
        );
      const enrolled = await call(
        url,
        'POST',
        '/v1/gateways',
        { name: `demo-gateway-${runId}`, audiences: [AUDIENCE] },
        options.operator,
      );
      const token = enrolled.body.token;
      const gw = enrolled.body.gateway as { id?: string } | undefined;
      if (enrolled.status !== 201 || typeof token !== 'string')
        throw new StepFailed(
          `POST /v1/gateways answered ${enrolled.status} ${errorCode(enrolled.body)}`,
        );
      gatewayToken = token;
      return `an operator enrolled the example gateway for ${AUDIENCE}: ${String(gw?.id)} (audited gateway.enrolled); it redeems only with its token`;
    });
    const gateway = await createGatewayExample({
      issuer,
      audience: AUDIENCE,
      applianceUrl: url,
      gatewayToken,
    });
    closers.push(() => gateway.app.close());
    const grantIdOf = (grant: string): string =>
      String(
        (
          JSON.parse(Buffer.from(grant.split('.')[1] ?? '', 'base64url').toString('utf8')) as {
            jti?: unknown;
          }
        ).jti,
      );
    // Proof of possession is on in the example gateway: the runtime gets a challenge and
    // its attester signs it with the attested session key (the grant's cnf.jkt).
    const execute = async (
      rt: Runtime,
      path: string,
      grant: string,
      payload: Record<string, unknown>,
    ): Promise<{ statusCode: number; body: Record<string, unknown> }> => {
      const issued = await gateway.app.inject({ method: 'POST', url: '/pop/challenge' });
      const challenge = String(issued.json<{ challenge?: unknown }>().challenge);
      const pop = rt.attester.proofOfPossession({
        audience: AUDIENCE,
        grantId: grantIdOf(grant),
        challenge,
      });
      const r = await gateway.app.inject({
        method: 'POST',
        url: path,
        payload,
        headers: { authorization: `Grant ${grant}`, 'grant-pop': pop.header },
      });
      return { statusCode: r.statusCode, body: r.json<Record<string, unknown>>() };
    };
    const expectReplayRefused = async (
      rt: Runtime,
      path: string,
      grant: string,
      payload: Record<string, unknown>,
    ): Promise<string> => {
      const again = await execute(rt, path, grant, payload);
      if (again.statusCode !== 409 || errorCode(again.body) !== 'grant_already_redeemed')
        throw new StepFailed(
          `replay: expected 409 grant_already_redeemed, got ${again.statusCode}`,
        );
      return `the same grant again: gateway refused, 409 ${errorCode(again.body)}`;
    };

    // --- read a ticket (session mode) ---------------------------------------------------
    const ticketParams = { ticketId: 'T-42' };
    let ticket: Issued | undefined;
    await step('grant', async () => {
      ticket = await expectGrant(
        sessionBody(support, {
          action: 'tickets.read',
          resource: 'ticket:T-42',
          parametersDigest: parametersDigest(ticketParams),
        }),
      );
      return `tickets.read on ticket:T-42, session mode (signed with the session key): ALLOWED, grant ${short(ticket.grantId)}, audit #${ticket.auditSeq}`;
    });
    const ticketGrant = ticket?.grant ?? '';
    await step('execute', async () => {
      const r = await execute(support, '/tickets/read', ticketGrant, ticketParams);
      if (r.statusCode !== 200)
        throw new StepFailed(`gateway: ${r.statusCode} ${errorCode(r.body)}`);
      return `gateway verified the grant offline and the runtime's proof of possession, redeemed it, read T-42: "${String(r.body.subject)}"`;
    });
    await step('replay', () =>
      expectReplayRefused(support, '/tickets/read', ticketGrant, ticketParams),
    );

    // --- move money: session mode (denied), quote mode (allowed) ------------------------
    const transferParams = {
      from: 'acct:1234',
      to: 'acct:9876',
      amountCents: 2500,
      currency: 'EUR',
    };
    /** A payments.transfer for `acct:1234`, in quote mode (what the policy wants). */
    const quotedTransfer = async (parameters: Record<string, unknown>): Promise<Issued> =>
      expectGrant(
        await payments.attester.quoted(
          grantBody(payments, {
            action: 'payments.transfer',
            resource: 'acct:1234',
            parametersDigest: parametersDigest(parameters),
          }),
          PCRS,
          measured(payments).source(),
        ),
      );
    /** The same in session mode (denied by the policy; refused once the runtime is revoked). */
    const sessionTransfer = () =>
      call(
        url,
        'POST',
        '/v1/grants',
        sessionBody(payments, {
          action: 'payments.transfer',
          resource: 'acct:1234',
          parametersDigest: parametersDigest(transferParams),
        }),
      );
    await step('grant', async () => {
      const res = await sessionTransfer();
      if (res.status !== 403 || errorCode(res.body) !== 'policy_denied')
        throw new StepFailed(
          `expected 403 policy_denied, got ${res.status} ${errorCode(res.body)}`,
        );
      return `payments.transfer 25.00 EUR, session mode: DENIED (403 policy_denied: "${reasonsOf(res.body).join('; ')}")`;
    });
    let transfer: Issued | undefined;
    await step('grant', async () => {
      transfer = await quotedTransfer(transferParams);
      return `payments.transfer 25.00 EUR, quote mode (TPM quote over this very request, event log and IMA replayed again): ALLOWED, grant ${short(transfer.grantId)}, audit #${transfer.auditSeq}`;
    });
    const transferGrant = transfer?.grant ?? '';
    const transferId = transfer?.grantId ?? '';
    await step('execute', async () => {
      const r = await execute(payments, '/payments/transfer', transferGrant, transferParams);
      if (r.statusCode !== 200)
        throw new StepFailed(`gateway: ${r.statusCode} ${errorCode(r.body)}`);
      const moved = gateway.transfers.length;
      return `gateway verified and redeemed the grant, moved the money once: ${String(r.body.transferId)} ${String(r.body.status)} (${moved} transfer in total)`;
    });
    await step('replay', () =>
      expectReplayRefused(payments, '/payments/transfer', transferGrant, transferParams),
    );

    // --- a child grant under the transfer -----------------------------------------------
    const notifyParams = { transferId: 'tr_1', channel: 'email' };
    let notify: Issued | undefined;
    await step('grant', async () => {
      notify = await expectGrant(
        sessionBody(payments, {
          action: 'payments.notify',
          resource: 'acct:1234',
          parametersDigest: parametersDigest(notifyParams),
          parentGrantId: transferId,
        }),
      );
      return `payments.notify as a child of ${short(transferId)} (lineage depth 1): ALLOWED, grant ${short(notify.grantId)}`;
    });
    // The example gateway has no notify route: the same SDK checks and redeems it.
    const verifier = createGrantVerifier({
      issuer,
      audience: AUDIENCE,
      keys: new JwksClient({ url: `${url}/.well-known/jwks.json` }),
      redeemer: new RedemptionClient({ applianceUrl: `${url}/`, audience: AUDIENCE, gatewayToken }),
    });
    const notifyGrant = notify?.grant ?? '';
    // With a proof of possession, from a fresh challenge each time.
    const notifyExecution = () => {
      const challenge = createPopChallenge();
      const proof = payments.attester.proofOfPossession({
        audience: AUDIENCE,
        grantId: grantIdOf(notifyGrant),
        challenge,
      });
      return {
        execution: { action: 'payments.notify', resource: 'acct:1234', parameters: notifyParams },
        pop: {
          challenge,
          proof: { signature: proof.signature, publicKey: { ...proof.publicKey } },
        },
        redeem: true,
      } as const;
    };
    await step('execute', async () => {
      const v = await verifier.verify(notifyGrant, notifyExecution());
      return `gateway SDK verified and redeemed the child grant (root ${short(v.claims.lin.root)}, depth ${v.claims.lin.depth}): notification sent`;
    });
    await step('replay', async () => {
      try {
        await verifier.verify(notifyGrant, notifyExecution());
      } catch (e) {
        if (e instanceof GrantorError && e.code === 'grant_already_redeemed')
          return `the child grant again: gateway SDK refused, ${e.code}`;
        throw e;
      }
      throw new StepFailed('the replayed child grant was accepted');
    });

    // --- enforcement: through nginx, then an offline gateway and a revoked runtime ------
    const enforcement: EnforcementContext = {
      url,
      issuer,
      audience: AUDIENCE,
      gatewayToken,
      auditor: options.auditor,
      operator: options.operator,
      step,
      onClose: (close) => closers.push(close),
    };
    await nginxStory(enforcement, payments, quotedTransfer, options.nginxDir);
    await offlineRevocationStory(
      enforcement,
      payments,
      quotedTransfer,
      options.offlineBoundSeconds ?? 60,
    );
    await step('refusal', async () => {
      // A revoked runtime asks again: refused before any policy, and audited as a refusal.
      const res = await sessionTransfer();
      if (res.status < 400 || res.status >= 500)
        throw new StepFailed(`a revoked runtime's grant request answered ${res.status}`);
      return `${payments.label}, revoked, asks for another transfer: REFUSED (${res.status} ${errorCode(res.body)}), audited grant.refused`;
    });

    // --- measured boot refusals ----------------------------------------------------------
    await step('tamper', async () => {
      // The runtime hides that it booted another kernel: the log names the allowed one.
      const events = bootEvents().map((e, i) =>
        i === 4 ? { ...e, digests: { sha256: Buffer.alloc(32, 0xee) } } : e,
      );
      try {
        await support.attester.attest(PCRS, measured(support).source(eventLog(events)));
      } catch (e) {
        const d = e instanceof AttesterError ? e.details : undefined;
        if (e instanceof AttesterError && e.code === 'event_log_mismatch')
          return `${support.label} sent an event log with the kernel's digest edited: REFUSED (${e.status} ${e.code}, ${String(d?.bank)} PCR ${String(d?.pcr)}); its session ended`;
        throw e;
      }
      throw new StepFailed('the tampered event log was accepted');
    });
    await step('ima', async () => {
      const digest = await measured(support).measure('/tmp/dropper', 'not on the allowlist');
      const r = await support.attester.attest(PCRS, measured(support).source());
      const reason = r.reasons.find((x) => x.includes(digest));
      if (r.verdict !== 'untrusted' || reason === undefined)
        throw new StepFailed(
          `${support.label} measured an unlisted file and was ${r.verdict} (${r.reasons.join('; ')}); the appliance needs reference-policies/swtpm-demo-measured.json`,
        );
      return `${support.label}'s kernel measured /tmp/dropper (not on the IMA allowlist): only the new entry sent, UNTRUSTED: ${reason}`;
    });

    // --- the auditor's question -----------------------------------------------------------
    await auditorStory(
      { url, auditor: options.auditor, verifierKey, pinFile: options.pinFile, step },
      options.exportFile ??
        join(tmpdir(), `grantor-demo-${runId}-${randomBytes(4).toString('hex')}.ndjson`),
      payments,
    );
    print(
      'the story ran: every allowed action executed exactly once, the log proves each decision',
    );
    return { ok: true, steps };
  } catch (e) {
    if (!(e instanceof StepFailed)) {
      steps.push({ step: 'error', ok: false });
      print(`FAIL error     ${describeError(e)}`);
    }
    return { ok: false, steps };
  } finally {
    for (const close of closers.reverse()) await close().catch(() => undefined);
    for (const rt of runtimes) await rt.tpm.close();
  }
}

async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      url: { type: 'string', default: process.env.GRANTOR_URL ?? 'http://127.0.0.1:8443' },
      'support-tcti': { type: 'string' },
      'payments-tcti': { type: 'string' },
      export: { type: 'string' },
      pin: { type: 'string' },
      'nginx-dir': { type: 'string' },
      'offline-bound': { type: 'string' },
      'run-id': { type: 'string' },
      'auditor-cert': { type: 'string' },
      'auditor-key': { type: 'string' },
      'operator-cert': { type: 'string' },
      'operator-key': { type: 'string' },
    },
  });
  const support = values['support-tcti'];
  const payments = values['payments-tcti'];
  if (support === undefined || payments === undefined) {
    process.stderr.write(
      'usage: demo.ts --url URL --support-tcti TCTI --payments-tcti TCTI [--export BUNDLE]\n' +
        '         [--pin ANCHOR_PIN_FILE] [--nginx-dir DIR] [--offline-bound SECONDS]\n' +
        '         [--auditor-cert PEM --auditor-key PEM]  (or GRANTOR_DEMO_AUDITOR_TOKEN)\n' +
        '         [--operator-cert PEM --operator-key PEM]  (or GRANTOR_DEMO_OPERATOR_TOKEN)\n',
    );
    return 2;
  }
  const credential = async (
    token: string | undefined,
    certFile: string | undefined,
    keyFile: string | undefined,
  ): Promise<AuditorCredential | undefined> =>
    token !== undefined && token !== ''
      ? { token }
      : certFile !== undefined && keyFile !== undefined
        ? { cert: await readFile(certFile), key: await readFile(keyFile), certFile, keyFile }
        : undefined;
  const auditor = await credential(
    process.env.GRANTOR_DEMO_AUDITOR_TOKEN,
    values['auditor-cert'],
    values['auditor-key'],
  );
  const operator = await credential(
    process.env.GRANTOR_DEMO_OPERATOR_TOKEN,
    values['operator-cert'],
    values['operator-key'],
  );
  const result = await runDemo({
    url: values.url.replace(/\/+$/, ''),
    supportTcti: support,
    paymentsTcti: payments,
    ...(auditor === undefined ? {} : { auditor }),
    ...(operator === undefined ? {} : { operator }),
    ...(process.env.GRANTOR_DEMO_GATEWAY_TOKEN === undefined ||
    process.env.GRANTOR_DEMO_GATEWAY_TOKEN === ''
      ? {}
      : { gatewayToken: process.env.GRANTOR_DEMO_GATEWAY_TOKEN }),
    ...(values.export === undefined ? {} : { exportFile: values.export }),
    ...(values.pin === undefined ? {} : { pinFile: values.pin }),
    ...(values['nginx-dir'] === undefined ? {} : { nginxDir: values['nginx-dir'] }),
    ...(values['offline-bound'] === undefined
      ? {}
      : { offlineBoundSeconds: Number(values['offline-bound']) }),
    ...(values['run-id'] === undefined ? {} : { runId: values['run-id'] }),
    print: (line) => {
      process.stdout.write(`${line}\n`);
    },
  });
  return result.ok ? 0 : 1;
}

if (process.argv[1] !== undefined && import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`demo: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
