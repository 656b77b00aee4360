/**
 * The process logger (pino, JSON lines). Secret-bearing fields are redacted by path, and
 * code never puts a PIN, token, secret or session key into a log call in the first place.
 */
import { pino, type DestinationStream, type Logger } from 'pino';

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
  const options = { level, redact: { paths: REDACT_PATHS, censor: '[redacted]' } };
  return destination === undefined ? pino(options) : pino(options, destination);
}
