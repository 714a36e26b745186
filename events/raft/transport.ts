/**
 * The Raft transport: peer messages between managers over long-lived TCP connections, plain or
 * TLS (`node:net`, `node:tls`).
 *
 * - **One connection per peer pair**, used both ways. The member with the lower raft id dials,
 *   the other accepts, so two members never race to open two connections. The dialer redials
 *   with exponential backoff (50 ms doubling to 1 s, with jitter) whenever the connection drops.
 * - **Handshake.** The first frame each way is a hello naming the protocol version, the
 *   cluster id, the sender's raft id and the id it expects to talk to. A peer of another
 *   cluster, or a process that is not the member expected at that address, is refused.
 * - **Frames**: a 4-byte big-endian length, then msgpack (msgpackr, plain maps: no shared
 *   record structures, because the two ends are separate processes that restart independently;
 *   a structure table would have to be agreed per connection and survive reconnects, while
 *   plain maps make every frame decode on its own). A frame holds every message of a `send`
 *   for the peer (plus any that waited for a congested socket): one Ready costs one write per
 *   peer.
 *   Entries travel as `[index, term, type, data]` arrays. Every frame received is validated
 *   field by field before the core sees it; a malformed one closes the connection.
 * - **Bounded queues.** Messages wait per peer while the socket is congested, up to
 *   `maxQueueMessages` and `maxQueueBytes`; past that, and whenever the peer is not connected,
 *   messages are dropped and the driver is told (`onUnreachable`), as etcd does: Raft resends.
 *   A dropped or failed MsgSnap is reported as a failed snapshot (`onSnapshotStatus`), a
 *   written one as finished.
 * - **TLS** is pluggable: given {@linkcode TransportTlsOptions} (node:tls options: cert, key,
 *   ca, requestCert), both ends present certificates and check the other's against the CA
 *   (mutual TLS), and `verifyPeer` can tie a certificate to the raft id the peer claims.
 *
 * @module
 */
import * as net from "node:net";
import * as tls from "node:tls";
import { Packr, Unpackr } from "msgpackr";
import {
  discardLogger,
  type Entry,
  type Logger,
  type NodeId,
  type PeerMessage,
  type Snapshot,
} from "./types.ts";

/** Mutual TLS between managers: node:tls options. */
export interface TransportTlsOptions {
  /** This node's certificate chain (PEM), presented when dialling and when accepting. */
  cert: string;
  /** This node's private key (PEM). */
  key: string;
  /** The CA certificates peers' certificates must chain to (PEM). */
  ca: string | string[];
  /** Ask dialling peers for a certificate and refuse those without a valid one (default true). */
  requestCert?: boolean;
  /**
   * The name the accepting peer's certificate must carry (SNI and identity check). Shoal's
   * manager certificates all carry the role name `swarm-manager`, the default.
   */
  servername?: string;
  /**
   * Further checks once a peer is authenticated: may this certificate speak for raft id `id`?
   * Return true to accept, or a reason to refuse. Default: any certificate from the CA.
   */
  verifyPeer?: (peer: { id: NodeId; certificate: tls.PeerCertificate }) => true | string;
}

/** Options of a {@linkcode Transport}. */
export interface TransportOptions {
  /** This node's raft id. */
  id: NodeId;
  /** The cluster's id: peers of another cluster are refused at the handshake. */
  clusterId: string;
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  /** Port to listen on (default 0: any free port). */
  port?: number;
  /** Mutual TLS; plain TCP when absent. */
  tls?: TransportTlsOptions;
  /** Messages queued per peer before new ones are dropped (default 10,000). */
  maxQueueMessages?: number;
  /** Payload bytes queued per peer before new messages are dropped (default 64 MiB). */
  maxQueueBytes?: number;
  /** Largest frame accepted (default 512 MiB: snapshots travel in one frame). */
  maxFrameBytes?: number;
  /** First reconnection delay (default 50 ms); doubles up to `maxBackoffMs`. */
  initialBackoffMs?: number;
  /** Longest reconnection delay (default 1,000 ms). */
  maxBackoffMs?: number;
  /** Where to report connection trouble. */
  logger?: Logger;
}

/** What the transport tells its owner (the driver). */
export interface TransportHandlers {
  /** A validated message from a peer, addressed to this node. */
  onMessage(m: PeerMessage): void;
  /** Messages to `id` were dropped (not connected, or its queue is full). */
  onUnreachable(id: NodeId): void;
  /** A MsgSnap to `id` was written out (`finish`) or lost (`failure`). */
  onSnapshotStatus(id: NodeId, status: "finish" | "failure"): void;
  /** The connection to `id` came up or went down. */
  onPeerStatus?(id: NodeId, connected: boolean): void;
  /** Whether to accept a connection from `id` (default: anyone of the cluster). */
  allowPeer?(id: NodeId): boolean;
  /**
   * Whether `id` was removed from the cluster: a connection from it that `allowPeer` refuses
   * is answered with a hello saying so (see {@linkcode Transport.tellRemoved}).
   */
  isRemoved?(id: NodeId): boolean;
  /** Member `by` says that this node was removed from the cluster. */
  onRemoved?(by: NodeId): void;
}

/** Version of the frame format, in the hello. */
export const PROTOCOL_VERSION = 1;

const HIGH_WATER = 4 * 1024 * 1024;
const HANDSHAKE_TIMEOUT_MS = 5_000;
const CONNECT_TIMEOUT_MS = 3_000;
const MESSAGE_OVERHEAD = 64;

interface Hello {
  readonly hello: number;
  readonly cluster: string;
  readonly from: NodeId;
  readonly to: NodeId;
  /** Set by a member to tell `to` that it was removed from the cluster; then it hangs up. */
  readonly removed?: boolean;
}

/** Delay before telling a removed member again after a failed attempt: 1 s doubling to this. */
const TELL_REMOVED_MAX_BACKOFF_MS = 30_000;

/** A removed member still to be told that it was removed. */
interface Tombstone {
  readonly id: NodeId;
  readonly address: string;
  backoffMs: number;
  timer: ReturnType<typeof setTimeout> | undefined;
  socket: net.Socket | undefined;
}

/** One peer: where to reach it, its connection, what waits to be written. */
class Peer {
  address: string | undefined;
  conn: Connection | undefined;
  queue: PeerMessage[] = [];
  queueBytes = 0;
  backoffMs: number;
  reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  dialing: Connection | undefined;
  removed = false;

  constructor(readonly id: NodeId, address: string | undefined, backoffMs: number) {
    this.address = address;
    this.backoffMs = backoffMs;
  }
}

/** The peer messages of one node: see the module documentation. */
export class Transport {
  /** This node's raft id. */
  readonly id: NodeId;
  #options: TransportOptions;
  readonly #handlers: TransportHandlers;
  readonly #logger: Logger;
  readonly #peers = new Map<NodeId, Peer>();
  readonly #pending = new Set<Connection>();
  readonly #tombstones = new Map<NodeId, Tombstone>();
  /** Removed members told so already (or being told). */
  readonly #told = new Set<NodeId>();
  /** A member told this node it was removed: it dials no one any more. */
  #removedSelf = false;
  #server: net.Server | undefined;
  #address = "";
  #closed = false;
  readonly #maxQueueMessages: number;
  readonly #maxQueueBytes: number;
  readonly #initialBackoff: number;
  readonly #maxBackoff: number;

  /** A transport for node `options.id`; call {@linkcode listen} to start it. */
  constructor(options: TransportOptions, handlers: TransportHandlers) {
    this.id = options.id;
    this.#options = options;
    this.#handlers = handlers;
    this.#logger = options.logger ?? discardLogger;
    this.#maxQueueMessages = options.maxQueueMessages ?? 10_000;
    this.#maxQueueBytes = options.maxQueueBytes ?? 64 * 1024 * 1024;
    this.#initialBackoff = options.initialBackoffMs ?? 50;
    this.#maxBackoff = options.maxBackoffMs ?? 1_000;
  }

  /** Starts listening; resolves with the address peers reach this node at (`host:port`). */
  async listen(): Promise<string> {
    const host = this.#options.host ?? "127.0.0.1";
    const onSocket = (socket: net.Socket) => this.#accept(socket);
    const t = this.#options.tls;
    const server = t
      ? tls.createServer({
        cert: t.cert,
        key: t.key,
        ca: t.ca,
        requestCert: t.requestCert ?? true,
        rejectUnauthorized: true,
      }, onSocket)
      : net.createServer(onSocket);
    if (t) {
      server.on("tlsClientError", (err: Error, socket: tls.TLSSocket) => {
        this.#logger.warn(`raft ${this.id}: refused a TLS client: ${err.message}`);
        // Not left to the runtime: a refused client must not keep a socket of this server.
        socket?.destroy();
      });
    }
    server.on("error", (err: Error) => this.#logger.error(`raft ${this.id}: server: ${err}`));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.#options.port ?? 0, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.#server = server;
    const { port } = server.address() as net.AddressInfo;
    this.#address = `${host.includes(":") ? `[${host}]` : host}:${port}`;
    return this.#address;
  }

  /**
   * Replaces this node's certificate, key and trusted roots (a renewal, a root CA rotation):
   * new connections, both ways, use them; open ones carry on.
   */
  setTls(update: Pick<TransportTlsOptions, "cert" | "key" | "ca">): void {
    const current = this.#options.tls;
    if (current === undefined) throw new Error("this transport runs without TLS");
    this.#options = { ...this.#options, tls: { ...current, ...update } };
    (this.#server as tls.Server | undefined)?.setSecureContext({
      cert: update.cert,
      key: update.key,
      ca: update.ca,
    });
  }

  /** Where this node listens (`host:port`), once {@linkcode listen} resolved. */
  get address(): string {
    return this.#address;
  }

  /**
   * Sets (or changes) where peer `id` listens. A peer with a higher id than this node's is
   * dialled at once; one with a lower id dials us.
   */
  setPeer(id: NodeId, address: string | undefined): void {
    if (this.#closed || id === this.id) return;
    let peer = this.#peers.get(id);
    if (peer === undefined) {
      peer = new Peer(id, address, this.#initialBackoff);
      this.#peers.set(id, peer);
    } else if (peer.address === address) {
      return;
    } else {
      peer.address = address;
      // A new address: drop the old connection and dial the new one.
      if (this.#dials(id)) peer.conn?.close("the peer's address changed");
    }
    if (this.#dials(id)) this.#dial(peer);
  }

  /** Forgets peer `id` (removed from the cluster): closes its connection, drops its queue. */
  removePeer(id: NodeId): void {
    const peer = this.#peers.get(id);
    if (peer === undefined) return;
    peer.removed = true;
    this.#peers.delete(id);
    clearTimeout(peer.reconnectTimer);
    peer.dialing?.close("the peer was removed");
    peer.conn?.close("the peer was removed");
    this.#dropQueue(peer);
  }

  /**
   * Tells `id`, removed from the cluster, that it was: dials `address` (whichever id is lower)
   * and sends a hello with `removed` set, then hangs up; retries with backoff (1 s to 30 s)
   * until the hello is written. Once per id and process (a removed member that dials this
   * node is also told, at the handshake, through `isRemoved`). Call after
   * {@linkcode removePeer}.
   */
  tellRemoved(id: NodeId, address: string): void {
    if (this.#closed || id === this.id || this.#told.has(id) || this.#peers.has(id)) return;
    this.#told.add(id);
    const t: Tombstone = { id, address, backoffMs: 1_000, timer: undefined, socket: undefined };
    this.#tombstones.set(id, t);
    this.#tell(t);
  }

  /** Stops telling `id` that it was removed (it was added again). */
  forgetRemoved(id: NodeId): void {
    this.#told.delete(id);
    const t = this.#tombstones.get(id);
    if (t === undefined) return;
    this.#tombstones.delete(id);
    clearTimeout(t.timer);
    t.socket?.destroy();
  }

  /** The peers' addresses, as known to the transport. */
  peers(): Map<NodeId, string | undefined> {
    return new Map([...this.#peers].map(([id, p]) => [id, p.address]));
  }

  /** Whether a handshaken connection to `id` is up. */
  isConnected(id: NodeId): boolean {
    return this.#peers.get(id)?.conn !== undefined;
  }

  /**
   * Sends `messages` to their recipients now: one frame (one write) per peer, holding every
   * message for it (plus any that waited for a congested socket to drain). Messages to a peer
   * that is not connected, or whose queue is full, are dropped and reported.
   */
  send(messages: readonly PeerMessage[]): void {
    if (this.#closed) return;
    let unreachable: Set<NodeId> | undefined;
    const touched = new Set<Peer>();
    for (const m of messages) {
      const peer = this.#peers.get(m.to);
      const size = messageSize(m);
      if (
        peer === undefined || peer.conn === undefined ||
        peer.queue.length >= this.#maxQueueMessages ||
        (peer.queue.length > 0 && peer.queueBytes + size > this.#maxQueueBytes)
      ) {
        (unreachable ??= new Set()).add(m.to);
        if (m.type === "MsgSnap") this.#handlers.onSnapshotStatus(m.to, "failure");
        continue;
      }
      peer.queue.push(m);
      peer.queueBytes += size;
      touched.add(peer);
    }
    // Written at once: the driver calls this once per Ready, after the Ready is persisted.
    for (const peer of touched) this.#flush(peer);
    if (unreachable) { for (const id of unreachable) this.#handlers.onUnreachable(id); }
  }

  /** Closes every connection and the listener. Queued messages are dropped. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const peer of this.#peers.values()) {
      clearTimeout(peer.reconnectTimer);
      peer.dialing?.close("the transport closed");
      peer.conn?.close("the transport closed");
      peer.queue = [];
      peer.queueBytes = 0;
    }
    for (const c of this.#pending) c.close("the transport closed");
    for (const t of this.#tombstones.values()) {
      clearTimeout(t.timer);
      t.socket?.destroy();
    }
    this.#tombstones.clear();
    const server = this.#server;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  // -------------------------------------------------------------------------------------------

  #dials(id: NodeId): boolean {
    return this.id < id;
  }

  #flush(peer: Peer): void {
    const conn = peer.conn;
    if (conn === undefined || peer.queue.length === 0) return;
    if (conn.writableLength > HIGH_WATER) return; // resumed on 'drain'
    const messages = peer.queue;
    peer.queue = [];
    peer.queueBytes = 0;
    // Snapshots go in frames of their own, reported when written.
    let batch: PeerMessage[] = [];
    for (const m of messages) {
      if (m.type !== "MsgSnap") {
        batch.push(m);
        continue;
      }
      if (batch.length > 0) conn.write(encodeMessages(batch));
      batch = [];
      conn.write(encodeMessages([m]), (err) => {
        this.#handlers.onSnapshotStatus(peer.id, err ? "failure" : "finish");
      });
    }
    if (batch.length > 0) conn.write(encodeMessages(batch));
  }

  #dropQueue(peer: Peer): void {
    const dropped = peer.queue;
    peer.queue = [];
    peer.queueBytes = 0;
    for (const m of dropped) {
      if (m.type === "MsgSnap") this.#handlers.onSnapshotStatus(peer.id, "failure");
    }
    if (dropped.length > 0) this.#handlers.onUnreachable(peer.id);
  }

  #dial(peer: Peer): void {
    if (this.#closed || peer.removed || peer.conn || peer.dialing || peer.reconnectTimer) return;
    if (this.#removedSelf) return;
    const address = peer.address;
    if (address === undefined) return;
    const socket = this.#connect(address);
    const t = this.#options.tls;
    const conn = new Connection(this, socket, peer.id, true);
    peer.dialing = conn;
    const ready = t ? "secureConnect" : "connect";
    socket.setTimeout(CONNECT_TIMEOUT_MS, () => conn.close("connect timed out"));
    socket.once(ready, () => {
      socket.setTimeout(0);
      if (t && !this.#verifyTls(socket as tls.TLSSocket, peer.id, conn)) return;
      conn.sendHello(this.#hello(peer.id));
    });
  }

  #connect(address: string): net.Socket {
    const { host, port } = parseAddress(address);
    const t = this.#options.tls;
    return t
      ? tls.connect({
        host,
        port,
        cert: t.cert,
        key: t.key,
        ca: t.ca,
        servername: t.servername ?? "swarm-manager",
        rejectUnauthorized: true,
      })
      : net.connect({ host, port });
  }

  /** One attempt to tell a removed member that it was (see {@linkcode tellRemoved}). */
  #tell(t: Tombstone): void {
    if (this.#closed || this.#tombstones.get(t.id) !== t) return;
    const socket = this.#connect(t.address);
    t.socket = socket;
    let written = false;
    socket.setTimeout(CONNECT_TIMEOUT_MS, () => socket.destroy());
    socket.on("error", () => {});
    socket.once(this.#options.tls ? "secureConnect" : "connect", () => {
      socket.setTimeout(CONNECT_TIMEOUT_MS, () => socket.destroy());
      const verify = this.#options.tls?.verifyPeer;
      if (
        verify &&
        verify({ id: t.id, certificate: (socket as tls.TLSSocket).getPeerCertificate() }) !== true
      ) {
        socket.destroy();
        return;
      }
      socket.write(encodeFrame({ ...this.#hello(t.id), removed: true }), (err) => {
        if (err) return;
        written = true;
        socket.end();
      });
    });
    socket.once("close", () => {
      if (t.socket === socket) t.socket = undefined;
      if (this.#closed || this.#tombstones.get(t.id) !== t) return;
      if (written) {
        this.#tombstones.delete(t.id);
        this.#logger.info(`raft ${this.id}: told removed member ${t.id} that it was removed`);
        return;
      }
      t.timer = setTimeout(() => {
        t.timer = undefined;
        this.#tell(t);
      }, t.backoffMs * (0.5 + Math.random() / 2));
      t.backoffMs = Math.min(t.backoffMs * 2, TELL_REMOVED_MAX_BACKOFF_MS);
    });
  }

  #accept(socket: net.Socket): void {
    if (this.#closed) {
      socket.destroy();
      return;
    }
    const conn = new Connection(this, socket, undefined, false);
    this.#pending.add(conn);
  }

  #hello(to: NodeId): Hello {
    return { hello: PROTOCOL_VERSION, cluster: this.#options.clusterId, from: this.id, to };
  }

  #verifyTls(socket: tls.TLSSocket, id: NodeId, conn: Connection): boolean {
    const verify = this.#options.tls?.verifyPeer;
    if (!verify) return true;
    const verdict = verify({ id, certificate: socket.getPeerCertificate() });
    if (verdict === true) return true;
    this.#logger.warn(`raft ${this.id}: refused a connection claiming raft node ${id}: ${verdict}`);
    conn.close(`peer ${id} refused: ${verdict}`);
    return false;
  }

  /** Called by a connection when its peer's hello arrived; returns whether to go on. */
  handshake(conn: Connection, hello: Hello): boolean {
    const why = hello.hello !== PROTOCOL_VERSION
      ? `protocol version ${hello.hello}, expected ${PROTOCOL_VERSION}`
      : hello.cluster !== this.#options.clusterId
      ? `cluster ${hello.cluster}, expected ${this.#options.clusterId}`
      : hello.to !== this.id
      ? `it expected raft node ${hello.to}, this is ${this.id}`
      : !isId(hello.from) || hello.from === this.id
      ? `bad raft id ${hello.from}`
      : hello.removed === true
      ? `raft node ${hello.from} says this node was removed from the cluster`
      : conn.dialer && hello.from !== conn.peerId
      ? `it is raft node ${hello.from}, expected ${conn.peerId}`
      : !conn.dialer && hello.from > this.id
      ? `raft node ${hello.from} dialled, but the member with the lower id dials`
      : !conn.dialer && this.#handlers.allowPeer && !this.#handlers.allowPeer(hello.from)
      ? `raft node ${hello.from} is not a member`
      : undefined;
    if (why !== undefined) {
      this.#logger.warn(`raft ${this.id}: refused a connection: ${why}`);
      if (hello.removed === true && why.endsWith("was removed from the cluster")) {
        conn.close(why);
        this.#removedSelf = true;
        this.#handlers.onRemoved?.(hello.from);
      } else if (
        !conn.dialer && why.endsWith("is not a member") && this.#handlers.isRemoved?.(hello.from)
      ) {
        // Tell it why before hanging up, so that it stops and says so.
        conn.write(
          encodeFrame({ ...this.#hello(hello.from), removed: true }),
          () => conn.close(why),
        );
      } else {
        conn.close(why);
      }
      return false;
    }
    if (!conn.dialer) {
      this.#pending.delete(conn);
      if (this.#options.tls && !this.#verifyTls(conn.socket as tls.TLSSocket, hello.from, conn)) {
        return false;
      }
      conn.peerId = hello.from;
      conn.sendHello(this.#hello(hello.from));
    }
    const id = hello.from;
    let peer = this.#peers.get(id);
    if (peer === undefined) {
      // A member we have no address for (a newer member, or one we have not heard of yet).
      peer = new Peer(id, undefined, this.#initialBackoff);
      this.#peers.set(id, peer);
    }
    if (peer.dialing === conn) peer.dialing = undefined;
    // A fresh connection replaces an old one (the peer restarted, or the old one is stale).
    const old = peer.conn;
    peer.conn = conn;
    if (old && old !== conn) old.close("replaced by a newer connection");
    peer.backoffMs = this.#initialBackoff;
    this.#handlers.onPeerStatus?.(id, true);
    return true;
  }

  /** Called by a connection for each message it received. */
  deliver(conn: Connection, m: PeerMessage): void {
    if (this.#closed || conn.peerId === undefined) return;
    if (this.#peers.get(conn.peerId)?.conn !== conn) return;
    this.#handlers.onMessage(m);
  }

  /** Called by a connection whose socket drained: write what waited. */
  drained(conn: Connection): void {
    const peer = conn.peerId === undefined ? undefined : this.#peers.get(conn.peerId);
    if (peer?.conn === conn && peer.queue.length > 0) this.#flush(peer);
  }

  /** Called once by a connection when it closed, with why. */
  closed(conn: Connection, why: string): void {
    this.#pending.delete(conn);
    if (conn.peerId === undefined) return;
    const peer = this.#peers.get(conn.peerId);
    if (peer === undefined) return;
    if (peer.dialing === conn) peer.dialing = undefined;
    if (peer.conn === conn) {
      peer.conn = undefined;
      this.#logger.info(`raft ${this.id}: connection to ${peer.id} closed: ${why}`);
      this.#dropQueue(peer);
      this.#handlers.onPeerStatus?.(peer.id, false);
      this.#handlers.onUnreachable(peer.id);
    }
    if (!this.#closed && !peer.removed && this.#dials(peer.id) && peer.conn === undefined) {
      // Redial after a backoff with jitter (half to full delay).
      const delay = peer.backoffMs * (0.5 + Math.random() / 2);
      peer.backoffMs = Math.min(peer.backoffMs * 2, this.#maxBackoff);
      clearTimeout(peer.reconnectTimer);
      peer.reconnectTimer = setTimeout(() => {
        peer.reconnectTimer = undefined;
        this.#dial(peer);
      }, delay);
    }
  }

  /** Limits for connections. */
  get maxFrameBytes(): number {
    return this.#options.maxFrameBytes ?? 512 * 1024 * 1024;
  }
}

/** One socket: reads frames, validates them, hands them to the transport. */
class Connection {
  #chunks: Uint8Array[] = [];
  #size = 0;
  /** Bytes needed before the next frame can be complete. */
  #need = 4;
  #helloed = false;
  #closed = false;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    readonly transport: Transport,
    readonly socket: net.Socket,
    public peerId: NodeId | undefined,
    readonly dialer: boolean,
  ) {
    socket.setNoDelay(true);
    socket.on("data", (chunk: Uint8Array) => this.#onData(chunk));
    socket.on("drain", () => transport.drained(this));
    socket.on("error", (err: Error) => this.close(err.message));
    socket.on("close", () => this.close("the connection closed"));
    this.#timer = setTimeout(() => {
      if (!this.#helloed) this.close("no handshake in time");
    }, HANDSHAKE_TIMEOUT_MS);
  }

  get writableLength(): number {
    return this.socket.writableLength;
  }

  sendHello(hello: Hello): void {
    this.write(encodeFrame(hello));
  }

  write(frame: Uint8Array, done?: (err?: Error | null) => void): void {
    if (this.#closed) {
      done?.(new Error("closed"));
      return;
    }
    this.socket.write(frame, done);
  }

  close(why: string): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    this.socket.destroy();
    this.transport.closed(this, why);
  }

  #onData(chunk: Uint8Array): void {
    if (this.#closed) return;
    // Chunks wait in a list until a whole frame is there, so a big frame (a snapshot) arriving
    // in many chunks is copied once, not once per chunk.
    this.#chunks.push(chunk);
    this.#size += chunk.length;
    if (this.#size < this.#need) return;
    let buf = this.#chunks.length === 1 ? this.#chunks[0] : concatAll(this.#chunks, this.#size);
    let pos = 0;
    this.#need = 4;
    try {
      while (buf.length - pos >= 4) {
        const len = ((buf[pos] << 24) | (buf[pos + 1] << 16) | (buf[pos + 2] << 8) |
          buf[pos + 3]) >>> 0;
        if (len > this.transport.maxFrameBytes) {
          throw new SyntaxError(`a frame of ${len} bytes is over the limit`);
        }
        if (buf.length - pos - 4 < len) {
          this.#need = 4 + len;
          break;
        }
        const payload = buf.subarray(pos + 4, pos + 4 + len);
        pos += 4 + len;
        this.#onFrame(payload);
        if (this.#closed) return;
      }
    } catch (err) {
      this.close(`bad frame: ${(err as Error).message}`);
      return;
    }
    // Keep a copy of the partial frame left over (not a view that pins the whole chunk).
    buf = pos === buf.length ? new Uint8Array(0) : new Uint8Array(buf.subarray(pos));
    this.#chunks = buf.length > 0 ? [buf] : [];
    this.#size = buf.length;
  }

  #onFrame(payload: Uint8Array): void {
    const value = unpackr.unpack(payload) as unknown;
    if (!this.#helloed) {
      const hello = value as Hello;
      if (typeof value !== "object" || value === null || typeof hello.hello !== "number") {
        throw new SyntaxError("the first frame is not a hello");
      }
      this.#helloed = true;
      clearTimeout(this.#timer);
      this.transport.handshake(this, hello);
      return;
    }
    if (!Array.isArray(value)) throw new SyntaxError("a frame holds an array of messages");
    for (const raw of value) {
      const m = decodeMessage(raw, this.transport.id);
      this.transport.deliver(this, m);
      if (this.#closed) return;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Wire format

const packr = new Packr({ useRecords: false, variableMapSize: true });
// copyBuffers: entry data must not keep (or alias) the frame they arrived in.
const unpackr = new Unpackr({ useRecords: false, copyBuffers: true, mapsAsObjects: true });

const TYPE_CODES = ["normal", "confChange"] as const;

function encodeFrame(value: unknown): Uint8Array {
  const payload = packr.pack(value);
  const frame = new Uint8Array(4 + payload.length);
  new DataView(frame.buffer).setUint32(0, payload.length);
  frame.set(payload, 4);
  return frame;
}

/** One frame holding `messages`. */
export function encodeMessages(messages: readonly PeerMessage[]): Uint8Array {
  return encodeFrame(messages.map(toWire));
}

/** The messages in a frame made by {@linkcode encodeMessages} (for tests). */
export function decodeMessages(frame: Uint8Array, to: NodeId): PeerMessage[] {
  const value = unpackr.unpack(frame.subarray(4)) as unknown;
  if (!Array.isArray(value)) throw new SyntaxError("a frame holds an array of messages");
  return value.map((raw) => decodeMessage(raw, to));
}

function toWire(m: PeerMessage): unknown {
  if (m.type === "MsgApp") {
    return {
      ...m,
      entries: m.entries.map((e) => [e.index, e.term, e.type === "normal" ? 0 : 1, e.data]),
    };
  }
  return m;
}

type FieldKind = "n" | "b" | "b?" | "u" | "u?" | "E" | "S";

const FIELDS: Record<PeerMessage["type"], readonly (readonly [string, FieldKind])[]> = {
  MsgApp: [["index", "n"], ["logTerm", "n"], ["entries", "E"], ["commit", "n"]],
  MsgAppResp: [["index", "n"], ["reject", "b"], ["rejectHint", "n"], ["logTerm", "n"]],
  MsgVote: [["index", "n"], ["logTerm", "n"], ["transfer", "b?"]],
  MsgVoteResp: [["reject", "b"]],
  MsgPreVote: [["index", "n"], ["logTerm", "n"], ["transfer", "b?"]],
  MsgPreVoteResp: [["reject", "b"]],
  MsgHeartbeat: [["commit", "n"], ["context", "u?"]],
  MsgHeartbeatResp: [["context", "u?"]],
  MsgSnap: [["snapshot", "S"]],
  MsgTimeoutNow: [],
  MsgTransferLeader: [],
  MsgReadIndex: [["context", "u"]],
  MsgReadIndexResp: [["index", "n"], ["context", "u"]],
};

/** Checks a received message field by field and rebuilds it with only the known fields. */
export function decodeMessage(raw: unknown, to: NodeId): PeerMessage {
  if (typeof raw !== "object" || raw === null) throw new SyntaxError("a message is not a map");
  const r = raw as Record<string, unknown>;
  const type = r.type as PeerMessage["type"];
  const fields = typeof type === "string" && Object.hasOwn(FIELDS, type) ? FIELDS[type] : null;
  if (fields === null) throw new SyntaxError(`unknown message type ${String(r.type)}`);
  if (r.to !== to) throw new SyntaxError(`a ${type} for node ${String(r.to)} reached ${to}`);
  const out: Record<string, unknown> = {
    type,
    from: nonNegative(r.from, "from"),
    to,
    term: nonNegative(r.term, "term"),
  };
  for (const [name, kind] of fields) {
    const v = r[name];
    switch (kind) {
      case "n":
        out[name] = nonNegative(v, name);
        break;
      case "b":
      case "b?":
        if (v === undefined && kind === "b?") break;
        if (typeof v !== "boolean") throw new SyntaxError(`${type}.${name} is not a boolean`);
        out[name] = v;
        break;
      case "u":
      case "u?":
        if (v === undefined && kind === "u?") break;
        out[name] = bytes(v, `${type}.${name}`);
        break;
      case "E":
        out[name] = entriesFromWire(v);
        break;
      case "S":
        out[name] = snapshotFromWire(v);
        break;
    }
  }
  return out as unknown as PeerMessage;
}

function entriesFromWire(v: unknown): Entry[] {
  if (!Array.isArray(v)) throw new SyntaxError("MsgApp.entries is not an array");
  const out: Entry[] = new Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const e = v[i];
    if (!Array.isArray(e) || e.length !== 4) throw new SyntaxError("an entry is not [i, t, k, d]");
    const type = TYPE_CODES[e[2] as number];
    if (type === undefined) throw new SyntaxError(`unknown entry type ${e[2]}`);
    out[i] = {
      index: nonNegative(e[0], "entry index"),
      term: nonNegative(e[1], "entry term"),
      type,
      data: bytes(e[3], "entry data"),
    };
  }
  return out;
}

function snapshotFromWire(v: unknown): Snapshot {
  const s = v as { metadata?: Record<string, unknown>; data?: unknown };
  const md = s?.metadata;
  if (typeof md !== "object" || md === null) throw new SyntaxError("a snapshot has no metadata");
  const cs = md.confState as { voters?: unknown; learners?: unknown } | undefined;
  const ids = (x: unknown, what: string): NodeId[] => {
    if (!Array.isArray(x) || !x.every(isId)) throw new SyntaxError(`bad snapshot ${what}`);
    return x as NodeId[];
  };
  return {
    metadata: {
      index: nonNegative(md.index, "snapshot index"),
      term: nonNegative(md.term, "snapshot term"),
      confState: { voters: ids(cs?.voters, "voters"), learners: ids(cs?.learners, "learners") },
    },
    data: bytes(s.data, "snapshot data"),
  };
}

function nonNegative(v: unknown, what: string): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
    throw new SyntaxError(`${what} is not a whole number`);
  }
  return v;
}

function isId(v: unknown): v is NodeId {
  return typeof v === "number" && Number.isSafeInteger(v) && v > 0;
}

function bytes(v: unknown, what: string): Uint8Array {
  if (!(v instanceof Uint8Array)) throw new SyntaxError(`${what} is not bytes`);
  return v;
}

function messageSize(m: PeerMessage): number {
  if (m.type === "MsgApp") {
    let size = MESSAGE_OVERHEAD;
    for (const e of m.entries) size += e.data.byteLength + 16;
    return size;
  }
  if (m.type === "MsgSnap") return MESSAGE_OVERHEAD + m.snapshot.data.byteLength;
  return MESSAGE_OVERHEAD;
}

function concatAll(chunks: readonly Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** `host:port` (or `[v6]:port`) as parts. */
export function parseAddress(address: string): { host: string; port: number } {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(address) ?? /^(.*):(\d+)$/.exec(address);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !(port > 0 && port < 65536)) {
    throw new RangeError(`A raft address is host:port; got ${JSON.stringify(address)}`);
  }
  return { host: m[1], port };
}
