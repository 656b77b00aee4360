/**
 * The appliance side of the grant tests, built with the calls src/appliance.ts makes, over
 * the real parts: an swtpm for the appliance (audit anchor), SoftHSM2 (grant and checkpoint
 * keys), the Cedar engine over policies/default, LevelDB, the attestation service; and a
 * second swtpm for the runtimes, driven by tpm2-tools. Fault switches wrap the real
 * adapters at their ports (HSM signer, audit append, Cedar call) for the fault tests.
 */
import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, expect } from 'vitest';
import {
  AttestationTrust,
  createAttestation,
  loadReferencePolicies,
  parseEnrollmentRules,
  qualifyingData,
  type AttestationService,
  type EcSessionJwk,
  type TrustActor,
} from '../../src/attestation/index.js';
import {
  TpmAuditAnchor,
  createAudit,
  type AuditEvent,
  type AuditService,
} from '../../src/audit/index.js';
import {
  TrustCascade,
  createGrants,
  type GrantService,
  type GrantsSettings,
} from '../../src/grants/index.js';
import { createServer, type App } from '../../src/http/app.js';
import { grantsRoutes } from '../../src/http/routes/grants.js';
import { operatorAuth } from '../../src/http/plugins/auth.js';
import { revocationRoutes } from '../../src/http/routes/revocations.js';
import type { OperatorActor } from '../../src/operators/roles.js';
import { UnauthenticatedError } from '../../src/operators/errors.js';
import { keysRoutes } from '../../src/http/routes/keys.js';
import { runtimesRoutes } from '../../src/http/routes/runtimes.js';
import { HsmUnavailableError, KeyService } from '../../src/keys/index.js';
import { LevelKeyStore } from '../../src/keys/key-store.level.js';
import { Pkcs11Signer } from '../../src/keys/signer.pkcs11.js';
import type { HsmSigner } from '../../src/keys/signer.port.js';
import { PolicyEngine } from '../../src/policy/index.js';
import { cedarWasm } from '../../src/policy/cedar.wasm.js';
import type { CedarPort } from '../../src/policy/index.js';
import { openDatabase, type Database } from '../../src/shared/db.level.js';
import { LevelGatewayStore } from '../../src/operators/gateway-store.level.js';
import { popSigningInput } from '../../src/gateway/pop.js';
import { GatewayRegistry } from '../../src/operators/gateways.js';
import { NativeTpm } from '../../src/tpm/tpm.native.js';
import { activateWithTools, readPcrs } from '../attestation/harness.js';
import { createEccAk, toolsQuote, tpm2Tools, type Tools } from '../attestation/tools.js';
import { provisionAnchor } from '../audit/helpers.js';
import { repoRoot, rigEnrollmentRules, startSimTpm, testHsm, type SimTpm } from '../rig/sim.js';
import { overlay } from '../../src/shared/overlay.js';
import type { GrantRequestBody } from '../../src/shared/grant-request.js';
import { signSessionRequest } from '../../attester/attester.js';

export const ISSUER = 'grantor-grants-e2e';
/** The operator who assigns the rig's runtimes their labels. */
export const RIG_OPERATOR = { id: 'op_rig', role: 'operator' } as const;
export const PCRS = [0, 7];
/** The rig's reference policy (every runtime of the rig attests against it). */
export const RIG_POLICY = 'swtpm-grants';
/** The operator who changes the rig's trust (`startRig({ trust: true })`). */
export const TRUST_OPERATOR: TrustActor = { id: 'op_rig', role: 'operator', name: 'rig' };

export interface Faults {
  hsmDown: boolean;
  auditDown: boolean;
  policyDown: boolean;
  /** The log refuses the appends this says yes to (a log failing between two entries). */
  auditRefuses: ((event: AuditEvent) => boolean) | undefined;
  /** Signatures the HSM made for grants (ES256). */
  grantSignatures: number;
}

export interface Rig {
  readonly applianceTpm: SimTpm;
  readonly runtimeTpm: SimTpm;
  readonly tools: Tools;
  readonly db: Database;
  readonly keys: KeyService;
  readonly audit: AuditService;
  readonly attestation: AttestationService;
  readonly grants: GrantService;
  readonly app: App;
  readonly faults: Faults;
  readonly clock: { offsetMs: number };
  /** Enrolled gateways (the routes authenticate redeem and outcome against it). */
  readonly gateways: GatewayRegistry;
  /** A gateway enrolled for `gw_tickets` and `gw_payments`: its id and bearer headers. */
  readonly gateway: {
    readonly id: string;
    readonly token: string;
    readonly headers: { authorization: string };
  };
  /** The operator-managed trust, when started with `{trust: true}`. */
  readonly trust: AttestationTrust | undefined;
  /** Another GrantService over the same parts and store, with its own policy engine. */
  grantsWithPolicy(policyDir: string, settings?: Partial<GrantsSettings>): Promise<GrantService>;
  close(): Promise<void>;
}

function faultySigner(inner: HsmSigner, faults: Faults): HsmSigner {
  return {
    open: () => inner.open(),
    generate: (alg, label) => inner.generate(alg, label),
    load: (id, alg) => inner.load(id, alg),
    destroy: (id) => inner.destroy(id),
    ready: () => inner.ready(),
    close: () => inner.close(),
    sign: async (id, data) => {
      if (faults.hsmDown) throw new HsmUnavailableError('token removed (test)');
      const sig = await inner.sign(id, data);
      // A grant's signing input is a JWS (`eyJ...`); checkpoints are signed notes.
      if (Buffer.from(data.subarray(0, 3)).toString('latin1') === 'eyJ')
        faults.grantSignatures += 1;
      return sig;
    },
  };
}

function faultyCedar(faults: Faults): CedarPort {
  return {
    ...cedarWasm,
    statefulIsAuthorized: (call) => {
      if (faults.policyDown) throw new Error('wasm trap (test)');
      return cedarWasm.statefulIsAuthorized(call);
    },
  };
}

export interface RigOptions {
  /**
   * Operator-managed trust (src/attestation/registrar.ts) over the rig's EK CA and
   * reference policy, with trust withdrawals cascading to sessions and grants as the
   * appliance wires them (src/grants/trust-cascade.ts).
   */
  readonly trust?: boolean;
}

export async function startRig(options: RigOptions = {}): Promise<Rig> {
  const faults: Faults = {
    hsmDown: false,
    auditDown: false,
    policyDown: false,
    auditRefuses: undefined,
    grantSignatures: 0,
  };
  const clock = { offsetMs: 0 };
  const now = (): number => Date.now() + clock.offsetMs;
  const applianceTpm = await startSimTpm();
  const runtimeTpm = await startSimTpm();
  const tools = await tpm2Tools(runtimeTpm.tcti);
  const dir = await mkdtemp(join(tmpdir(), 'grantor-grants-'));
  const db = await openDatabase(join(dir, 'db'));
  const tpm = await NativeTpm.open(applianceTpm.tcti);
  const anchorConfig = await provisionAnchor(tpm);
  const hsm = await testHsm();
  const keys = await KeyService.start(
    {
      rotationPeriodSeconds: 0,
      grantMaxTtlSeconds: 3600,
      jwksMaxAgeSeconds: 300,
      maintenanceIntervalMs: 0,
      labelPrefix: 'grantor-grants-e2e',
    },
    {
      signer: faultySigner(
        new Pkcs11Signer({
          modulePath: hsm.module,
          tokenLabel: hsm.tokenLabel,
          pin: hsm.pin,
          sessionPoolSize: 4,
          signDeadlineMs: 10_000,
          recoveryBackoffMs: 1000,
        }),
        faults,
      ),
      store: new LevelKeyStore(db),
    },
  );
  const realAudit = createAudit(
    { origin: ISSUER, minAnchorIntervalMs: 0 },
    {
      db,
      anchor: new TpmAuditAnchor(tpm, anchorConfig),
      signer: {
        keyName: ISSUER,
        get publicKey() {
          return keys.auditPublicKey().raw;
        },
        sign: async (message) => (await keys.signAudit(message)).signature,
      },
    },
  );
  await realAudit.provision();
  await realAudit.ready();
  const audit: AuditService = overlay<AuditService>(realAudit, {
    append: (event: Parameters<AuditService['append']>[0]) =>
      faults.auditDown || faults.auditRefuses?.(event) === true
        ? Promise.reject(new Error('store write failed (test)'))
        : realAudit.append(event),
  });

  const values = await readPcrs(tools, PCRS);
  const refPolicy = join(dir, 'reference.json');
  await writeFile(
    refPolicy,
    JSON.stringify({
      name: RIG_POLICY,
      catchAll: true,
      pcrs: { sha256: Object.fromEntries(PCRS.map((p, i) => [String(p), [values[i]]])) },
      allowReset: true,
    }),
  );
  const trust =
    options.trust === true
      ? await AttestationTrust.open({
          configuredEkCaPem: runtimeTpm.ekCaPem,
          configuredEnrollmentRules: parseEnrollmentRules(rigEnrollmentRules(), 'rig'),
          referencePolicies: await loadReferencePolicies([refPolicy]),
          stateDir: join(dir, 'attestation'),
          audit: {
            record: async (event) => {
              await audit.append(event);
            },
          },
          now,
        })
      : undefined;
  const attestation = await createAttestation(
    {
      ekCaBundlePem: runtimeTpm.ekCaPem,
      referencePolicyFiles: [refPolicy],
      enrollmentRules: parseEnrollmentRules(rigEnrollmentRules(), 'rig'),
      ...(trust === undefined ? {} : { trust }),
    },
    {
      db,
      audit: {
        record: async (event) => {
          await audit.append(event);
        },
      },
      now,
    },
  );
  const engine = async (policyDir: string): Promise<PolicyEngine> => {
    const e = new PolicyEngine({
      policyDir,
      schemaFile: join(repoRoot, 'policies/grantor.cedarschema'),
      cedar: faultyCedar(faults),
    });
    await e.reload();
    return e;
  };
  const policy = await engine(join(repoRoot, 'policies/default'));
  const settings: GrantsSettings = { issuer: ISSUER, maxTtlSeconds: 3600, clockSkewSeconds: 60 };
  const gateways = new GatewayRegistry(new LevelGatewayStore(db), now, async (event) => {
    await audit.append({
      type: event.type,
      subject: event.subject,
      reasons: [`by:${event.by}`, ...(event.audiences ?? []).map((a) => `audience:${a}`)],
      digest: createHash('sha256').update(JSON.stringify(event)).digest('hex'),
    });
  });
  const grants = createGrants(settings, { db, attestation, policy, audit, keys, gateways });
  if (trust !== undefined) {
    const cascade = new TrustCascade({ attestation, grants, now });
    trust.onTrustWithdrawn((change) => cascade.apply(change));
  }
  const enrolled = await gateways.enroll(
    { name: 'rig-gateway', audiences: ['gw_tickets', 'gw_payments'] },
    'cli',
  );

  const app = createServer();
  // The real auth plugin (it authenticates gateways from `config.actor`); a rig request on an
  // operator route without credentials acts as the rig's one operator.
  const RIG_OPERATOR = 'gop_' + 'f'.repeat(16) + 'rig-operator-secret-not-a-real-one';
  app.addHook('onRequest', async (request) => {
    const config = request.routeOptions.config;
    if (config.role !== undefined && request.headers.authorization === undefined) {
      request.headers.authorization = `Bearer ${RIG_OPERATOR}`;
    }
    await Promise.resolve();
  });
  await app.register(operatorAuth, {
    gateways,
    tokens: {
      authenticate: (token) =>
        token === RIG_OPERATOR
          ? Promise.resolve({
              kind: 'operator',
              id: 'tok_rig',
              role: 'operator',
              name: 'rig',
            } as OperatorActor)
          : Promise.reject(new UnauthenticatedError()),
    },
  });
  await app.register(runtimesRoutes, {
    attestation,
    revokeGrants: (id, actor) => grants.revokeRuntime(id, actor, new Date(now())),
  });
  await app.register(keysRoutes, { keys });
  await app.register(grantsRoutes, { grants, now });
  await app.register(revocationRoutes, {
    feed: grants.revocations,
    snapshots: grants.snapshots,
    now,
  });
  await app.ready();

  return {
    applianceTpm,
    runtimeTpm,
    tools,
    db,
    keys,
    audit: realAudit,
    attestation,
    grants,
    app,
    faults,
    clock,
    gateways,
    trust,
    gateway: {
      id: enrolled.gateway.id,
      token: enrolled.token,
      headers: { authorization: `Bearer ${enrolled.token}` },
    },
    grantsWithPolicy: async (policyDir, more = {}) =>
      createGrants(
        { ...settings, ...more },
        { db, attestation, policy: await engine(policyDir), audit, keys, gateways },
      ),
    close: async () => {
      await app.close();
      await realAudit.close();
      await keys.close();
      await db.close();
      await tpm.close();
      await tools.close();
      await runtimeTpm.destroy();
      await applianceTpm.destroy();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// --- the runtime side ----------------------------------------------------------------------

export interface SessionKeyPair {
  readonly privateKey: KeyObject;
  readonly jwk: EcSessionJwk;
}

/**
 * The example gateway's `Grant-PoP` header for a grant (proof of possession, on by
 * default): ES256 with the session key over the SDK's PoP signing input.
 */
export function popHeader(
  key: SessionKeyPair,
  input: { audience: string; grantId: string; challenge: string },
): string {
  const signature = sign('sha256', Buffer.from(popSigningInput(input)), {
    key: key.privateKey,
    dsaEncoding: 'ieee-p1363',
  }).toString('base64url');
  return Buffer.from(
    JSON.stringify({ challenge: input.challenge, signature, publicKey: key.jwk }),
    'utf8',
  ).toString('base64url');
}

/**
 * `POST /tickets/read` on the example gateway with `grant`, proving possession of `key` over
 * a fresh challenge from the gateway (what a runtime does for each call).
 */
export async function readTicketWithPop(
  gateway: FastifyInstance,
  grant: { grant: string; grantId: string },
  key: SessionKeyPair,
  payload: Record<string, unknown>,
) {
  const challenge = (await gateway.inject({ method: 'POST', url: '/pop/challenge' })).json<{
    challenge: string;
  }>().challenge;
  return gateway.inject({
    method: 'POST',
    url: '/tickets/read',
    headers: {
      authorization: `Grant ${grant.grant}`,
      'grant-pop': popHeader(key, { audience: 'gw_tickets', grantId: grant.grantId, challenge }),
    },
    payload,
  });
}

export function newSessionKeyPair(): SessionKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const j = publicKey.export({ format: 'jwk' });
  return { privateKey, jwk: { kty: 'EC', crv: 'P-256', x: j.x ?? '', y: j.y ?? '' } };
}

export interface Runtime {
  readonly runtimeId: string;
  readonly ak: string;
}

/** Enroll with the EK certificate and the AK, then activate with tpm2_activatecredential. */
export async function enroll(
  rig: Rig,
  name: string,
  labels: Record<string, string>,
  ak: { ctx: string; pub: string },
  ek: 'rsa' | 'ecc',
): Promise<Runtime> {
  const t = rig.tools;
  await t.tpm2('nvread', [ek === 'rsa' ? '0x01c00002' : '0x01c00016', '-o', 'ek.der']);
  const res = await rig.app.inject({
    method: 'POST',
    url: '/v1/runtimes',
    payload: {
      name,
      labels,
      ekCertificate: (await t.read('ek.der')).toString('base64'),
      akPublic: (await t.read(ak.pub)).toString('base64'),
    },
  });
  if (res.statusCode !== 201) throw new Error(`enroll: ${res.statusCode} ${res.body}`);
  const e = res.json<{ runtimeId: string; credentialBlob: string; encryptedSecret: string }>();
  const secret = await activateWithTools(t, e.credentialBlob, e.encryptedSecret, ak.ctx, ek);
  const act = await rig.app.inject({
    method: 'POST',
    url: `/v1/runtimes/${e.runtimeId}/activation`,
    payload: { secret: secret.toString('base64') },
  });
  if (act.statusCode !== 200) throw new Error(`activate: ${act.statusCode} ${act.body}`);
  // The labels are the runtime's request; an operator assigns them (issue 12).
  if (Object.keys(labels).length > 0)
    await rig.attestation.assignLabels(e.runtimeId, labels, RIG_OPERATOR);
  return { runtimeId: e.runtimeId, ak: ak.ctx };
}

/** The rig's usual runtime: an ECC AK persisted at `handle` under the RSA EK, enrolled. */
export async function enrollWithEccAk(
  rig: Rig,
  name: string,
  labels: Record<string, string>,
  handle = '0x81010003',
): Promise<Runtime> {
  await createEccAk(rig.tools);
  await rig.tools.tpm2('evictcontrol', ['-C', 'o', '-c', 'ak.ctx', handle]);
  return enroll(rig, name, labels, { ctx: handle, pub: 'ak.pub' }, 'rsa');
}

/** The `error.code` of an error reply's body. */
export const codeOf = (body: string): string =>
  (JSON.parse(body) as { error: { code: string } }).error.code;

export interface Quote {
  nonce: string;
  quote: string;
  signature: string;
  pcrs: Record<string, Record<string, string>>;
}

/** A challenge from the appliance, answered by tpm2_quote qualified with `bound`. */
export async function quote(rig: Rig, rt: Runtime, bound: unknown): Promise<Quote> {
  const ch = await rig.app.inject({
    method: 'POST',
    url: `/v1/runtimes/${rt.runtimeId}/challenges`,
  });
  if (ch.statusCode !== 201) throw new Error(`challenge: ${ch.statusCode} ${ch.body}`);
  const nonce = ch.json<{ nonce: string }>().nonce;
  const qd = qualifyingData(Buffer.from(nonce, 'base64'), bound).toString('hex');
  return { nonce, ...(await toolsQuote(rig.tools, rt.ak, 'sha256', PCRS, qd)) };
}

/** An attested session: its id and its key. */
export interface AttestedSession {
  readonly attestationId: string;
  readonly key: SessionKeyPair;
}

/** Attest with a fresh session key; returns the attested session's id and key. */
export async function attest(rig: Rig, rt: Runtime): Promise<AttestedSession> {
  const key = newSessionKeyPair();
  const q = await quote(rig, rt, key.jwk);
  const res = await rig.app.inject({
    method: 'POST',
    url: `/v1/runtimes/${rt.runtimeId}/attestations`,
    payload: { ...q, sessionKey: key.jwk },
  });
  if (res.statusCode !== 201) throw new Error(`attest: ${res.statusCode} ${res.body}`);
  const v = res.json<{ attestationId: string; verdict: string }>();
  if (v.verdict !== 'trusted') throw new Error(`attest: ${res.body}`);
  return { attestationId: v.attestationId, key };
}

let requests = 0;

/** What the usual request asks to execute (a gateway verifies a grant for it). */
export const TICKET_READ = {
  action: 'tickets.read',
  resource: 'ticket:42',
  parametersDigest: 'ab'.repeat(32),
} as const;

/** The usual request of `runtimeId` (unsigned, no proof): read ticket 42 at gw_tickets. */
export function grantRequest(
  runtimeId: string,
  over: Partial<GrantRequestBody> = {},
): GrantRequestBody {
  requests += 1;
  return {
    runtimeId,
    requestId: `req-${process.pid}-${requests}`,
    issuedAt: new Date().toISOString(),
    ...TICKET_READ,
    audience: 'gw_tickets',
    parentGrantId: null,
    ttlSeconds: 60,
    ...over,
  };
}

/** A grant request body (unsigned, no proof); `over` may also set what the wire refuses. */
export function grantBody(
  rt: Runtime,
  over: Record<string, unknown> = {},
): Record<string, unknown> {
  return { ...grantRequest(rt.runtimeId), ...over };
}

/**
 * Session mode: ES256 with the session key over JCS(request without session.signature), as
 * the attester signs (the rig's runtimes are attesters driven by tpm2-tools).
 */
export function signed(
  body: Record<string, unknown>,
  attestationId: string,
  key: KeyObject,
): Record<string, unknown> {
  return signSessionRequest(body, attestationId, key);
}

/** `grantBody(a.runtime, over)` signed in session mode with `a`'s session key. */
export function sessionRequest(
  a: AttestedRuntime,
  over: Record<string, unknown> = {},
): Record<string, unknown> {
  return signed(grantBody(a.runtime, over), a.session.attestationId, a.session.key.privateKey);
}

/** Quote mode: a quote qualified with SHA-256(nonce || SHA-256(JCS(request))). */
export async function quoted(
  rig: Rig,
  rt: Runtime,
  body: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  return { ...body, quote: await quote(rig, rt, body) };
}

// --- payments trees (the revocation, cascade and policy-context tests) ---------------------

/** An enrolled, attested runtime and its attested session. */
export interface AttestedRuntime {
  readonly runtime: Runtime;
  session: AttestedSession;
}

/** A runtime of `team` (ECC AK persisted at `handle`), enrolled and attested on `rig`. */
export async function attestedRuntime(
  rig: Rig,
  name: string,
  team: string,
  handle?: string,
): Promise<AttestedRuntime> {
  const runtime = await enrollWithEccAk(rig, name, { team }, handle);
  return { runtime, session: await attest(rig, runtime) };
}

/** A runtime of the payments team (ECC AK persisted at `handle`), enrolled and attested on `rig`. */
export function paymentsRuntime(rig: Rig, name: string, handle?: string): Promise<AttestedRuntime> {
  return attestedRuntime(rig, name, 'payments', handle);
}

/** A test file's rig and one attested runtime on it. */
export interface UsedRig {
  readonly rig: Rig;
  readonly attested: AttestedRuntime;
}

/**
 * Starts a rig (`options`) and a runtime of `team` named `runtimeName`, enrolled and
 * attested, before the file's tests, and closes the rig after them. Read the fields inside
 * tests (they are set by the file's beforeAll, which runs before the file's own).
 */
export function useRig(runtimeName: string, team: string, options: RigOptions = {}): UsedRig {
  let started: UsedRig | undefined;
  beforeAll(async () => {
    const rig = await startRig(options);
    started = { rig, attested: await attestedRuntime(rig, runtimeName, team) };
  }, 180_000);
  afterAll(async () => {
    await started?.rig.close();
  });
  const get = (): UsedRig => {
    if (started === undefined) throw new Error('the rig is not started (beforeAll)');
    return started;
  };
  return {
    get rig() {
      return get().rig;
    },
    get attested() {
      return get().attested;
    },
  };
}

/** A test file's rig with operator-managed trust and one attested payments runtime. */
export interface TrustRig {
  readonly rig: Rig;
  readonly trust: AttestationTrust;
  readonly payments: AttestedRuntime;
  /** The operator who changes the trust (TRUST_OPERATOR). */
  readonly operator: TrustActor;
  /** The reference policy the runtime attested against (RIG_POLICY). */
  readonly policy: string;
}

/** useRig with operator-managed trust (`startRig({ trust: true })`) and a payments runtime. */
export function useTrustRig(runtimeName: string): TrustRig {
  const used = useRig(runtimeName, 'payments', { trust: true });
  return {
    get rig() {
      return used.rig;
    },
    get trust() {
      const { trust } = used.rig;
      if (trust === undefined) throw new Error('the rig has no trust');
      return trust;
    },
    get payments() {
      return used.attested;
    },
    operator: TRUST_OPERATOR,
    policy: RIG_POLICY,
  };
}

/** A quote-mode request for a `payments.transfer` of acct:1234 (`over` changes it). */
export async function transferBody(
  rig: Rig,
  rt: Runtime,
  over: Record<string, unknown> = {},
): Promise<Record<string, unknown>> {
  const body = grantBody(rt, {
    action: 'payments.transfer',
    resource: 'acct:1234',
    audience: 'gw_payments',
    ...over,
  });
  return quoted(rig, rt, body);
}

/** `POST /v1/grants` with a transferBody. */
export async function requestTransfer(
  rig: Rig,
  rt: Runtime,
  over: Record<string, unknown> = {},
): Promise<Awaited<ReturnType<App['inject']>>> {
  const payload = await transferBody(rig, rt, over);
  return rig.app.inject({ method: 'POST', url: '/v1/grants', payload });
}

/** A session-signed request for a `payments.notify` child of `parentGrantId`. */
export function notifyChild(
  a: AttestedRuntime,
  parentGrantId: string,
  resource = 'acct:1234',
  over: Record<string, unknown> = {},
): Record<string, unknown> {
  return sessionRequest(a, {
    action: 'payments.notify',
    resource,
    audience: 'gw_payments',
    parentGrantId,
    ...over,
  });
}

/** A transfer for acct:1234 with `children` notify children, all issued (201). */
export async function transferTree(
  rig: Rig,
  a: AttestedRuntime,
  children: number,
): Promise<{ root: string; kids: string[] }> {
  const t = await requestTransfer(rig, a.runtime);
  if (t.statusCode !== 201) throw new Error(`transfer: ${t.statusCode} ${t.body}`);
  const root = t.json<{ grantId: string }>().grantId;
  const kids: string[] = [];
  for (let i = 0; i < children; i += 1) {
    const c = await rig.app.inject({
      method: 'POST',
      url: '/v1/grants',
      payload: notifyChild(a, root),
    });
    if (c.statusCode !== 201) throw new Error(`child: ${c.statusCode} ${c.body}`);
    kids.push(c.json<{ grantId: string }>().grantId);
  }
  return { root, kids };
}

/** Redeem `grantId` for gw_payments as the rig's gateway. */
export function redeemPayment(rig: Rig, grantId: string) {
  return rig.app.inject({
    method: 'POST',
    url: `/v1/grants/${grantId}/redeem`,
    headers: rig.gateway.headers,
    payload: { audience: 'gw_payments' },
  });
}

/** Every grant of `ids` refuses redeem at gw_payments: 410 grant_revoked. */
export async function expectRedeemRevoked(rig: Rig, ids: readonly string[]): Promise<void> {
  for (const id of ids) {
    const r = await redeemPayment(rig, id);
    expect(r.statusCode, r.body).toBe(410);
    expect(codeOf(r.body)).toBe('grant_revoked');
  }
}

/** `POST /v1/runtimes/{id}/revoke` as the rig's operator. */
export function revokeRuntime(rig: Rig, runtimeId: string) {
  return rig.app.inject({ method: 'POST', url: `/v1/runtimes/${runtimeId}/revoke` });
}

/** The states of `root` and its descendants, as `GET /v1/grants/{id}/lineage` shows them. */
export async function lineageStates(rig: Rig, root: string): Promise<string[]> {
  const lin = await rig.app.inject({ method: 'GET', url: `/v1/grants/${root}/lineage` });
  const l = lin.json<{ grant: { state: string }; descendants: { state: string }[] }>();
  return [l.grant.state, ...l.descendants.map((d) => d.state)];
}
