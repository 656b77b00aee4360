/**
 * The real appliance in a child process (crash-child.ts, bundled once), over its own swtpm
 * (audit anchor), its own SoftHSM2 token and a state folder, plus a second swtpm for the
 * runtime, driven by tpm2-tools, and a small fetch client for the runtime protocol
 * (enroll, activate, attest, session-mode grant requests). Used by the grants crash test
 * and by bench/abuse.ts. The child can be killed and started again on the same store, TPM
 * and token; its attested sessions live in its memory, so each start needs a new attest.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { qualifyingData, type EcSessionJwk } from '../../src/attestation/index.js';
import { loadConfig } from '../../src/shared/config.js';
import { provisionOnTpm, startApplianceRig } from '../rig/appliance.js';
import { activateWithTools, readPcrs } from '../attestation/harness.js';
import { createEccAk, tpm2Tools, type Tools } from '../attestation/tools.js';
import { buildCrashChild, type CrashChild } from '../audit/crash-harness.js';
import { registerSecret } from '../rig/secrets.js';
import { repoRoot, startSimTpm, type SimHsm, type SimTpm, writeEkTrust } from '../rig/sim.js';
import { newSessionKeyPair, PCRS, type SessionKeyPair } from './rig.js';

export interface CrashRig {
  readonly dir: string;
  readonly applianceTpm: SimTpm;
  readonly runtimeTpm: SimTpm;
  readonly hsm: SimHsm;
  readonly tools: Tools;
  /** The appliance's environment (GRANTOR_*), as ./scripts/start would set it. */
  readonly env: Readonly<Record<string, string>>;
  /** The appliance's LevelDB folder (open it only while no child runs). */
  readonly dbPath: string;
  readonly anchor: { readonly counterIndex: number; readonly extendIndex: number };
  /** Start an appliance child on this rig. */
  start(options?: { onSpawn?: (child: ApplianceChild) => void }): Promise<ApplianceChild>;
  close(): Promise<void>;
}

export interface ApplianceChild {
  readonly process: ChildProcess;
  /** Resolves with the port once listening; rejects if the child dies or fails first. */
  readonly listening: Promise<number>;
  /** Resolves when the process has exited (with its signal, if any). */
  readonly exited: Promise<NodeJS.Signals | null>;
  /** The last 4 KiB of stderr (pino JSON lines). */
  stderr(): string;
  kill(): Promise<NodeJS.Signals | null>;
  /** SIGTERM: a clean stop. */
  stop(): Promise<NodeJS.Signals | null>;
}

/**
 * Provision everything once: the appliance rig (its TPM, token and folder), a runtime TPM
 * and its EK CA, the reference policy, the audit anchor.
 */
export async function startCrashRig(
  options: { logLevel?: string; env?: Record<string, string> } = {},
): Promise<CrashRig> {
  const appliance = await startApplianceRig('grant-crash');
  const { dir, hsm } = appliance;
  const opened: (() => Promise<void>)[] = [() => appliance.destroy()];
  const close = async (): Promise<void> => {
    for (const c of opened.reverse()) await c().catch(() => undefined);
  };
  try {
    const runtimeTpm = await startSimTpm();
    opened.push(() => runtimeTpm.destroy());
    const tools = await tpm2Tools(runtimeTpm.tcti);
    opened.push(() => tools.close());
    // The runtime TPM's EK CA, and every runtime of this rig works as the support team's
    // (the operators' rule says so).
    await writeEkTrust(dir, runtimeTpm.ekCaPem, { team: 'support' });
    const values = await readPcrs(tools, PCRS);
    await writeFile(
      join(dir, 'reference.json'),
      JSON.stringify({
        name: 'swtpm-crash',
        catchAll: true,
        pcrs: { sha256: Object.fromEntries(PCRS.map((p, i) => [String(p), [values[i]]])) },
        allowReset: true,
      }),
    );
    const env: Record<string, string> = appliance.env({
      GRANTOR_APPLIANCE_ID: 'grantor-crash',
      GRANTOR_LISTEN: '127.0.0.1:0',
      GRANTOR_REFERENCE_POLICIES: join(dir, 'reference.json'),
      GRANTOR_LOG_LEVEL: options.logLevel ?? 'warn',
      SOFTHSM2_CONF: hsm.conf,
      ...options.env,
    });
    const config = loadConfig(env, repoRoot);
    // Provisioning runs here and creates the anchor write key in this rig's own token
    // (startApplianceRig named it in this process's SOFTHSM2_CONF, read at C_Initialize).
    await provisionOnTpm(config);
    const child: CrashChild = await buildCrashChild(join(repoRoot, 'test/grants/crash-child.ts'));
    opened.push(() => child.dispose());
    return {
      dir,
      applianceTpm: appliance.tpm,
      runtimeTpm,
      hsm,
      tools,
      env,
      dbPath: join(config.stateDir, 'db'),
      anchor: {
        counterIndex: config.audit.nvCounterIndex,
        extendIndex: config.audit.nvExtendIndex,
      },
      start: (o = {}) => {
        const c = spawnChild(child, env);
        o.onSpawn?.(c);
        return Promise.resolve(c);
      },
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

function spawnChild(child: CrashChild, env: Readonly<Record<string, string>>): ApplianceChild {
  const proc = spawn(child.command, [...child.args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4096);
  });
  const exited = new Promise<NodeJS.Signals | null>((resolve) => {
    proc.once('exit', (_code, signal) => {
      resolve(signal);
    });
  });
  const listening = new Promise<number>((resolve, reject) => {
    let buffered = '';
    proc.stdout.on('data', (d: Buffer) => {
      buffered += d.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const [kind, ...rest] = buffered.slice(0, nl).split(' ');
        buffered = buffered.slice(nl + 1);
        if (kind === 'listening') resolve(Number(rest[0]));
        else if (kind === 'error') reject(new Error(`appliance child: ${rest.join(' ')}`));
      }
    });
    void exited.then((signal) => {
      reject(new Error(`appliance child exited (${signal ?? 'no signal'}) before listening`));
    });
  });
  // Whoever does not wait for it (a kill during start-up) must not see an unhandled rejection.
  listening.catch(() => undefined);
  const signal = async (s: NodeJS.Signals): Promise<NodeJS.Signals | null> => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(s);
    return exited;
  };
  return {
    process: proc,
    listening,
    exited,
    stderr: () => stderr,
    kill: () => signal('SIGKILL'),
    stop: () => signal('SIGTERM'),
  };
}

// --- the runtime side, over HTTP ---------------------------------------------------------

export interface Answer {
  readonly status: number;
  readonly body: string;
  /** The body parsed (the caller names the shape it expects). */
  readonly json: () => unknown;
}

export async function call(
  base: string,
  method: 'GET' | 'POST',
  path: string,
  payload?: unknown,
): Promise<Answer> {
  const res = await fetch(`${base}${path}`, {
    method,
    ...(payload === undefined
      ? {}
      : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(payload) }),
  });
  const body = await res.text();
  return { status: res.status, body, json: () => JSON.parse(body) as unknown };
}

export interface HttpRuntime {
  readonly runtimeId: string;
  /** The AK's persistent handle in the runtime TPM. */
  readonly ak: string;
}

/** Create an ECC AK (persistent at `handle`), enroll with the RSA EK certificate, activate. */
export async function enrollOverHttp(
  base: string,
  tools: Tools,
  name: string,
  labels: Record<string, string>,
  handle = '0x81010003',
): Promise<HttpRuntime> {
  await createEccAk(tools);
  await tools.tpm2('evictcontrol', ['-C', 'o', '-c', 'ak.ctx', handle]);
  await tools.tpm2('nvread', ['0x01c00002', '-o', 'ek.der']);
  const res = await call(base, 'POST', '/v1/runtimes', {
    name,
    labels,
    ekCertificate: (await tools.read('ek.der')).toString('base64'),
    akPublic: (await tools.read('ak.pub')).toString('base64'),
  });
  if (res.status !== 201) throw new Error(`enroll: ${res.status} ${res.body}`);
  const e = res.json() as { runtimeId: string; credentialBlob: string; encryptedSecret: string };
  const secret = await activateWithTools(tools, e.credentialBlob, e.encryptedSecret, handle);
  registerSecret(`activation secret (${e.runtimeId})`, secret.toString('base64'));
  const act = await call(base, 'POST', `/v1/runtimes/${e.runtimeId}/activation`, {
    secret: secret.toString('base64'),
  });
  if (act.status !== 200) throw new Error(`activate: ${act.status} ${act.body}`);
  return { runtimeId: e.runtimeId, ak: handle };
}

export interface HttpSession {
  readonly attestationId: string;
  readonly key: SessionKeyPair;
}

/** Challenge, tpm2_quote over the new session key, attestation: a live session. */
export async function attestOverHttp(
  base: string,
  tools: Tools,
  rt: HttpRuntime,
): Promise<HttpSession> {
  const key = newSessionKeyPair();
  registerSecret('session private key (d)', key.privateKey.export({ format: 'jwk' }).d ?? '');
  const ch = await call(base, 'POST', `/v1/runtimes/${rt.runtimeId}/challenges`);
  if (ch.status !== 201) throw new Error(`challenge: ${ch.status} ${ch.body}`);
  const nonce = (ch.json() as { nonce: string }).nonce;
  const jwk: EcSessionJwk = key.jwk;
  const qd = qualifyingData(Buffer.from(nonce, 'base64'), jwk).toString('hex');
  await tools.tpm2('quote', [
    ...['-c', rt.ak, '-l', `sha256:${PCRS.join(',')}`, '-q', qd, '-g', 'sha256'],
    ...['-m', 'quote.msg', '-s', 'quote.sig', '-o', 'quote.pcrs', '-F', 'values'],
  ]);
  const values = await tools.read('quote.pcrs');
  const res = await call(base, 'POST', `/v1/runtimes/${rt.runtimeId}/attestations`, {
    nonce,
    quote: (await tools.read('quote.msg')).toString('base64'),
    signature: (await tools.read('quote.sig')).toString('base64'),
    pcrs: {
      sha256: Object.fromEntries(
        PCRS.map((p, i) => [String(p), values.subarray(i * 32, (i + 1) * 32).toString('hex')]),
      ),
    },
    sessionKey: jwk,
  });
  if (res.status !== 201) throw new Error(`attest: ${res.status} ${res.body}`);
  const v = res.json() as { attestationId: string; verdict: string };
  if (v.verdict !== 'trusted') throw new Error(`attest: ${res.body}`);
  return { attestationId: v.attestationId, key };
}
