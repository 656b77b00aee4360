/**
 * The audit log's configuration section (GRANTOR_AUDIT_*): the TPM anchor's NV indices and
 * pinned names, anchoring pace, log periods, the anchor pin file and the export bound.
 * Composed into AppConfig by src/shared/config.ts.
 */
import { resolve } from 'node:path';
import { integer, optional, type FileKeys, type Source } from '../shared/config-parse.js';
import { ConfigError } from '../shared/errors.js';

export interface AuditSettings {
  /** NV index handles of the anchor (TPM_NT_COUNTER and TPM_NT_EXTEND). */
  readonly nvCounterIndex: number;
  readonly nvExtendIndex: number;
  /** Pinned NV names (hex); by default the names our attribute choice gives these indices. */
  readonly pinnedNames: { readonly counter: string; readonly extend: string } | undefined;
  /** Least time between two anchors (NV write pairs); default 1000 ms (NV wear). */
  readonly minAnchorIntervalMs: number;
  /**
   * Length of a log period in hours (GRANTOR_AUDIT_PERIOD_HOURS, docs/audit.md "Log
   * periods"); absent (0): a new period only on an operator's demand.
   */
  readonly periodHours?: number;
  /**
   * The anchor pin file (NV names and genesis counter) that `grantor provision` writes and
   * every start reads (src/audit/anchor-pin.ts); operator configuration, kept outside the
   * state folder. Default: `<state dir>.anchor-pin.json`, beside the state folder.
   */
  readonly pinFile: string;
  /**
   * Most entries one evidence bundle covers (GET /v1/audit/export and the local `grantor
   * audit export`); a larger range is 422 audit_export_range_too_large. Default 100,000.
   */
  readonly exportMaxEntries: number;
}

export const AUDIT_FILE_KEYS: FileKeys = {
  auditNvCounter: 'GRANTOR_AUDIT_NV_COUNTER',
  auditNvExtend: 'GRANTOR_AUDIT_NV_EXTEND',
  auditNvNames: 'GRANTOR_AUDIT_NV_NAMES',
  auditMinAnchorIntervalMs: 'GRANTOR_AUDIT_MIN_ANCHOR_INTERVAL_MS',
  auditPeriodHours: 'GRANTOR_AUDIT_PERIOD_HOURS',
  auditAnchorPin: 'GRANTOR_AUDIT_ANCHOR_PIN',
  auditExportMaxEntries: 'GRANTOR_AUDIT_EXPORT_MAX_ENTRIES',
};

/** 0 (the default) is no scheduled log period: none in the settings. */
function auditPeriod(hours: number): { periodHours?: number } {
  return hours === 0 ? {} : { periodHours: hours };
}

function nvIndex(src: Source, key: string, fallback: number): number {
  const v = integer(src, key, fallback, 0x01000000, 0x01ffffff);
  // Owner-defined indices only: 0x01000000-0x013fffff (TPM_HT_NV_INDEX, owner range) and
  // 0x01500000-0x01bfffff (TCG-registered and vendor ranges are refused).
  if (v >= 0x01c00000)
    throw new ConfigError(key, 'is in the TCG-reserved NV range (EK certificates)');
  return v;
}

function pinnedNames(src: Source): AuditSettings['pinnedNames'] {
  const raw = src.GRANTOR_AUDIT_NV_NAMES;
  if (raw === undefined || raw.trim() === '') return undefined;
  const m = /^\s*(000b[0-9a-f]{64})\s*,\s*(000b[0-9a-f]{64})\s*$/i.exec(raw);
  if (m === null) {
    throw new ConfigError(
      'GRANTOR_AUDIT_NV_NAMES',
      'expected "COUNTER_NAME_HEX,EXTEND_NAME_HEX" (SHA-256 NV names)',
    );
  }
  return { counter: (m[1] ?? '').toLowerCase(), extend: (m[2] ?? '').toLowerCase() };
}

/** `stateDir`: the resolved state folder, beside which the anchor pin lives by default. */
export function auditSettings(src: Source, cwd: string, stateDir: string): AuditSettings {
  return {
    nvCounterIndex: nvIndex(src, 'GRANTOR_AUDIT_NV_COUNTER', 0x01500020),
    nvExtendIndex: nvIndex(src, 'GRANTOR_AUDIT_NV_EXTEND', 0x01500021),
    pinnedNames: pinnedNames(src),
    // Production default for a hardware TPM (NV wear, docs/audit.md); swtpm rigs set 0.
    minAnchorIntervalMs: integer(src, 'GRANTOR_AUDIT_MIN_ANCHOR_INTERVAL_MS', 1000, 0, 60_000),
    ...auditPeriod(integer(src, 'GRANTOR_AUDIT_PERIOD_HOURS', 0, 0, 87_600)),
    pinFile: resolve(cwd, optional(src, 'GRANTOR_AUDIT_ANCHOR_PIN', `${stateDir}.anchor-pin.json`)),
    // A bundle streams (bounded memory at any size); the bound is per call, for the TPM
    // and disk time one call may take.
    exportMaxEntries: integer(
      src,
      'GRANTOR_AUDIT_EXPORT_MAX_ENTRIES',
      // The default of src/audit/bundle.ts DEFAULT_MAX_BUNDLE_ENTRIES (config.test.ts).
      100_000,
      1,
      100_000_000,
    ),
  };
}
