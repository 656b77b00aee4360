/**
 * What the demo's stories share (examples/demo/demo.ts and the stories it tells in
 * enforcement.ts and auditor.ts): one JSON call to the appliance, the step a story prints,
 * and the codes read from an answer.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { AttesterError } from '../../attester/attester.js';
import { GrantorError } from '../../src/shared/errors.js';

/** Runs one step: prints `ok   <name> <line>` or `FAIL <name> <why>` (and stops the story). */
export type Step = (name: string, run: () => Promise<string>) => Promise<void>;

/** Polls `probe` every 50 ms until it answers, or `undefined` after `ms`. */
export async function until<T>(
  ms: number,
  probe: () => Promise<T | undefined>,
): Promise<T | undefined> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A step's failure: its message is the line printed after `FAIL`. */
export class StepFailed extends Error {}

export interface Issued {
  readonly grantId: string;
  readonly grant: string;
  readonly expiresAt: string;
  readonly auditSeq: number;
}

export interface Reply {
  readonly status: number;
  readonly body: Record<string, unknown>;
}

export function errorCode(body: Record<string, unknown>): string {
  const err = body.error as { code?: unknown } | undefined;
  return typeof err?.code === 'string' ? err.code : 'unknown';
}

export function reasonsOf(body: Record<string, unknown>): string[] {
  const err = body.error as { details?: { reasons?: unknown } } | undefined;
  const reasons = err?.details?.reasons;
  return Array.isArray(reasons) ? reasons.filter((r): r is string => typeof r === 'string') : [];
}

export function short(id: string): string {
  return id.length > 14 ? `${id.slice(0, 14)}…` : id;
}

export function describeError(e: unknown): string {
  if (e instanceof AttesterError) return `${e.code ?? `HTTP ${e.status}`}: ${e.message}`;
  if (e instanceof GrantorError) return `${e.code}: ${e.message}`;
  return e instanceof Error ? e.message : String(e);
}

/**
 * An auditor (or operator) credential: a bearer token, or a client certificate (mutual
 * TLS) with the files it was read from (the CLI reads them itself).
 */
export type AuditorCredential =
  | { readonly token: string }
  | {
      readonly cert: Buffer;
      readonly key: Buffer;
      readonly certFile?: string;
      readonly keyFile?: string;
    };

/**
 * One JSON call to the appliance. node:http(s) rather than fetch, so that a client
 * certificate can be presented; the server CA comes from the default store, which
 * includes NODE_EXTRA_CA_CERTS (what ./scripts/demo sets for an https appliance).
 */
export async function call(
  url: string,
  method: 'GET' | 'POST' | 'PUT',
  path: string,
  body?: unknown,
  auditor?: AuditorCredential,
): Promise<Reply> {
  const target = new URL(`${url}${path}`);
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body), 'utf8');
  const headers: Record<string, string> = {};
  if (payload !== undefined) headers['content-type'] = 'application/json';
  if (auditor !== undefined && 'token' in auditor)
    headers.authorization = `Bearer ${auditor.token}`;
  const tls =
    auditor !== undefined && 'cert' in auditor ? { cert: auditor.cert, key: auditor.key } : {};
  const { status, text } = await new Promise<{ status: number; text: string }>(
    (resolve, reject) => {
      const done = (res: IncomingMessage): void => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') });
        });
        res.on('error', reject);
      };
      const req =
        target.protocol === 'https:'
          ? httpsRequest(target, { method, headers, ...tls }, done)
          : httpRequest(target, { method, headers }, done);
      req.on('error', reject);
      req.end(payload);
    },
  );
  let parsed: unknown = {};
  try {
    parsed = text === '' ? {} : JSON.parse(text);
  } catch {
    parsed = { raw: text };
  }
  return {
    status,
    body: typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : {},
  };
}
