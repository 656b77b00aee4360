/**
 * The process logger (pino, JSON lines). Secret-bearing fields are redacted by path, and
 * code never puts a PIN, token, secret or session key into a log call in the first place.
 *
 * Tests only: when GRANTOR_TEST_LOG_FILE is set (test/rig/log-capture.ts sets it for the
 * whole vitest run, and spawned children inherit it), every line at every level, after
 * redaction, is also appended to that file (synchronous O_APPEND writes, one per line, so
 * several processes can share it); the run's teardown scans it for the secrets it used.
 */
import { pino, type DestinationStream, type Level, type Logger, type StreamEntry } from 'pino';

export const REDACT_PATHS = [
  'pin',
  '*.pin',
  'hsm.pin',
  'secret',
  '*.secret',
  'token',
  '*.token',
  'sessionKey',
  '*.sessionKey',
  'req.headers.authorization',
  'req.headers.cookie',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    // ISO 8601 times (`"time":"2026-12-02T11:15:05.123Z"`), not epoch milliseconds.
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  const capture = process.env.GRANTOR_TEST_LOG_FILE;
  if (capture !== undefined && capture !== '') {
    const streams: StreamEntry[] = [
      { level: 'trace', stream: pino.destination({ dest: capture, append: true, sync: true }) },
    ];
    if (level !== 'silent') {
      streams.push({ level: level as Level, stream: destination ?? pino.destination(1) });
    }
    return pino({ ...options, level: 'trace' }, pino.multistream(streams));
  }
  return destination === undefined ? pino(options) : pino(options, destination);
}

/**
 * Tests only: where a caller passed no logger (silence), a run that captures logs still
 * gets every line into its capture file, so the secrets scan covers in-process apps too.
 * Outside a captured run: undefined, and the caller stays silent.
 */
export function captureOnlyLogger(): Logger | undefined {
  const capture = process.env.GRANTOR_TEST_LOG_FILE;
  return capture === undefined || capture === '' ? undefined : createLogger('silent');
}
