/**
 * tpm2-tools against one swtpm, from a scratch folder: every step flushes its transient
 * objects and sessions (swtpm has no resource manager and 3 object slots).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Tools {
  readonly dir: string;
  /** Run a tpm2 tool (name without the `tpm2_` prefix), then flush transients. */
  tpm2(tool: string, args: readonly string[]): Promise<string>;
  /** Run without flushing (for steps that need a session to survive). */
  raw(tool: string, args: readonly string[]): Promise<string>;
  read(name: string): Promise<Buffer>;
  write(name: string, data: Uint8Array | string): Promise<string>;
  path(name: string): string;
  close(): Promise<void>;
}

/**
 * `tpm2_createak` of an ECC P-256 ECDSA/SHA-256 AK under the EK at `ek` (default the RSA
 * EK): writes `ak.ctx`, `ak.pub` (TPM2B_PUBLIC) and `ak.name` in the tools' folder.
 */
export function createEccAk(tools: Tools, ek = '0x81010001'): Promise<string> {
  return tools.tpm2('createak', [
    ...['-C', ek, '-c', 'ak.ctx', '-G', 'ecc', '-g', 'sha256', '-s', 'ecdsa'],
    ...['-u', 'ak.pub', '-n', 'ak.name'],
  ]);
}

/** An RSA-2048 RSASSA/SHA-256 AK under the EK, in akrsa.ctx / akrsa.pub / akrsa.name. */
export function createRsaAk(tools: Tools, ek = '0x81010001'): Promise<string> {
  return tools.tpm2('createak', [
    ...['-C', ek, '-c', 'akrsa.ctx', '-G', 'rsa', '-g', 'sha256', '-s', 'rsassa'],
    ...['-u', 'akrsa.pub', '-n', 'akrsa.name'],
  ]);
}

/** What `tpm2_quote` wrote, base64 as the protocol carries it, PCR values by index (hex). */
export interface ToolsQuoteOutput {
  readonly quote: string;
  readonly signature: string;
  readonly pcrs: Record<string, Record<string, string>>;
}

/** `tpm2_quote` with `ak` over `bank:pcrs`, qualified with `qualifyingHex`. */
export async function toolsQuote(
  tools: Tools,
  ak: string,
  bank: string,
  pcrs: readonly number[],
  qualifyingHex: string,
): Promise<ToolsQuoteOutput> {
  await tools.tpm2('quote', [
    ...['-c', ak, '-l', `${bank}:${pcrs.join(',')}`, '-q', qualifyingHex, '-g', 'sha256'],
    ...['-m', 'quote.msg', '-s', 'quote.sig', '-o', 'quote.pcrs', '-F', 'values'],
  ]);
  const size = bank === 'sha1' ? 20 : 32;
  const values = await tools.read('quote.pcrs');
  return {
    quote: (await tools.read('quote.msg')).toString('base64'),
    signature: (await tools.read('quote.sig')).toString('base64'),
    pcrs: {
      [bank]: Object.fromEntries(
        pcrs.map((p, i) => [String(p), values.subarray(i * size, (i + 1) * size).toString('hex')]),
      ),
    },
  };
}

export async function tpm2Tools(tcti: string): Promise<Tools> {
  const dir = await mkdtemp(join(tmpdir(), 'grantor-att-'));
  const env = { ...process.env, TPM2TOOLS_TCTI: tcti };
  const raw = async (tool: string, args: readonly string[]): Promise<string> => {
    const { stdout } = await run(`tpm2_${tool}`, [...args], { cwd: dir, env });
    return stdout;
  };
  const flush = async (): Promise<void> => {
    await raw('flushcontext', ['-t']);
    await raw('flushcontext', ['-s']);
  };
  return {
    dir,
    raw,
    async tpm2(tool, args) {
      try {
        return await raw(tool, args);
      } finally {
        await flush();
      }
    },
    read: (name) => readFile(join(dir, name)),
    write: async (name, data) => {
      await writeFile(join(dir, name), data);
      return join(dir, name);
    },
    path: (name) => join(dir, name),
    close: () => rm(dir, { recursive: true, force: true }),
  };
}
