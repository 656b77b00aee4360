/** Where enrolled runtimes live (port; the LevelDB adapter is runtime-store.level.ts). */

export type RuntimeState = 'pending_activation' | 'pending_approval' | 'active' | 'revoked';

export interface LastAttestation {
  readonly attestationId: string;
  readonly verdict: 'trusted' | 'untrusted';
  readonly reasons: readonly string[];
  readonly at: string;
}

export interface RuntimeRecord {
  readonly runtimeId: string;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
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
}

export interface RuntimeStore {
  get(runtimeId: string): Promise<RuntimeRecord | undefined>;
  /** The runtime that holds this EK, if any. */
  findByEk(ekFingerprint: string): Promise<string | undefined>;
  findByName(name: string): Promise<string | undefined>;
  /** Insert a new runtime and its EK and name index entries, atomically. */
  create(record: RuntimeRecord): Promise<void>;
  update(record: RuntimeRecord): Promise<void>;
  /** Delete a runtime and its index entries, atomically. */
  delete(record: RuntimeRecord): Promise<void>;
}

/** In-memory store for fast service tests (the LevelDB adapter passes the same contract). */
export class MemoryRuntimeStore implements RuntimeStore {
  readonly #runtimes = new Map<string, RuntimeRecord>();
  readonly #ek = new Map<string, string>();
  readonly #names = new Map<string, string>();

  get(runtimeId: string): Promise<RuntimeRecord | undefined> {
    return Promise.resolve(this.#runtimes.get(runtimeId));
  }

  findByEk(ekFingerprint: string): Promise<string | undefined> {
    return Promise.resolve(this.#ek.get(ekFingerprint));
  }

  findByName(name: string): Promise<string | undefined> {
    return Promise.resolve(this.#names.get(name));
  }

  create(record: RuntimeRecord): Promise<void> {
    this.#runtimes.set(record.runtimeId, record);
    this.#ek.set(record.ekFingerprint, record.runtimeId);
    this.#names.set(record.name, record.runtimeId);
    return Promise.resolve();
  }

  update(record: RuntimeRecord): Promise<void> {
    this.#runtimes.set(record.runtimeId, record);
    return Promise.resolve();
  }

  delete(record: RuntimeRecord): Promise<void> {
    this.#runtimes.delete(record.runtimeId);
    this.#ek.delete(record.ekFingerprint);
    this.#names.delete(record.name);
    return Promise.resolve();
  }
}
