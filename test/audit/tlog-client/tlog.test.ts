/**
 * The independent tlog-tiles client (this folder, nothing from src/) against the real
 * appliance's `/v1/audit/tlog/0/` routes (startRealAppliance: swtpm anchor, the checkpoint key
 * in a SoftHSM2 token): checkpoint signature with the pinned key, inclusion of chosen entries
 * and consistency between two checkpoints from the tiles alone, each cross-checked with the
 * JSON proof routes; the refusals with their codes; tampered tiles and bundles named by the
 * client. The server's own refusal of a tile edited on disk is in tlog-disk.test.ts.
 */
import { execFile } from 'node:child_process';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRealAppliance, type RealAppliance } from '../../appliance/real.js';
import { TlogClient, TlogClientError, leafHashOf, tilePathOf, type Fetcher } from './client.js';
import { canonicalJson } from './jcs.js';
import { verifiedConsistency, verifiedInclusion } from './proofs.js';

const run = promisify(execFile);
const PREFIX = '/v1/audit/tlog/0';
let real: RealAppliance;
let auditor: string;
let operator: string;
let vkey: string;
let origin: string;

type Injected = Awaited<ReturnType<RealAppliance['server']['app']['inject']>>;

async function get(url: string, token?: string): Promise<Injected> {
  return real.server.app.inject({
    method: 'GET',
    url,
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
  });
}

const fetcher: Fetcher = async (path) => {
  const res = await get(`${PREFIX}/${path}`, auditor);
  return { status: res.statusCode, body: res.rawPayload };
};

async function append(count: number): Promise<void> {
  const audit = real.server.appliance?.audit;
  if (audit === undefined) throw new Error('no audit service');
  const base = audit.treeSize() ?? 0;
  for (let done = 0; done < count; done += 200) {
    await Promise.all(
      Array.from({ length: Math.min(200, count - done) }, (_, i) =>
        audit.append({
          type: 'grant.decision',
          subject: `rt_tlog${base + done + i}`,
          decision: 'allow',
          digest: createHash('sha256')
            .update(`tlog ${base + done + i}`)
            .digest('hex'),
        }),
      ),
    );
  }
}

function errorCode(res: Injected): string {
  return res.json<{ error: { code: string } }>().error.code;
}

beforeAll(async () => {
  real = await startRealAppliance('tlog');
  const operators = real.server.appliance?.operators;
  if (operators === undefined) throw new Error('the appliance did not start');
  auditor = (await operators.tokens.create({ role: 'auditor', actor: 'tlog-auditor' })).token;
  operator = (await operators.tokens.create({ role: 'operator', actor: 'tlog-operator' })).token;
  // The auditor pins the verifier key once (out of band in practice) and the origin.
  const v = (await get('/v1/audit/verifier')).json<{ noteVerifierKey: string; origin: string }>();
  vkey = v.noteVerifierKey;
  origin = v.origin;
  // Two full level-0 tiles and a partial one; a partial level-1 tile of width 2.
  await append(600 - (real.server.appliance?.audit.treeSize() ?? 0));
}, 300_000);

afterAll(async () => {
  await real.close();
});

describe('an independent tlog-tiles client against the real appliance', () => {
  it('fetches the checkpoint and verifies it with the pinned key', async () => {
    const res = await get(`${PREFIX}/checkpoint`);
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(res.headers['cache-control']).toBe('no-store');
    const client = new TlogClient(fetcher, vkey, origin);
    const { note, checkpoint } = await client.checkpoint();
    expect(checkpoint.size).toBe(600);
    // The same note as the JSON route's.
    expect((await get('/v1/audit/checkpoint')).json<{ note: string }>().note).toBe(note);
    // openssl agrees: the signature line (after the 4-byte key id) over the note text, by
    // the key of the pinned verifier key.
    const dir = await mkdtemp(join(tmpdir(), 'grantor-tlog-openssl-'));
    try {
      const split = note.lastIndexOf('\n\n');
      const sig = Buffer.from(note.slice(split + 2).split(' ')[2] ?? '', 'base64');
      const key = Buffer.from(vkey.split('+').slice(2).join('+'), 'base64').subarray(1);
      const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), key]);
      await writeFile(join(dir, 'text'), note.slice(0, split + 1));
      await writeFile(join(dir, 'sig'), sig.subarray(4));
      await writeFile(join(dir, 'pub.der'), spki);
      const { stdout } = await run(
        'openssl',
        ['pkeyutl', '-verify', '-pubin', '-keyform', 'DER', '-inkey', 'pub.der', '-rawin'].concat([
          '-in',
          'text',
          '-sigfile',
          'sig',
        ]),
        { cwd: dir },
      );
      expect(stdout).toContain('Signature Verified Successfully');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    // A verifier key whose id is not its own is refused; another key of the same name is
    // not the log's: its signature is ignored, so the note has none by the pinned key.
    expect(
      () => new TlogClient(fetcher, vkey.replace(/\+[0-9a-f]{8}\+/, '+00000000+'), origin),
    ).toThrow(/^vkey: key id does not match/);
    const name = vkey.slice(0, vkey.indexOf('+'));
    const raw = generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' });
    const data = Buffer.concat([Buffer.from([1]), raw.subarray(-32)]);
    const id = createHash('sha256').update(`${name}\n`).update(data).digest().subarray(0, 4);
    const stranger = `${name}+${id.toString('hex')}+${data.toString('base64')}`;
    await expect(new TlogClient(fetcher, stranger, origin).checkpoint()).rejects.toMatchObject({
      problem: 'note_signature',
    });
    const forged = note.replace(/\n600\n/, '\n601\n');
    expect(() => client.open(forged)).toThrow(TlogClientError);
    expect(() => new TlogClient(fetcher, vkey, 'grantor.other/log').open(note)).toThrow(
      /checkpoint_origin/,
    );
  });

  it('verifies the inclusion of chosen entries from tiles and entry bundles', async () => {
    const client = new TlogClient(fetcher, vkey, origin);
    const { checkpoint } = await client.checkpoint();
    await client.useCheckpoint(checkpoint);
    for (const seq of [0, 1, 255, 256, 511, 512, 599]) {
      // The entry as an auditor reads it, its hash recomputed here (RFC 8785 JCS).
      const res = await get(`/v1/audit/entries?from=${seq}&limit=1`, auditor);
      const [entry] = res.json<{ entries: Record<string, unknown>[] }>().entries;
      if (entry === undefined) throw new Error(`no entry ${seq}`);
      const { hash, ...rest } = entry;
      const entryHash = createHash('sha256').update(canonicalJson(rest)).digest();
      expect(entryHash.toString('hex')).toBe(hash);
      // The bundle's entry is those bytes, and hashes to the level-0 tile's leaf.
      const bundle = await client.entryBundle(Math.floor(seq / 256));
      expect(bundle[seq % 256]?.equals(entryHash)).toBe(true);
      const path = await verifiedInclusion(client, checkpoint, seq, leafHashOf(entryHash));
      // The JSON route, computed by the server from the same tiles, agrees.
      const json = (
        await get(`/v1/audit/proof/inclusion?seq=${seq}&size=${checkpoint.size}`)
      ).json<{
        path: string[];
      }>();
      expect(path).toEqual(json.path);
    }
  });

  it('verifies consistency between two checkpoints from the tiles', async () => {
    const client = new TlogClient(fetcher, vkey, origin);
    const first = await client.checkpoint();
    await append(300);
    const second = await client.checkpoint();
    const old = client.open(first.note);
    expect(second.checkpoint.size).toBe(old.size + 300);
    await client.useCheckpoint(second.checkpoint);
    const path = await verifiedConsistency(client, old, second.checkpoint);
    const { size } = second.checkpoint;
    const json = (await get(`/v1/audit/proof/consistency?from=${old.size}&to=${size}`)).json<{
      path: string[];
    }>();
    expect(path).toEqual(json.path);
    // The partial tiles of the older size are still served (prefixes of today's tiles).
    await client.useCheckpoint(old);
    expect((await client.inclusionProof(5)).length).toBeGreaterThan(0);
  });

  it('caches full tiles for good, partial ones and the checkpoint not at all', async () => {
    const full = await get(`${PREFIX}/${tilePathOf(0, 0)}`);
    expect(full.statusCode).toBe(200);
    expect(full.headers['content-type']).toBe('application/octet-stream');
    expect(full.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(full.rawPayload.length).toBe(256 * 32);
    const partial = await get(`${PREFIX}/${tilePathOf(1, 0, 2)}`);
    expect(partial.statusCode).toBe(200);
    expect(partial.headers['cache-control']).toBe('no-store');
    const bundle = await get(`${PREFIX}/${tilePathOf('entries', 0)}`, auditor);
    expect(bundle.headers['cache-control']).toBe('private, max-age=31536000, immutable');
    expect(bundle.rawPayload.length).toBe(256 * 34);
  });

  it('serves entry bundles to auditors only', async () => {
    const path = `${PREFIX}/${tilePathOf('entries', 0)}`;
    expect(errorCode(await get(path))).toBe('unauthenticated');
    const forbidden = await get(path, operator);
    expect(forbidden.statusCode).toBe(403);
    expect(errorCode(forbidden)).toBe('forbidden');
  });

  it.each([
    ['tile/64/000', 'audit_tile_path_invalid', 400],
    ['tile/01/000', 'audit_tile_path_invalid', 400],
    ['tile/0/1', 'audit_tile_path_invalid', 400],
    ['tile/0/x000/001', 'audit_tile_path_invalid', 400],
    ['tile/0/000.p/0', 'audit_tile_path_invalid', 400],
    ['tile/0/000.p/256', 'audit_tile_path_invalid', 400],
    ['tile/0/000.p/007', 'audit_tile_path_invalid', 400],
    ['tile/0/000.p', 'audit_tile_path_invalid', 400],
    ['tile/entries', 'audit_tile_path_invalid', 400],
    [`tile/0/${'x001/'.repeat(40)}001`, 'audit_tile_path_invalid', 400],
    [`tile/entries/${'x001/'.repeat(40)}001`, 'audit_tile_path_invalid', 400],
    ['tile/0/x001/000', 'audit_tile_beyond_tree', 404],
    ['tile/2/000.p/1', 'audit_tile_beyond_tree', 404],
    ['tile/entries/009', 'audit_tile_beyond_tree', 404],
    ['tile/0/003', 'audit_tile_width_mismatch', 404],
    ['tile/0/003.p/255', 'audit_tile_width_mismatch', 404],
    ['tile/1/000', 'audit_tile_width_mismatch', 404],
  ])('refuses %s with %s', async (path, code, status) => {
    const res = await get(`${PREFIX}/${path}`, auditor);
    expect(res.statusCode).toBe(status);
    expect(errorCode(res)).toBe(code);
    expect(res.headers['cache-control']).toBe('no-store');
  });

  it('says how wide a tile is when asked for more, and refuses unknown periods', async () => {
    const size = (await get('/v1/audit/checkpoint')).json<{ treeSize: number }>().treeSize;
    const res = await get(`${PREFIX}/tile/0/003`);
    expect(res.json<{ error: { details: { width: number } } }>().error.details.width).toBe(
      size % 256,
    );
    const other = await get('/v1/audit/tlog/1/checkpoint');
    expect(other.statusCode).toBe(404);
    expect(errorCode(other)).toBe('audit_period_not_found');
    expect(errorCode(await get('/v1/audit/tlog/1/tile/0/000'))).toBe('audit_period_not_found');
    const malformed = await get('/v1/audit/tlog/01/checkpoint');
    expect(malformed.statusCode).toBe(400);
    expect(errorCode(malformed)).toBe('bad_request');
  });

  describe('tampering seen by the client', () => {
    /** The real answers, with `edit` applied to the body of `target`. */
    const tampered =
      (target: string, edit: (b: Buffer) => Buffer): Fetcher =>
      async (path) => {
        const res = await fetcher(path);
        return path === target ? { ...res, body: edit(Buffer.from(res.body)) } : res;
      };
    const flip = (at: number) => (b: Buffer) => {
      b[at] = (b[at] ?? 0) ^ 1;
      return b;
    };

    it('names a full tile that does not hash to its parent', async () => {
      const client = new TlogClient(tampered(tilePathOf(0, 1), flip(100)), vkey, origin);
      await client.useCheckpoint((await client.checkpoint()).checkpoint);
      await expect(client.inclusionProof(300)).rejects.toThrow(
        /tile_hash: tile\/0\/001 does not hash to its entry in tile\/1\/000/,
      );
    });

    it('names edge tiles that do not make the checkpoint root', async () => {
      const plain = new TlogClient(fetcher, vkey, origin);
      const { checkpoint } = await plain.checkpoint();
      const count = Math.floor(checkpoint.size / 256);
      const edge = tilePathOf(0, count, checkpoint.size % 256);
      const client = new TlogClient(tampered(edge, flip(0)), vkey, origin);
      await expect(client.useCheckpoint(checkpoint)).rejects.toMatchObject({
        problem: 'tile_hash',
      });
      const short = new TlogClient(
        tampered(edge, (b) => b.subarray(32)),
        vkey,
        origin,
      );
      await expect(short.useCheckpoint(checkpoint)).rejects.toMatchObject({
        problem: 'tile_size',
      });
    });

    it('names an entry of a bundle that does not hash to its leaf', async () => {
      const bundle = tilePathOf('entries', 1);
      const client = new TlogClient(tampered(bundle, flip(2 + 34 * 7)), vkey, origin);
      await client.useCheckpoint((await client.checkpoint()).checkpoint);
      await expect(client.entryBundle(1)).rejects.toThrow(
        /entry_hash: tile\/entries\/001: entry 263 does not hash to its leaf/,
      );
      const cut = new TlogClient(
        tampered(bundle, (b) => b.subarray(0, 100)),
        vkey,
        origin,
      );
      await cut.useCheckpoint((await cut.checkpoint()).checkpoint);
      await expect(cut.entryBundle(1)).rejects.toMatchObject({ problem: 'bundle_format' });
    });
  });
});
