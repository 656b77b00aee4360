/**
 * The anchor's write policy on a real swtpm and a real SoftHSM2 token: indices defined with
 * TPMA_NV_POLICYWRITE and authPolicy = PolicySigned(the HSM's anchor write key), every write
 * in a policy session signed by the HSM over the TPM's nonce. Cross-checked with tpm2-tools.
 * The issue-13 "same length" case: the owner redefines both indices with the same attributes
 * and policy (same names, so the pin holds) and replays a forged chain: the TPM refuses every
 * write without the HSM key; a redefinition with another policy changes the names.
 */
import { execFile } from 'node:child_process';
import { createHmac, generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AnchorWriteKey } from '../../src/audit/anchor-key.port.js';
import { Pkcs11AnchorKey } from '../../src/audit/anchor-key.pkcs11.js';
import {
  anchorKeyName,
  anchorKeyTpmPublic,
  anchorPolicySigner,
  anchorWritePolicy,
} from '../../src/audit/anchor-policy.js';
import { GENESIS_EXTEND, extendDigest } from '../../src/audit/anchor.port.js';
import {
  ANCHOR_POLICY_NV_ATTRIBUTES,
  TpmAuditAnchor,
  expectedAnchorNames,
  provisionTpmAnchor,
  type TpmAnchorConfig,
} from '../../src/audit/anchor.tpm.js';
import { TPM_ALG } from '../../src/tpm/marshal/constants.js';
import { marshalTpm2bPublic } from '../../src/tpm/marshal/public.js';
import { marshalTpmtSignature } from '../../src/tpm/marshal/signature.js';
import { nvIndexName, nvSpacePublic, nvWriteCpHash } from '../../src/tpm/marshal/nv.js';
import type { NvPolicyWrite, PolicySigner } from '../../src/tpm/tpm.port.js';
import { TPM_RC, TpmError } from '../../src/tpm/errors.js';
import { NativeTpm } from '../../src/tpm/tpm.native.js';
import { provisionSimHsm, startSimTpm, type SimHsm, type SimTpm } from '../rig/sim.js';
import { TPM_CC_NV_EXTEND, commandOf, startBusProxy } from './bus-proxy.js';
import { AK_TEMPLATE, event, logAt, tempDir, tearDownTpm } from './helpers.js';

const run = promisify(execFile);
const INDICES = { counterIndex: 0x01500030, extendIndex: 0x01500031 };
const NT_COUNTER = 0x1;
const NT_EXTEND = 0x4;
/** TPM_RC_AUTH_UNAVAILABLE: the index has no password path for writes. */
const RC_AUTH_UNAVAILABLE = 0x12f;
/** TPM_RC_SIGNATURE: PolicySigned's signature does not verify over its aHash. */
const RC_SIGNATURE = 0x09b;
/** TPM_RC_NV_AUTHORIZATION: the owner cannot write an index without TPMA_NV_OWNERWRITE. */
const RC_NV_AUTHORIZATION = 0x149;

const TPM_CC_START_AUTH_SESSION = 0x176;

/**
 * An NV_Extend command (one policy session) with other data and a command HMAC recomputed
 * for it: HMAC-SHA256 with an empty key over cpHash ‖ nonceCaller ‖ nonceTPM ‖ attributes
 * (TPM 2.0 Part 1, 19.6.5), what a bus interposer can do for an unsalted, unbound session.
 */
function swapExtendData(command: Buffer, name: Buffer, nonceTpm: Buffer): Buffer {
  let at = 10 + 8 + 4 + 4; // header, authHandle, nvIndex, authorizationSize, session handle
  const nonceCaller = command.subarray(at + 2, at + 2 + command.readUInt16BE(at));
  at += 2 + nonceCaller.length;
  const attributes = command.subarray(at, at + 1);
  const hmacAt = at + 1;
  const hmacSize = command.readUInt16BE(hmacAt);
  const params = hmacAt + 2 + hmacSize;
  const data = Buffer.from(command.subarray(params + 2));
  data[0] = (data[0] ?? 0) ^ 0xff;
  const cpHash = nvWriteCpHash(name, { kind: 'extend', data });
  const hmac = createHmac('sha256', Buffer.alloc(0))
    .update(Buffer.concat([cpHash, nonceCaller, nonceTpm, attributes]))
    .digest();
  const out = Buffer.concat([
    command.subarray(0, hmacAt),
    Buffer.from([0, 32]),
    hmac,
    command.subarray(params, params + 2),
    data,
  ]);
  out.writeUInt32BE(out.length, 2);
  out.writeUInt32BE(command.readUInt32BE(18) + 32 - hmacSize, 18);
  return out;
}

/** The extend index's name before its first write: the pinned one minus TPMA_NV_WRITTEN. */
function unwrittenName(index: number): Buffer {
  return nvIndexName(
    nvSpacePublic({
      index,
      nameAlg: 'sha256',
      attributes: ANCHOR_POLICY_NV_ATTRIBUTES | (NT_EXTEND << 4),
      authPolicy: anchorWritePolicy(point),
      dataSize: 32,
    }),
  );
}

let sim: SimTpm;
let tpm: NativeTpm;
let hsm: SimHsm;
let key: Pkcs11AnchorKey;
let work: string;
let config: TpmAnchorConfig;
let point: Buffer;
let missingKey: unknown;

/** A P-256 key outside the HSM: what an attacker without the HSM key has. */
function softwareKey(): { key: AnchorWriteKey; signer: PolicySigner } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const jwk = publicKey.export({ format: 'jwk' });
  const raw = Buffer.concat([
    Buffer.from([4]),
    Buffer.from(jwk.x ?? '', 'base64url'),
    Buffer.from(jwk.y ?? '', 'base64url'),
  ]);
  const key: AnchorWriteKey = {
    publicPoint: () => Promise.resolve(raw),
    signDigests: () => Promise.reject(new Error('not used')),
    close: () => Promise.resolve(),
  };
  // A valid PolicySigned signature by this key: ECDSA-SHA-256 over nonceTPM ‖ 0 ‖ cpHashA.
  const signer: PolicySigner = {
    public: marshalTpm2bPublic(anchorKeyTpmPublic(raw)),
    sign: (requests) =>
      Promise.resolve(
        requests.map(({ nonceTpm, cpHashA }) => {
          const rs = cryptoSign('sha256', Buffer.concat([nonceTpm, Buffer.alloc(4), cpHashA]), {
            key: privateKey,
            dsaEncoding: 'ieee-p1363',
          });
          return marshalTpmtSignature({
            sigAlg: TPM_ALG.ECDSA,
            hash: TPM_ALG.SHA256,
            r: rs.subarray(0, 32),
            s: rs.subarray(32),
          });
        }),
      ),
  };
  return { key, signer };
}

beforeAll(async () => {
  work = await tempDir('grantor-write-policy-');
  hsm = await provisionSimHsm(join(work, 'hsm'), 'grantor-write-policy');
  process.env.SOFTHSM2_CONF = hsm.conf;
  sim = await startSimTpm();
  tpm = await NativeTpm.open(sim.tcti);
  const token = { modulePath: hsm.module, tokenLabel: hsm.tokenLabel, pin: hsm.pin };
  // The running appliance only finds the key; `grantor provision` creates it.
  const finder = new Pkcs11AnchorKey(token);
  missingKey = await finder.publicPoint().then(
    () => undefined,
    (e: unknown) => e,
  );
  await finder.close();
  key = new Pkcs11AnchorKey(token, { create: true });
  const pin = await provisionTpmAnchor(tpm, INDICES, { writeKey: key });
  point = await key.publicPoint();
  const pinnedWritePolicy = Buffer.from(pin.writeKey?.policy ?? '', 'hex');
  const base = {
    ...INDICES,
    pinnedNames: pin.names,
    pinnedGenesis: pin.genesisCounter,
    akTemplate: AK_TEMPLATE,
    writeKey: key,
    pinnedWritePolicy,
  };
  const pinnedAkPublic = await new TpmAuditAnchor(tpm, base).akPublic();
  config = pinnedAkPublic === undefined ? base : { ...base, pinnedAkPublic };
});

afterAll(() =>
  tearDownTpm(
    async () => {
      await key.close();
      await tpm.close();
    },
    [sim],
    work,
  ),
);

describe('anchor write policy', () => {
  it('defines both indices policy-written, with the HSM key in their names', async () => {
    const policy = anchorWritePolicy(point);
    expect(config.pinnedNames).toEqual(expectedAnchorNames(INDICES, policy));
    // Not the owner-written names: the policy is part of the name.
    expect(config.pinnedNames).not.toEqual(expectedAnchorNames(INDICES));
    expect(ANCHOR_POLICY_NV_ATTRIBUTES & 0x2).toBe(0); // no ownerWrite
    expect(ANCHOR_POLICY_NV_ATTRIBUTES & 0x4).toBe(0); // no authWrite
    expect(ANCHOR_POLICY_NV_ATTRIBUTES & 0x8).toBe(0x8); // policyWrite
    const state = await new TpmAuditAnchor(tpm, config).read();
    expect(state.extendValue.equals(GENESIS_EXTEND)).toBe(true);
  });

  it('refuses a key store whose anchor key is not the pinned one', async () => {
    const other = new TpmAuditAnchor(tpm, { ...config, writeKey: softwareKey().key });
    await expect(other.checkPinned()).rejects.toMatchObject({
      code: 'audit_rollback_detected',
      details: { reason: 'anchor_key_mismatch' },
    });
    await expect(new TpmAuditAnchor(tpm, config).checkPinned()).resolves.toBeUndefined();
  });

  it('refuses a token without the anchor key (found by label)', () => {
    expect(missingKey).toMatchObject({
      code: 'hsm_key_missing',
      details: { reason: 'anchor_key_missing' },
    });
  });

  it('writes through PolicySigned sessions signed by the HSM, batch after batch', async () => {
    const opened = await logAt(join(work, 'log'), tpm, config);
    await opened.log.provision();
    await opened.log.open();
    await opened.log.append(event(0));
    await Promise.all(Array.from({ length: 9 }, (_, i) => opened.log.append(event(1 + i))));
    const head = opened.log.head();
    const state = await new TpmAuditAnchor(tpm, config).read();
    expect(head.batches).toBeGreaterThan(1);
    expect(state.counter).toBe((config.pinnedGenesis ?? 0n) + BigInt(head.batches));
    expect(state.extendValue.equals(head.extendValue)).toBe(true);
    await opened.close();
  });

  it('binds each signature to its command: NV_Extend data rewritten on the bus is refused', async () => {
    const before = await new TpmAuditAnchor(tpm, config).read();
    await tpm.close();
    let loaded: string | undefined;
    const proxy = await startBusProxy(sim.port);
    const proxied = await NativeTpm.open(proxy.tcti);
    try {
      // The interposer lets PolicySigned pass and swaps the data of the NV_Extend after it.
      // The policy session is unbound and unsalted and needs no authValue: its command HMAC
      // has an empty key, so the interposer recomputes it over its own command (nonceTPM
      // from the StartAuthSession answer it saw). Only cpHashA in the signature stops it.
      let nonceTpm = Buffer.alloc(0);
      proxy.rewrite = (command, response) => {
        if (commandOf(command, 0).cc === TPM_CC_START_AUTH_SESSION && response.length > 16) {
          nonceTpm = Buffer.from(response.subarray(16, 16 + response.readUInt16BE(14)));
        }
        return response;
      };
      proxy.rewriteCommand = (command) =>
        commandOf(command, 0).cc === TPM_CC_NV_EXTEND
          ? swapExtendData(command, Buffer.from(config.pinnedNames.extend, 'hex'), nonceTpm)
          : command;
      const err = await proxied
        .nvWriteByPolicySigned(
          INDICES.extendIndex,
          {
            kind: 'extend',
            data: extendDigest(Buffer.alloc(32), Buffer.from('honest batch')),
            name: Buffer.from(config.pinnedNames.extend, 'hex'),
          },
          anchorPolicySigner(key, point),
        )
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(proxy.rewritten).toBe(1);
      expect(err).toBeInstanceOf(TpmError);
      expect((err as TpmError).is(TPM_RC.POLICY_FAIL), String(err)).toBe(true);
    } finally {
      await proxied.close();
      await proxy.close();
      // The refused command did not spend its policy session: the write must flush it.
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        TPM2TOOLS_TCTI: sim.tcti,
        TSS2_LOG: 'all+none',
      };
      delete env.LD_PRELOAD;
      loaded = (await run('tpm2_getcap', ['handles-loaded-session'], { env })).stdout.trim();
      tpm = await NativeTpm.open(sim.tcti);
    }
    expect(loaded).toBe('');
    // Nothing was written.
    const after = await new TpmAuditAnchor(tpm, config).read();
    expect(after.extendValue.equals(before.extendValue)).toBe(true);
    expect(after.counter).toBe(before.counter);
  });

  it('refuses a signature over another command: other data, another name, an increment', async () => {
    const written = Buffer.from(config.pinnedNames.extend, 'hex');
    const data = extendDigest(Buffer.alloc(32), Buffer.from('honest batch'));
    const other = extendDigest(Buffer.alloc(32), Buffer.from('forged batch'));
    const hsm = anchorPolicySigner(key, point);
    /** The HSM key, signing the cpHash of `signed` whatever the write presented. */
    const signingOther = (signed: Buffer): PolicySigner => ({
      public: hsm.public,
      sign: (requests) => hsm.sign(requests.map((r) => ({ ...r, cpHashA: signed }))),
    });
    const before = await new TpmAuditAnchor(tpm, config).read();
    const cases: [PolicySigner, NvPolicyWrite, number][] = [
      // Signed for other data: the signature does not verify over this command's cpHash.
      [
        signingOther(nvWriteCpHash(written, { kind: 'extend', data: other })),
        { kind: 'extend', data, name: written },
        RC_SIGNATURE,
      ],
      // Signed for an increment of the counter, presented for an extend.
      [
        signingOther(
          nvWriteCpHash(Buffer.from(config.pinnedNames.counter, 'hex'), { kind: 'increment' }),
        ),
        { kind: 'extend', data, name: written },
        RC_SIGNATURE,
      ],
      // A consistent signature for a name the index does not have (the unwritten one, as a
      // lying NV_ReadPublic could report): the TPM's own cpHash differs.
      [hsm, { kind: 'extend', data, name: unwrittenName(INDICES.extendIndex) }, TPM_RC.POLICY_FAIL],
    ];
    for (const [signer, write, rc] of cases) {
      const err = await tpm.nvWriteByPolicySigned(INDICES.extendIndex, write, signer).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(TpmError);
      expect((err as TpmError).is(rc), `${String(err)} is not rc 0x${rc.toString(16)}`).toBe(true);
    }
    const after = await new TpmAuditAnchor(tpm, config).read();
    expect(after.extendValue.equals(before.extendValue)).toBe(true);
  });

  it('tpm2-tools computes the same key name and policy digest, and reads the attributes', async () => {
    await tpm.close();
    try {
      const env = { ...process.env, TPM2TOOLS_TCTI: sim.tcti };
      const pub = join(work, 'anchor-key.pub');
      await writeFile(pub, marshalTpm2bPublic(anchorKeyTpmPublic(point)));
      const name = join(work, 'anchor-key.name');
      const ctx = join(work, 'anchor-key.ctx');
      await run('tpm2_loadexternal', ['-C', 'n', '-u', pub, '-c', ctx, '-n', name], { env });
      expect((await readFile(name)).equals(anchorKeyName(point))).toBe(true);
      // A trial session: the TPM computes the digest itself (the signature is not checked).
      const session = join(work, 'trial.ctx');
      const sig = join(work, 'any.sig');
      const signer = anchorPolicySigner(key, point);
      const [any] = await signer.sign([{ nonceTpm: Buffer.alloc(32), cpHashA: Buffer.alloc(32) }]);
      await writeFile(sig, any ?? Buffer.alloc(0));
      const digest = join(work, 'policy.bin');
      await run('tpm2_startauthsession', ['-S', session], { env });
      await run('tpm2_policysigned', ['-S', session, '-c', ctx, '-s', sig, '-L', digest], {
        env,
      });
      await run('tpm2_flushcontext', [session], { env });
      expect((await readFile(digest)).equals(anchorWritePolicy(point))).toBe(true);
      for (const [index, nt] of [
        [INDICES.counterIndex, NT_COUNTER],
        [INDICES.extendIndex, NT_EXTEND],
      ] as const) {
        const out = (await run('tpm2_nvreadpublic', [`0x${index.toString(16)}`], { env })).stdout;
        const value = /attributes:[\s\S]*?value: (0x[0-9a-fA-F]+)/.exec(out)?.[1];
        expect(Number(value)).toBe((ANCHOR_POLICY_NV_ATTRIBUTES | (nt << 4) | (1 << 29)) >>> 0);
        expect(out).toMatch(/policywrite\|nt=0x[14]\|ownerread\|authread\|no_da\|written/);
        expect(out).not.toMatch(/ownerwrite|authwrite/);
        expect(out.toLowerCase()).toContain(anchorWritePolicy(point).toString('hex'));
      }
      // Reads still need no owner: tpm2_nvread with the index's empty auth.
      await run(
        'tpm2_nvread',
        [
          '-C',
          `0x${INDICES.extendIndex.toString(16)}`,
          '-s',
          '32',
          `0x${INDICES.extendIndex.toString(16)}`,
        ],
        { env },
      );
    } finally {
      tpm = await NativeTpm.open(sim.tcti);
    }
  });
});

describe('the same-length rewrite (issue 13, item 3)', () => {
  const tpmRc = (rc: number) => (err: unknown) => err instanceof TpmError && err.is(rc);

  it('an owner redefining both indices with the same policy cannot write them without the HSM', async () => {
    const policy = anchorWritePolicy(point);
    for (const index of [INDICES.counterIndex, INDICES.extendIndex]) await tpm.nvUndefine(index);
    const redefine = (index: number, nt: number, size: number) =>
      tpm.nvDefine({
        index,
        nameAlg: 'sha256',
        attributes: ANCHOR_POLICY_NV_ATTRIBUTES | (nt << 4),
        authPolicy: policy,
        dataSize: size,
      });
    await redefine(INDICES.counterIndex, NT_COUNTER, 8);
    await redefine(INDICES.extendIndex, NT_EXTEND, 32);
    const forgedRoot = extendDigest(Buffer.alloc(32), Buffer.from('forged batch'));
    // The owner (empty auth), the index's own password, another key's PolicySigned: refused.
    const owner = { auth: { by: 'owner' as const } };
    const byIndex = { auth: { by: 'index' as const } };
    const forged = softwareKey().signer;
    // The names as the TPM has them now (defined, not written): what a write is bound to.
    const extendName = (await tpm.nvReadPublic(INDICES.extendIndex)).name;
    const counterName = (await tpm.nvReadPublic(INDICES.counterIndex)).name;
    const attempts: [() => Promise<unknown>, number][] = [
      [() => tpm.nvExtend(INDICES.extendIndex, forgedRoot, owner), RC_NV_AUTHORIZATION],
      [() => tpm.nvIncrement(INDICES.counterIndex, owner), RC_NV_AUTHORIZATION],
      [() => tpm.nvExtend(INDICES.extendIndex, forgedRoot, byIndex), RC_AUTH_UNAVAILABLE],
      [() => tpm.nvIncrement(INDICES.counterIndex, byIndex), RC_AUTH_UNAVAILABLE],
      [
        () =>
          tpm.nvWriteByPolicySigned(
            INDICES.extendIndex,
            { kind: 'extend', data: forgedRoot, name: extendName },
            forged,
          ),
        TPM_RC.POLICY_FAIL,
      ],
      [
        () =>
          tpm.nvWriteByPolicySigned(
            INDICES.counterIndex,
            { kind: 'increment', name: counterName },
            forged,
          ),
        TPM_RC.POLICY_FAIL,
      ],
    ];
    for (const [attempt, rc] of attempts) {
      const err = await attempt().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(TpmError);
      expect(tpmRc(rc)(err), `${String(err)} is not rc 0x${rc.toString(16)}`).toBe(true);
    }
    // The names are the pinned ones, minus TPMA_NV_WRITTEN: nothing could be written.
    const name = (await tpm.nvReadPublic(INDICES.extendIndex)).name.toString('hex');
    expect(name).not.toBe(config.pinnedNames.extend);
    // The HSM key can (the appliance's own provisioning resumes on such indices).
    const signer = anchorPolicySigner(key, point);
    await tpm.nvWriteByPolicySigned(
      INDICES.extendIndex,
      { kind: 'extend', data: forgedRoot, name: extendName },
      signer,
    );
    expect((await tpm.nvReadPublic(INDICES.extendIndex)).name.toString('hex')).toBe(
      config.pinnedNames.extend,
    );
  });

  it('a redefinition with another policy changes the names: pinned_nv_name_mismatch', async () => {
    const attacker = softwareKey();
    const policy = anchorWritePolicy(await attacker.key.publicPoint());
    await tpm.nvUndefine(INDICES.extendIndex);
    await tpm.nvDefine({
      index: INDICES.extendIndex,
      nameAlg: 'sha256',
      attributes: ANCHOR_POLICY_NV_ATTRIBUTES | (NT_EXTEND << 4),
      authPolicy: policy,
      dataSize: 32,
    });
    // The attacker's own key writes the attacker's index...
    await tpm.nvWriteByPolicySigned(
      INDICES.extendIndex,
      {
        kind: 'extend',
        data: Buffer.alloc(32),
        name: (await tpm.nvReadPublic(INDICES.extendIndex)).name,
      },
      attacker.signer,
    );
    // ...whose name is not the pinned one.
    const opened = await logAt(join(work, 'log'), tpm, config);
    await expect(opened.log.open()).rejects.toMatchObject({
      code: 'audit_rollback_detected',
      details: { reason: 'pinned_nv_name_mismatch' },
    });
    await opened.close();
  });
});
