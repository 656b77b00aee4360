/**
 * The appliance side for attestation integration tests: a real LevelDB, the real service
 * through the real routes on a Fastify server, an in-memory audit sink standing in for the
 * audit log, and an injectable clock; plus a runtime TPM (swtpm) driven by tpm2-tools.
 */
import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AttestationService,
  createAttestation,
  createFakeRuntimeStore,
  parseEnrollmentRules,
  parseReferencePolicy,
  qualifyingData,
  type AuditSink,
  type EcSessionJwk,
} from '../../src/attestation/index.js';
import type { SoftTpm } from '../../src/attestation/testing/soft-tpm.js';
import { createServer, type App } from '../../src/http/app.js';
import { operatorAuth } from '../../src/http/plugins/auth.js';
import { runtimesRoutes } from '../../src/http/routes/runtimes.js';
import { createFakeOperatorTokens } from '../../src/operators/token-store.memory.js';
import { openDatabase, type Database } from '../../src/shared/db.level.js';
import { rigEnrollmentRules, startSimTpm, type SimTpm } from '../rig/sim.js';
import { toolsQuote, tpm2Tools, type Tools } from './tools.js';

export class MemoryAudit implements AuditSink {
  readonly events: Parameters<AuditSink['record']>[0][] = [];
  record(event: Parameters<AuditSink['record']>[0]): Promise<void> {
    this.events.push(event);
    return Promise.resolve();
  }
}

/**
 * The real attestation service over memory stores, trusting bare EKs and any runtime whose
 * PCR 0 is `tpm`'s (one catch-all policy `soft`): for route tests with software TPMs.
 */
export function softAttestationService(tpm: SoftTpm, source: string): AttestationService {
  return new AttestationService(
    {
      trustedEkCas: [],
      referencePolicies: [
        parseReferencePolicy(
          {
            name: 'soft',
            catchAll: true,
            pcrs: { sha256: { '0': [tpm.value('sha256', 0).toString('hex')] } },
          },
          source,
        ),
      ],
    },
    { store: createFakeRuntimeStore(), audit: new MemoryAudit() },
  );
}

/** Serves the harness's app on a free loopback port; its base URL. */
export async function listenHarness(h: Harness): Promise<string> {
  await h.app.listen({ host: '127.0.0.1', port: 0 });
  const address = h.app.server.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  return `http://127.0.0.1:${address.port}`;
}

export interface Harness {
  readonly tpm: SimTpm;
  readonly tools: Tools;
  readonly db: Database;
  readonly svc: AttestationService;
  readonly app: App;
  readonly audit: MemoryAudit;
  readonly clock: { now: Date };
  /** Headers of an operator (the revoke route takes its actor from authentication). */
  readonly operator: { readonly authorization: string };
  close(): Promise<void>;
}

export const POLICY_PCRS = [0, 7];

/** The runtime's current sha256 PCR values, hex. */
export async function readPcrs(tools: Tools, pcrs: readonly number[]): Promise<string[]> {
  await tools.tpm2('pcrread', [`sha256:${pcrs.join(',')}`, '-o', 'pcrread.bin']);
  const bytes = await tools.read('pcrread.bin');
  return pcrs.map((_, i) => bytes.subarray(i * 32, i * 32 + 32).toString('hex'));
}

export async function startHarness(
  options: {
    ekCaPem?: string;
    allowReset?: boolean;
    audit?: AuditSink;
    /** The operators' enrollment rules (default: one catch-all, every certified EK active). */
    enrollmentRules?: unknown;
  } = {},
): Promise<Harness> {
  const tpm = await startSimTpm();
  const tools = await tpm2Tools(tpm.tcti);
  const dir = await mkdtemp(join(tmpdir(), 'grantor-att-db-'));
  const db = await openDatabase(join(dir, 'db'));
  const values = await readPcrs(tools, POLICY_PCRS);
  const policyFile = join(dir, 'policy.json');
  await writeFile(
    policyFile,
    JSON.stringify({
      name: 'swtpm-test',
      catchAll: true,
      pcrs: { sha256: Object.fromEntries(POLICY_PCRS.map((p, i) => [String(p), [values[i]]])) },
      allowReset: options.allowReset ?? true,
    }),
  );
  const audit = new MemoryAudit();
  const clock = { now: new Date() };
  const svc = await createAttestation(
    {
      ekCaBundlePem: options.ekCaPem ?? tpm.ekCaPem,
      referencePolicyFiles: [policyFile],
      enrollmentRules: parseEnrollmentRules(
        options.enrollmentRules ?? rigEnrollmentRules(),
        'harness',
      ),
    },
    { db, audit: options.audit ?? audit, now: () => clock.now.getTime() },
  );
  const tokens = createFakeOperatorTokens();
  const app = createServer();
  await app.register(operatorAuth, { tokens });
  await app.register(runtimesRoutes, { attestation: svc });
  await app.ready();
  const { token } = await tokens.create({ role: 'operator', actor: 'harness' });
  return {
    tpm,
    tools,
    db,
    svc,
    app,
    audit,
    clock,
    operator: { authorization: `Bearer ${token}` },
    close: async () => {
      await app.close();
      await db.close();
      await tools.close();
      await tpm.destroy();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export function newSessionKey(): EcSessionJwk {
  const jwk = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({
    format: 'jwk',
  });
  return { kty: 'EC', crv: 'P-256', x: jwk.x ?? '', y: jwk.y ?? '' };
}

export function qdHex(nonceB64: string, key: EcSessionJwk): string {
  return qualifyingData(Buffer.from(nonceB64, 'base64'), key).toString('hex');
}

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Enroll the AK in ak.ctx/ak.pub with the EK certificate, and activate it with tpm2-tools. */
export async function enrollAndActivate(
  h: Harness,
  name: string,
  options: {
    ak?: string;
    akPub?: string;
    ek?: 'rsa' | 'ecc';
    secret?: (real: Buffer) => Buffer;
  } = {},
): Promise<string> {
  const ek = options.ek ?? 'rsa';
  await h.tools.tpm2('nvread', [ek === 'rsa' ? '0x01c00002' : '0x01c00016', '-o', 'ek.der']);
  const res = await h.app.inject({
    method: 'POST',
    url: '/v1/runtimes',
    payload: {
      name,
      ekCertificate: (await h.tools.read('ek.der')).toString('base64'),
      akPublic: (await h.tools.read(options.akPub ?? 'ak.pub')).toString('base64'),
    },
  });
  if (res.statusCode !== 201) throw new Error(`enroll: ${res.statusCode} ${res.body}`);
  const enrolled = res.json<{
    runtimeId: string;
    credentialBlob: string;
    encryptedSecret: string;
  }>();
  const real = await activateWithTools(
    h.tools,
    enrolled.credentialBlob,
    enrolled.encryptedSecret,
    options.ak ?? 'ak.ctx',
    ek,
  );
  const secret = options.secret === undefined ? real : options.secret(real);
  const act = await h.app.inject({
    method: 'POST',
    url: `/v1/runtimes/${enrolled.runtimeId}/activation`,
    payload: { secret: secret.toString('base64') },
  });
  if (act.statusCode !== 200)
    throw new Error(`activate ${enrolled.runtimeId}: ${act.statusCode} ${act.body}`);
  return enrolled.runtimeId;
}

export async function activateWithTools(
  tools: Tools,
  blob: string,
  secret: string,
  ak = 'ak.ctx',
  ek: 'rsa' | 'ecc' = 'rsa',
): Promise<Buffer> {
  await tools.write(
    'cred.bin',
    Buffer.concat([
      Buffer.from('badcc0de00000001', 'hex'),
      Buffer.from(blob, 'base64'),
      Buffer.from(secret, 'base64'),
    ]),
  );
  const args = ['-c', ak, '-i', 'cred.bin', '-o', 'secret.bin'];
  if (ek === 'ecc') {
    // swtpm's P-384 EK (template H-3) has userWithAuth: its empty auth value suffices.
    await tools.tpm2('activatecredential', [...args, '-C', '0x81010016']);
  } else {
    await tools.raw('startauthsession', ['--policy-session', '-S', 'session.ctx']);
    await tools.raw('policysecret', ['-S', 'session.ctx', '-c', 'e']);
    await tools.tpm2('activatecredential', [
      ...args,
      '-C',
      '0x81010001',
      '-P',
      'session:session.ctx',
    ]);
  }
  return tools.read('secret.bin');
}

export interface ToolQuote {
  nonce: string;
  quote: string;
  signature: string;
  pcrs: Record<string, Record<string, string>>;
  sessionKey: EcSessionJwk;
}

/** Ask for a challenge and answer it with tpm2_quote over `bank:pcrs` with `ak`. */
export async function quoteWithTools(
  h: Harness,
  runtimeId: string,
  options: {
    bank?: string;
    pcrs?: readonly number[];
    ak?: string;
    nonce?: string;
    sessionKey?: EcSessionJwk;
  } = {},
): Promise<ToolQuote> {
  const bank = options.bank ?? 'sha256';
  const pcrs = options.pcrs ?? [0, 1, 2, 3, 7];
  let nonce = options.nonce;
  if (nonce === undefined) {
    const ch = await h.app.inject({ method: 'POST', url: `/v1/runtimes/${runtimeId}/challenges` });
    if (ch.statusCode !== 201) throw new Error(`challenge: ${ch.statusCode} ${ch.body}`);
    nonce = ch.json<{ nonce: string }>().nonce;
  }
  const sessionKey = options.sessionKey ?? newSessionKey();
  const out = await toolsQuote(
    h.tools,
    options.ak ?? 'ak.ctx',
    bank,
    pcrs,
    qdHex(nonce, sessionKey),
  );
  return { nonce, ...out, sessionKey };
}
