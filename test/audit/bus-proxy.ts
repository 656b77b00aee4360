/**
 * An interposer on the TPM "bus" for tests: a TCP proxy between the addon (tcti swtpm) and
 * swtpm that forwards both ports (commands on P, control on P+1) and may rewrite chosen
 * commands on their way to the TPM and the responses to them, as an attacker on the
 * LPC/SPI bus could. Commands and
 * responses are raw TPM 2.0 byte streams framed by their header's size field.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { freePortPair } from '../rig/sim.js';

/** Given the command and its response, return the response to deliver. */
export type Rewrite = (command: Buffer, response: Buffer) => Buffer;
/** Given a command from the addon, return the command the TPM receives. */
export type RewriteCommand = (command: Buffer) => Buffer;

export interface BusProxy {
  readonly tcti: string;
  /** Responses changed so far. */
  readonly rewritten: number;
  rewrite: Rewrite | undefined;
  rewriteCommand: RewriteCommand | undefined;
  close(): Promise<void>;
}

/** Splits a stream into TPM frames (tag 2 bytes, size 4 bytes, ...). */
function framer(onFrame: (frame: Buffer) => void): (chunk: Buffer) => void {
  let pending = Buffer.alloc(0);
  return (chunk) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 6) {
      const size = pending.readUInt32BE(2);
      if (pending.length < size) return;
      onFrame(pending.subarray(0, size));
      pending = pending.subarray(size);
    }
  };
}

export async function startBusProxy(upstreamPort: number): Promise<BusProxy> {
  const port = await freePortPair();
  const sockets = new Set<Socket>();
  const state: {
    rewrite: Rewrite | undefined;
    rewriteCommand: RewriteCommand | undefined;
    rewritten: number;
  } = {
    rewrite: undefined,
    rewriteCommand: undefined,
    rewritten: 0,
  };
  const track = (s: Socket): void => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
  };
  const commandServer = createServer((down) => {
    const up = connect(upstreamPort, '127.0.0.1');
    track(down);
    track(up);
    const commands: Buffer[] = [];
    down.on(
      'data',
      framer((cmd) => {
        let sent: Buffer = Buffer.from(cmd);
        if (state.rewriteCommand !== undefined) {
          const changed = state.rewriteCommand(sent);
          if (!changed.equals(sent)) state.rewritten += 1;
          sent = changed;
        }
        commands.push(sent);
        up.write(sent);
      }),
    );
    up.on(
      'data',
      framer((rsp) => {
        const cmd = commands.shift();
        let out: Buffer = Buffer.from(rsp);
        if (cmd !== undefined && state.rewrite !== undefined) {
          const changed = state.rewrite(cmd, out);
          if (!changed.equals(out)) state.rewritten += 1;
          out = changed;
        }
        down.write(out);
      }),
    );
    down.on('close', () => up.destroy());
    up.on('close', () => down.destroy());
  });
  // The control channel (power, startup) passes untouched.
  const controlServer = createServer((down) => {
    const up = connect(upstreamPort + 1, '127.0.0.1');
    track(down);
    track(up);
    down.pipe(up);
    up.pipe(down);
  });
  const listen = (s: Server, p: number): Promise<void> =>
    new Promise((resolve) => {
      s.listen(p, '127.0.0.1', () => {
        resolve();
      });
    });
  await listen(commandServer, port);
  await listen(controlServer, port + 1);
  return {
    tcti: `swtpm:host=127.0.0.1,port=${port}`,
    get rewritten() {
      return state.rewritten;
    },
    get rewrite() {
      return state.rewrite;
    },
    set rewrite(r) {
      state.rewrite = r;
    },
    get rewriteCommand() {
      return state.rewriteCommand;
    },
    set rewriteCommand(r) {
      state.rewriteCommand = r;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await Promise.all(
        [commandServer, controlServer].map(
          (s) =>
            new Promise<void>((resolve) => {
              s.close(() => {
                resolve();
              });
            }),
        ),
      );
    },
  };
}

export const TPM_CC_NV_READ = 0x0000014e;
export const TPM_CC_NV_EXTEND = 0x00000136;
export const TPM_CC_NV_CERTIFY = 0x00000184;

/** The command code and the handle at `handleIndex` (0-based) of a command. */
export function commandOf(command: Buffer, handleIndex: number): { cc: number; handle: number } {
  const at = 10 + 4 * handleIndex;
  return {
    cc: command.readUInt32BE(6),
    handle: command.length >= at + 4 ? command.readUInt32BE(at) : -1,
  };
}
