/**
 * The anchor pin: what `grantor provision` fixes about the audit anchor and every start
 * compares the TPM and the store with (the NV indices, their NV names and the genesis
 * counter). It is operator configuration, not state: it lives outside the state folder,
 * is written once and is read-only to the service, so whoever can restore or edit the
 * state folder cannot move it. Format (JSON):
 *
 *   { "format": "grantor-anchor-pin/1", "counterIndex": "0x01500020",
 *     "extendIndex": "0x01500021", "names": { "counter": "000b…", "extend": "000b…" },
 *     "genesisCounter": "42", "akPublic": "<base64 TPM2B_PUBLIC>" }
 *
 * Format 2 (`grantor-anchor-pin/2`, indices written only through the write policy,
 * anchor-policy.ts) adds the write key: its TPM name and the indices' authPolicy (hex),
 *     "writeKey": { "name": "000b…", "policy": "…" }
 * Format 1 pins (owner-written indices) still parse, for offline verification; the
 * appliance refuses to start on one (docs/audit.md "Migration").
 */
import { mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ConfigError } from '../shared/errors.js';
import { writeFileOnce } from '../shared/write-once.js';
import { unmarshalTpm2bPublic } from '../tpm/marshal/public.js';
import type { AnchorPin, TpmAnchorIndices } from './anchor.tpm.js';

export const PIN_FORMAT = 'grantor-anchor-pin/2';
/** Owner-written indices, before write policies. */
export const PIN_FORMAT_1 = 'grantor-anchor-pin/1';

export interface PinnedAnchor extends AnchorPin, TpmAnchorIndices {
  /** TPM2B_PUBLIC of the appliance AK that certifies the anchor (start-up reads, exports). */
  readonly akPublic: Buffer;
}

const NAME = /^000b[0-9a-f]{64}$/;
const INDEX = /^0x[0-9a-f]{8}$/;
const COUNTER = /^\d{1,20}$/;
const DIGEST = /^[0-9a-f]{64}$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const hex8 = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;

/** Parse a pin file's text; ConfigError naming `key` on anything but a well-formed pin. */
export function parseAnchorPin(text: string, key: string): PinnedAnchor {
  let raw: unknown;
  try {
    raw = JSON.parse(text) as unknown;
  } catch {
    throw new ConfigError(key, 'the anchor pin is not JSON');
  }
  if (!isRecord(raw) || (raw.format !== PIN_FORMAT && raw.format !== PIN_FORMAT_1)) {
    throw new ConfigError(key, `the anchor pin is not a ${PIN_FORMAT} object`);
  }
  const { counterIndex, extendIndex, names, genesisCounter, akPublic, writeKey } = raw;
  if (raw.format === PIN_FORMAT_1 ? writeKey !== undefined : !isWriteKey(writeKey)) {
    throw new ConfigError(key, 'the anchor pin has no valid writeKey');
  }
  if (typeof counterIndex !== 'string' || !INDEX.test(counterIndex)) {
    throw new ConfigError(key, 'the anchor pin has no valid counterIndex');
  }
  if (typeof extendIndex !== 'string' || !INDEX.test(extendIndex)) {
    throw new ConfigError(key, 'the anchor pin has no valid extendIndex');
  }
  if (
    !isRecord(names) ||
    typeof names.counter !== 'string' ||
    typeof names.extend !== 'string' ||
    !NAME.test(names.counter) ||
    !NAME.test(names.extend)
  ) {
    throw new ConfigError(key, 'the anchor pin has no valid SHA-256 NV names');
  }
  if (typeof genesisCounter !== 'string' || !COUNTER.test(genesisCounter)) {
    throw new ConfigError(key, 'the anchor pin has no valid genesisCounter');
  }
  const genesis = BigInt(genesisCounter);
  if (genesis >= 2n ** 64n) throw new ConfigError(key, 'the anchor pin genesisCounter overflows');
  if (typeof akPublic !== 'string' || !BASE64.test(akPublic) || akPublic.length > 2048) {
    throw new ConfigError(key, 'the anchor pin has no valid akPublic');
  }
  const ak = Buffer.from(akPublic, 'base64');
  try {
    unmarshalTpm2bPublic(ak);
  } catch {
    throw new ConfigError(key, 'the anchor pin akPublic is not a TPM2B_PUBLIC');
  }
  return {
    counterIndex: Number.parseInt(counterIndex, 16),
    extendIndex: Number.parseInt(extendIndex, 16),
    names: { counter: names.counter, extend: names.extend },
    genesisCounter: genesis,
    akPublic: ak,
    ...(isWriteKey(writeKey) ? { writeKey: { name: writeKey.name, policy: writeKey.policy } } : {}),
  };
}

function isWriteKey(v: unknown): v is { name: string; policy: string } {
  return (
    isRecord(v) &&
    typeof v.name === 'string' &&
    NAME.test(v.name) &&
    typeof v.policy === 'string' &&
    DIGEST.test(v.policy)
  );
}

export function formatAnchorPin(pin: PinnedAnchor): string {
  return `${JSON.stringify(
    {
      format: pin.writeKey === undefined ? PIN_FORMAT_1 : PIN_FORMAT,
      counterIndex: hex8(pin.counterIndex),
      extendIndex: hex8(pin.extendIndex),
      names: pin.names,
      genesisCounter: pin.genesisCounter.toString(),
      akPublic: pin.akPublic.toString('base64'),
      ...(pin.writeKey === undefined ? {} : { writeKey: pin.writeKey }),
    },
    null,
    2,
  )}\n`;
}

/** The pin at `path`, or `undefined` when there is none (never provisioned). */
export async function readAnchorPin(path: string, key: string): Promise<PinnedAnchor | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ConfigError(key, `cannot read the anchor pin ${path}: ${(err as Error).message}`);
  }
  return parseAnchorPin(text, key);
}

/**
 * Write the pin durably and atomically, read-only (0444; writeFileOnce). Refuses to replace
 * an existing pin: re-pinning is an operator's act (remove the file), never a side effect
 * of provisioning.
 */
export async function writeAnchorPin(path: string, pin: PinnedAnchor): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFileOnce(path, formatAnchorPin(pin), 0o444);
}
