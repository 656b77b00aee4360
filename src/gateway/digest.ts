/** The `parametersDigest` of an execution (PROTOCOL.md §3): hex SHA-256 of JCS(parameters). */
import { createHash } from 'node:crypto';
import { jcs } from '../shared/jcs.js';

/** RFC 8785 canonical JSON text of a value; throws TypeError if it has no JSON form. */
export const canonicalJson: (value: unknown) => string = jcs;

/** Hex SHA-256 over the RFC 8785 canonical JSON of the execution's parameters. */
export function parametersDigest(parameters: unknown): string {
  return createHash('sha256').update(canonicalJson(parameters), 'utf8').digest('hex');
}
