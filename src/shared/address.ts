/**
 * The key a client address is limited and budgeted by: an IPv4 address as is (an
 * IPv4-mapped IPv6 address as its IPv4), an IPv6 address by its /64 prefix: one
 * subscriber usually holds a whole /64, so keying by the full address would give each of
 * them 2^64 budgets.
 */
import { isIPv4, isIPv6 } from 'node:net';

function expand(ip: string): string[] | undefined {
  const [head = '', tail] = ip.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  if (tail === undefined) return left.length === 8 ? left : undefined;
  const zeros = 8 - left.length - right.length;
  if (zeros < 1) return undefined;
  return [...left, ...Array<string>(zeros).fill('0'), ...right];
}

export function addressKey(ip: string): string {
  if (isIPv4(ip)) return ip;
  const bare = ip.split('%')[0] ?? ip;
  if (!isIPv6(bare)) return ip;
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(bare)?.[1];
  if (mapped !== undefined) return mapped;
  // An embedded IPv4 tail only ever sits in the low 64 bits: the prefix is all hextets.
  const groups = expand(bare.replace(/:\d{1,3}(?:\.\d{1,3}){3}$/, ':0:0'));
  if (groups === undefined) return ip;
  const prefix = groups.slice(0, 4).map((g) => Number.parseInt(g, 16).toString(16));
  return `${prefix.join(':')}::/64`;
}
