/** Test wiring: a KeyService on the fake signer and the memory store, with a movable clock. */
import type { GrantClaims } from '../shared/grant-claims.js';
import { KeyService, type KeyLifecycleEvent, type KeyServiceOptions } from './key-service.js';
import { MemoryKeyStore } from './key-store.memory.js';
import { createFakeSigner, type FakeSigner } from './signer.memory.js';

export interface FakeKeys {
  readonly keys: KeyService;
  readonly signer: FakeSigner;
  readonly store: MemoryKeyStore;
  readonly events: KeyLifecycleEvent[];
  advance(seconds: number): void;
  now(): number;
}

/** Options for a KeyService in tests: no rotation, no maintenance timer, 'test' labels. */
export const TEST_KEY_OPTIONS: KeyServiceOptions = {
  rotationPeriodSeconds: 0,
  grantMaxTtlSeconds: 300,
  jwksMaxAgeSeconds: 300,
  maintenanceIntervalMs: 0,
  labelPrefix: 'test',
};

export async function fakeKeys(
  options: Partial<KeyServiceOptions> = {},
  hooks: { onLifecycle?: (e: KeyLifecycleEvent) => Promise<void> } = {},
): Promise<FakeKeys> {
  let t = Date.parse('2026-06-01T00:00:00Z');
  const signer = createFakeSigner();
  const store = new MemoryKeyStore();
  const events: KeyLifecycleEvent[] = [];
  const keys = await KeyService.start(
    { ...TEST_KEY_OPTIONS, ...options },
    {
      signer,
      store,
      now: () => t,
      onLifecycle: async (e) => {
        await hooks.onLifecycle?.(e);
        events.push(e);
      },
    },
  );
  return {
    keys,
    signer,
    store,
    events,
    advance: (s) => {
      t += s * 1000;
    },
    now: () => t,
  };
}

/** The kid of the active grant key (tests read it from the service's own list). */
export function activeGrantKid(keys: Pick<KeyService, 'list'>): string {
  const active = keys.list().find((r) => r.purpose === 'grant' && r.state === 'active');
  if (active === undefined) throw new Error('no active grant key');
  return active.kid;
}

/** Well-formed grant claims issued now by `f`'s clock, live for `ttl` seconds. */
export function testGrantClaims(
  f: Pick<FakeKeys, 'now'>,
  jti: string,
  over: Partial<GrantClaims> = {},
  ttl = 60,
): GrantClaims {
  const now = Math.floor(f.now() / 1000);
  return {
    iss: 'grantor',
    sub: 'rt_1',
    aud: 'gw',
    iat: now,
    nbf: now,
    exp: now + ttl,
    jti,
    act: { action: 'a', resource: 'r', parametersDigest: 'c'.repeat(64) },
    att: { akName: 'ak', pcrDigest: 'pcr', resetCount: 0, restartCount: 0, attestationId: null },
    cnf: { jkt: 'jkt' },
    lin: { parent: null, root: jti, depth: 0 },
    pol: 'a'.repeat(64),
    aud_seq: 0,
    aud_hash: 'b'.repeat(64),
    ...over,
  };
}
