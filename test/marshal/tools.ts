/** Run tpm2-tools against a test swtpm, in a scratch folder, flushing transient objects. */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { SimTpm } from '../rig/sim.js';

const run = promisify(execFile);

export interface Tools {
  readonly dir: string;
  /** Run one tpm2-tools command (name without the `tpm2_` prefix); resolves with stdout. */
  tpm2(tool: string, ...args: string[]): Promise<string>;
  /** Flush transient objects and sessions: swtpm has 3 object slots and no resource manager. */
  flush(): Promise<void>;
  read(name: string): Promise<Buffer>;
  write(name: string, data: Uint8Array | string): Promise<string>;
  path(name: string): string;
  cleanup(): Promise<void>;
}

/**
 * The environment for tpm2-tools and scripts: without the ASan preload that the addon's
 * AddressSanitizer test job sets (see native/binding.gyp), and with quiet TSS logs.
 */
export function toolEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, TSS2_LOG: 'all+none', ...extra };
  delete env.LD_PRELOAD;
  return env;
}

export async function tpmTools(tpm: SimTpm): Promise<Tools> {
  const dir = await mkdtemp(join(tmpdir(), 'grantor-marshal-'));
  const env = toolEnv({ TPM2TOOLS_TCTI: tpm.tcti });
  const tpm2 = async (tool: string, ...args: string[]): Promise<string> => {
    const { stdout } = await run(`tpm2_${tool}`, args, { cwd: dir, env, maxBuffer: 1 << 22 });
    return stdout;
  };
  return {
    dir,
    tpm2,
    flush: async () => {
      await tpm2('flushcontext', '-t');
      await tpm2('flushcontext', '-s');
    },
    read: (name) => readFile(join(dir, name)),
    write: async (name, data) => {
      await writeFile(join(dir, name), data);
      return join(dir, name);
    },
    path: (name) => join(dir, name),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}
