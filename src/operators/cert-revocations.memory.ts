/** The client-certificate denylist in memory, for service and route tests. */
import type { CertificateRevocation, CertificateRevocationStore } from './cert-revocations.js';

export class MemoryCertificateRevocationStore implements CertificateRevocationStore {
  readonly #records = new Map<string, CertificateRevocation>();

  get(id: string): Promise<CertificateRevocation | undefined> {
    return Promise.resolve(this.#records.get(id));
  }

  put(record: CertificateRevocation): Promise<void> {
    this.#records.set(record.id, { ...record });
    return Promise.resolve();
  }

  list(): Promise<CertificateRevocation[]> {
    return Promise.resolve([...this.#records.values()]);
  }
}

export function createFakeCertificateRevocationStore(): MemoryCertificateRevocationStore {
  return new MemoryCertificateRevocationStore();
}
