/**
 * The lifetime of a loaded PKCS#11 module, shared by every adapter instance on the same
 * module in this process: one dlopen, one C_Initialize, re-initialised after a fault, and
 * finalised only when the last instance lets go and no native call is in flight.
 */
import pkcs11js from 'pkcs11js';

/** A PKCS#11 return value name (`CKR_...`) for a thrown pkcs11js error, if it is one. */
export function pkcs11ReturnValue(e: unknown): string | undefined {
  if (e instanceof pkcs11js.Pkcs11Error)
    return e.message.startsWith('CKR_') ? e.message : `CKR_0x${e.code.toString(16)}`;
  return undefined;
}

export function pkcs11Code(e: unknown): number | undefined {
  return e instanceof pkcs11js.Pkcs11Error ? e.code : undefined;
}

/**
 * PKCS#11 state is per process and per module: every adapter instance on the same module
 * shares one loaded library, one C_Initialize, and the count of native calls in flight
 * (the module is only finalised when none is).
 */
export class Library {
  readonly p = new pkcs11js.PKCS11();
  refs = 0;
  initialized = false;
  generation = 0;
  #inFlight = 0;
  #idleWaiters: (() => void)[] = [];

  constructor(readonly path: string) {
    this.p.load(path);
  }

  initialize(): void {
    if (this.initialized) return;
    try {
      this.p.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
    } catch (e) {
      if (pkcs11Code(e) !== pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED) throw e;
    }
    this.initialized = true;
  }

  finalize(): void {
    this.initialized = false;
    try {
      this.p.C_Finalize();
    } catch {
      // Already finalised or the module is in a bad state: initialize() will tell.
    }
  }

  /** Re-initialise the module: every session and handle of the previous generation dies. */
  reinitialize(): void {
    this.finalize();
    this.generation += 1;
    this.initialize();
  }

  enter(): void {
    this.#inFlight += 1;
  }

  leave(): void {
    this.#inFlight -= 1;
    if (this.#inFlight === 0) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  waitIdle(): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise((res) => {
      this.#idleWaiters.push(res);
    });
  }
}

const libraries = new Map<string, Library>();

export function acquireLibrary(path: string): Library {
  let lib = libraries.get(path);
  if (lib === undefined) {
    lib = new Library(path);
    libraries.set(path, lib);
  }
  lib.refs += 1;
  return lib;
}

export function releaseLibrary(lib: Library): void {
  lib.refs -= 1;
  if (lib.refs === 0) {
    lib.finalize();
    libraries.delete(lib.path);
  }
}
