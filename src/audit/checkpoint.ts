/**
 * Checkpoints: a C2SP tlog-checkpoint body (origin, tree size, base64 root, then extension
 * lines for the TPM anchor) signed as a C2SP signed note with an Ed25519 key.
 *
 *   <origin>\n<size>\n<base64 root>\nnv-counter <decimal>\nnv-extend <base64>\n
 *   \n
 *   — <key name> <base64(key id ‖ signature)>\n
 *
 * Key id = first 4 bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key); the verifier key is
 * `<name>+<key id hex>+<base64(0x01 ‖ public key)>`. Pure functions, used by the service and
 * by the offline verifier.
 */
import { createHash, createPublicKey, timingSafeEqual, verify } from 'node:crypto';
import { NoteMalformedError, NoteSignatureError, VerifierKeyError } from './errors.js';

/** The Ed25519 key that signs checkpoints (held in the HSM in production). */
export interface CheckpointSigner {
  /** The note key name; use the log origin. No whitespace, no '+'. */
  readonly keyName: string;
  /** 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array;
  /** 64-byte Ed25519 signature over `message`. */
  sign(message: Uint8Array): Promise<Uint8Array>;
}

export interface CheckpointBody {
  readonly origin: string;
  readonly size: number;
  readonly root: Buffer;
  readonly counter: bigint;
  readonly extendValue: Buffer;
}

const ED25519 = 0x01;
const EM_DASH = '\u2014';
const NAME = /^[^\s+]+$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

function checkName(name: string): void {
  if (!NAME.test(name)) throw new VerifierKeyError('note key name must have no spaces or "+"');
}

export function noteKeyId(name: string, publicKey: Uint8Array): Buffer {
  checkName(name);
  return createHash('sha256')
    .update(name, 'utf8')
    .update(Buffer.from([0x0a, ED25519]))
    .update(publicKey)
    .digest()
    .subarray(0, 4);
}

export function noteVerifierKey(name: string, publicKey: Uint8Array): string {
  if (publicKey.length !== 32) throw new VerifierKeyError('Ed25519 public key must be 32 bytes');
  const keyData = Buffer.concat([Buffer.from([ED25519]), publicKey]).toString('base64');
  return `${name}+${noteKeyId(name, publicKey).toString('hex')}+${keyData}`;
}

export interface VerifierKey {
  readonly name: string;
  readonly keyId: Buffer;
  readonly publicKey: Buffer;
}

export function parseVerifierKey(text: string): VerifierKey {
  const parts = text.trim().split('+');
  // The base64 key data may itself contain '+': name and id are the first two fields.
  const [name, idHex] = parts;
  const data = parts.slice(2).join('+');
  if (name === undefined || idHex === undefined || data === '' || !NAME.test(name)) {
    throw new VerifierKeyError('verifier key must be <name>+<key id hex>+<base64 key data>');
  }
  if (!/^[0-9a-f]{8}$/.test(idHex) || !BASE64.test(data)) {
    throw new VerifierKeyError('verifier key: bad key id or key data');
  }
  const keyData = Buffer.from(data, 'base64');
  if (keyData.length !== 33 || keyData[0] !== ED25519) {
    throw new VerifierKeyError('verifier key: only Ed25519 (type 0x01, 32 bytes) is supported');
  }
  const publicKey = keyData.subarray(1);
  const keyId = Buffer.from(idHex, 'hex');
  if (!keyId.equals(noteKeyId(name, publicKey))) {
    throw new VerifierKeyError('verifier key: key id does not match name and key');
  }
  return { name, keyId, publicKey };
}

export function formatCheckpoint(body: CheckpointBody): string {
  if (body.origin === '' || body.origin.includes('\n')) {
    throw new NoteMalformedError('origin must be one non-empty line');
  }
  return (
    `${body.origin}\n${body.size}\n${body.root.toString('base64')}\n` +
    `nv-counter ${body.counter}\nnv-extend ${body.extendValue.toString('base64')}\n`
  );
}

export function parseCheckpoint(text: string): CheckpointBody {
  if (!text.endsWith('\n')) throw new NoteMalformedError('checkpoint must end with a newline');
  const lines = text.slice(0, -1).split('\n');
  const [origin, sizeText, rootText, ...extensions] = lines;
  if (origin === undefined || origin === '' || sizeText === undefined || rootText === undefined) {
    throw new NoteMalformedError('checkpoint needs origin, size and root lines');
  }
  if (!/^(0|[1-9]\d{0,15})$/.test(sizeText)) throw new NoteMalformedError('bad tree size');
  const size = Number(sizeText);
  if (!Number.isSafeInteger(size)) throw new NoteMalformedError('bad tree size');
  if (!BASE64.test(rootText)) throw new NoteMalformedError('bad root hash');
  const root = Buffer.from(rootText, 'base64');
  if (root.length !== 32) throw new NoteMalformedError('root hash must be 32 bytes');
  let counter: bigint | undefined;
  let extendValue: Buffer | undefined;
  for (const line of extensions) {
    const m = /^(nv-counter|nv-extend) (\S+)$/.exec(line);
    if (m === null) continue; // other extension lines are opaque to us
    if (m[1] === 'nv-counter' && /^\d{1,20}$/.test(m[2] ?? '')) counter = BigInt(m[2] ?? '0');
    if (m[1] === 'nv-extend' && BASE64.test(m[2] ?? '')) {
      extendValue = Buffer.from(m[2] ?? '', 'base64');
    }
  }
  if (counter === undefined || extendValue?.length !== 32) {
    throw new NoteMalformedError('checkpoint lacks the nv-counter and nv-extend lines');
  }
  return { origin, size, root, counter, extendValue };
}

/**
 * Sign `text` (ending in a newline) as a C2SP signed note. The signer's key may be rotated
 * while a signature is in flight: the key id is that of the public key seen both before and
 * after signing (keys only ever move forward, so the same key on both sides is the one that
 * signed), and a signature that straddled a rotation is made again.
 */
export async function signNote(text: string, signer: CheckpointSigner): Promise<string> {
  if (!text.endsWith('\n')) throw new NoteMalformedError('note text must end with a newline');
  for (let attempt = 0; attempt < 3; attempt++) {
    const publicKey = Buffer.from(signer.publicKey);
    const signature = Buffer.from(await signer.sign(Buffer.from(text, 'utf8')));
    if (signature.length !== 64) throw new NoteSignatureError('signer returned a bad signature');
    if (!publicKey.equals(signer.publicKey)) continue;
    const keyId = noteKeyId(signer.keyName, publicKey);
    const sig = Buffer.concat([keyId, signature]).toString('base64');
    return `${text}\n${EM_DASH} ${signer.keyName} ${sig}\n`;
  }
  throw new NoteSignatureError('the checkpoint key changed during every signing attempt');
}

/**
 * Verify a signed note with one verifier key; returns the signed text. Other keys'
 * signature lines are ignored; a note without a valid line for this key is rejected.
 */
export function verifyNote(note: string, key: VerifierKey): string {
  const split = note.lastIndexOf('\n\n');
  if (split < 0 || !note.endsWith('\n'))
    throw new NoteMalformedError('note has no signature block');
  const text = note.slice(0, split + 1);
  const sigLines = note.slice(split + 2, -1).split('\n');
  const publicKey = createPublicKey({
    key: Buffer.concat([SPKI_ED25519_PREFIX, key.publicKey]),
    format: 'der',
    type: 'spki',
  });
  for (const line of sigLines) {
    const m = new RegExp(`^${EM_DASH} (\\S+) (\\S+)$`).exec(line);
    if (m === null) throw new NoteMalformedError('malformed signature line');
    if (m[1] !== key.name || !BASE64.test(m[2] ?? '')) continue;
    const raw = Buffer.from(m[2] ?? '', 'base64');
    if (raw.length !== 68 || !timingSafeEqual(raw.subarray(0, 4), key.keyId)) continue;
    if (verify(null, Buffer.from(text, 'utf8'), publicKey, raw.subarray(4))) return text;
    throw new NoteSignatureError(`signature by ${key.name} does not verify`);
  }
  throw new NoteSignatureError(`note has no signature by ${key.name}`);
}
