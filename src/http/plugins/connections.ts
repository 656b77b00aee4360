/**
 * Connection limits of the listener, below HTTP: a cap on open connections in all
 * (`server.maxConnections`: Node closes the ones beyond it at once) and per client address
 * (IPv6: per /64), counted on the raw TCP socket before any TLS, so a client that opens
 * connections and never speaks cannot hold every slot. The TLS handshake timeout lives in
 * the https options (createServer's `tlsHandshakeTimeoutMs`).
 */
import type { Server } from 'node:net';
import type { Socket } from 'node:net';
import { addressKey } from '../../shared/address.js';

export interface ConnectionLimits {
  readonly maxConnections: number;
  readonly maxConnectionsPerAddress: number;
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  maxConnections: 4096,
  maxConnectionsPerAddress: 256,
};

/** Install the limits on `server`; returns the per-address counts (for tests). */
export function limitConnections(server: Server, limits: ConnectionLimits): Map<string, number> {
  server.maxConnections = limits.maxConnections;
  const open = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const key = addressKey(socket.remoteAddress ?? 'unknown');
    const n = (open.get(key) ?? 0) + 1;
    if (n > limits.maxConnectionsPerAddress) {
      socket.destroy();
      return;
    }
    open.set(key, n);
    socket.once('close', () => {
      const left = (open.get(key) ?? 1) - 1;
      if (left <= 0) open.delete(key);
      else open.set(key, left);
    });
  });
  return open;
}
