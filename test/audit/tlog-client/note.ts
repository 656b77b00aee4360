/**
 * C2SP signed-note (Ed25519) and tlog-checkpoint, written from the specifications
 * (c2sp.org/signed-note, c2sp.org/tlog-checkpoint) for the independent tlog-tiles client.
 * Imports nothing from src/: a second reading of the same texts, not the server's code.
 */
import { createHash, createPublicKey, verify } from 'node:crypto';

export class TlogClientError extends Error {
  constructor(
    /** What did not verify, e.g. `note_signature`, `tile_hash`, `inclusion`. */
    readonly problem: string,
    message: string,
  ) {
    super(`${problem}: ${message}`);
    this.name = 'TlogClientError';
  }
}

export interface Vkey {
  readonly name: string;
  readonly id: Buffer;
  readonly publicKey: Buffer;
}

export interface Checkpoint {
  readonly origin: string;
  readonly size: number;
  readonly root: Buffer;
  readonly extensions: readonly string[];
}

const STRICT_B64 = /^[A-Za-z0-9+/]*={0,2}$/;

function b64(text: string, problem: string): Buffer {
  const bytes = Buffer.from(text, 'base64');
  // Node decodes leniently: insist the text is exactly the canonical encoding.
  if (!STRICT_B64.test(text) || bytes.toString('base64') !== text) {
    throw new TlogClientError(problem, 'not canonical base64');
  }
  return bytes;
}

/** `<name>+<hex key id>+<base64(0x01 ‖ key)>`; the id is recomputed and must match. */
export function parseVkey(text: string): Vkey {
  const first = text.indexOf('+');
  const second = text.indexOf('+', first + 1);
  if (first <= 0 || second < 0) throw new TlogClientError('vkey', 'want name+id+key');
  const name = text.slice(0, first);
  const idHex = text.slice(first + 1, second);
  const data = b64(text.slice(second + 1), 'vkey');
  if (/[\s+]/u.test(name) || !/^[0-9a-f]{8}$/.test(idHex)) {
    throw new TlogClientError('vkey', 'bad name or key id');
  }
  if (data.length !== 33 || data[0] !== 0x01) throw new TlogClientError('vkey', 'not Ed25519');
  const publicKey = data.subarray(1);
  const id = createHash('sha256')
    .update(Buffer.concat([Buffer.from(`${name}\n`, 'utf8'), data]))
    .digest()
    .subarray(0, 4);
  if (id.toString('hex') !== idHex) throw new TlogClientError('vkey', 'key id does not match');
  return { name, id, publicKey };
}

/**
 * Verify a signed note with one known key and return its text. Signatures by unknown keys
 * (name or id differ) are ignored; a known key's failing signature rejects the note.
 */
export function openNote(note: string, key: Vkey): string {
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0009\u000b-\u001f]/.test(note)) {
    throw new TlogClientError('note_format', 'control character in the note');
  }
  const split = note.lastIndexOf('\n\n');
  if (split < 0 || !note.endsWith('\n')) throw new TlogClientError('note_format', 'no signatures');
  const text = note.slice(0, split + 1);
  const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), key.publicKey]);
  const publicKey = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  let verified = false;
  for (const line of note.slice(split + 2, -1).split('\n')) {
    const m = /^\u2014 (\S+) (\S+)$/u.exec(line);
    if (m === null) throw new TlogClientError('note_format', `bad signature line ${line}`);
    const sig = b64(m[2] ?? '', 'note_format');
    if (m[1] !== key.name || sig.length < 4 || !sig.subarray(0, 4).equals(key.id)) continue;
    if (!verify(null, Buffer.from(text, 'utf8'), publicKey, sig.subarray(4))) {
      throw new TlogClientError('note_signature', `signature by ${key.name} does not verify`);
    }
    verified = true;
  }
  if (!verified) throw new TlogClientError('note_signature', `no signature by ${key.name}`);
  return text;
}

/** The checkpoint body: origin, decimal size, base64 root, then opaque extension lines. */
export function parseCheckpointText(text: string, origin: string): Checkpoint {
  const lines = text.slice(0, -1).split('\n');
  const [first, sizeText = '', rootText = '', ...extensions] = lines;
  if (first !== origin) throw new TlogClientError('checkpoint_origin', `origin is ${first}`);
  if (!/^(0|[1-9][0-9]*)$/.test(sizeText) || !Number.isSafeInteger(Number(sizeText))) {
    throw new TlogClientError('checkpoint_format', 'bad tree size');
  }
  const root = b64(rootText, 'checkpoint_format');
  if (root.length !== 32) throw new TlogClientError('checkpoint_format', 'root is not 32 bytes');
  if (extensions.some((l) => l === '')) {
    throw new TlogClientError('checkpoint_format', 'empty extension line');
  }
  return { origin: first, size: Number(sizeText), root, extensions };
}
