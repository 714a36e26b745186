/**
 * The node's resolver, like Docker's embedded DNS server: it answers the swarm's names
 * (`SERVICE`, `STACK_SERVICE`'s short name within a stack, network aliases, and `tasks.SERVICE`;
 * see {@linkcode MeshIndex.resolve}) with A records, scoped to the networks the asking task shares
 * with the service, and forwards every other question to the host's resolvers
 * (`/etc/resolv.conf`), relaying their answer. A swarm name asked for another type (AAAA, MX...)
 * gets an empty answer, so that clients fall back to A at once.
 *
 * UDP only (a swarm answer always fits in 512 bytes; a forwarded answer too big for UDP comes
 * back truncated and the client retries over TCP with its upstream, as with any resolver).
 *
 * @module
 */
import * as dgram from "node:dgram";
import type { Logger } from "../../actors/runtime.ts";
import {
  aRecord,
  decodeDnsMessage,
  dnsResponse,
  DnsType,
  encodeDnsMessage,
  Rcode,
} from "./dns_codec.ts";
import type { MeshIndex } from "./mesh_index.ts";
import type { MeshTask } from "./mesh_map.ts";

/** TTL of swarm answers, s: short, since tasks come and go. */
export const SWARM_TTL = 5;
/** How long an upstream resolver has to answer, ms. */
const UPSTREAM_TIMEOUT_MS = 3_000;

/** Options of a {@linkcode DnsServer}. */
export interface DnsServerOptions {
  /** Where to listen, `host:port`. */
  listen: { host: string; port: number };
  /** The current lookups. */
  index: () => MeshIndex;
  /**
   * Which task asked, from the query's source: undefined for the host (not a task), null for a
   * task the map does not know (it gets no swarm answers).
   */
  identify?: (addr: string, port: number) => Promise<MeshTask | null | undefined>;
  /** Upstream resolvers (`host` or `host:port`); default: the nameservers of /etc/resolv.conf. */
  upstreams?: string[];
  logger?: Logger;
}

/** The nameservers of a resolv.conf text. */
export function parseResolvConf(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split("\n")) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m) out.push(m[1]);
  }
  return out;
}

/** `host` or `host:port` (IPv6 in brackets when it has a port) as host and port. */
function hostPort(addr: string, defaultPort: number): { host: string; port: number } {
  const m = /^\[(.*)\]:(\d+)$/.exec(addr) ?? /^([^:]+):(\d+)$/.exec(addr);
  return m ? { host: m[1], port: Number(m[2]) } : { host: addr, port: defaultPort };
}

interface Pending {
  readonly rinfo: dgram.RemoteInfo;
  readonly id: number;
  readonly timer: ReturnType<typeof setTimeout>;
}

/** The node's resolver. See the module documentation. */
export class DnsServer {
  #opts: DnsServerOptions;
  #socket: dgram.Socket | undefined;
  #upstream: dgram.Socket | undefined;
  #upstreams: { host: string; port: number }[] = [];
  #pending = new Map<number, Pending>();
  #nextId = Math.floor(Math.random() * 65536);
  #address = "";

  /** A resolver; call `start()`. */
  constructor(options: DnsServerOptions) {
    this.#opts = options;
  }

  /** Where it listens (`host:port`), once started. */
  get address(): string {
    return this.#address;
  }

  /** Binds the socket. */
  async start(): Promise<string> {
    const { host, port } = this.#opts.listen;
    let upstreams = this.#opts.upstreams;
    if (upstreams === undefined) {
      try {
        upstreams = parseResolvConf(await Deno.readTextFile("/etc/resolv.conf"));
      } catch {
        upstreams = [];
      }
    }
    this.#upstreams = upstreams.map((u) => hostPort(u, 53)).filter((u) =>
      !(u.host === host && u.port === port)
    );
    const socket = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(port, host, () => {
        socket.off("error", reject);
        resolve();
      });
    });
    socket.on("error", (err: Error) => this.#opts.logger?.warn(`mesh dns: ${err.message}`));
    socket.on("message", (msg: Uint8Array, rinfo: dgram.RemoteInfo) => {
      this.#onQuery(new Uint8Array(msg), rinfo).catch((err) =>
        this.#opts.logger?.warn(`mesh dns: a query from ${rinfo.address} failed: ${err}`)
      );
    });
    this.#socket = socket;
    const bound = socket.address();
    this.#address = `${host}:${bound.port}`;
    return this.#address;
  }

  /** Closes the sockets. */
  close(): void {
    for (const p of this.#pending.values()) clearTimeout(p.timer);
    this.#pending.clear();
    try {
      this.#socket?.close();
    } catch { /* already closed */ }
    try {
      this.#upstream?.close();
    } catch { /* already closed */ }
    this.#socket = undefined;
    this.#upstream = undefined;
  }

  async #onQuery(bytes: Uint8Array, rinfo: dgram.RemoteInfo): Promise<void> {
    let query;
    try {
      query = decodeDnsMessage(bytes);
    } catch {
      // Too broken to answer, unless the header is there.
      if (bytes.length >= 12) {
        const reply = bytes.slice(0, 12);
        reply[2] = 0x80 | (bytes[2] & 0x01);
        reply[3] = Rcode.FORMERR;
        reply.fill(0, 4, 12);
        this.#send(reply, rinfo);
      }
      return;
    }
    if (query.qr) return;
    const q = query.questions[0];
    if (query.opcode !== 0 || q === undefined) {
      this.#send(encodeDnsMessage(dnsResponse(query, Rcode.NOTIMP)), rinfo);
      return;
    }
    const asker = await this.#opts.identify?.(rinfo.address, rinfo.port);
    const answer = asker === null ? undefined : this.#opts.index().resolve(q.name, asker);
    if (answer === undefined) {
      this.#forward(bytes, query.id, rinfo);
      return;
    }
    const records = q.type === DnsType.A || q.type === DnsType.ANY
      ? answer.addrs.filter((a) => !a.includes(":")).map((a) => aRecord(q.name, a, SWARM_TTL))
      : [];
    this.#send(encodeDnsMessage(dnsResponse(query, Rcode.NOERROR, records)), rinfo);
  }

  #forward(bytes: Uint8Array, id: number, rinfo: dgram.RemoteInfo): void {
    const upstream = this.#upstreams[0];
    if (upstream === undefined) {
      const reply = bytes.slice();
      this.#send(this.#failure(reply), rinfo);
      return;
    }
    const socket = this.#upstreamSocket();
    const ourId = this.#nextId = (this.#nextId + 1) & 0xffff;
    const old = this.#pending.get(ourId);
    if (old) clearTimeout(old.timer);
    const timer = setTimeout(() => {
      this.#pending.delete(ourId);
      this.#send(this.#failure(bytes.slice()), rinfo);
    }, UPSTREAM_TIMEOUT_MS);
    this.#pending.set(ourId, { rinfo, id, timer });
    const out = bytes.slice();
    out[0] = ourId >> 8;
    out[1] = ourId & 0xff;
    // An upstream this node cannot send to (no route to it: a host whose only network is the
    // swarm's) fails at once with SERVFAIL, rather than after the timeout for each of the
    // client's queries (A, AAAA, their retries), which made one failed lookup take many seconds.
    socket.send(out, upstream.port, upstream.host, (err: Error | null) => {
      if (err === null || this.#pending.get(ourId)?.timer !== timer) return;
      this.#pending.delete(ourId);
      clearTimeout(timer);
      this.#send(this.#failure(bytes.slice()), rinfo);
    });
  }

  /** SERVFAIL for a query whose bytes are given (header rewritten, question kept). */
  #failure(bytes: Uint8Array): Uint8Array {
    try {
      return encodeDnsMessage(dnsResponse(decodeDnsMessage(bytes), Rcode.SERVFAIL));
    } catch {
      return bytes.slice(0, 12);
    }
  }

  #upstreamSocket(): dgram.Socket {
    if (this.#upstream) return this.#upstream;
    const socket = dgram.createSocket(this.#upstreams[0]?.host.includes(":") ? "udp6" : "udp4");
    socket.on(
      "error",
      (err: Error) => this.#opts.logger?.warn(`mesh dns upstream: ${err.message}`),
    );
    socket.on("message", (msg: Uint8Array) => {
      const reply = new Uint8Array(msg);
      if (reply.length < 12) return;
      const ourId = (reply[0] << 8) | reply[1];
      const pending = this.#pending.get(ourId);
      if (pending === undefined) return;
      this.#pending.delete(ourId);
      clearTimeout(pending.timer);
      reply[0] = pending.id >> 8;
      reply[1] = pending.id & 0xff;
      this.#send(reply, pending.rinfo);
    });
    this.#upstream = socket;
    return socket;
  }

  #send(bytes: Uint8Array, rinfo: dgram.RemoteInfo): void {
    this.#socket?.send(bytes, rinfo.port, rinfo.address);
  }
}
