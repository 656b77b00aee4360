/**
 * Started under `nice` by signer-thread.test.ts: starts a signing thread and prints, as one
 * JSON line, the event loop's niceness and every thread's of this process.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { getPriority } from 'node:os';
import pkcs11js from 'pkcs11js';
import { SignThread } from '../../src/keys/signer.thread.pkcs11.js';

const niceOf = (task: string): number =>
  Number(readFileSync(`/proc/self/task/${task}/stat`, 'utf8').split(') ')[1]?.split(' ')[16]);

const t = new SignThread('/nonexistent/libpkcs11.so');
try {
  // Once a batch is answered the thread has set its own priority (an item past its
  // deadline is skipped without loading the module).
  await t.run(Buffer.alloc(8), [
    {
      key: Buffer.alloc(8),
      mechanism: pkcs11js.CKM_ECDSA,
      sha256: true,
      data: Buffer.from('payload'),
      deadline: 1,
    },
  ]);
  const nices = readdirSync('/proc/self/task').map(niceOf);
  process.stdout.write(`${JSON.stringify({ loop: getPriority(), nices })}\n`);
} finally {
  await t.close();
}
