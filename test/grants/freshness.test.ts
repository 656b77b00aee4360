/**
 * Issue 15: in quote mode the proof spends state (the nonce, the runtime's counters and last
 * quote, possibly its session), so freshness and replay are checked before it; and
 * `context.attestation.resetSeen`, which payments.cedar relies on, reaches the policy in
 * quote mode. On the real parts (test/grants/rig.ts): swtpm runtimes driven by tpm2-tools,
 * the Cedar engine over policies/default, the anchored audit log, SoftHSM2.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qualifyingData } from '../../src/attestation/index.js';
import { toolsQuote } from '../attestation/tools.js';
import {
  PCRS,
  attest,
  codeOf,
  enrollWithEccAk,
  grantBody,
  quoted,
  startRig,
  type Rig,
  type Runtime,
  type SessionKeyPair,
} from './rig.js';

let rig: Rig;
let payments: Runtime;
let session: { attestationId: string; key: SessionKeyPair };

beforeAll(async () => {
  rig = await startRig();
  payments = await enrollWithEccAk(rig, 'payments-agent', { team: 'payments' });
  session = await attest(rig, payments);
}, 180_000);

afterAll(async () => {
  await rig.close();
});

const transfer = (over: Record<string, unknown> = {}) =>
  grantBody(payments, {
    action: 'payments.transfer',
    resource: 'acct:1234',
    audience: 'gw_payments',
    ...over,
  });

async function post(body: Record<string, unknown>) {
  return rig.app.inject({ method: 'POST', url: '/v1/grants', payload: body });
}

async function challenge(): Promise<string> {
  const ch = await rig.app.inject({
    method: 'POST',
    url: `/v1/runtimes/${payments.runtimeId}/challenges`,
  });
  expect(ch.statusCode).toBe(201);
  return ch.json<{ nonce: string }>().nonce;
}

/** Quote mode with a given nonce: a quote qualified with SHA-256(nonce || SHA-256(JCS(body))). */
async function quotedWith(
  nonce: string,
  body: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  const qd = qualifyingData(Buffer.from(nonce, 'base64'), body).toString('hex');
  return {
    ...body,
    quote: { nonce, ...(await toolsQuote(rig.tools, payments.ak, 'sha256', PCRS, qd)) },
  };
}

/** What a quote-mode proof writes: the runtime.quote entries and the runtime's last quote. */
async function proofState() {
  const entries = await rig.audit.entries(0, 100_000);
  const view = await rig.attestation.getRuntime(payments.runtimeId);
  return {
    quoteEntries: entries.filter((e) => e.type === 'runtime.quote').length,
    counters: view.counters,
    lastQuote: view.lastQuote,
  };
}

/** A TPM Restart (Shutdown(STATE)) or Reset (Shutdown(CLEAR)) of the runtime's swtpm. */
async function powerCycle(kind: 'restart' | 'reset'): Promise<void> {
  await rig.tools.tpm2('shutdown', kind === 'reset' ? ['-c'] : []);
  await rig.runtimeTpm.stop();
  await rig.runtimeTpm.restart();
}

describe('freshness and replay before the proof (quote mode)', () => {
  it('a stale request: request_stale, its nonce unspent, nothing of the proof written', async () => {
    const nonce = await challenge();
    const stale = new Date(Date.now() - 10 * 60_000).toISOString();
    const before = await proofState();
    const res = await post(await quotedWith(nonce, transfer({ issuedAt: stale })));
    expect(res.statusCode).toBe(422);
    expect(codeOf(res.body)).toBe('request_stale');
    expect(await proofState()).toEqual(before);
    // The nonce still answers a fresh request.
    const ok = await post(await quotedWith(nonce, transfer()));
    expect(ok.statusCode).toBe(201);
  });

  it('a replayed requestId: request_replayed, its nonce unspent, nothing of the proof written', async () => {
    const body = transfer();
    const first = await post(await quoted(rig, payments, body));
    expect(first.statusCode).toBe(201);
    const { requestId } = body;
    const nonce = await challenge();
    const before = await proofState();
    const res = await post(await quotedWith(nonce, transfer({ requestId })));
    expect(codeOf(res.body)).toBe('request_replayed');
    expect(await proofState()).toEqual(before);
    const ok = await post(await quotedWith(nonce, transfer()));
    expect(ok.statusCode).toBe(201);
  });

  it('after a TPM reset: a stale request leaves the session alive; a fresh quote ends it', async () => {
    await powerCycle('reset');
    const stale = new Date(Date.now() - 10 * 60_000).toISOString();
    const before = await proofState();
    const res = await post(await quoted(rig, payments, transfer({ issuedAt: stale })));
    expect(codeOf(res.body)).toBe('request_stale');
    expect(await proofState()).toEqual(before);
    expect(rig.attestation.sessionFor(session.attestationId)).toBeDefined();
    // The quote that shows the reset ends the session that would hold the grant (its key was
    // attested before the reset): refused before the policy is asked.
    const fresh = await post(await quoted(rig, payments, transfer()));
    expect(codeOf(fresh.body)).toBe('session_not_live');
    expect(rig.attestation.sessionFor(session.attestationId)).toBeUndefined();
  });
});

/** A quote-mode transfer is refused by payments-transfer-no-reset, then allowed once re-attested. */
async function refusedUntilReattested(): Promise<void> {
  const res = await post(await quoted(rig, payments, transfer()));
  expect(res.statusCode).toBe(403);
  expect(res.json()).toMatchObject({
    error: {
      code: 'policy_denied',
      details: {
        reasons: ['moving money is refused after a TPM reset until the runtime re-attests'],
      },
    },
  });
  session = await attest(rig, payments);
  expect((await post(await quoted(rig, payments, transfer()))).statusCode).toBe(201);
}

describe('resetSeen reaches the policy in quote mode (payments.cedar)', () => {
  it('after a TPM restart the live session stands, and a transfer is refused until the runtime re-attests', async () => {
    // The reset above ended the session; a restart (restartCount + 1) would not.
    session = await attest(rig, payments);
    await powerCycle('restart');
    // A restart (restartCount + 1) does not end the session: quote mode may use it.
    expect(rig.attestation.sessionFor(session.attestationId)).toBeDefined();
    await refusedUntilReattested();
  });

  it('an attestation that reports a reset: the transfer is refused until the next one', async () => {
    // A quote-mode request records a reset's counters, so the attestation must come first.
    await powerCycle('reset');
    session = await attest(rig, payments);
    const view = await rig.attestation.getRuntime(payments.runtimeId);
    expect(view.lastAttestation?.reasons).toEqual(['tpm_reset_detected']);
    await refusedUntilReattested();
  });
});
