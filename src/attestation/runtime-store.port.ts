/** Where enrolled runtimes live (port; the LevelDB adapter is runtime-store.level.ts). */

export type RuntimeState = 'pending_activation' | 'pending_approval' | 'active' | 'revoked';

export interface LastAttestation {
  readonly attestationId: string;
  readonly verdict: 'trusted' | 'untrusted';
  readonly reasons: readonly string[];
  readonly at: string;
}

/** What the appliance verified about a runtime's EK at enrollment (issue 12). */
export interface EkIdentity {
  /** Hex SHA-256 of the EK's SubjectPublicKeyInfo (DER): `openssl pkey -pubin -outform der | sha256sum`. */
  readonly publicKeySha256: string;
  /** The EK certificate that chained, when one was presented. */
  readonly certificate: {
    readonly issuer: string;
    readonly serialNumber: string;
    /** Hex SHA-256 of each CA certificate of the verified chain, the leaf's issuer first. */
    readonly chainSha256: readonly string[];
  } | null;
  /** TPM manufacturer, model and version from the EK certificate's SAN. */
  readonly tpm: {
    readonly manufacturer: string;
    readonly model: string;
    readonly version: string;
  } | null;
}

/** An operator's release of a runtime's EK and name (they may enroll again). */
export interface ReleaseMark {
  readonly at: string;
  readonly by: string;
}

/**
 * The measured-boot verifier's incremental IMA state for one boot of a runtime
 * (measured-boot/measured-boot.ts): written only by the appliance, with the record, after
 * an attestation whose quote was authentic and whose IMA entries replayed to it. A state
 * that is absent or unreadable is lost, never trusted: the runtime then sends its list from
 * entry 0 and everything is verified again.
 */
export interface StoredImaState {
  /** The TPM boot it belongs to: the quote's counters when it was verified. */
  readonly resetCount: number;
  readonly restartCount: number;
  /** Entries verified: the next list must start at this index. */
  readonly count: number;
  /** bank -> PCR -> hex value the verified entries replay to. */
  readonly pcrs: Readonly<Record<string, Readonly<Record<string, string>>>>;
  /** Verdict reasons found in verified entries (they stay until the TPM resets). */
  readonly sticky: readonly string[];
  /** Hex SHA-256 of the IMA rules the reasons were found under (other rules: start again). */
  readonly rules: string;
}

export interface RuntimeRecord {
  readonly runtimeId: string;
  readonly name: string;
  /**
   * The labels policies see: assigned by an enrollment rule or an operator, never by the
   * runtime (`requestedLabels` is what it asked for).
   */
  readonly labels: Readonly<Record<string, string>>;
  /** The labels the runtime sent at enrollment: a request shown to operators, nothing more. */
  readonly requestedLabels: Readonly<Record<string, string>>;
  /** Who assigned `labels`: `rule:<name>`, `operator:<id>`, or null (nobody: none). */
  readonly labelSource: string | null;
  /** The state activation leads to: the matching rule's, else `pending_approval`. */
  readonly activationState: 'active' | 'pending_approval';
  readonly ek: EkIdentity | null;
  /** Set when an operator released the EK and name of this (revoked) runtime. */
  readonly released: ReleaseMark | null;
  readonly state: RuntimeState;
  /** True when the EK came with a certificate that chains to a trusted CA. */
  readonly ekCertified: boolean;
  /** Hex SHA-256 of the EK key material (uniqueness index). */
  readonly ekFingerprint: string;
  /** TPM2B_PUBLIC of the AK, base64. */
  readonly akPublic: string;
  /** AK name, hex. */
  readonly akName: string;
  /** Hex SHA-256 of the activation secret while pending activation; never the secret. */
  readonly secretDigest: string | null;
  readonly createdAt: string;
  /** Clock counters of this AK's last verified quote. */
  readonly counters: { readonly resetCount: number; readonly restartCount: number } | null;
  /**
   * The AK's qualified name under the EK it enrolled with (hex TPM2B_NAME): a quote's
   * qualifiedSigner must equal it. Absent in records from before: not checked.
   */
  readonly akQualifiedName?: string;
  readonly lastAttestation: LastAttestation | null;
  readonly lastQuote?: {
    readonly clock: string /* decimal uint64 ms */;
    readonly firmwareVersion: string; /* 16 hex chars */
  };
  /** Measured boot: the IMA entries verified in this boot (absent: none, or from before). */
  readonly imaState?: StoredImaState | null;
}

/**
 * A record as stored before issue 12 had only self-claimed `labels`: they become the
 * request, nothing is assigned, and an active runtime waits for an operator's approval
 * again (fail closed: an operator decides what it is).
 */
export function upgradeRecord(raw: RuntimeRecord): RuntimeRecord {
  const r: Omit<RuntimeRecord, 'requestedLabels'> & { requestedLabels?: unknown } = raw;
  if (r.requestedLabels !== undefined) return raw;
  return {
    ...r,
    requestedLabels: r.labels,
    labels: {},
    state: r.state === 'active' ? 'pending_approval' : r.state,
    labelSource: null,
    activationState: 'pending_approval',
    ek: null,
    released: null,
  };
}

export interface RuntimeStore {
  get(runtimeId: string): Promise<RuntimeRecord | undefined>;
  /** Up to `limit` runtimes in runtime id order, after `after` (exclusive). */
  scan(after: string | undefined, limit: number): Promise<RuntimeRecord[]>;
  /** The runtime that holds this EK, if any. */
  findByEk(ekFingerprint: string): Promise<string | undefined>;
  findByName(name: string): Promise<string | undefined>;
  /** Insert a new runtime and its EK and name index entries, atomically. */
  create(record: RuntimeRecord): Promise<void>;
  update(record: RuntimeRecord): Promise<void>;
  /** Delete a runtime and its index entries, atomically. */
  delete(record: RuntimeRecord): Promise<void>;
  /** Write the record and drop its EK and name index entries, atomically (a release). */
  release(record: RuntimeRecord): Promise<void>;
}
