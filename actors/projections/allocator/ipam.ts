/**
 * IPv4 address management for Shoal's networks: subnets, gateways and free addresses, as pure
 * functions of what is taken (the allocator decides, the fold checks, both with these).
 *
 * **Why 127.0.0.0/8.** Linux routes the whole of 127.0.0.0/8 to the loopback interface (the
 * `local 127.0.0.0/8 dev lo` route exists on every host), so any process can bind
 * `127.3.0.7:80` and any process on the same host can connect to it, with no root, no bridge, no
 * veth and no iptables. Every network gets its own block there, every task its own address in
 * it: two replicas on one node both listen on port 80, each on its own address. 127.0.0.0/16 is
 * never used: it holds 127.0.0.1 and the addresses hosts give themselves (Debian's 127.0.1.1,
 * systemd-resolved's 127.0.0.53). Traffic between nodes never uses these addresses directly: each
 * node's mesh (node/mesh/) accepts connections on them and carries them to the other node.
 *
 * In a subnet, the first address is the network's (never handed out), the next one its gateway
 * (reserved, as Docker's IPAM does), and the last one the broadcast address (never handed out).
 *
 * @module
 */

/** An IPv4 subnet: its first address as a number and its prefix length. */
export interface Subnet {
  /** The network address, an unsigned 32-bit number with the host bits zero. */
  readonly base: number;
  /** The prefix length, 0-32. */
  readonly prefix: number;
}

/** All of loopback: every Shoal subnet lies inside it. */
export const LOOPBACK: Subnet = { base: 127 * 2 ** 24, prefix: 8 };
/** The block of loopback Shoal never uses (127.0.0.1 and the host's own names live there). */
export const RESERVED: Subnet = { base: 127 * 2 ** 24, prefix: 16 };
/** The prefix length of subnets the allocator picks: /16, 65,533 addresses per network. */
export const AUTO_PREFIX = 16;
/** The longest prefix accepted: a /30 still has one address besides network, gateway, broadcast. */
export const MAX_PREFIX = 30;

/** `"127.1.0.2"` → its number; undefined when it is not a dotted-quad IPv4 address. */
export function parseIPv4(text: string): number | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!/^(0|[1-9]\d{0,2})$/.test(p) || Number(p) > 255) return undefined;
    n = n * 256 + Number(p);
  }
  return n;
}

/** A number → `"127.1.0.2"`. */
export function formatIPv4(n: number): string {
  return [n >>> 24 & 255, n >>> 16 & 255, n >>> 8 & 255, n & 255].join(".");
}

/** The number of addresses in a subnet. */
export function subnetSize(s: Subnet): number {
  return 2 ** (32 - s.prefix);
}

/** `"127.1.0.0/16"` → a subnet; undefined when malformed or when host bits are set. */
export function parseCidr(text: string): Subnet | undefined {
  const slash = text.indexOf("/");
  if (slash < 0) return undefined;
  const base = parseIPv4(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  if (base === undefined || !/^\d{1,2}$/.test(lenText)) return undefined;
  const prefix = Number(lenText);
  if (prefix > 32 || base % subnetSize({ base, prefix }) !== 0) return undefined;
  return { base, prefix };
}

/** A subnet → `"127.1.0.0/16"`. */
export function formatCidr(s: Subnet): string {
  return `${formatIPv4(s.base)}/${s.prefix}`;
}

/** Whether two subnets share any address. */
export function overlaps(a: Subnet, b: Subnet): boolean {
  return a.base < b.base + subnetSize(b) && b.base < a.base + subnetSize(a);
}

/** Whether `ip` (a number) lies in `s`. */
export function contains(s: Subnet, ip: number): boolean {
  return ip >= s.base && ip < s.base + subnetSize(s);
}

/** A subnet's gateway: its second address (`127.1.0.1` in `127.1.0.0/16`). */
export function gatewayOf(s: Subnet): number {
  return s.base + 1;
}

/** Whether `ip` may be given to a task or a service in `s`: inside, and not reserved. */
export function isAssignable(s: Subnet, ip: number): boolean {
  return ip > gatewayOf(s) && ip < s.base + subnetSize(s) - 1;
}

/**
 * Why `cidr` cannot be a Shoal network's subnet, in words a user can act on; undefined when it
 * can. `others` are the subnets other networks have (or asked for).
 */
export function subnetProblem(cidr: string, others: readonly string[] = []): string | undefined {
  const s = parseCidr(cidr);
  if (s === undefined) {
    const loose = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(cidr);
    const ip = loose && parseIPv4(loose[1]);
    const prefix = loose ? Number(loose[2]) : NaN;
    if (ip != null && prefix <= 32) {
      const size = 2 ** (32 - prefix);
      const base = ip - ip % size;
      return `invalid subnet ${cidr}: host bits are set; did you mean ${
        formatCidr({ base, prefix })
      }?`;
    }
    return `invalid subnet ${cidr}: must be an IPv4 CIDR such as 127.10.0.0/16`;
  }
  if (!contains(LOOPBACK, s.base) || s.prefix < LOOPBACK.prefix) {
    return `invalid subnet ${cidr}: Shoal networks live in loopback space, so the subnet must be ` +
      `inside 127.0.0.0/8 (for example 127.10.0.0/16)`;
  }
  if (overlaps(s, RESERVED)) {
    return `invalid subnet ${cidr}: it overlaps 127.0.0.0/16, which is reserved for the host ` +
      `(127.0.0.1); use a block such as 127.10.0.0/16`;
  }
  if (s.prefix > MAX_PREFIX) {
    return `invalid subnet ${cidr}: a prefix longer than /${MAX_PREFIX} leaves no address to give`;
  }
  for (const other of others) {
    const o = parseCidr(other);
    if (o !== undefined && overlaps(s, o)) {
      return `invalid subnet ${cidr}: it overlaps ${other}, the subnet of another network`;
    }
  }
  return undefined;
}

/**
 * The lowest free /16 of loopback outside 127.0.0.0/16 (127.1.0.0/16, 127.2.0.0/16, ...) that
 * overlaps none of `taken`; undefined when all 255 are taken.
 */
export function nextFreeSubnet(taken: readonly Subnet[]): Subnet | undefined {
  const size = 2 ** (32 - AUTO_PREFIX);
  for (let b = RESERVED.base + size; b < LOOPBACK.base + subnetSize(LOOPBACK); b += size) {
    const s = { base: b, prefix: AUTO_PREFIX };
    if (!taken.some((t) => overlaps(s, t))) return s;
  }
  return undefined;
}

/**
 * The free addresses of a subnet, lowest first, as a cursor that only moves forward: give it
 * `isTaken` (which should also see what the caller handed out since), and each `next()` returns
 * the lowest address not yet returned and not taken, or undefined when the subnet is full.
 * Scanning from the bottom fills holes left by ended tasks before it uses new addresses.
 */
export class FreeAddresses {
  readonly #subnet: Subnet;
  readonly #isTaken: (addr: string) => boolean;
  #cursor: number;

  /** A cursor over `subnet`'s assignable addresses. */
  constructor(subnet: Subnet, isTaken: (addr: string) => boolean) {
    this.#subnet = subnet;
    this.#isTaken = isTaken;
    this.#cursor = gatewayOf(subnet) + 1;
  }

  /** The next free address, or undefined when none is left. */
  next(): string | undefined {
    while (isAssignable(this.#subnet, this.#cursor)) {
      const addr = formatIPv4(this.#cursor++);
      if (!this.#isTaken(addr)) return addr;
    }
    return undefined;
  }
}
