/**
 * The node's resolver, like Docker's embedded DNS server: it answers the swarm's names
 * (`SERVICE`, `STACK_SERVICE`'s short name within a stack, network aliases, and `tasks.SERVICE`;
 * see {@linkcode MeshIndex.resolve}) with A records, scoped to the networks the asking task shares
 * with the service, and forwards every other question to the host's resolvers
 * (`/etc/resolv.conf`), relaying their answer. A swarm name asked for another type (AAAA, MX...)
 * gets an empty answer, so that clients fall back to A at once.
 *
 * Over UDP and TCP on the same address and port, as a resolver must. A UDP answer is at most
 * 512 bytes, or the size the client offers with EDNS0: a swarm answer that does not fit (about
 * 30 addresses of `tasks.SERVICE`) keeps what fits and is marked truncated, and the client asks
 * again over TCP, where it gets every address. Forwarded questions go upstream over the
 * protocol they came in on, so a truncated upstream answer is retried over TCP upstream too.
 *
 * @module
 */
import * as dgram from "node:dgram";
import * as net from "node:net";
import type { Logger } from "../../actors/runtime.ts";
import {
  aRecord,
  decodeDnsMessage,
  type DnsMessage,
  type DnsRecord,
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
/** A UDP answer's size without EDNS0 (RFC 1035). */
const UDP_PLAIN_BYTES = 512;
/** The most this resolver sends over UDP, whatever a client offers. */
const UDP_MAX_BYTES = 4_096;
/** How long a TCP client may stay idle between questions, ms. */
const TCP_IDLE_MS = 10_000;
/** EDNS0's OPT pseudo-record type. */
const OPT = 41;

/** Options of a {@linkcode DnsServer}. */
export interface DnsServerOptions {
  /** Where to listen, `host:port`. */
  listen: { host: string; port: number };
  /** The current lookups. */
  index: () => MeshIndex;
  /**
   * Which task asked, from the query's source (and, over TCP, the address it reached):
   * undefined for the host (not a task), null for a task the map does not know (it gets no
   * swarm answers).
   */
  identify?: (
    proto: "udp" | "tcp",
    addr: string,
    port: number,
    localAddr?: string,
    localPort?: number,
  ) => Promise<MeshTask | null | undefined>;
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
  #tcp: net.Server | undefined;
  #tcpClients = new Set<net.Socket>();
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
    // TCP on the same port (the one UDP got, when asked for any).
    const tcp = net.createServer((client) => this.#serveTcp(client));
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once("error", reject);
        tcp.listen(bound.port, host, () => {
          tcp.off("error", reject);
          resolve();
        });
      });
    } catch (err) {
      socket.close();
      this.#socket = undefined;
      throw err;
    }
    tcp.on("error", (err: Error) => this.#opts.logger?.warn(`mesh dns (tcp): ${err.message}`));
    this.#tcp = tcp;
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
    this.#tcp?.close();
    for (const c of this.#tcpClients) c.destroy();
    this.#tcpClients.clear();
    this.#socket = undefined;
    this.#upstream = undefined;
    this.#tcp = undefined;
  }

  async #onQuery(bytes: Uint8Array, rinfo: dgram.RemoteInfo): Promise<void> {
    const answer = await this.#answer(bytes, "udp", rinfo.address, rinfo.port);
    if (answer === "forward") this.#forward(bytes, (bytes[0] << 8) | bytes[1], rinfo);
    else if (answer !== undefined) this.#send(answer, rinfo);
  }

  /**
   * The answer to a query: its bytes, "forward" (not a swarm name: ask upstream), or undefined
   * (a response, not a question: ignored). Over UDP an answer is cut to what the client takes.
   */
  async #answer(
    bytes: Uint8Array,
    proto: "udp" | "tcp",
    addr: string,
    port: number,
    localAddr?: string,
    localPort?: number,
  ): Promise<Uint8Array | "forward" | undefined> {
    let query: DnsMessage;
    try {
      query = decodeDnsMessage(bytes);
    } catch {
      // Too broken to answer, unless the header is there.
      if (bytes.length < 12) return undefined;
      const reply = bytes.slice(0, 12);
      reply[2] = 0x80 | (bytes[2] & 0x01);
      reply[3] = Rcode.FORMERR;
      reply.fill(0, 4, 12);
      return reply;
    }
    if (query.qr) return undefined;
    const q = query.questions[0];
    if (query.opcode !== 0 || q === undefined) {
      return encodeDnsMessage(dnsResponse(query, Rcode.NOTIMP));
    }
    const asker = await this.#opts.identify?.(proto, addr, port, localAddr, localPort);
    const found = asker === null ? undefined : this.#opts.index().resolve(q.name, asker);
    if (found === undefined) return "forward";
    const records = q.type === DnsType.A || q.type === DnsType.ANY
      ? found.addrs.filter((a) => !a.includes(":")).map((a) => aRecord(q.name, a, SWARM_TTL))
      : [];
    const edns = query.additionals.find((r) => r.type === OPT);
    const response = dnsResponse(query, Rcode.NOERROR, records);
    // EDNS0: say what this resolver takes over UDP, as the client did.
    const opt: DnsRecord[] = edns
      ? [{ name: "", type: OPT, class: UDP_MAX_BYTES, ttl: 0, data: new Uint8Array(0) }]
      : [];
    const full = encodeDnsMessage({ ...response, additionals: opt });
    if (proto === "tcp") return full;
    const limit = Math.min(UDP_MAX_BYTES, Math.max(UDP_PLAIN_BYTES, edns?.class ?? 0));
    return full.length <= limit ? full : truncated(response, opt, limit);
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

  /** Serves one TCP client: length-prefixed questions, answered in turn. */
  #serveTcp(client: net.Socket): void {
    this.#tcpClients.add(client);
    client.setTimeout(TCP_IDLE_MS, () => client.destroy());
    client.on("error", () => {});
    client.on("close", () => this.#tcpClients.delete(client));
    const messages = new TcpMessages();
    let queue = Promise.resolve();
    client.on("data", (chunk: Uint8Array) => {
      for (const query of messages.push(chunk)) {
        // In order: a client may send several questions before reading.
        queue = queue.then(() => this.#answerTcp(query, client)).catch((err) => {
          this.#opts.logger?.warn(`mesh dns (tcp): a query failed: ${err}`);
          client.destroy();
        });
      }
    });
  }

  async #answerTcp(query: Uint8Array, client: net.Socket): Promise<void> {
    const answer = await this.#answer(
      query,
      "tcp",
      client.remoteAddress ?? "",
      client.remotePort ?? 0,
      client.localAddress,
      client.localPort,
    );
    if (answer === undefined) return;
    const reply = answer === "forward" ? await this.#forwardTcp(query) : answer;
    if (!client.destroyed) client.write(tcpMessage(reply));
  }

  /** Asks the first upstream over TCP; SERVFAIL when it cannot answer in time. */
  #forwardTcp(query: Uint8Array): Promise<Uint8Array> {
    const upstream = this.#upstreams[0];
    if (upstream === undefined) return Promise.resolve(this.#failure(query.slice()));
    return new Promise((resolve) => {
      const socket = net.connect({ host: upstream.host, port: upstream.port });
      const messages = new TcpMessages();
      let settled = false;
      const done = (reply: Uint8Array) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        resolve(reply);
      };
      const fail = () => done(this.#failure(query.slice()));
      const timer = setTimeout(fail, UPSTREAM_TIMEOUT_MS);
      socket.on("error", fail);
      socket.on("close", fail);
      socket.on("connect", () => socket.write(tcpMessage(query)));
      socket.on("data", (chunk: Uint8Array) => {
        const [reply] = messages.push(chunk);
        if (reply !== undefined) done(reply);
      });
    });
  }

  #send(bytes: Uint8Array, rinfo: dgram.RemoteInfo): void {
    this.#socket?.send(bytes, rinfo.port, rinfo.address);
  }
}

/** `response` with as many answers as fit in `limit` bytes, marked truncated (TC). */
function truncated(response: DnsMessage, opt: DnsRecord[], limit: number): Uint8Array {
  let lo = 0;
  let hi = response.answers.length;
  // The largest count that fits (encoding is monotonic in the count).
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    const size = encodeDnsMessage({
      ...response,
      tc: true,
      answers: response.answers.slice(0, mid),
      additionals: opt,
    }).length;
    if (size <= limit) lo = mid;
    else hi = mid - 1;
  }
  return encodeDnsMessage({
    ...response,
    tc: true,
    answers: response.answers.slice(0, lo),
    additionals: opt,
  });
}

/** A DNS message as sent over TCP: a two-byte length, then the message. */
function tcpMessage(message: Uint8Array): Uint8Array {
  const out = new Uint8Array(2 + message.length);
  out[0] = message.length >> 8;
  out[1] = message.length & 0xff;
  out.set(message, 2);
  return out;
}

/** Splits a TCP stream of DNS messages (each after its two-byte length) as it arrives. */
class TcpMessages {
  #buf = new Uint8Array(0);

  /** Takes a chunk; returns the messages it completed. */
  push(chunk: Uint8Array): Uint8Array[] {
    const joined = new Uint8Array(this.#buf.length + chunk.length);
    joined.set(this.#buf);
    joined.set(chunk, this.#buf.length);
    this.#buf = joined;
    const out: Uint8Array[] = [];
    while (this.#buf.length >= 2) {
      const len = (this.#buf[0] << 8) | this.#buf[1];
      if (this.#buf.length < 2 + len) break;
      out.push(this.#buf.slice(2, 2 + len));
      this.#buf = this.#buf.slice(2 + len);
    }
    return out;
  }
}
