/**
 * The grant service with a fake at every port, for the fast tests beside each room: the
 * attestation, policy, audit and key ports recorded and steerable, the store in memory.
 * The real parts (swtpm, SoftHSM2, Cedar, LevelDB) are in test/grants/.
 */
import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import type { AttestedSession, RuntimeView } from '../attestation/index.js';
import type { AuditEvent } from '../audit/index.js';
import { checkEvent } from '../audit/entry.js';
import type { PolicyDecision, PolicyRequest } from '../policy/index.js';
import { GrantorError } from '../shared/errors.js';
import type { AudienceGateways } from './cedar-context.js';
import { createFakeGrantStore } from './grant-store.memory.js';
import type { GrantRecord } from './grant-store.port.js';
import { GrantService, type GrantsConfig } from './pipeline.js';
import { sessionSigningInput } from './request.js';

export const NOW = new Date('2026-01-01T12:00:00.000Z');
/** An enrolled gateway for the audiences the tests redeem for. */
export const GW = { id: 'gw_00000000000000a1', audiences: ['gw_tickets', 'gw_other'] } as const;
export const RT = 'rt_alpha';
export const AT = 'at_session1';

export interface SessionKey {
  readonly privateKey: KeyObject;
  readonly jwk: { kty: 'EC'; crv: 'P-256'; x: string; y: string };
}

export function sessionKey(): SessionKey {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const j = publicKey.export({ format: 'jwk' });
  return { privateKey, jwk: { kty: 'EC', crv: 'P-256', x: j.x ?? '', y: j.y ?? '' } };
}

export function signRequest(
  body: Record<string, unknown>,
  key: KeyObject,
): Record<string, unknown> {
  const signature = sign('sha256', Buffer.from(sessionSigningInput(body)), {
    key,
    dsaEncoding: 'ieee-p1363',
  }).toString('base64url');
  const session = body.session as Record<string, unknown>;
  return { ...body, session: { ...session, signature } };
}

export class Fakes {
  readonly key = sessionKey();
  readonly runtimes = new Map<string, RuntimeView>();
  readonly sessions = new Map<string, AttestedSession>();
  readonly events: AuditEvent[] = [];
  readonly signed: Record<string, unknown>[] = [];
  readonly policyCalls: PolicyRequest[] = [];
  readonly store = createFakeGrantStore();
  /** What reached the attestation port's proveQuote. */
  quoteCalls: { runtimeId: string; quote: unknown; qd: Buffer }[] = [];
  auditFails: (() => Error) | undefined;
  auditHang = false;
  /** An append that never settles (a log stuck on its storage or its TPM anchor). */
  auditStuck = false;
  /** A realistic commit latency for every append (ms). */
  auditDelayMs = 0;
  signFails: (() => Error) | undefined;
  /** A signature that never comes (a hung HSM session). */
  signStuck = false;
  policyFails: (() => Error) | undefined;
  /** A decision that never comes (a stuck policy worker). */
  policyStuck = false;
  decision: (req: PolicyRequest) => PolicyDecision = () => allow();
  /** The enrolled gateways per audience (issue 18); undefined: no port wired. */
  gateways: AudienceGateways | undefined;
  verifyQuoteFails: (() => Error) | undefined;
  seq = 0;

  constructor() {
    this.addRuntime(RT, { team: 'payments' });
    this.addSession(AT, RT, this.key);
  }

  addRuntime(id: string, labels: Record<string, string>, state: RuntimeView['state'] = 'active') {
    this.runtimes.set(id, {
      runtimeId: id,
      name: id,
      labels,
      requestedLabels: {},
      labelSource: 'rule:test',
      state,
      ekCertified: true,
      ek: { publicKeySha256: null, certificate: null, tpm: null },
      akName: '000b' + 'aa'.repeat(32),
      referencePolicy: 'ref',
      createdAt: NOW.toISOString(),
      pendingExpiresAt: null,
      released: null,
      counters: null,
      lastQuote: null,
      lastAttestation: null,
    });
  }

  addSession(id: string, runtimeId: string, key: SessionKey, validUntil = NOW.getTime() + 600_000) {
    this.sessions.set(id, {
      attestationId: id,
      runtimeId,
      sessionKey: key.jwk,
      akName: '000b' + 'aa'.repeat(32),
      pcrDigestHex: 'bb'.repeat(32),
      resetCount: 1,
      restartCount: 0,
      validUntil: new Date(validUntil),
    });
    const r = this.runtimes.get(runtimeId);
    if (r !== undefined) {
      this.runtimes.set(runtimeId, {
        ...r,
        lastAttestation: {
          attestationId: id,
          verdict: 'trusted',
          reasons: [],
          at: new Date(NOW.getTime() - 30_000).toISOString(),
        },
      });
    }
  }

  service(config: Partial<GrantsConfig> = {}): GrantService {
    return new GrantService(
      {
        issuer: 'grantor-unit',
        maxTtlSeconds: 3600,
        clockSkewSeconds: 60,
        maxDepth: 4,
        maxChildren: 64,
        dependencyDeadlineMs: 200,
        replayCacheSize: 1000,
        ...config,
      },
      {
        attestation: {
          getRuntime: (id) => {
            const r = this.runtimes.get(id);
            if (r === undefined)
              return Promise.reject(new GrantorError('unknown_runtime', 'no such runtime'));
            return Promise.resolve(r);
          },
          sessionFor: (id) => {
            const s = this.sessions.get(id);
            return s !== undefined && s.validUntil.getTime() > NOW.getTime() ? s : undefined;
          },
          proveQuote: (runtimeId, quote, qd) => {
            this.quoteCalls.push({ runtimeId, quote, qd: Buffer.from(qd) });
            if (this.verifyQuoteFails !== undefined) return Promise.reject(this.verifyQuoteFails());
            const runtime = this.runtimes.get(runtimeId);
            if (runtime === undefined)
              return Promise.reject(new GrantorError('unknown_runtime', 'no such runtime'));
            const standing = runtime.lastAttestation;
            const session =
              standing === null ? undefined : this.sessions.get(standing.attestationId);
            const live =
              session !== undefined &&
              session.runtimeId === runtimeId &&
              session.validUntil.getTime() > NOW.getTime();
            return Promise.resolve({
              runtimeId,
              akName: '000b' + 'cc'.repeat(32),
              pcrDigestHex: 'dd'.repeat(32),
              resetCount: 2,
              restartCount: 1,
              resetDetected: false,
              runtime,
              session: live ? session : undefined,
            });
          },
        },
        policy: {
          decide: (req) => {
            this.policyCalls.push(req);
            if (this.policyFails !== undefined) throw this.policyFails();
            if (this.policyStuck) return new Promise<never>(() => undefined);
            return this.decision(req);
          },
        },
        audit: {
          append: async (event) => {
            if (this.auditHang) await new Promise((r) => setTimeout(r, 400));
            if (this.auditStuck) await new Promise<never>(() => undefined);
            if (this.auditDelayMs > 0) {
              await new Promise((r) => setTimeout(r, this.auditDelayMs));
            }
            if (this.auditFails !== undefined) throw this.auditFails();
            // The log's own limits (32 reasons of 256 characters), as the real one refuses.
            checkEvent(event);
            this.events.push(event);
            const seq = this.seq++;
            return { seq, hash: createHash('sha256').update(String(seq)).digest('hex') };
          },
        },
        keys: {
          signGrantToken: (header, signed) => {
            if (this.signFails !== undefined) return Promise.reject(this.signFails());
            if (this.signStuck) return new Promise<never>(() => undefined);
            const payload = JSON.stringify(signed);
            this.signed.push(JSON.parse(payload) as Record<string, unknown>);
            const h = Buffer.from(JSON.stringify({ alg: 'ES256', kid: 'k1', ...header }));
            return Promise.resolve({
              token: `${h.toString('base64url')}.${Buffer.from(payload, 'utf8').toString('base64url')}.${Buffer.alloc(64, 1).toString('base64url')}`,
              batched: false,
            });
          },
        },
        store: this.store,
        ...(this.gateways === undefined ? {} : { gateways: this.gateways }),
      },
    );
  }
}

let counter = 0;
export const POLICY_HASH = 'ee'.repeat(32);
export function allow(
  obligations: PolicyDecision['obligations'] = { requireQuote: false },
): PolicyDecision {
  return {
    decision: 'allow',
    reasons: [],
    determiningPolicies: ['p1'],
    policyHash: POLICY_HASH,
    policyVersion: 1,
    obligations,
  };
}

export function body(over: Record<string, unknown> = {}): Record<string, unknown> {
  counter += 1;
  return {
    runtimeId: RT,
    requestId: `req-${counter}`,
    issuedAt: NOW.toISOString(),
    action: 'tickets.read',
    resource: 'ticket:42',
    parametersDigest: 'ab'.repeat(32),
    audience: 'gw_tickets',
    parentGrantId: null,
    ttlSeconds: 120,
    session: { attestationId: AT },
    ...over,
  };
}

export const code = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
  } catch (e) {
    if (e instanceof GrantorError) return e.code;
    throw e;
  }
  throw new Error('expected a rejection');
};

export function decodeClaims(jws: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jws.split('.')[1] ?? '', 'base64url').toString()) as Record<
    string,
    unknown
  >;
}

/** A stored root grant of RT, issued 10 s before NOW and live for `ttl` more seconds. */
export function grantRecord(id: string, over: Partial<GrantRecord> = {}, ttl = 50): GrantRecord {
  return {
    grantId: id,
    runtimeId: RT,
    action: 'payments.transfer',
    resource: 'acct:1',
    audience: 'gw',
    parent: null,
    root: id,
    depth: 0,
    iat: NOW.getTime() / 1000 - 10,
    exp: NOW.getTime() / 1000 + ttl,
    auditSeq: 0,
    revokedAt: null,
    redemption: null,
    ...over,
  };
}
