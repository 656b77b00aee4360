/**
 * The parsing helpers every configuration section uses (src/shared/config.ts composes the
 * sections; each domain's config.ts reads its own GRANTOR_* names with these). A bad value
 * is a ConfigError naming its key.
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from './errors.js';

/** The settings as read: the environment layered over the GRANTOR_CONFIG file. */
export type Source = Readonly<Record<string, string | undefined>>;

/** A section's keys accepted in the file (camelCase), each with its environment name. */
export type FileKeys = Readonly<Record<string, string>>;

/** Where the shipped defaults live (policies, trust bundles), relative to the repository. */
const REPO_ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
export const shipped = (p: string): string =>
  // From dist/src/shared as well as from src/shared.
  resolve(REPO_ROOT.endsWith('/dist') ? resolve(REPO_ROOT, '..') : REPO_ROOT, p);

export function integer(
  src: Source,
  key: string,
  fallback: number,
  min: number,
  max: number,
): number {
  const raw = src[key];
  if (raw === undefined || raw.trim() === '') return fallback;
  const text = raw.trim();
  const v = /^0x[0-9a-f]+$/i.test(text) ? Number.parseInt(text, 16) : Number(text);
  if (!Number.isSafeInteger(v) || v < min || v > max) {
    throw new ConfigError(key, `expected an integer from ${min} to ${max}, got "${text}"`);
  }
  return v;
}

export function list(src: Source, key: string, fallback: readonly string[], cwd: string): string[] {
  const raw = src[key];
  const items = raw === undefined || raw.trim() === '' ? fallback : raw.split(',');
  return items
    .map((i) => i.trim())
    .filter((i) => i !== '')
    .map((i) => resolve(cwd, i));
}

export function bool(src: Source, key: string, fallback: boolean): boolean {
  const raw = src[key]?.trim().toLowerCase();
  if (raw === undefined || raw === '') return fallback;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw new ConfigError(key, 'expected true or false');
}

export function required(src: Source, key: string): string {
  const v = src[key];
  if (v === undefined || v.trim() === '') throw new ConfigError(key, 'is required');
  return v.trim();
}

export function optional(src: Source, key: string, fallback: string): string {
  const v = src[key];
  return v === undefined || v.trim() === '' ? fallback : v.trim();
}
