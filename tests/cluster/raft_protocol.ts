/**
 * The tiny client protocol of `raft_node.ts` (the manager process of the real-process Raft
 * tests and of `deno task bench raft`), and a client for it.
 *
 * Binary rather than a text line protocol: a thousand clients pipelining ~200-byte proposals
 * over a few connections is the benchmark's load, and parsing must cost next to nothing.
 *
 * A frame is a 4-byte big-endian length, then the body. A request body is
 * `[u32 request id][u8 op][argument]`, a response body `[u32 request id][u8 status][result]`.
 * Responses may come in any order; many requests may be in flight on one connection.
 *
 * | op | request | result |
 * | --- | --- | --- |
 * | 1 propose | the bytes | f64 raft index, f64 seq |
 * | 2 status | — | JSON of `RaftDriver.status()` |
 * | 3 entries | f64 first seq, u32 most | msgpack `[seq, index, term, data][]` |
 * | 4 readIndex | — | f64 index |
 * | 5 campaign | — | — |
 * | 6 transfer | f64 raft id | — |
 *
 * Statuses: 0 ok; 1 not the leader (result: JSON `{leaderId, leaderAddress}`); 2 error (UTF-8
 * message); 3 dropped, not committed, safe to retry (UTF-8 message); 4 outcome unknown.
 *
 * @module
 */
import * as net from "node:net";
import { Unpackr } from "msgpackr";

/** Request kinds. */
export const Op = {
  propose: 1,
  status: 2,
  entries: 3,
  readIndex: 4,
  campaign: 5,
  transfer: 6,
} as const;

/** Response statuses. */
export const Status = { ok: 0, notLeader: 1, error: 2, dropped: 3, unknown: 4 } as const;

/** A response whose status is not ok. */
export class NodeError extends Error {
  /** `status` is the response status; `leaderId` is set for "not leader". */
  constructor(readonly status: number, message: string, readonly leaderId = 0) {
    super(message);
    this.name = "NodeError";
  }
}

/** A frame: length, then `parts` concatenated. */
export function frame(...parts: Uint8Array[]): Uint8Array {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(4 + len);
  new DataView(out.buffer).setUint32(0, len);
  let at = 4;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Splits a byte stream into frame bodies. */
export class FrameReader {
  #buf: Uint8Array = new Uint8Array(0);

  /** Feeds `chunk`; returns the complete frame bodies in it. */
  push(chunk: Uint8Array): Uint8Array[] {
    let buf = this.#buf;
    if (buf.length === 0) buf = chunk;
    else {
      const joined = new Uint8Array(buf.length + chunk.length);
      joined.set(buf);
      joined.set(chunk, buf.length);
      buf = joined;
    }
    const out: Uint8Array[] = [];
    let pos = 0;
    while (buf.length - pos >= 4) {
      const len = new DataView(buf.buffer, buf.byteOffset + pos, 4).getUint32(0);
      if (buf.length - pos - 4 < len) break;
      out.push(buf.subarray(pos + 4, pos + 4 + len));
      pos += 4 + len;
    }
    this.#buf = pos === buf.length ? new Uint8Array(0) : new Uint8Array(buf.subarray(pos));
    return out;
  }
}

const unpackr = new Unpackr({ useRecords: false });
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

interface Waiting {
  resolve: (body: Uint8Array) => void;
  reject: (err: Error) => void;
}

/** One connection to a node, many requests in flight. */
export class NodeClient {
  readonly address: string;
  #socket: net.Socket;
  #reader = new FrameReader();
  #waiting = new Map<number, Waiting>();
  #nextId = 1;
  #closed: Error | undefined;
  #out: Uint8Array[] = [];
  #flushing = false;

  private constructor(address: string, socket: net.Socket) {
    this.address = address;
    this.#socket = socket;
    socket.setNoDelay(true);
    socket.on("data", (chunk: Uint8Array) => {
      for (const body of this.#reader.push(chunk)) this.#onResponse(body);
    });
    const fail = (err: Error) => {
      if (this.#closed) return;
      this.#closed = err;
      for (const w of this.#waiting.values()) w.reject(err);
      this.#waiting.clear();
    };
    socket.on("error", (err: Error) => fail(err));
    socket.on("close", () => fail(new Error(`connection to ${address} closed`)));
  }

  /** Connects to `address` (`host:port`). */
  static connect(address: string, timeoutMs = 5_000): Promise<NodeClient> {
    const [host, port] = address.split(":");
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port: Number(port) });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`connect to ${address} timed out`));
      }, timeoutMs);
      socket.once("connect", () => {
        clearTimeout(timer);
        socket.removeAllListeners("error");
        resolve(new NodeClient(address, socket));
      });
      socket.once("error", (err: Error) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  /** Whether the connection broke. */
  get closed(): boolean {
    return this.#closed !== undefined;
  }

  /** Proposes `data`; resolves with its raft index and seq once committed. */
  async propose(data: Uint8Array): Promise<{ index: number; seq: number }> {
    const body = await this.request(Op.propose, data);
    const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
    return { index: view.getFloat64(0), seq: view.getFloat64(8) };
  }

  /** The node's `RaftDriver.status()`. */
  async status(): Promise<NodeStatus> {
    return JSON.parse(fromUtf8.decode(await this.request(Op.status)));
  }

  /** Up to `most` data entries from `fromSeq` on. */
  async entries(
    fromSeq: number,
    most = 10_000,
  ): Promise<{ seq: number; index: number; term: number; data: Uint8Array }[]> {
    const arg = new Uint8Array(12);
    const view = new DataView(arg.buffer);
    view.setFloat64(0, fromSeq);
    view.setUint32(8, most);
    const rows = unpackr.unpack(await this.request(Op.entries, arg)) as [
      number,
      number,
      number,
      Uint8Array,
    ][];
    return rows.map(([seq, index, term, data]) => ({ seq, index, term, data }));
  }

  /** Every data entry the node applied, from seq 1. */
  async allEntries(): Promise<{ seq: number; index: number; term: number; data: Uint8Array }[]> {
    const out = [];
    for (;;) {
      const page = await this.entries(out.length + 1);
      if (page.length === 0) return out;
      out.push(...page);
    }
  }

  /** A linearizable read index. */
  async readIndex(): Promise<number> {
    const body = await this.request(Op.readIndex);
    return new DataView(body.buffer, body.byteOffset, 8).getFloat64(0);
  }

  /** Asks the node to campaign. */
  async campaign(): Promise<void> {
    await this.request(Op.campaign);
  }

  /** Asks the leader to hand leadership to `id`. */
  async transfer(id: number): Promise<void> {
    const arg = new Uint8Array(8);
    new DataView(arg.buffer).setFloat64(0, id);
    await this.request(Op.transfer, arg);
  }

  /** Sends one request; resolves with the result bytes, rejects with a {@linkcode NodeError}. */
  request(op: number, arg: Uint8Array = new Uint8Array(0)): Promise<Uint8Array> {
    if (this.#closed) return Promise.reject(this.#closed);
    const id = this.#nextId++ >>> 0;
    const head = new Uint8Array(5);
    new DataView(head.buffer).setUint32(0, id);
    head[4] = op;
    const { promise, resolve, reject } = Promise.withResolvers<Uint8Array>();
    this.#waiting.set(id, { resolve, reject });
    this.#out.push(frame(head, arg));
    if (!this.#flushing) {
      this.#flushing = true;
      queueMicrotask(() => this.#flush());
    }
    return promise;
  }

  /** Closes the connection; pending requests reject. */
  close(): void {
    this.#socket.destroy();
  }

  #flush(): void {
    this.#flushing = false;
    if (this.#out.length === 0 || this.#closed) return;
    const parts = this.#out;
    this.#out = [];
    let len = 0;
    for (const p of parts) len += p.length;
    const all = new Uint8Array(len);
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.length;
    }
    this.#socket.write(all);
  }

  #onResponse(body: Uint8Array): void {
    const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
    const id = view.getUint32(0);
    const status = body[4];
    const result = body.subarray(5);
    const w = this.#waiting.get(id);
    if (!w) return;
    this.#waiting.delete(id);
    if (status === Status.ok) {
      w.resolve(new Uint8Array(result));
    } else if (status === Status.notLeader) {
      const info = JSON.parse(fromUtf8.decode(result)) as { leaderId: number };
      w.reject(new NodeError(status, `not the leader (leader: ${info.leaderId})`, info.leaderId));
    } else {
      w.reject(new NodeError(status, fromUtf8.decode(result)));
    }
  }
}

/** What `status` returns (the driver's status, as JSON). */
export interface NodeStatus {
  id: number;
  address: string;
  role: string;
  term: number;
  leader: number;
  commit: number;
  applied: number;
  appliedSeq: number;
  firstIndex: number;
  lastIndex: number;
  members: { id: number; address?: string; voter: boolean; match?: number; connected: boolean }[];
}

/** UTF-8 bytes (helpers for callers). */
export function bytesOf(s: string): Uint8Array {
  return utf8.encode(s);
}

/** Text of UTF-8 bytes. */
export function textOf(b: Uint8Array): string {
  return fromUtf8.decode(b);
}
