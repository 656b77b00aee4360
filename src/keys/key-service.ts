/**
 * The key lifecycle: one active key per purpose (ES256 for grants, EdDSA for audit
 * checkpoints), rotation, the published key set, retirement and destruction.
 *
 * Rotation generates the new key pair while signing goes on, writes the lifecycle event
 * (the audit hook) and then, with new grant signatures held for the length of one store
 * write, records the new key as active and the previous one as retiring with the largest
 * `exp` it ever signed. Every signature selects its key and raises that bound
 * synchronously before it is made, so the bound written at rotation covers every grant
 * the previous key signed or is still signing. A retiring key stays published until that
 * bound has passed, then it is retired (unpublished); destroying the HSM object is a
 * separate, explicit act.
 */
import { toLowS } from '../shared/es256.js';
import { createHash } from 'node:crypto';
import { BadRequestError } from '../shared/errors.js';
import { HsmKeyUnsafeError, KeyNotFoundError, KeyStateInvalidError } from './errors.js';
import { ed25519Raw, sameJwk, thumbprint } from './jwk.js';
import type { KeyPurpose, KeyRecord, KeyStore } from './key-store.port.js';
import { silentLogger, type DomainLogger } from '../shared/log.js';
import type { HsmSigner, KeyAlgorithm, PublicJwk } from './signer.port.js';
import { jcs } from '../shared/jcs.js';
import {
  BATCH_ALG,
  batchHead,
  batchLeafHash,
  batchTree,
  encodeBatchProof,
} from '../gateway/batch.js';
import { GrantBatcher, type BatchItem, type GrantBatchOptions } from './grant-batch.js';

/** JWKS order: the signing key first, then the next one, then those still verifying. */
const STATE_ORDER: Readonly<Record<KeyRecord['state'], number>> = {
  active: 0,
  next: 1,
  retiring: 2,
  retired: 3,
};

export interface KeyServiceOptions {
  /** Scheduled rotation of the grant key; 0 disables it (on-demand rotation only). */
  readonly rotationPeriodSeconds: number;
  /** The longest grant lifetime the appliance issues; signJws refuses a later `exp`. */
  readonly grantMaxTtlSeconds: number;
  /** Upper bound of the JWKS Cache-Control max-age (an on-demand rotation is unforeseeable). */
  readonly jwksMaxAgeSeconds: number;
  /** How often scheduled rotation and retirement run; 0 runs them only through maintain(). */
  readonly maintenanceIntervalMs: number;
  /** Prefix of the HSM object labels (`<prefix>-grant-<time>`). */
  readonly labelPrefix: string;
  /**
   * Batch-signed grants: signGrantToken puts grants in batches, one signature over each
   * batch's Merkle root (docs/protocol.md §3). Absent: every grant is its own JWS.
   */
  readonly grantBatch?: GrantBatchOptions;
}

export type KeyLifecycleReason =
  'first_start' | 'scheduled' | 'on_demand' | 'expired' | 'forced' | 'explicit';

/** One administrative act on a key, given to the audit hook before it takes effect. */
export interface KeyLifecycleEvent {
  readonly type:
    | 'key_created'
    | 'key_rotated'
    | 'key_retired'
    | 'key_destroyed'
    /** A next grant key generated and published in the JWKS; it signs after the next rotation. */
    | 'key_published';
  readonly kid: string;
  readonly purpose: KeyPurpose;
  readonly previousKid?: string;
  readonly reason: KeyLifecycleReason;
  /** RFC 3339. */
  readonly at: string;
}

export interface KeyServiceDeps {
  /** The token of the grant key (and of the audit key when `auditSigner` is absent). */
  readonly signer: HsmSigner;
  /**
   * The token of the audit checkpoint key when it is not the grant key's: a TPM token
   * (tpm2-pkcs11) has no Ed25519, which the checkpoint format needs (docs/audit.md).
   */
  readonly auditSigner?: HsmSigner;
  readonly store: KeyStore;
  readonly logger?: DomainLogger;
  /** Milliseconds since the epoch. */
  readonly now?: () => number;
  /** Called before each lifecycle change is applied; a rejection aborts the change. */
  readonly onLifecycle?: (event: KeyLifecycleEvent) => Promise<void>;
}

/** A published grant key (RFC 7517), as gateways see it. */
export interface GrantJwk {
  readonly kty: 'EC';
  readonly crv: 'P-256';
  readonly x: string;
  readonly y: string;
  readonly kid: string;
  readonly alg: 'ES256';
  readonly use: 'sig';
}
export interface Jwks {
  readonly keys: GrantJwk[];
}
/** The audit checkpoint key as a JWK. */
export type AuditJwk = PublicJwk & {
  readonly kid: string;
  readonly alg: 'EdDSA';
  readonly use: 'sig';
};

export interface PublishedKeySet {
  readonly jwks: Jwks;
  /** A strong ETag (quoted) over the canonical JSON of the set. */
  readonly etag: string;
  /** Seconds a cache may keep the set: never past the next scheduled change. */
  readonly maxAgeSeconds: number;
}

export interface RotationResult {
  readonly active: KeyRecord;
  readonly previous: KeyRecord | undefined;
}

const ALG: Record<KeyPurpose, KeyAlgorithm> = { grant: 'ES256', audit: 'EdDSA' };

interface Usage {
  inFlight: number;
  /** Largest `exp` (NumericDate) of a grant this key signed or is signing. */
  maxExp: number;
}

const b64u = (bytes: Uint8Array | string): string => Buffer.from(bytes).toString('base64url');

/**
 * Claims the grant key signs (a grant, a revocation snapshot): any JSON object with its
 * `exp` (NumericDate) as a value, which bounds how long the signing key stays published.
 */
export type SignableClaims = object & { readonly exp: number };

export class KeyService {
  readonly #records = new Map<string, KeyRecord>();
  readonly #active = new Map<KeyPurpose, KeyRecord>();
  readonly #usage = new Map<string, Usage>();
  readonly #logger: DomainLogger;
  readonly #now: () => number;
  #chain: Promise<unknown> = Promise.resolve();
  /** Set while a rotation switches keys: new signatures of that purpose wait for it. */
  readonly #switching = new Map<KeyPurpose, Promise<void>>();
  #timer: NodeJS.Timeout | undefined;
  #maintaining = false;
  #closed = false;
  readonly #batcher: GrantBatcher | undefined;

  readonly #options: KeyServiceOptions;
  readonly #deps: KeyServiceDeps;
  private constructor(options: KeyServiceOptions, deps: KeyServiceDeps) {
    this.#options = options;
    this.#deps = deps;
    this.#logger = deps.logger ?? silentLogger;
    this.#now = deps.now ?? Date.now;
    this.#batcher =
      options.grantBatch === undefined
        ? undefined
        : new GrantBatcher(options.grantBatch, (items) => this.#signBatch(items));
  }

  /**
   * Open the signer, load every key in use from the store, check each one in the HSM
   * (refusing loudly a key that could leave it or is not the key the store names), and
   * create the first key of a purpose that has none.
   */
  static async start(options: KeyServiceOptions, deps: KeyServiceDeps): Promise<KeyService> {
    const service = new KeyService(options, deps);
    await deps.signer.open();
    try {
      await deps.auditSigner?.open();
      await service.#load();
    } catch (e) {
      await deps.auditSigner?.close();
      await deps.signer.close();
      throw e;
    }
    if (options.maintenanceIntervalMs > 0) {
      service.#timer = setInterval(() => {
        service.#scheduledMaintenance();
      }, options.maintenanceIntervalMs);
      service.#timer.unref();
    }
    return service;
  }

  async #load(): Promise<void> {
    const records = await this.#deps.store.list();
    // One key signs per purpose, and one grant key is next: never guess which.
    const single = [
      ['grant', 'active'],
      ['audit', 'active'],
      ['grant', 'next'],
    ] as const;
    for (const [purpose, state] of single) {
      const found = records.filter((r) => r.purpose === purpose && r.state === state);
      if (found.length > 1) {
        throw new KeyStateInvalidError(`the store has more than one ${state} ${purpose} key`, {
          kids: found.map((r) => r.kid),
        });
      }
    }
    const nowS = this.#nowSeconds();
    for (const r of records) {
      if (r.state !== 'retired') await this.#checkInHsm(r);
      this.#records.set(r.kid, r);
      // A previous run may have signed grants up to its maximum TTL with the active key.
      const maxExp =
        r.state === 'active' ? nowS + this.#options.grantMaxTtlSeconds : (r.maxExp ?? 0);
      this.#usage.set(r.kid, { inFlight: 0, maxExp });
      if (r.state === 'active') this.#active.set(r.purpose, r);
    }
    for (const purpose of ['grant', 'audit'] as const) {
      if (!this.#active.has(purpose))
        await this.#exclusive(() => this.#rotateNow(purpose, 'first_start'));
    }
    // The next grant key is published before it signs (stores from before issue 18 have none).
    if (this.#nextGrantKey() === undefined) {
      await this.#exclusive(async () => {
        const next = await this.#generateNext('first_start');
        try {
          await this.#deps.store.putAll([next]);
        } catch (e) {
          await this.#discard('grant', next.hsmId);
          throw e;
        }
        this.#records.set(next.kid, next);
      });
    }
  }

  /** The published grant key that the next rotation makes active. */
  #nextGrantKey(): KeyRecord | undefined {
    return [...this.#records.values()].find((r) => r.purpose === 'grant' && r.state === 'next');
  }

  /**
   * A new grant key in the HSM, recorded as `next` (published, not signing). Audited
   * (`key_published`) before it is stored; discarded from the HSM if that fails.
   */
  async #generateNext(reason: KeyLifecycleReason): Promise<KeyRecord> {
    const next = await this.#generate('grant', 'next', this.#isoNow());
    try {
      await this.#emit({
        type: 'key_published',
        kid: next.kid,
        purpose: 'grant',
        reason,
        at: next.createdAt,
      });
    } catch (e) {
      await this.#discard('grant', next.hsmId);
      throw e;
    }
    return next;
  }

  /** A new key pair in the HSM and its record (neither audited nor stored yet). */
  async #generate(purpose: KeyPurpose, state: 'active' | 'next', at: string): Promise<KeyRecord> {
    const kind = state === 'next' ? `${purpose}-next` : purpose;
    const label = `${this.#options.labelPrefix}-${kind}-${at.replace(/[^0-9]/g, '')}`;
    const key = await this.#signerFor(purpose).generate(ALG[purpose], label);
    return {
      kid: await thumbprint(key.publicJwk),
      purpose,
      alg: key.alg,
      state,
      hsmId: key.hsmId,
      hsmLabel: key.label,
      publicJwk: key.publicJwk,
      createdAt: at,
    };
  }

  async #checkInHsm(r: KeyRecord): Promise<void> {
    const key = await this.#signerFor(r.purpose).load(r.hsmId, r.alg);
    // The store names the key by its thumbprint: the HSM object must be that very key.
    if (!sameJwk(key.publicJwk, r.publicJwk) || (await thumbprint(key.publicJwk)) !== r.kid) {
      this.#logger.error(
        { kid: r.kid, hsmId: r.hsmId },
        'REFUSING an HSM key that is not the stored key',
      );
      throw new HsmKeyUnsafeError(`HSM key ${r.hsmId} does not match key ${r.kid}`, {
        details: { kid: r.kid, hsmId: r.hsmId },
      });
    }
  }

  // --- signing ------------------------------------------------------------------------

  /**
   * A compact JWS (ES256) over `claims` (serialised as JSON) with the active grant key.
   * `protectedHeader` carries everything but `alg` and `kid` (e.g. `typ`); `claims.exp`
   * must be an integer no later than now + grantMaxTtlSeconds.
   */
  async signJws(
    protectedHeader: Readonly<Record<string, unknown>>,
    claims: SignableClaims,
  ): Promise<string> {
    if ('alg' in protectedHeader || 'kid' in protectedHeader) {
      throw new BadRequestError('the protected header must not set alg or kid');
    }
    const exp = this.#grantExp(claims);
    const payloadB64 = b64u(JSON.stringify(claims));
    const key = await this.#grantKey();
    const header = b64u(JSON.stringify({ alg: 'ES256', kid: key.kid, ...protectedHeader }));
    const signingInput = `${header}.${payloadB64}`;
    const signature = await this.#signWith(key, Buffer.from(signingInput, 'ascii'), exp);
    return `${signingInput}.${b64u(signature)}`;
  }

  /**
   * A grant in the configured form: a JWS (signJws), or, in batch mode, a batch-signed grant
   * whose batch is signed with one key operation (docs/protocol.md §3). `batched` tells
   * which. Same checks as signJws: no alg or kid in the header, an integer exp in bounds.
   */
  async signGrantToken(
    protectedHeader: Readonly<Record<string, unknown>>,
    claims: SignableClaims,
  ): Promise<{ token: string; batched: boolean }> {
    if (this.#batcher === undefined)
      return { token: await this.signJws(protectedHeader, claims), batched: false };
    if ('alg' in protectedHeader || 'kid' in protectedHeader) {
      throw new BadRequestError('the protected header must not set alg or kid');
    }
    const header = { ...protectedHeader };
    const exp = this.#grantExp(claims);
    const payloadB64 = b64u(JSON.stringify(claims));
    return { token: await this.#batcher.add({ header, payloadB64, exp }), batched: true };
  }

  /**
   * One closed batch: the active key is chosen (after any rotation in progress), each
   * grant's header names it, and one signature covers the root over every grant. Settles
   * every item; never rejects.
   */
  async #signBatch(items: BatchItem[]): Promise<void> {
    try {
      const key = await this.#grantKey();
      // Synchronous from here to signWith: the key's usage bound rises before a rotation
      // can read it, exactly as for a single JWS.
      const inputs = items.map(
        (item) =>
          `${b64u(JSON.stringify({ alg: BATCH_ALG, kid: key.kid, ...item.header }))}.${item.payloadB64}`,
      );
      const { root, paths } = batchTree(inputs.map((i) => batchLeafHash(Buffer.from(i, 'ascii'))));
      const exp = Math.max(...items.map((i) => i.exp));
      const signature = await this.#signWith(key, batchHead(key.kid, items.length, root), exp);
      items.forEach((item, index) => {
        const proof = encodeBatchProof({
          size: items.length,
          index,
          root,
          signature,
          path: paths[index] ?? [],
        });
        item.resolve(`${inputs[index] ?? ''}.${b64u(proof)}`);
      });
    } catch (e) {
      const error = e instanceof Error ? e : new KeyStateInvalidError('the batch was not signed');
      for (const item of items) item.reject(error);
    }
  }

  /** The active grant key's kid (recorded in the audit facts of an allow). */
  activeGrantKid(): string {
    return this.#activeKey('grant').kid;
  }

  /** Sign an audit checkpoint with the active Ed25519 key. */
  async signAudit(message: Uint8Array): Promise<{ keyId: string; signature: Uint8Array }> {
    const input = Buffer.from(message);
    const pending = this.#switching.get('audit');
    if (pending !== undefined) await pending;
    const key = this.#activeKey('audit');
    const signature = await this.#signerFor('audit').sign(key.hsmId, input);
    return { keyId: key.kid, signature };
  }

  /** The active audit key: 32 raw Ed25519 bytes and its JWK. */
  auditPublicKey(): { raw: Uint8Array; jwk: AuditJwk } {
    const key = this.#activeKey('audit');
    return {
      raw: ed25519Raw(key.publicJwk),
      jwk: { ...key.publicJwk, kid: key.kid, alg: 'EdDSA', use: 'sig' },
    };
  }

  #grantExp(claims: SignableClaims): number {
    const { exp } = claims;
    if (typeof exp !== 'number' || !Number.isInteger(exp)) {
      throw new BadRequestError('the grant payload needs an integer exp');
    }
    this.#checkExp(exp);
    return exp;
  }

  #checkExp(exp: number): void {
    // The key's publication lifetime is bounded by this: a later exp would outlive it.
    const limit = this.#nowSeconds() + this.#options.grantMaxTtlSeconds;
    if (!Number.isInteger(exp) || exp > limit) {
      throw new BadRequestError('the grant expires later than the maximum grant TTL allows', {
        details: { exp, limit },
      });
    }
  }

  async #grantKey(): Promise<KeyRecord> {
    const pending = this.#switching.get('grant');
    if (pending !== undefined) await pending;
    return this.#activeKey('grant');
  }

  #activeKey(purpose: KeyPurpose): KeyRecord {
    const key = this.#active.get(purpose);
    if (key === undefined) throw new KeyStateInvalidError(`there is no active ${purpose} key`);
    return key;
  }

  async #signWith(key: KeyRecord, input: Buffer, exp: number): Promise<Uint8Array> {
    const usage = this.#usageOf(key.kid);
    // Raised before the signature exists, so a rotation starting now sees it.
    usage.maxExp = Math.max(usage.maxExp, exp);
    usage.inFlight += 1;
    try {
      const signature = await this.#signerFor(key.purpose).sign(key.hsmId, input);
      // HSMs return either (r, s) or (r, n - s); emit the canonical low-S form only.
      return key.alg === 'ES256' ? toLowS(signature) : signature;
    } finally {
      usage.inFlight -= 1;
    }
  }

  #usageOf(kid: string): Usage {
    let u = this.#usage.get(kid);
    if (u === undefined) {
      u = { inFlight: 0, maxExp: 0 };
      this.#usage.set(kid, u);
    }
    return u;
  }

  // --- the published set --------------------------------------------------------------

  /** Active, next and retiring grant keys, in that order. */
  jwks(): Jwks {
    const keys: GrantJwk[] = [];
    const published = [...this.#records.values()]
      .filter(
        (r) =>
          r.purpose === 'grant' &&
          (r.state === 'active' || r.state === 'next' || r.state === 'retiring'),
      )
      .sort((a, b) => {
        if (a.state !== b.state) return STATE_ORDER[a.state] - STATE_ORDER[b.state];
        return b.createdAt.localeCompare(a.createdAt);
      });
    for (const { kid, publicJwk: k } of published) {
      if (k.kty === 'EC')
        keys.push({ kty: k.kty, crv: k.crv, x: k.x, y: k.y, kid, alg: 'ES256', use: 'sig' });
    }
    return { keys };
  }

  /** The set with its ETag and the longest time a cache may keep it. */
  publishedKeySet(): PublishedKeySet {
    const jwks = this.jwks();
    const canonical = jcs(jwks);
    const etag = `"${createHash('sha256').update(canonical).digest('base64url')}"`;
    const nowS = this.#nowSeconds();
    let maxAge = this.#options.jwksMaxAgeSeconds;
    const active = this.#active.get('grant');
    if (active !== undefined && this.#options.rotationPeriodSeconds > 0) {
      maxAge = Math.min(maxAge, this.#nextRotationAt(active) - nowS);
    }
    for (const r of this.#records.values()) {
      if (r.purpose === 'grant' && r.state === 'retiring')
        maxAge = Math.min(maxAge, this.#retiringUntil(r) - nowS);
    }
    return { jwks, etag, maxAgeSeconds: Math.max(0, Math.floor(maxAge)) };
  }

  #nextRotationAt(active: KeyRecord): number {
    const since = active.activatedAt ?? active.createdAt;
    return Math.floor(Date.parse(since) / 1000) + this.#options.rotationPeriodSeconds;
  }

  #retiringUntil(r: KeyRecord): number {
    return Math.max(r.maxExp ?? 0, this.#usage.get(r.kid)?.maxExp ?? 0);
  }

  // --- lifecycle ----------------------------------------------------------------------

  /** Every key record (the service's copy), newest first. */
  list(): KeyRecord[] {
    return [...this.#records.values()]
      .sort((a, b) => b.createdAt.localeCompare(a.createdAt))
      .map((r) => structuredClone(r));
  }

  get(kid: string): KeyRecord {
    const r = this.#records.get(kid);
    if (r === undefined) throw new KeyNotFoundError(kid);
    return structuredClone(r);
  }

  /** Generate a new key for `purpose` and make it active; the previous one starts retiring. */
  rotate(
    purpose: KeyPurpose,
    reason: 'on_demand' | 'scheduled' = 'on_demand',
  ): Promise<RotationResult> {
    return this.#exclusive(() => this.#rotateNow(purpose, reason));
  }

  /**
   * Retire a retiring key (unpublish it). Refused while a grant it signed may still be
   * live, unless `force` (an emergency: those grants stop verifying).
   */
  retire(kid: string, options: { force?: boolean } = {}): Promise<KeyRecord> {
    return this.#exclusive(async () => {
      const r = this.#records.get(kid);
      if (r === undefined) throw new KeyNotFoundError(kid);
      if (r.state !== 'retiring') {
        throw new KeyStateInvalidError(
          r.state === 'active' || r.state === 'next'
            ? 'an active or next key is retired by rotating it first'
            : 'the key is already retired',
          { kid, state: r.state },
        );
      }
      const until = this.#retiringUntil(r);
      const inFlight = this.#usage.get(kid)?.inFlight ?? 0;
      if (options.force !== true && (this.#nowSeconds() < until || inFlight > 0)) {
        throw new KeyStateInvalidError('grants signed by this key may still be live', {
          kid,
          until,
          inFlight,
        });
      }
      return this.#retireNow(r, options.force === true ? 'forced' : 'explicit');
    });
  }

  /** Destroy the HSM objects of a retired key. Irreversible; the record stays. */
  destroy(kid: string): Promise<KeyRecord> {
    return this.#exclusive(async () => {
      const r = this.#records.get(kid);
      if (r === undefined) throw new KeyNotFoundError(kid);
      if (r.state !== 'retired')
        throw new KeyStateInvalidError('only a retired key can be destroyed', {
          kid,
          state: r.state,
        });
      if (r.destroyedAt !== undefined)
        throw new KeyStateInvalidError('the key is already destroyed', { kid });
      const at = this.#isoNow();
      await this.#emit({ type: 'key_destroyed', kid, purpose: r.purpose, reason: 'explicit', at });
      await this.#signerFor(r.purpose).destroy(r.hsmId);
      const next: KeyRecord = { ...r, destroyedAt: at };
      await this.#deps.store.putAll([next]);
      this.#records.set(kid, next);
      this.#logger.info({ kid }, 'key destroyed in the HSM');
      return structuredClone(next);
    });
  }

  /**
   * Scheduled work: rotate the grant key when its period is over, retire retiring keys
   * whose grants have all expired. Returns what it did.
   */
  maintain(): Promise<{ rotated: boolean; retired: string[] }> {
    return this.#exclusive(async () => {
      const nowS = this.#nowSeconds();
      let rotated = false;
      const active = this.#active.get('grant');
      if (
        active !== undefined &&
        this.#options.rotationPeriodSeconds > 0 &&
        nowS >= this.#nextRotationAt(active)
      ) {
        await this.#rotateNow('grant', 'scheduled');
        rotated = true;
      }
      const retired: string[] = [];
      for (const r of [...this.#records.values()]) {
        if (r.state !== 'retiring') continue;
        if (nowS < this.#retiringUntil(r) || (this.#usage.get(r.kid)?.inFlight ?? 0) > 0) continue;
        await this.#retireNow(r, 'expired');
        retired.push(r.kid);
      }
      return { rotated, retired };
    });
  }

  #scheduledMaintenance(): void {
    if (this.#maintaining || this.#closed) return;
    this.#maintaining = true;
    this.maintain()
      .catch((e: unknown) => {
        this.#logger.error(
          { code: (e as { code?: unknown }).code },
          'scheduled key maintenance failed',
        );
      })
      .finally(() => {
        this.#maintaining = false;
      });
  }

  async #rotateNow(purpose: KeyPurpose, reason: KeyLifecycleReason): Promise<RotationResult> {
    if (this.#closed) throw new KeyStateInvalidError('the key service is closed');
    const at = this.#isoNow();
    const old = this.#active.get(purpose);
    // A grant rotation makes the published next key active (gateways that cached the JWKS
    // already hold it) and publishes a new next key in the same store write.
    const promoted = purpose === 'grant' && old !== undefined ? this.#nextGrantKey() : undefined;
    const upcoming = promoted === undefined ? undefined : await this.#generateNext(reason);
    const fresh: KeyRecord =
      promoted === undefined
        ? await this.#generate(purpose, 'active', at)
        : { ...promoted, state: 'active', activatedAt: at };
    // The one key this rotation made in the HSM, discarded if the rotation does not land.
    const generatedHsmId = (upcoming ?? fresh).hsmId;
    const kid = fresh.kid;
    try {
      await this.#emit(
        old === undefined
          ? { type: 'key_created', kid, purpose, reason, at }
          : { type: 'key_rotated', kid, purpose, previousKid: old.kid, reason, at },
      );
    } catch (e) {
      await this.#discard(purpose, generatedHsmId);
      throw e;
    }
    // Hold new signatures of this purpose for the one store write that switches keys.
    let open = (): void => undefined;
    this.#switching.set(
      purpose,
      new Promise<void>((res) => {
        open = res;
      }),
    );
    try {
      let previous: KeyRecord | undefined;
      if (old !== undefined) {
        // Grants carry an exp; audit checkpoints do not, so an audit key retires at once.
        previous =
          purpose === 'grant'
            ? { ...old, state: 'retiring', retiringAt: at, maxExp: this.#retiringUntil(old) }
            : { ...old, state: 'retired', retiringAt: at, retiredAt: at };
      }
      try {
        await this.#deps.store.putAll([
          ...(previous === undefined ? [] : [previous]),
          fresh,
          ...(upcoming === undefined ? [] : [upcoming]),
        ]);
      } catch (e) {
        await this.#discard(purpose, generatedHsmId);
        throw e;
      }
      if (previous !== undefined) this.#records.set(previous.kid, previous);
      this.#records.set(kid, fresh);
      this.#active.set(purpose, fresh);
      this.#usage.set(kid, { inFlight: 0, maxExp: 0 });
      if (upcoming !== undefined) this.#records.set(upcoming.kid, upcoming);
      this.#logger.info({ kid, purpose, previousKid: old?.kid, reason }, 'key rotated');
      return {
        active: structuredClone(fresh),
        previous: previous === undefined ? undefined : structuredClone(previous),
      };
    } finally {
      this.#switching.delete(purpose);
      open();
    }
  }

  async #retireNow(r: KeyRecord, reason: KeyLifecycleReason): Promise<KeyRecord> {
    const at = this.#isoNow();
    await this.#emit({ type: 'key_retired', kid: r.kid, purpose: r.purpose, reason, at });
    const next: KeyRecord = {
      ...r,
      state: 'retired',
      retiredAt: at,
      maxExp: this.#retiringUntil(r),
    };
    await this.#deps.store.putAll([next]);
    this.#records.set(r.kid, next);
    this.#logger.info({ kid: r.kid, reason }, 'key retired');
    return structuredClone(next);
  }

  /** Best effort: a key generated for a change that did not happen is destroyed again. */
  async #discard(purpose: KeyPurpose, hsmId: string): Promise<void> {
    try {
      await this.#signerFor(purpose).destroy(hsmId);
    } catch {
      this.#logger.warn({ hsmId }, 'could not destroy an unused HSM key');
    }
  }

  async #emit(event: KeyLifecycleEvent): Promise<void> {
    if (this.#deps.onLifecycle !== undefined) await this.#deps.onLifecycle(event);
  }

  /** The token that holds the keys of `purpose`. */
  #signerFor(purpose: KeyPurpose): HsmSigner {
    return purpose === 'audit' ? (this.#deps.auditSigner ?? this.#deps.signer) : this.#deps.signer;
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#chain.then(fn, fn);
    this.#chain = run.catch(() => undefined);
    return run;
  }

  #nowSeconds(): number {
    return Math.floor(this.#now() / 1000);
  }

  #isoNow(): string {
    return new Date(this.#now()).toISOString();
  }

  // --- health -------------------------------------------------------------------------

  /** An open, logged-in session on the token (on both, when the audit key has its own). */
  async ready(): Promise<{ ok: boolean; reason?: string }> {
    const grant = await this.#deps.signer.ready();
    if (!grant.ok || this.#deps.auditSigner === undefined) return grant;
    return this.#deps.auditSigner.ready();
  }

  /** Stop the scheduler and close the signer. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#batcher?.close();
    if (this.#timer !== undefined) clearInterval(this.#timer);
    await this.#chain;
    await this.#deps.auditSigner?.close();
    await this.#deps.signer.close();
  }
}
