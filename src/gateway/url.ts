/** Endpoint URLs the SDK talks to: https, or plain http to a loopback address only. */
import { ConfigError } from '../shared/errors.js';

const LOOPBACK = new Set(['127.0.0.1', '[::1]', 'localhost']);

export function endpointUrl(key: string, value: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(key, 'is not a URL');
  }
  if (url.protocol === 'https:') return url;
  if (url.protocol === 'http:' && LOOPBACK.has(url.hostname)) return url;
  throw new ConfigError(key, 'must be https (plain http only to a loopback address)');
}
