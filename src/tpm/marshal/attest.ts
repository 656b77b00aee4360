/** TPMS_ATTEST (TPM 2.0 Part 2, 10.12): what Quote, Certify, NV_Certify & co. sign. */
import { TpmMarshalError, marshal, parseAll, type TpmReader, type TpmWriter } from './buffer.js';
import { TPM_GENERATED_VALUE, TPM_MAX, TPM_ST, isHashAlg, type HashAlgId } from './constants.js';
import { readTpmlPcrSelection, writeTpmlPcrSelection, type PcrSelection } from './pcr-selection.js';

/** TPMS_CLOCK_INFO. */
export interface ClockInfo {
  readonly clock: bigint;
  readonly resetCount: number;
  readonly restartCount: number;
  readonly safe: boolean;
}

/**
 * TPMS_ATTEST. `magic` is kept as read: whether it is TPM_GENERATED_VALUE is a verification
 * step with its own error (see isTpmGenerated), not a parse failure.
 */
export interface TpmsAttest {
  readonly magic: number;
  readonly qualifiedSigner: Uint8Array;
  readonly extraData: Uint8Array;
  readonly clockInfo: ClockInfo;
  readonly firmwareVersion: bigint;
  readonly attested: Attested;
}

export function isTpmGenerated(a: TpmsAttest): boolean {
  return a.magic === TPM_GENERATED_VALUE;
}

function readYesNo(r: TpmReader, field: string): boolean {
  const at = r.offset;
  const v = r.u8(field);
  if (v > 1) throw r.invalid(field, 'TPMI_YES_NO must be 0 or 1', at);
  return v === 1;
}

function readClockInfo(r: TpmReader, field: string): ClockInfo {
  return r.struct((s) => ({
    clock: s.u64(`${field}.clock`),
    resetCount: s.u32(`${field}.resetCount`),
    restartCount: s.u32(`${field}.restartCount`),
    safe: readYesNo(s, `${field}.safe`),
  }));
}

/** TPMS_TIME_INFO, as TPM2_ReadClock answers it. */
export interface TimeInfo extends ClockInfo {
  /** Milliseconds since the last TPM reset or restart (TPM2_Startup). */
  readonly time: bigint;
}

export function readTpmsTimeInfo(r: TpmReader): TimeInfo {
  return r.struct((s) => {
    const time = s.u64('time');
    return { time, ...readClockInfo(s, 'clockInfo') };
  });
}

export function unmarshalTpmsTimeInfo(bytes: Uint8Array): TimeInfo {
  return parseAll(bytes, 'TPMS_TIME_INFO', readTpmsTimeInfo);
}

function writeClockInfo(w: TpmWriter, c: ClockInfo): void {
  w.u64(c.clock, 'clock').u32(c.resetCount, 'resetCount').u32(c.restartCount, 'restartCount');
  w.u8(c.safe ? 1 : 0);
}

/** How one kind of TPMU_ATTEST field is read and written. */
interface Codec<V> {
  read(r: TpmReader, field: string): V;
  write(w: TpmWriter, v: V, field: string): void;
}

const tpm2b = (max: number): Codec<Uint8Array> => ({
  read: (r, field) => r.tpm2b(field, max),
  write: (w, v, field) => w.tpm2b(v, max, field),
});

const CODECS = {
  name: tpm2b(TPM_MAX.NAME),
  digest: tpm2b(TPM_MAX.DIGEST),
  nvBuffer: tpm2b(TPM_MAX.NV_BUFFER),
  u16: {
    read: (r, field) => r.u16(field),
    write: (w, v, field) => w.u16(v, field),
  } satisfies Codec<number>,
  u64: {
    read: (r, field) => r.u64(field),
    write: (w, v, field) => w.u64(v, field),
  } satisfies Codec<bigint>,
  yesNo: { read: readYesNo, write: (w, v) => w.u8(v ? 1 : 0) } satisfies Codec<boolean>,
  clockInfo: { read: readClockInfo, write: writeClockInfo } satisfies Codec<ClockInfo>,
  pcrSelection: {
    read: (r, field) => readTpmlPcrSelection(r, field),
    write: writeTpmlPcrSelection,
  } satisfies Codec<PcrSelection[]>,
  hashAlg: {
    read: (r, field) => {
      const at = r.offset;
      const v = r.u16(field);
      if (!isHashAlg(v)) throw r.invalid(field, 'not a hash algorithm', at);
      return v;
    },
    write: (w, v, field) => {
      if (!isHashAlg(v)) throw new TpmMarshalError(field, 'not a hash algorithm');
      w.u16(v, field);
    },
  } satisfies Codec<HashAlgId>,
};

type FieldKind = keyof typeof CODECS;
type ValueOf<K> = K extends FieldKind
  ? (typeof CODECS)[K] extends Codec<infer V>
    ? V
    : never
  : never;

/**
 * TPMU_ATTEST (TPM 2.0 Part 2, 10.12.12): each TPM_ST_ATTEST_* member's fields, in wire order
 * (the order of the keys), with their kinds. `label` names the member in parse errors
 * (`attested.quote.pcrDigest`). The Attested type, the parser and the writer all come from here.
 */
const MEMBERS = {
  [TPM_ST.ATTEST_QUOTE]: {
    label: 'quote',
    fields: { pcrSelect: 'pcrSelection', pcrDigest: 'digest' },
  },
  [TPM_ST.ATTEST_CERTIFY]: { label: 'certify', fields: { name: 'name', qualifiedName: 'name' } },
  [TPM_ST.ATTEST_NV]: {
    label: 'nv',
    fields: { indexName: 'name', offset: 'u16', nvContents: 'nvBuffer' },
  },
  [TPM_ST.ATTEST_NV_DIGEST]: {
    label: 'nvDigest',
    fields: { indexName: 'name', nvDigest: 'digest' },
  },
  [TPM_ST.ATTEST_CREATION]: {
    label: 'creation',
    fields: { objectName: 'name', creationHash: 'digest' },
  },
  // TPMS_TIME_ATTEST_INFO: a TPMS_TIME_INFO (time, clockInfo), then firmwareVersion.
  [TPM_ST.ATTEST_TIME]: {
    label: 'time',
    fields: { time: 'u64', timeClockInfo: 'clockInfo', timeFirmwareVersion: 'u64' },
  },
  [TPM_ST.ATTEST_COMMAND_AUDIT]: {
    label: 'commandAudit',
    fields: {
      auditCounter: 'u64',
      digestAlg: 'hashAlg',
      auditDigest: 'digest',
      commandDigest: 'digest',
    },
  },
  [TPM_ST.ATTEST_SESSION_AUDIT]: {
    label: 'sessionAudit',
    fields: { exclusiveSession: 'yesNo', sessionDigest: 'digest' },
  },
} as const satisfies Record<number, { label: string; fields: Record<string, FieldKind> }>;

type Members = typeof MEMBERS;
type AttestType = keyof Members;
type FieldsOf<T extends AttestType> = Members[T]['fields'];

/** TPMU_ATTEST, discriminated by its TPM_ST_ATTEST_* tag. */
export type Attested = {
  [T in AttestType]: { readonly type: T } & {
    readonly [F in keyof FieldsOf<T>]: ValueOf<FieldsOf<T>[F]>;
  };
}[AttestType];

function isAttestType(type: number): type is AttestType {
  return Object.hasOwn(MEMBERS, type);
}

function readAttested(r: TpmReader, type: number, typeAt: number): Attested {
  if (!isAttestType(type)) {
    throw r.invalid('type', `not an attestation type: 0x${type.toString(16)}`, typeAt);
  }
  const { label, fields } = MEMBERS[type];
  return r.struct((s) => {
    const attested: Record<string, unknown> = { type };
    for (const [field, kind] of Object.entries<FieldKind>(fields)) {
      attested[field] = CODECS[kind].read(s, `attested.${label}.${field}`);
    }
    // Each field read with its kind's codec: the member's shape by construction.
    return attested as Attested;
  });
}

export function readTpmsAttest(r: TpmReader): TpmsAttest {
  return r.struct((s) => {
    const magic = s.u32('magic');
    const typeAt = s.offset;
    const type = s.u16('type');
    const qualifiedSigner = CODECS.name.read(s, 'qualifiedSigner');
    const extraData = s.tpm2b('extraData', TPM_MAX.DATA);
    const clockInfo = readClockInfo(s, 'clockInfo');
    const firmwareVersion = s.u64('firmwareVersion');
    const attested = readAttested(s, type, typeAt);
    return { magic, qualifiedSigner, extraData, clockInfo, firmwareVersion, attested };
  });
}

/** Parse a complete TPMS_ATTEST, as `tpm2_quote -m` / `tpm2_certify -o` write it. */
export function unmarshalTpmsAttest(bytes: Uint8Array): TpmsAttest {
  return parseAll(bytes, 'TPMS_ATTEST', readTpmsAttest);
}

/** Parse a TPM2B_ATTEST (u16 size || TPMS_ATTEST), as TPM2_Quote returns it. */
export function unmarshalTpm2bAttest(bytes: Uint8Array): TpmsAttest {
  return parseAll(bytes, 'TPM2B_ATTEST', (r) => {
    const a = r.sized('attestationData', 0xffff, readTpmsAttest);
    if (a === undefined) throw r.invalid('attestationData', 'empty');
    return a;
  });
}

export function writeTpmsAttest(w: TpmWriter, a: TpmsAttest): void {
  const t = a.attested;
  w.u32(a.magic, 'magic').u16(t.type, 'type');
  w.tpm2b(a.qualifiedSigner, TPM_MAX.NAME, 'qualifiedSigner');
  w.tpm2b(a.extraData, TPM_MAX.DATA, 'extraData');
  writeClockInfo(w, a.clockInfo);
  w.u64(a.firmwareVersion, 'firmwareVersion');
  // Only reachable through a cast; never emit a half-written structure.
  if (!isAttestType(t.type)) throw new TpmMarshalError('type', 'not an attestation type');
  const values: Readonly<Record<string, unknown>> = t;
  for (const [field, kind] of Object.entries<FieldKind>(MEMBERS[t.type].fields)) {
    // The member's fields have their kinds' value types (the Attested type is built so).
    (CODECS[kind] as Codec<unknown>).write(w, values[field], field);
  }
}

export function marshalTpmsAttest(a: TpmsAttest): Buffer {
  return marshal((w) => {
    writeTpmsAttest(w, a);
  });
}
