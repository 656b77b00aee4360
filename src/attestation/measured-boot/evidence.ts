/**
 * The measured-boot members of an attestation request (PROTOCOL.md §2): `eventLog`, the
 * binary TCG event log in base64, and `ima`, `{ offset, format, log }`: the IMA entries from
 * index `offset` on, binary or ASCII, in base64. Decoded and parsed synchronously, before
 * the first await, so nothing the caller holds can change what is verified.
 */
import { QuoteMalformedError } from '../errors.js';
import { parseImaAscii, parseImaBinary, type ImaLimits } from './ima.js';
import { LogTooLargeError } from './errors.js';
import { parseEventLog, type EventLogLimits } from './tcg-log.js';
import type { MeasuredBootEvidence } from './verify.js';

export interface MeasuredBootLimits {
  readonly eventLog: EventLogLimits;
  readonly ima: ImaLimits;
}

/** The request members as received (untrusted). */
export interface MeasuredBootRequest {
  readonly eventLog?: unknown;
  readonly ima?: unknown;
}

const B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function base64(
  value: unknown,
  field: string,
  maxBytes: number,
  code: 'event_log_too_large' | 'ima_log_too_large',
): Buffer {
  if (typeof value !== 'string' || !B64.test(value))
    throw new QuoteMalformedError(`${field} is not standard base64`, { details: { field } });
  // Refuse by the encoded length before decoding anything.
  const decoded = (value.length / 4) * 3;
  if (decoded - 2 > maxBytes) throw new LogTooLargeError(code, 'bytes', decoded, maxBytes);
  return Buffer.from(value, 'base64');
}

/** Undefined when the request carries neither member. */
export function parseMeasuredBootRequest(
  body: MeasuredBootRequest,
  limits: MeasuredBootLimits,
): MeasuredBootEvidence | undefined {
  if (body.eventLog === undefined && body.ima === undefined) return undefined;
  const eventLog =
    body.eventLog === undefined
      ? undefined
      : parseEventLog(
          base64(body.eventLog, 'eventLog', limits.eventLog.maxBytes, 'event_log_too_large'),
          limits.eventLog,
        );
  let ima: MeasuredBootEvidence['ima'];
  if (body.ima !== undefined) {
    const v = body.ima;
    if (typeof v !== 'object' || v === null || Array.isArray(v))
      throw new QuoteMalformedError('ima must be an object', { details: { field: 'ima' } });
    const { offset, format, log } = v as Record<string, unknown>;
    if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0)
      throw new QuoteMalformedError('ima.offset must be a non-negative integer', {
        details: { field: 'ima.offset' },
      });
    if (format !== 'binary' && format !== 'ascii')
      throw new QuoteMalformedError('ima.format is binary or ascii', {
        details: { field: 'ima.format' },
      });
    const bytes = base64(log, 'ima.log', limits.ima.maxBytes, 'ima_log_too_large');
    const entries =
      format === 'binary'
        ? parseImaBinary(bytes, { offset, limits: limits.ima })
        : parseImaAscii(bytes, { offset, limits: limits.ima });
    ima = { offset, entries };
  }
  return { eventLog, ima };
}
