/**
 * The crash children's TPM anchor (crash-child.ts, period-crash-child.ts): the real
 * TpmAuditAnchor configured from CRASH_ANCHOR (JSON), and the same anchor with a hook right
 * after each extend and increment, where a child SIGKILLs itself at an aimed crash point.
 */
import type { AuditAnchor } from '../../src/audit/anchor.port.js';
import { TpmAuditAnchor } from '../../src/audit/anchor.tpm.js';
import type { NativeTpm } from '../../src/tpm/tpm.native.js';

export interface AnchorHooks {
  readonly afterExtend?: () => void;
  readonly afterIncrement?: () => void;
}

export function crashAnchor(
  tpm: NativeTpm,
  hooks: AnchorHooks,
): { readonly anchor: TpmAuditAnchor; readonly aimed: AuditAnchor } {
  const text = process.env.CRASH_ANCHOR;
  if (text === undefined) throw new Error('CRASH_ANCHOR is not set');
  const config = JSON.parse(text) as {
    counterIndex: number;
    extendIndex: number;
    pinnedNames: { counter: string; extend: string };
    pinnedGenesis: string;
    pinnedAkPublic: string;
    akTemplate: string;
  };
  const anchor = new TpmAuditAnchor(tpm, {
    ...config,
    pinnedGenesis: BigInt(config.pinnedGenesis),
    pinnedAkPublic: Buffer.from(config.pinnedAkPublic, 'base64'),
    akTemplate: Buffer.from(config.akTemplate, 'base64'),
  });
  const aimed: AuditAnchor = {
    genesis: anchor.genesis,
    pinnedNames: anchor.pinnedNames,
    checkPinned: () => anchor.checkPinned(),
    read: () => anchor.read(),
    readAfterWrite: () => anchor.readAfterWrite(),
    extend: async (data) => {
      await anchor.extend(data);
      hooks.afterExtend?.();
    },
    increment: async () => {
      await anchor.increment();
      hooks.afterIncrement?.();
    },
    certify: (q) => anchor.certify(q),
    akPublic: () => anchor.akPublic(),
  };
  return { anchor, aimed };
}
