/**
 * A trunk: one long-lived mutual-TLS connection between two nodes' meshes that carries every
 * forwarded TCP connection and UDP flow from one node to the other, each as a numbered stream of
 * frames. Compared with a TLS connection per forwarded connection, writes of many streams leave
 * in one TLS record and one system call, reads likewise, and a new connection costs one frame
 * instead of a TLS handshake (see bench/RESULTS.md, "## mesh").
 *
 * Frames, both ways, after the trunk request (see peer.ts):
 * ```
 * type:u8 stream:u32 len:u32 payload
 *   1 OPEN     opener → endpoint   {"addr": "127.1.0.5", "port": 80, "udp"?: true}
 *   2 OPENED   endpoint → opener   status:u8 (0 open, 1 refused, 2 unreachable)
 *   3 DATA     bytes of a TCP stream
 *   4 END      the sender's side of the stream ended (a half-close)
 *   5 RESET    the stream is gone, both ways
 *   6 WINDOW   credit:u32, bytes the receiver has passed on since its last WINDOW
 *   7 DGRAM    one UDP datagram of a flow
 * ```
 * Only the node that dialled the trunk opens streams; the endpoint authorizes each OPEN.
 *
 * Flow control is per stream, by credit: a sender has at most {@linkcode STREAM_WINDOW} bytes
 * of a stream in flight, so one slow reader holds back its own stream only, never the trunk.
 * Datagrams have no credit: when the trunk's socket has more than {@linkcode MAX_DGRAM_BACKLOG}
 * bytes waiting, they are dropped, as a congested network drops them.
 *
 * @module
 */
import { localUdpTarget, type UdpTarget } from "./udp.ts";
import type { HeldSocket } from "./peer.ts";

/** What a trunk runs over: a TLS connection (a `node:tls` socket). */
export interface TrunkTransport {
  /** Sends bytes after those sent before; the transport may keep `bytes`. */
  write(bytes: Uint8Array): void;
  /** Bytes given to `write` and not sent yet. */
  readonly backlog: number;
  /** Starts delivering what arrives (`onData` may keep each chunk); `onEnd` once it ends. */
  start(onData: (chunk: Uint8Array) => void, onEnd: () => void): void;
  /** Cuts the connection. */
  close(): void;
}

/** A trunk transport over a `node:tls` socket, with what it already received. */
export function socketTransport(held: HeldSocket): TrunkTransport {
  const socket = held.socket;
  return {
    write: (bytes) => void socket.write(bytes),
    get backlog() {
      return socket.writableLength;
    },
    start(onData, onEnd) {
      const taken = held.take();
      socket.on("data", onData);
      socket.once("end", onEnd);
      socket.once("error", onEnd);
      socket.once("close", onEnd);
      for (const chunk of taken.chunks) onData(chunk);
      if (taken.ended) onEnd();
    },
    close: () => socket.destroy(),
  };
}

const OPEN = 1;
const OPENED = 2;
const DATA = 3;
const END = 4;
const RESET = 5;
const WINDOW = 6;
const DGRAM = 7;
const HEADER = 9;
/** Bytes read from a connection at a time, at most (so at most one DATA frame's payload). */
const CHUNK = 64 * 1024;
/** The largest frame accepted: a chunk, a datagram, or an OPEN. */
const MAX_FRAME = 128 * 1024;
/** Bytes of one stream a sender may have in flight. */
export const STREAM_WINDOW = 512 * 1024;
/** A receiver returns credit once it has passed on this many bytes. */
const WINDOW_UPDATE = 64 * 1024;
/** Bytes waiting in the trunk's socket above which datagrams are dropped. */
export const MAX_DGRAM_BACKLOG = 4 * 1024 * 1024;

/** Status byte of OPENED: open. */
const STATUS_OK = 0;
/** Status byte of OPENED: refused (not a task of the endpoint's node). */
const STATUS_REFUSED = 1;
/** Status byte of OPENED: the task did not accept the connection. */
const STATUS_UNREACHABLE = 2;

/** What an OPEN asks for. */
export interface OpenRequest {
  readonly addr: string;
  readonly port: number;
  readonly udp: boolean;
}

/** The endpoint side: what to do with an OPEN. */
export interface TrunkAcceptor {
  /** Whether a stream or flow to `addr:port` may be opened (a task of this node). */
  authorize(addr: string, port: number): boolean;
}

/** A TCP stream opened through a trunk, before it is joined to a connection. */
export interface TrunkStream {
  /**
   * Copies bytes both ways between the stream and `conn` until both directions ended (or
   * either failed); then closes `conn`. Resolves when done.
   */
  splice(conn: Deno.Conn): Promise<void>;
  /** Cuts the stream (and its connection, if joined). */
  reset(): void;
}

/** A UDP flow opened through a trunk. */
export interface TrunkFlow {
  /** Sends one datagram to the task (dropped when the trunk is congested or gone). */
  send(datagram: Uint8Array): void;
  /** Ends the flow. */
  close(): void;
}

interface Stream {
  readonly id: number;
  conn: Deno.Conn | undefined;
  /** Bytes this side may still send. */
  credit: number;
  onCredit: (() => void) | undefined;
  /** Received payloads not yet written to `conn`. */
  pending: Uint8Array[];
  writing: boolean;
  /** Bytes written to `conn` since the last WINDOW. */
  consumed: number;
  /** END received. */
  remoteEnded: boolean;
  /** END received and passed on (`conn` half-closed). */
  remoteDone: boolean;
  /** END sent. */
  localDone: boolean;
  closed: boolean;
  /** Set while the opener waits for OPENED. */
  opened: PromiseWithResolvers<number> | undefined;
  finished: PromiseWithResolvers<void>;
  /** For a UDP flow: where datagrams go. */
  onDatagram: ((datagram: Uint8Array) => void) | undefined;
  /** For a UDP flow on the endpoint: the way to the task. */
  udp: UdpTarget | undefined;
}

/** Why an OPEN failed: the endpoint's status byte, or -1 when the trunk went. */
export class TrunkOpenError extends Error {
  /** The status byte, or -1. */
  readonly status: number;
  /** Says what failed. */
  constructor(message: string, status: number) {
    super(message);
    this.name = "TrunkOpenError";
    this.status = status;
  }
}

function closeConn(conn: Deno.Conn | undefined): void {
  try {
    conn?.close();
  } catch {
    // already closed
  }
}

/** A trunk over a TLS socket. Build one with `openTrunk` or the endpoint (peer.ts). */
export class Trunk {
  readonly #transport: TrunkTransport;
  readonly #acceptor: TrunkAcceptor | undefined;
  #streams = new Map<number, Stream>();
  #nextId = 1;
  #in: Uint8Array = new Uint8Array(0);
  #out: Uint8Array = new Uint8Array(64 * 1024);
  #outLen = 0;
  #flushQueued = false;
  #closed = false;
  #retired = false;
  #onClose = new Set<() => void>();

  /**
   * Runs the trunk over `transport`. `acceptor` makes this the endpoint side, which takes
   * OPENs; without it, this is the opener side.
   */
  constructor(transport: TrunkTransport, acceptor?: TrunkAcceptor) {
    this.#transport = transport;
    this.#acceptor = acceptor;
    transport.start((chunk) => this.#receive(chunk), () => this.close());
  }

  /** Whether the trunk is gone. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Whether new streams may be opened (not closed, not retired). */
  get usable(): boolean {
    return !this.#closed && !this.#retired;
  }

  /** Streams and flows open now. */
  get streams(): number {
    return this.#streams.size;
  }

  /** Calls `listener` once the trunk is gone. */
  onClose(listener: () => void): void {
    if (this.#closed) listener();
    else this.#onClose.add(listener);
  }

  /** Takes no new streams, and closes once the last one ends (credentials changed). */
  retire(): void {
    this.#retired = true;
    if (this.#streams.size === 0) this.close();
  }

  /** Cuts the trunk and every stream on it. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of [...this.#streams.values()]) this.#drop(s);
    this.#transport.close();
    for (const l of this.#onClose) l();
    this.#onClose.clear();
  }

  /**
   * Opens a TCP stream to `addr:port` on the endpoint's node. Resolves once the endpoint
   * connected to it; rejects with a {@linkcode TrunkOpenError} otherwise.
   */
  async openStream(addr: string, port: number, timeoutMs = 5_000): Promise<TrunkStream> {
    const s = this.#open({ addr, port, udp: false });
    const timer = setTimeout(() => s.opened?.resolve(-1), timeoutMs);
    const status = await s.opened!.promise.finally(() => clearTimeout(timer));
    s.opened = undefined;
    if (status !== STATUS_OK) {
      this.#reset(s, status === -1 && !this.#closed);
      const why = status === -1
        ? (this.#closed ? "the trunk closed" : "timed out")
        : status === STATUS_REFUSED
        ? "refused (not a task of that node)"
        : status === STATUS_UNREACHABLE
        ? "the task did not accept the connection"
        : `status ${status}`;
      throw new TrunkOpenError(`${addr}:${port}: ${why}`, status);
    }
    return {
      splice: (conn) => this.#attach(s, conn),
      reset: () => this.#reset(s, true),
    };
  }

  /**
   * Opens a UDP flow to `addr:port` on the endpoint's node: datagrams sent go to it, and what
   * it answers goes to `onDatagram`. `onEnd` is called once the flow is gone (refused by the
   * endpoint, reset, or the trunk closed), but not after `close()`.
   */
  openFlow(
    addr: string,
    port: number,
    onDatagram: (datagram: Uint8Array) => void,
    onEnd: (reason: string) => void,
  ): TrunkFlow {
    const s = this.#open({ addr, port, udp: true });
    s.onDatagram = onDatagram;
    let closedHere = false;
    s.opened!.promise.then((status) => {
      s.opened = undefined;
      if (status !== STATUS_OK && !s.closed) this.#reset(s, false);
    });
    s.finished.promise.then(() => {
      if (!closedHere) onEnd(this.#closed ? "the trunk closed" : "refused or reset");
    });
    return {
      send: (datagram) => {
        if (s.closed || this.#transport.backlog > MAX_DGRAM_BACKLOG) return;
        this.#frame(DGRAM, s.id, datagram);
      },
      close: () => {
        closedHere = true;
        this.#reset(s, true);
      },
    };
  }

  // -------------------------------------------------------------------------------------------

  #open(req: OpenRequest): Stream {
    if (!this.usable) throw new TrunkOpenError("the trunk is closed", -1);
    if (this.#acceptor) throw new Error("only the side that dialled a trunk opens streams");
    const id = this.#nextId;
    this.#nextId = this.#nextId >= 0xffff_fffe ? 1 : this.#nextId + 1;
    const s = this.#stream(id);
    s.opened = Promise.withResolvers<number>();
    const body = req.udp
      ? { addr: req.addr, port: req.port, udp: true }
      : { addr: req.addr, port: req.port };
    this.#frame(OPEN, id, new TextEncoder().encode(JSON.stringify(body)));
    return s;
  }

  #stream(id: number): Stream {
    const s: Stream = {
      id,
      conn: undefined,
      credit: STREAM_WINDOW,
      onCredit: undefined,
      pending: [],
      writing: false,
      consumed: 0,
      remoteEnded: false,
      remoteDone: false,
      localDone: false,
      closed: false,
      opened: undefined,
      finished: Promise.withResolvers<void>(),
      onDatagram: undefined,
      udp: undefined,
    };
    this.#streams.set(id, s);
    return s;
  }

  /** Queues a frame; frames queued in the same turn leave in one write. */
  #frame(type: number, id: number, payload: Uint8Array | undefined): void {
    if (this.#closed) return;
    const len = payload?.length ?? 0;
    const need = this.#outLen + HEADER + len;
    if (need > this.#out.length) {
      const grown = new Uint8Array(Math.max(need, this.#out.length * 2));
      grown.set(this.#out.subarray(0, this.#outLen));
      this.#out = grown;
    }
    const o = this.#out;
    let at = this.#outLen;
    o[at++] = type;
    o[at++] = id >>> 24;
    o[at++] = (id >>> 16) & 0xff;
    o[at++] = (id >>> 8) & 0xff;
    o[at++] = id & 0xff;
    o[at++] = len >>> 24;
    o[at++] = (len >>> 16) & 0xff;
    o[at++] = (len >>> 8) & 0xff;
    o[at++] = len & 0xff;
    if (payload) o.set(payload, at);
    this.#outLen = need;
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(() => this.#flush());
    }
  }

  #flush(): void {
    this.#flushQueued = false;
    if (this.#closed || this.#outLen === 0) return;
    // The transport may keep the bytes until they are sent: it gets a copy, the buffer stays.
    const bytes = this.#out.slice(0, this.#outLen);
    this.#outLen = 0;
    if (this.#out.length > 1024 * 1024) this.#out = new Uint8Array(64 * 1024);
    this.#transport.write(bytes);
  }

  #receive(chunk: Uint8Array): void {
    let buf = chunk;
    if (this.#in.length > 0) {
      buf = new Uint8Array(this.#in.length + chunk.length);
      buf.set(this.#in);
      buf.set(chunk, this.#in.length);
    }
    let at = 0;
    while (buf.length - at >= HEADER && !this.#closed) {
      const type = buf[at];
      const id = ((buf[at + 1] << 24) | (buf[at + 2] << 16) | (buf[at + 3] << 8) | buf[at + 4]) >>>
        0;
      const len = ((buf[at + 5] << 24) | (buf[at + 6] << 16) | (buf[at + 7] << 8) | buf[at + 8]) >>>
        0;
      if (len > MAX_FRAME) {
        this.close();
        return;
      }
      if (buf.length - at < HEADER + len) break;
      this.#dispatch(type, id, buf.subarray(at + HEADER, at + HEADER + len));
      at += HEADER + len;
    }
    this.#in = at === buf.length ? new Uint8Array(0) : buf.slice(at);
  }

  #dispatch(type: number, id: number, payload: Uint8Array): void {
    if (type === OPEN) {
      this.#accept(id, payload);
      return;
    }
    const s = this.#streams.get(id);
    if (s === undefined || s.closed) return;
    switch (type) {
      case OPENED:
        s.opened?.resolve(payload[0] ?? -1);
        return;
      case DATA:
        if (s.remoteEnded) return;
        s.pending.push(payload);
        if (!s.writing && s.conn) void this.#drain(s);
        return;
      case END:
        s.remoteEnded = true;
        if (!s.writing && s.conn) void this.#drain(s);
        return;
      case RESET:
        this.#drop(s);
        return;
      case WINDOW: {
        if (payload.length < 4) return;
        s.credit += ((payload[0] << 24) | (payload[1] << 16) | (payload[2] << 8) | payload[3]) >>>
          0;
        const wake = s.onCredit;
        s.onCredit = undefined;
        wake?.();
        return;
      }
      case DGRAM:
        if (s.onDatagram) s.onDatagram(payload);
        else if (s.udp) this.#sendToTask(s, payload);
        return;
    }
  }

  /** Endpoint side: an OPEN. */
  #accept(id: number, payload: Uint8Array): void {
    const refuse = (status: number) => this.#frame(OPENED, id, new Uint8Array([status]));
    if (this.#acceptor === undefined || this.#streams.has(id)) {
      this.#frame(RESET, id, undefined);
      return;
    }
    let req: { addr?: unknown; port?: unknown; udp?: unknown };
    try {
      req = JSON.parse(new TextDecoder().decode(payload));
    } catch {
      refuse(1);
      return;
    }
    const addr = String(req.addr ?? "");
    const port = Number(req.port);
    if (!this.#acceptor.authorize(addr, port)) {
      refuse(STATUS_REFUSED);
      return;
    }
    const s = this.#stream(id);
    if (req.udp === true) {
      this.#openUdp(s, addr, port);
      this.#frame(OPENED, id, new Uint8Array([STATUS_OK]));
      return;
    }
    Deno.connect({ hostname: addr, port }).then((conn) => {
      if (s.closed) {
        closeConn(conn);
        return;
      }
      conn.setNoDelay(true);
      this.#frame(OPENED, id, new Uint8Array([STATUS_OK]));
      void this.#attach(s, conn);
    }, () => {
      if (s.closed) return;
      this.#streams.delete(id);
      s.closed = true;
      refuse(STATUS_UNREACHABLE);
    });
  }

  /** Endpoint side of a UDP flow: the task's answers come back as datagrams of the stream. */
  #openUdp(s: Stream, addr: string, port: number): void {
    s.udp = localUdpTarget(addr, port, (msg) => {
      if (s.closed || this.#transport.backlog > MAX_DGRAM_BACKLOG) return;
      this.#frame(DGRAM, s.id, msg);
    }, () => this.#reset(s, true));
  }

  #sendToTask(s: Stream, datagram: Uint8Array): void {
    // The payload is a view of the trunk's receive buffer: the send takes a copy.
    s.udp!.send(datagram.slice());
  }

  /** Joins an opened stream and a connection. */
  #attach(s: Stream, conn: Deno.Conn): Promise<void> {
    if (s.closed) {
      closeConn(conn);
      return Promise.resolve();
    }
    s.conn = conn;
    if (s.pending.length > 0 || s.remoteEnded) void this.#drain(s);
    void this.#pump(s);
    return s.finished.promise;
  }

  /** Connection → stream, within the stream's credit. */
  async #pump(s: Stream): Promise<void> {
    const conn = s.conn!;
    const buf = new Uint8Array(CHUNK);
    try {
      for (;;) {
        while (s.credit <= 0 && !s.closed) {
          await new Promise<void>((r) => (s.onCredit = r));
        }
        if (s.closed) return;
        const n = await conn.read(s.credit < CHUNK ? buf.subarray(0, s.credit) : buf);
        if (s.closed) return;
        if (n === null) break;
        s.credit -= n;
        this.#frame(DATA, s.id, buf.subarray(0, n));
      }
      s.localDone = true;
      this.#frame(END, s.id, undefined);
      this.#maybeDone(s);
    } catch {
      this.#reset(s, true);
    }
  }

  /** Stream → connection, in order; returns credit as bytes are passed on. */
  async #drain(s: Stream): Promise<void> {
    const conn = s.conn!;
    s.writing = true;
    try {
      while (s.pending.length > 0) {
        const chunk = s.pending.shift()!;
        let off = 0;
        while (off < chunk.length) off += await conn.write(chunk.subarray(off));
        if (s.closed) return;
        s.consumed += chunk.length;
        if (s.consumed >= WINDOW_UPDATE) {
          const c = s.consumed;
          s.consumed = 0;
          this.#frame(
            WINDOW,
            s.id,
            new Uint8Array([c >>> 24, (c >>> 16) & 0xff, (c >>> 8) & 0xff, c & 0xff]),
          );
        }
      }
      if (s.remoteEnded && !s.remoteDone) {
        s.remoteDone = true;
        await conn.closeWrite().catch(() => {});
        this.#maybeDone(s);
      }
    } catch {
      this.#reset(s, true);
    } finally {
      s.writing = false;
    }
  }

  #maybeDone(s: Stream): void {
    if (s.localDone && s.remoteDone) {
      this.#drop(s);
    }
  }

  /** Ends a stream here, telling the other side when `tell`. */
  #reset(s: Stream, tell: boolean): void {
    if (s.closed) return;
    if (tell) this.#frame(RESET, s.id, undefined);
    this.#drop(s);
  }

  /** Forgets a stream and closes what it held. */
  #drop(s: Stream): void {
    if (s.closed) return;
    s.closed = true;
    this.#streams.delete(s.id);
    closeConn(s.conn);
    try {
      s.udp?.close();
    } catch {
      // already closed
    }
    s.opened?.resolve(-1);
    const wake = s.onCredit;
    s.onCredit = undefined;
    wake?.();
    s.finished.resolve();
    if (this.#retired && this.#streams.size === 0) this.close();
  }
}
