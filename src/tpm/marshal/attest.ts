/** TPMS_ATTEST (TPM 2.0 Part 2, 10.12): what Quote, Certify, NV_Certify & co. sign. */
import { TpmMarshalError, marshal, parseAll, type TpmReader, type TpmWriter } from './buffer.js';
import { TPM_GENERATED_VALUE, TPM_MAX, TPM_ST, isHashAlg, type HashAlgId } from './constants.js';
import { readTpmlPcrSelection, writeTpmlPcrSelection, type PcrSelection } from './pcr-selection.js';

type St = typeof TPM_ST;

/** TPMS_CLOCK_INFO. */
export interface ClockInfo {
  readonly clock: bigint;
  readonly resetCount: number;
  readonly restartCount: number;
  readonly safe: boolean;
}

/** TPMU_ATTEST, discriminated by its TPM_ST_ATTEST_* tag. */
export type Attested =
  | {
      readonly type: St['ATTEST_QUOTE'];
      readonly pcrSelect: PcrSelection[];
      readonly pcrDigest: Uint8Array;
    }
  | {
      readonly type: St['ATTEST_CERTIFY'];
      readonly name: Uint8Array;
      readonly qualifiedName: Uint8Array;
    }
  | {
      readonly type: St['ATTEST_NV'];
      readonly indexName: Uint8Array;
      readonly offset: number;
      readonly nvContents: Uint8Array;
    }
  | {
      readonly type: St['ATTEST_NV_DIGEST'];
      readonly indexName: Uint8Array;
      readonly nvDigest: Uint8Array;
    }
  | {
      readonly type: St['ATTEST_CREATION'];
      readonly objectName: Uint8Array;
      readonly creationHash: Uint8Array;
    }
  | {
      readonly type: St['ATTEST_TIME'];
      readonly time: bigint;
      readonly timeClockInfo: ClockInfo;
      readonly timeFirmwareVersion: bigint;
    }
  | {
      readonly type: St['ATTEST_COMMAND_AUDIT'];
      readonly auditCounter: bigint;
      readonly digestAlg: HashAlgId;
      readonly auditDigest: Uint8Array;
      readonly commandDigest: Uint8Array;
    }
  | {
      readonly type: St['ATTEST_SESSION_AUDIT'];
      readonly exclusiveSession: boolean;
      readonly sessionDigest: Uint8Array;
    };

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

const name = (r: TpmReader, field: string): Buffer => r.tpm2b(field, TPM_MAX.NAME);
const digest = (r: TpmReader, field: string): Buffer => r.tpm2b(field, TPM_MAX.DIGEST);

function readAttested(r: TpmReader, type: number, typeAt: number): Attested {
  return r.struct((s): Attested => {
    switch (type) {
      case TPM_ST.ATTEST_QUOTE:
        return {
          type,
          pcrSelect: readTpmlPcrSelection(s, 'attested.quote.pcrSelect'),
          pcrDigest: digest(s, 'attested.quote.pcrDigest'),
        };
      case TPM_ST.ATTEST_CERTIFY:
        return {
          type,
          name: name(s, 'attested.certify.name'),
          qualifiedName: name(s, 'attested.certify.qualifiedName'),
        };
      case TPM_ST.ATTEST_NV:
        return {
          type,
          indexName: name(s, 'attested.nv.indexName'),
          offset: s.u16('attested.nv.offset'),
          nvContents: s.tpm2b('attested.nv.nvContents', TPM_MAX.NV_BUFFER),
        };
      case TPM_ST.ATTEST_NV_DIGEST:
        return {
          type,
          indexName: name(s, 'attested.nvDigest.indexName'),
          nvDigest: digest(s, 'attested.nvDigest.nvDigest'),
        };
      case TPM_ST.ATTEST_CREATION:
        return {
          type,
          objectName: name(s, 'attested.creation.objectName'),
          creationHash: digest(s, 'attested.creation.creationHash'),
        };
      case TPM_ST.ATTEST_TIME:
        return {
          type,
          time: s.u64('attested.time.time.time'),
          timeClockInfo: readClockInfo(s, 'attested.time.time.clockInfo'),
          timeFirmwareVersion: s.u64('attested.time.firmwareVersion'),
        };
      case TPM_ST.ATTEST_COMMAND_AUDIT: {
        const auditCounter = s.u64('attested.commandAudit.auditCounter');
        const algAt = s.offset;
        const digestAlg = s.u16('attested.commandAudit.digestAlg');
        if (!isHashAlg(digestAlg))
          throw s.invalid('attested.commandAudit.digestAlg', 'not a hash algorithm', algAt);
        return {
          type,
          auditCounter,
          digestAlg,
          auditDigest: digest(s, 'attested.commandAudit.auditDigest'),
          commandDigest: digest(s, 'attested.commandAudit.commandDigest'),
        };
      }
      case TPM_ST.ATTEST_SESSION_AUDIT:
        return {
          type,
          exclusiveSession: readYesNo(s, 'attested.sessionAudit.exclusiveSession'),
          sessionDigest: digest(s, 'attested.sessionAudit.sessionDigest'),
        };
      default:
        throw s.invalid('type', `not an attestation type: 0x${type.toString(16)}`, typeAt);
    }
  });
}

export function readTpmsAttest(r: TpmReader): TpmsAttest {
  return r.struct((s) => {
    const magic = s.u32('magic');
    const typeAt = s.offset;
    const type = s.u16('type');
    const qualifiedSigner = name(s, 'qualifiedSigner');
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
  switch (t.type) {
    case TPM_ST.ATTEST_QUOTE:
      writeTpmlPcrSelection(w, t.pcrSelect);
      w.tpm2b(t.pcrDigest, TPM_MAX.DIGEST, 'pcrDigest');
      return;
    case TPM_ST.ATTEST_CERTIFY:
      w.tpm2b(t.name, TPM_MAX.NAME, 'name').tpm2b(t.qualifiedName, TPM_MAX.NAME, 'qualifiedName');
      return;
    case TPM_ST.ATTEST_NV:
      w.tpm2b(t.indexName, TPM_MAX.NAME, 'indexName').u16(t.offset, 'offset');
      w.tpm2b(t.nvContents, TPM_MAX.NV_BUFFER, 'nvContents');
      return;
    case TPM_ST.ATTEST_NV_DIGEST:
      w.tpm2b(t.indexName, TPM_MAX.NAME, 'indexName').tpm2b(t.nvDigest, TPM_MAX.DIGEST, 'nvDigest');
      return;
    case TPM_ST.ATTEST_CREATION:
      w.tpm2b(t.objectName, TPM_MAX.NAME, 'objectName');
      w.tpm2b(t.creationHash, TPM_MAX.DIGEST, 'creationHash');
      return;
    case TPM_ST.ATTEST_TIME:
      w.u64(t.time, 'time');
      writeClockInfo(w, t.timeClockInfo);
      w.u64(t.timeFirmwareVersion, 'firmwareVersion');
      return;
    case TPM_ST.ATTEST_COMMAND_AUDIT:
      if (!isHashAlg(t.digestAlg)) throw new TpmMarshalError('digestAlg', 'not a hash algorithm');
      w.u64(t.auditCounter, 'auditCounter').u16(t.digestAlg, 'digestAlg');
      w.tpm2b(t.auditDigest, TPM_MAX.DIGEST, 'auditDigest');
      w.tpm2b(t.commandDigest, TPM_MAX.DIGEST, 'commandDigest');
      return;
    case TPM_ST.ATTEST_SESSION_AUDIT:
      w.u8(t.exclusiveSession ? 1 : 0).tpm2b(t.sessionDigest, TPM_MAX.DIGEST, 'sessionDigest');
      return;
    default:
      // Only reachable through a cast; never emit a half-written structure.
      throw new TpmMarshalError('type', 'not an attestation type');
  }
}

export function marshalTpmsAttest(a: TpmsAttest): Buffer {
  return marshal((w) => {
    writeTpmsAttest(w, a);
  });
}
