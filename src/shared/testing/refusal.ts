/** For tests that assert each rejection path by its code. */
import { GrantorError } from '../errors.js';

/** The code of the GrantorError `p` rejects with; fails if it resolves or rejects otherwise. */
export async function refusalCode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (e instanceof GrantorError) return e.code;
    throw e;
  }
  throw new Error('expected a refusal');
}

/** The code of the GrantorError `fn` throws; fails if it returns or throws anything else. */
export function thrownCode(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof GrantorError) return e.code;
    throw e;
  }
  throw new Error('expected a rejection');
}
