/**
 * The attester library and CLI (attester/) against swtpm through our TPM facade, talking
 * HTTP to the appliance's routes: enroll -> activate -> challenge -> attest -> trusted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Attester } from '../../attester/attester.js';
import { main, parsePcrs } from '../../attester/cli.js';
import { openTpm } from '../../src/tpm/tpm.native.js';
import { listenHarness, startHarness, type Harness } from './harness.js';

let h: Harness;
let url: string;

beforeAll(async () => {
  h = await startHarness();
  url = await listenHarness(h);
}, 120_000);

afterAll(async () => {
  await h.close();
});

describe('attester', () => {
  it('library: enrolls, activates with our addon, and attests as trusted with a session key', async () => {
    const tpm = await openTpm({ tcti: h.tpm.tcti });
    try {
      const attester = new Attester(tpm, { url });
      expect(await attester.enroll('lib-runtime', { team: 'payments' })).toBe('active');
      const result = await attester.attest();
      expect(result.verdict).toBe('trusted');
      const session = h.svc.sessionFor(result.attestationId);
      expect(session?.runtimeId).toBe(attester.state.runtimeId);
      const mine = attester.sessionPrivateKey?.export({ format: 'jwk' });
      expect(session?.sessionKey.x).toBe(mine?.x);
      // The AK is reused: a second attestation from a new Attester with the saved state.
      const again = await new Attester(tpm, { url }, attester.state).attest();
      expect(again.verdict).toBe('trusted');
      expect(h.svc.sessionFor(result.attestationId)).toBeUndefined();
    } finally {
      await tpm.close();
    }
  });

  it('CLI: refuses bad arguments and PCR selections', async () => {
    expect(await main(['nonsense'])).toBe(2);
    expect(() => parsePcrs('md5:0')).toThrow();
    expect(() => parsePcrs('sha256:99')).toThrow();
    expect(parsePcrs('sha256:0,7+sha1:0')).toEqual([
      { bank: 'sha256', pcrs: [0, 7] },
      { bank: 'sha1', pcrs: [0] },
    ]);
  });

  it('CLI: the same EK cannot enroll twice', async () => {
    const state = h.tools.path('cli-state.json');
    await expect(
      main(['enroll', '--url', url, '--tcti', h.tpm.tcti, '--state', state, '--name', 'cli']),
    ).rejects.toMatchObject({ code: 'ek_already_enrolled' });
  });
});
