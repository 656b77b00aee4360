/**
 * The policy engine's configuration section (GRANTOR_POLICY_*): the policy set, its schema,
 * watching and worker threads. Composed into AppConfig by src/shared/config.ts.
 */
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import {
  bool,
  integer,
  optional,
  shipped,
  type FileKeys,
  type Source,
} from '../shared/config-parse.js';

export interface PolicySettings {
  readonly dir: string;
  readonly schemaFile: string;
  readonly watch: boolean;
  /** Worker threads deciding grant requests (0: in the event loop). */
  readonly threads: number;
}

export const POLICY_FILE_KEYS: FileKeys = {
  policyDir: 'GRANTOR_POLICY_DIR',
  policySchema: 'GRANTOR_POLICY_SCHEMA',
  policyWatch: 'GRANTOR_POLICY_WATCH',
  policyThreads: 'GRANTOR_POLICY_THREADS',
};

export function policySettings(src: Source, cwd: string): PolicySettings {
  return {
    dir: resolve(cwd, optional(src, 'GRANTOR_POLICY_DIR', shipped('policies/default'))),
    schemaFile: resolve(
      cwd,
      optional(src, 'GRANTOR_POLICY_SCHEMA', shipped('policies/grantor.cedarschema')),
    ),
    watch: bool(src, 'GRANTOR_POLICY_WATCH', true),
    // One core stays with the event loop; a one-core machine decides in it.
    threads: integer(src, 'GRANTOR_POLICY_THREADS', Math.min(4, availableParallelism() - 1), 0, 64),
  };
}
