/**
 * The TCG PC Client event log (PC Client Platform Firmware Profile §10): the crypto-agile
 * format (a SHA-1-format Spec ID event, then TCG_PCR_EVENT2 records with one digest per
 * bank, sizes from the Spec ID event) and the SHA-1 legacy format (TCG_PCR_EVENT records).
 *
 * Untrusted input from the runtime: bounded by `maxBytes` and `maxEvents` before and while
 * parsing, read with a bounds-checked little-endian reader, no recursion, and every event is
 * a view of one private copy of the input. Nothing here says whether the log is true; that
 * is the replay against the quoted PCRs (replay.ts).
 */
import { hashInfo } from '../../tpm/marshal/constants.js';
import { LogTooLargeError } from './errors.js';
import { EV } from './event-types.js';
import { LogReader } from './reader.js';

export interface TcgEvent {
  /** Position in the log, 0 for the first record (the Spec ID event in a crypto-agile log). */
  readonly index: number;
  readonly offset: number;
  readonly pcr: number;
  readonly type: number;
  /** Digest by TPM_ALG id; in a SHA-1 log, only SHA-1 (0x0004). */
  readonly digests: ReadonlyMap<number, Buffer>;
  readonly data: Buffer;
}

export interface SpecIdEvent {
  readonly platformClass: number;
  readonly specVersion: string;
  readonly uintnSize: number;
  /** Banks in the order the Spec ID event lists them: TPM_ALG id and digest size. */
  readonly algorithms: readonly { readonly id: number; readonly size: number }[];
  readonly vendorInfo: Buffer;
}

export interface TcgEventLog {
  readonly format: 'crypto-agile' | 'sha1';
  readonly specId: SpecIdEvent | undefined;
  /** From an EV_NO_ACTION StartupLocality event: PCR 0 starts at 0...0<locality>. */
  readonly startupLocality: number;
  readonly events: readonly TcgEvent[];
}

export interface EventLogLimits {
  readonly maxBytes: number;
  readonly maxEvents: number;
}

export const DEFAULT_EVENT_LOG_LIMITS: EventLogLimits = { maxBytes: 1 << 19, maxEvents: 20_000 };

const SHA1 = 0x0004;
const MAX_PCR = 23;
const MAX_ALGORITHMS = 16;
const MAX_DIGEST = 64;
/** Largest event body accepted (the whole log is bounded by `maxBytes` too). */
const MAX_EVENT_SIZE = 1 << 24;
const SPEC_ID_03 = Buffer.from('Spec ID Event03\0', 'latin1');
const STARTUP_LOCALITY = Buffer.from('StartupLocality\0', 'latin1');

/** Parse a whole event log; every byte must belong to an event. */
export function parseEventLog(
  input: Uint8Array,
  limits: EventLogLimits = DEFAULT_EVENT_LOG_LIMITS,
): TcgEventLog {
  if (input.length > limits.maxBytes)
    throw new LogTooLargeError('event_log_too_large', 'bytes', input.length, limits.maxBytes);
  const r = new LogReader(Buffer.from(input), 'TCG_EVENT_LOG', 'event_log_malformed');
  const events: TcgEvent[] = [];
  r.event = 0;
  const first = readSha1Event(r, 0);
  events.push(first);
  const specId = isSpecId03(first) ? readSpecId(first) : undefined;
  while (r.remaining > 0) {
    if (events.length >= limits.maxEvents)
      throw new LogTooLargeError(
        'event_log_too_large',
        'events',
        events.length + 1,
        limits.maxEvents,
      );
    r.event = events.length;
    events.push(
      specId === undefined ? readSha1Event(r, events.length) : readEvent2(r, events.length, specId),
    );
  }
  r.event = undefined;
  return {
    format: specId === undefined ? 'sha1' : 'crypto-agile',
    specId,
    startupLocality: startupLocality(events, r),
    events,
  };
}

function readPcrAndType(r: LogReader): { pcr: number; type: number } {
  const at = r.offset;
  const pcr = r.u32('pcrIndex');
  const type = r.u32('eventType');
  // Windows logs carry EV_NO_ACTION records on PCR 0xFFFFFFFF; they are never extended.
  if (pcr > MAX_PCR && type !== EV.NO_ACTION)
    throw r.fail('invalid', 'pcrIndex', `PCR ${pcr} is not 0..${MAX_PCR}`, at);
  return { pcr, type };
}

/** TCG_PCR_EVENT: pcrIndex, eventType, SHA-1 digest, eventSize, event. */
function readSha1Event(r: LogReader, index: number): TcgEvent {
  return r.atomic(() => {
    const offset = r.offset;
    const { pcr, type } = readPcrAndType(r);
    const digest = r.bytes('digest', 20);
    const data = r.sized('event', MAX_EVENT_SIZE);
    return { index, offset, pcr, type, digests: new Map([[SHA1, digest]]), data };
  });
}

/** TCG_PCR_EVENT2: pcrIndex, eventType, TPML_DIGEST_VALUES (sizes from the Spec ID), event. */
function readEvent2(r: LogReader, index: number, spec: SpecIdEvent): TcgEvent {
  return r.atomic(() => {
    const offset = r.offset;
    const { pcr, type } = readPcrAndType(r);
    const countAt = r.offset;
    const count = r.u32('digests.count');
    // Banks of the Spec ID only, each once: a bank given twice would let two readers of
    // this log extend different values. A bank left out makes that PCR unreplayable in it.
    if (count === 0 || count > spec.algorithms.length)
      throw r.fail(
        'invalid',
        'digests.count',
        `${count} digests, the Spec ID event declares ${spec.algorithms.length} banks`,
        countAt,
      );
    const digests = new Map<number, Buffer>();
    for (let i = 0; i < count; i++) {
      const algAt = r.offset;
      const alg = r.u16(`digests[${i}].hashAlg`);
      const declared = spec.algorithms.find((a) => a.id === alg);
      if (declared === undefined)
        throw r.fail(
          'invalid',
          `digests[${i}].hashAlg`,
          `bank 0x${alg.toString(16)} not declared`,
          algAt,
        );
      if (digests.has(alg))
        throw r.fail(
          'invalid',
          `digests[${i}].hashAlg`,
          `bank 0x${alg.toString(16)} repeated`,
          algAt,
        );
      digests.set(alg, r.bytes(`digests[${i}].digest`, declared.size));
    }
    const data = r.sized('event', MAX_EVENT_SIZE);
    return { index, offset, pcr, type, digests, data };
  });
}

function isSpecId03(e: TcgEvent): boolean {
  return (
    e.pcr === 0 &&
    e.type === EV.NO_ACTION &&
    e.data.length >= SPEC_ID_03.length &&
    e.data.subarray(0, SPEC_ID_03.length).equals(SPEC_ID_03)
  );
}

/** TCG_EfiSpecIDEvent (PFP §10.4.5.1), read from the first event's data. */
function readSpecId(first: TcgEvent): SpecIdEvent {
  // The event body starts 32 bytes into the record (pcrIndex, eventType, digest, eventSize).
  const r = new LogReader(first.data, 'TCG_EVENT_LOG', 'event_log_malformed', first.offset + 32);
  r.event = 0;
  if (first.digests.get(SHA1)?.equals(Buffer.alloc(20)) !== true)
    throw r.fail('invalid', 'specId.digest', 'the Spec ID event digest must be zero', -24);
  r.bytes('specId.signature', 16);
  const platformClass = r.u32('specId.platformClass');
  const minor = r.u8('specId.specVersionMinor');
  const major = r.u8('specId.specVersionMajor');
  const errata = r.u8('specId.specErrata');
  const uintnAt = r.offset;
  const uintnSize = r.u8('specId.uintnSize');
  if (uintnSize !== 1 && uintnSize !== 2)
    throw r.fail('invalid', 'specId.uintnSize', `uintnSize ${uintnSize} is not 1 or 2`, uintnAt);
  const nAt = r.offset;
  const n = r.u32('specId.numberOfAlgorithms');
  if (n === 0) throw r.fail('invalid', 'specId.numberOfAlgorithms', 'no banks', nAt);
  if (n > MAX_ALGORITHMS)
    throw r.fail(
      'oversized',
      'specId.numberOfAlgorithms',
      `${n} banks exceed ${MAX_ALGORITHMS}`,
      nAt,
    );
  const algorithms: { id: number; size: number }[] = [];
  for (let i = 0; i < n; i++) {
    const field = `specId.digestSizes[${i}]`;
    const at = r.offset;
    const id = r.u16(`${field}.algorithmId`);
    const size = r.u16(`${field}.digestSize`);
    const known = hashInfo(id);
    if (size === 0 || size > MAX_DIGEST)
      throw r.fail(
        'oversized',
        `${field}.digestSize`,
        `digest size ${size} is not 1..${MAX_DIGEST}`,
        at,
      );
    if (known !== undefined && known.size !== size)
      throw r.fail(
        'invalid',
        `${field}.digestSize`,
        `${known.name} digests are ${known.size} bytes, not ${size}`,
        at,
      );
    if (algorithms.some((a) => a.id === id))
      throw r.fail('invalid', `${field}.algorithmId`, 'bank declared twice', at);
    algorithms.push({ id, size });
  }
  const vendorInfoSize = r.u8('specId.vendorInfoSize');
  const vendorInfo = r.bytes('specId.vendorInfo', vendorInfoSize);
  if (r.remaining !== 0) throw r.fail('trailing', 'specId.end', `${r.remaining} unconsumed bytes`);
  return {
    platformClass,
    specVersion: `${major}.${minor}.${errata}`,
    uintnSize,
    algorithms,
    vendorInfo,
  };
}

/**
 * The StartupLocality EV_NO_ACTION event (PFP §10.4.5.3): PCR 0 was reset at locality 3 (or
 * 4 for an H-CRTM) and starts at that value. At most one, before anything extends PCR 0.
 */
function startupLocality(events: readonly TcgEvent[], r: LogReader): number {
  let locality: number | undefined;
  let pcr0Extended = false;
  for (const e of events) {
    if (e.pcr === 0 && e.type !== EV.NO_ACTION) pcr0Extended = true;
    if (e.type !== EV.NO_ACTION || e.data.length < STARTUP_LOCALITY.length) continue;
    if (!e.data.subarray(0, STARTUP_LOCALITY.length).equals(STARTUP_LOCALITY)) continue;
    r.event = e.index;
    const at = e.offset;
    if (e.data.length !== STARTUP_LOCALITY.length + 1)
      throw r.fail('invalid', 'startupLocality', 'StartupLocality event is not 17 bytes', at);
    if (locality !== undefined || pcr0Extended || e.pcr !== 0)
      throw r.fail(
        'invalid',
        'startupLocality',
        'StartupLocality must be one event on PCR 0 before any extend',
        at,
      );
    const value = e.data.readUInt8(STARTUP_LOCALITY.length);
    if (value !== 0 && value !== 3 && value !== 4)
      throw r.fail('invalid', 'startupLocality', `locality ${value} is not 0, 3 or 4`, at);
    locality = value;
  }
  r.event = undefined;
  return locality ?? 0;
}
