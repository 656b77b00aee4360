/**
 * EK CAs and EK certificates for the dual-control tests, made with openssl the way
 * src/attestation/fixtures/make-fixtures.sh makes its fixtures: a CA (CA:TRUE,
 * keyCertSign) and, for a software EK, an EK certificate under it with the TCG EK
 * credential profile's SAN (TPM manufacturer, model, version) and EKU.
 */
import { execFile } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { SoftEk } from '../../src/attestation/testing/soft-tpm.js';

const run = promisify(execFile);

export interface OpensslCa {
  readonly dir: string;
  readonly pem: string;
  issue(ek: SoftEk): Promise<Buffer>;
}

let serial = 1000;

export async function makeEkCa(parent: string, name: string): Promise<OpensslCa> {
  const dir = await mkdtemp(join(parent, `${name}-`));
  await run('openssl', [
    ...['req', '-x509', '-newkey', 'rsa:2048', '-nodes'],
    ...['-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.pem')],
    ...['-subj', `/CN=${name}`, '-days', '30'],
    ...['-addext', 'basicConstraints=critical,CA:TRUE'],
    ...['-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
  ]);
  await run('openssl', ['genrsa', '-out', join(dir, 'req.key'), '2048']);
  await writeFile(
    join(dir, 'ext.cnf'),
    [
      '[tpm]',
      'a.2.23.133.2.1 = id:00001014',
      'b.2.23.133.2.2 = swtpm',
      'c.2.23.133.2.3 = id:20191023',
      '[ext]',
      'basicConstraints = critical,CA:FALSE',
      'extendedKeyUsage = 2.23.133.8.1',
      'subjectAltName = critical,dirName:tpm',
      '',
    ].join('\n'),
  );
  const pem = await readFile(join(dir, 'ca.pem'), 'utf8');
  return {
    dir,
    pem,
    async issue(ek) {
      const n = Buffer.from(ek.ekPublic.unique).toString('base64url');
      const spki = createPublicKey({ key: { kty: 'RSA', n, e: 'AQAB' }, format: 'jwk' }).export({
        type: 'spki',
        format: 'pem',
      });
      const id = String(serial++);
      await writeFile(join(dir, `ek${id}.pub.pem`), spki);
      await run('openssl', [
        ...['req', '-new', '-key', join(dir, 'req.key'), '-subj', '/CN=ek'],
        ...['-out', join(dir, `ek${id}.csr`)],
      ]);
      await run('openssl', [
        ...['x509', '-req', '-in', join(dir, `ek${id}.csr`)],
        ...['-CA', join(dir, 'ca.pem'), '-CAkey', join(dir, 'ca.key'), '-set_serial', id],
        ...['-days', '30', '-force_pubkey', join(dir, `ek${id}.pub.pem`)],
        ...['-extfile', join(dir, 'ext.cnf'), '-extensions', 'ext'],
        ...['-outform', 'der', '-out', join(dir, `ek${id}.der`)],
      ]);
      return readFile(join(dir, `ek${id}.der`));
    },
  };
}
