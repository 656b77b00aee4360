/**
 * Looks for secrets in captured log files: every registered secret (as text, and in the
 * base64, base64url and hex forms a careless log call could print it in) and the shapes
 * of secrets no list can hold (operator tokens, private keys). A finding names the file,
 * the line and what was found, never the value.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Secret } from './secrets.js';

export interface Finding {
  readonly file: string;
  readonly line: number;
  readonly label: string;
}

/** Secrets recognised by their shape. */
export const SECRET_PATTERNS: readonly { readonly label: string; readonly pattern: RegExp }[] = [
  // src/operators/tokens.ts: gop_ + 16 hex id + 43 base64url of a 32-byte secret.
  { label: 'operator bearer token', pattern: /gop_[0-9a-f]{16}[A-Za-z0-9_-]{43}/ },
  // src/operators/gateways.ts: ggw_ + 16 hex id + 43 base64url of a 32-byte secret.
  { label: 'gateway bearer token', pattern: /ggw_[0-9a-f]{16}[A-Za-z0-9_-]{43}/ },
  { label: 'PEM private key', pattern: /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----/ },
  // The private member of an EC JWK (a session key, a signing key).
  { label: 'private JWK member "d"', pattern: /\\?"d\\?"\s*:\s*\\?"[A-Za-z0-9_-]{32,}/ },
];

/** Shorter values would match by chance. */
const MIN_SECRET_LENGTH = 8;

function forms(secret: Secret): { label: string; text: string }[] {
  const bytes = Buffer.from(secret.value, 'utf8');
  return [
    { label: secret.label, text: secret.value },
    { label: `${secret.label} (base64)`, text: bytes.toString('base64').replace(/=+$/, '') },
    { label: `${secret.label} (base64url)`, text: bytes.toString('base64url') },
    { label: `${secret.label} (hex)`, text: bytes.toString('hex') },
  ].filter((f) => f.text.length >= MIN_SECRET_LENGTH);
}

export async function scanLogs(
  files: readonly string[],
  secrets: readonly Secret[],
): Promise<Finding[]> {
  // One finding per secret and line, in the first form that matched.
  const literals = secrets.map(forms);
  const findings: Finding[] = [];
  for (const file of files) {
    const lines = createInterface({
      input: createReadStream(file, 'utf8'),
      crlfDelay: Infinity,
    });
    let n = 0;
    for await (const text of lines) {
      n += 1;
      for (const variants of literals) {
        const hit = variants.find((v) => text.includes(v.text));
        if (hit !== undefined) findings.push({ file, line: n, label: hit.label });
      }
      for (const p of SECRET_PATTERNS) {
        if (p.pattern.test(text)) findings.push({ file, line: n, label: p.label });
      }
    }
  }
  return findings;
}

/** The report of a failed scan: where and what, never the secret itself. */
export function describeFindings(findings: readonly Finding[]): string {
  const shown = findings.slice(0, 50).map((f) => `  ${f.file}:${f.line}: ${f.label}`);
  const more =
    findings.length > shown.length ? [`  ... and ${findings.length - shown.length} more`] : [];
  return [`${findings.length} secret(s) found in captured log lines:`, ...shown, ...more].join(
    '\n',
  );
}
