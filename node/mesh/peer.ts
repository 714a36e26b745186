/**
 * The mesh endpoint: how one node's mesh hands a connection to a task on another node. Each
 * node listens on its address at the mesh port (Shoal's default 4379: the cluster port is 4377
 * and a manager's Raft port 4378); a node that picked a task on another node dials that node's endpoint with **mutual TLS**
 * (both sides present their node certificates, signed by the swarm's root CA; the dialler checks
 * the server is the node it meant by its node id, which every node certificate carries as a DNS
 * name), says which address and port it wants, and from then on the connection carries the
 * client's bytes both ways. So traffic between nodes is always encrypted: what Swarm's
 * `--opt encrypted` overlay option asks for comes for free.
 *
 * On the wire, after the TLS handshake:
 * ```
 * → "SM" 1 kind len:u16 JSON      kind 1 (connect): {"addr": "127.1.0.5", "port": 80}
 *                                 kind 2 (discover): {}
 *                                 kind 3 (trunk): {}
 * ← status:u8                     connect: 0 connected, 1 refused, 2 the task did not answer;
 *                                 then the task's bytes
 * ← len:u32 JSON                  discover: {"ports": {"<task id>": [80, 8080]}}
 * ← status:u8                     trunk: 0; then frames both ways (trunk.ts)
 * ```
 * The mesh forwards through trunks: one connection to each peer carries every forwarded TCP
 * connection and UDP flow to it (trunk.ts). `connect` is the one-connection-per-stream form,
 * still answered.
 * The endpoint only connects to addresses and ports of tasks on its own node
 * (`authorize`), so it is no open proxy even to the swarm's own nodes.
 *
 * @module
 */
import * as net from "node:net";
import * as tls from "node:tls";
import type { Buffer } from "node:buffer";
import type { Logger } from "../../actors/runtime.ts";
import { socketTransport, Trunk } from "./trunk.ts";

/** Shoal's default mesh port: after the cluster port (4377) and the Raft port (4378). */
export const DEFAULT_MESH_PORT = 4379;

/** TLS material of this node, PEM. */
export interface MeshCredentials {
  readonly key: string;
  readonly cert: string;
  /** The swarm's root CA. */
  readonly ca: string;
}

const MAGIC0 = 0x53; // "S"
const MAGIC1 = 0x4d; // "M"
const VERSION = 1;
const KIND_DISCOVER = 2;
const KIND_TRUNK = 3;
const MAX_HEADER = 4096;

/** Status byte: connected. */
export const STATUS_OK = 0;
/** Status byte: the endpoint refused the target. */
export const STATUS_REFUSED = 1;

/** Why a dial through a peer failed. */
export class PeerDialError extends Error {
  /** The endpoint's status byte, or -1 when the endpoint itself failed. */
  readonly status: number;
  /** Says what failed. */
  constructor(message: string, status: number) {
    super(message);
    this.name = "PeerDialError";
    this.status = status;
  }
}

/** The header of a request. */
export function encodePeerHeader(kind: number, body: unknown): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(body));
  if (json.length > MAX_HEADER) throw new RangeError("mesh header too long");
  const out = new Uint8Array(6 + json.length);
  out.set([MAGIC0, MAGIC1, VERSION, kind, json.length >> 8, json.length & 0xff]);
  out.set(json, 6);
  return out;
}

/**
 * What arrived on a socket after its prefix, held until a reader takes it over with
 * {@linkcode HeldSocket.take}. The socket is not paused meanwhile: Deno's `node:tls` can lose the
 * end of a stream that arrives while a socket is paused (see splice.ts).
 */
export class HeldSocket {
  /** The socket. */
  readonly socket: net.Socket;
  #chunks: Uint8Array[] = [];
  #ended = false;
  #onData = (chunk: Uint8Array) => this.#chunks.push(chunk);
  #onEnd = () => (this.#ended = true);

  /** Starts holding what `socket` receives, beginning with `first` (if not empty). */
  constructor(socket: net.Socket, first: Uint8Array) {
    this.socket = socket;
    if (first.length > 0) this.#chunks.push(first);
    socket.on("data", this.#onData);
    socket.once("end", this.#onEnd);
  }

  /**
   * Stops holding: returns what was held and whether the stream already ended. Attach the
   * reader's own listeners in the same turn, so that nothing is missed.
   */
  take(): { chunks: Uint8Array[]; ended: boolean } {
    this.socket.off("data", this.#onData);
    this.socket.off("end", this.#onEnd);
    const held = { chunks: this.#chunks, ended: this.#ended };
    this.#chunks = [];
    return held;
  }
}

/**
 * Reads `need(buffer)` bytes off a socket (need returns how many bytes it wants in total, or
 * -1 to ask for more); what comes after is held for the next reader.
 */
function readPrefix(
  socket: net.Socket,
  need: (buf: Uint8Array) => number,
  timeoutMs: number,
): Promise<{ prefix: Uint8Array; held: HeldSocket }> {
  return new Promise((resolve, reject) => {
    let buf = new Uint8Array(0);
    const cleanUp = () => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("close", onClose);
      socket.off("error", onError);
    };
    const fail = (err: Error) => {
      cleanUp();
      reject(err);
    };
    const onData = (chunk: Uint8Array) => {
      const next = new Uint8Array(buf.length + chunk.length);
      next.set(buf);
      next.set(chunk, buf.length);
      buf = next;
      let n: number;
      try {
        n = need(buf);
      } catch (err) {
        fail(err as Error);
        return;
      }
      if (n < 0 || buf.length < n) return;
      cleanUp();
      resolve({ prefix: buf.subarray(0, n), held: new HeldSocket(socket, buf.subarray(n)) });
    };
    const onClose = () => fail(new Error("the connection closed"));
    const onError = (err: Error) => fail(err);
    const timer = setTimeout(() => fail(new Error("timed out")), timeoutMs);
    socket.on("data", onData);
    socket.once("close", onClose);
    socket.once("error", onError);
  });
}

function headerLength(buf: Uint8Array): number {
  if (buf.length < 6) return -1;
  if (buf[0] !== MAGIC0 || buf[1] !== MAGIC1 || buf[2] !== VERSION) {
    throw new SyntaxError("not a mesh request");
  }
  return 6 + ((buf[4] << 8) | buf[5]);
}

/** How to reach a peer's mesh endpoint. */
export interface PeerOptions {
  /** The peer's address and mesh port. */
  host: string;
  port: number;
  /** The peer's node id: its certificate must name it. */
  nodeId: string;
  credentials: MeshCredentials;
  /** How long the whole dial may take, ms (default 5 s). */
  timeoutMs?: number;
  /** A TLS session to resume, and where to keep the next one. */
  sessions?: Map<string, Buffer>;
}

function tlsConnect(
  opts: PeerOptions,
): tls.TLSSocket {
  const key = `${opts.nodeId}@${opts.host}:${opts.port}`;
  // allowHalfOpen (honoured by tls.connect, missing from its types): a client that half-closes
  // must still get its answer.
  const options: tls.ConnectionOptions & { allowHalfOpen: boolean } = {
    host: opts.host,
    port: opts.port,
    key: opts.credentials.key,
    cert: opts.credentials.cert,
    ca: [opts.credentials.ca],
    servername: opts.nodeId,
    rejectUnauthorized: true,
    allowHalfOpen: true,
    session: opts.sessions?.get(key),
  };
  const socket = tls.connect(options);
  socket.setNoDelay(true);
  if (opts.sessions) {
    socket.on("session", (session: Buffer) => opts.sessions!.set(key, session));
  }
  return socket;
}

/**
 * Opens a trunk to a peer's endpoint (see trunk.ts): mutual TLS (the peer's certificate must be
 * of this swarm and name `nodeId`), then one connection for every stream to that peer. Rejects
 * with a {@linkcode PeerDialError}.
 */
export async function openTrunk(
  opts: PeerOptions,
): Promise<Trunk> {
  const socket = tlsConnect(opts);
  socket.write(encodePeerHeader(KIND_TRUNK, {}));
  let status: { prefix: Uint8Array; held: HeldSocket };
  try {
    status = await readPrefix(socket, () => 1, opts.timeoutMs ?? 5_000);
  } catch (err) {
    socket.destroy();
    throw new PeerDialError(
      `mesh endpoint of node ${opts.nodeId} (${opts.host}:${opts.port}): ${(err as Error).message}`,
      -1,
    );
  }
  if (status.prefix[0] !== STATUS_OK) {
    socket.destroy();
    throw new PeerDialError(`node ${opts.nodeId} refused a trunk`, status.prefix[0]);
  }
  return new Trunk(socketTransport(status.held));
}

/** Asks a peer which ports its tasks listen on (task id → ports). */
export async function discoverPeer(
  opts: PeerOptions,
): Promise<Record<string, number[]>> {
  const socket = tlsConnect(opts);
  try {
    socket.write(encodePeerHeader(KIND_DISCOVER, {}));
    const { prefix: bytes } = await readPrefix(socket, (buf) => {
      if (buf.length < 4) return -1;
      const len = ((buf[0] << 24) | (buf[1] << 16) | (buf[2] << 8) | buf[3]) >>> 0;
      if (len > 4 * 1024 * 1024) throw new RangeError("discovery answer too long");
      return 4 + len;
    }, opts.timeoutMs ?? 5_000);
    const body = JSON.parse(new TextDecoder().decode(bytes.subarray(4))) as { ports?: unknown };
    const out: Record<string, number[]> = {};
    if (typeof body.ports === "object" && body.ports !== null) {
      for (const [task, ports] of Object.entries(body.ports)) {
        if (Array.isArray(ports)) {
          out[task] = ports.filter((p) => Number.isInteger(p) && p > 0 && p < 65536);
        }
      }
    }
    return out;
  } finally {
    socket.destroy();
  }
}

/** Options of a {@linkcode PeerEndpoint}. */
export interface PeerEndpointOptions {
  credentials: MeshCredentials;
  /** Whether this node may connect a peer to `addr:port` (a task of this node). */
  authorize: (addr: string, port: number) => boolean;
  /** The ports this node's tasks listen on, for `discover`. */
  discover: () => Promise<Record<string, number[]>>;
  logger?: Logger;
}

/** The mesh endpoint's server side. See the module documentation. */
export class PeerEndpoint {
  #opts: PeerEndpointOptions;
  #server: tls.Server | undefined;
  #sockets = new Set<net.Socket>();
  #address = "";

  /** An endpoint; call `start()`. */
  constructor(options: PeerEndpointOptions) {
    this.#opts = options;
  }

  /** Where it listens (`host:port`). */
  get address(): string {
    return this.#address;
  }

  /** Listens on `host:port` (port 0 picks one); resolves with the address. */
  async start(host: string, port: number): Promise<string> {
    const c = this.#opts.credentials;
    const server = tls.createServer({
      key: c.key,
      cert: c.cert,
      ca: [c.ca],
      requestCert: true,
      rejectUnauthorized: true,
      allowHalfOpen: true,
    }, (socket) => this.#accept(socket));
    server.on("connection", (socket: net.Socket) => {
      this.#sockets.add(socket);
      socket.once("close", () => this.#sockets.delete(socket));
    });
    server.on("tlsClientError", (err: Error, socket: tls.TLSSocket) => {
      this.#opts.logger?.warn(
        `mesh: refused a peer connection from ${socket?.remoteAddress}: ${err.message}`,
      );
      socket?.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    server.on("error", (err: Error) => this.#opts.logger?.error(`mesh endpoint: ${err.message}`));
    this.#server = server;
    const bound = (server.address() as net.AddressInfo).port;
    this.#address = `${host}:${bound}`;
    return this.#address;
  }

  /** Presents new credentials to new connections. */
  setCredentials(credentials: MeshCredentials): void {
    this.#opts = { ...this.#opts, credentials };
    this.#server?.setSecureContext({
      key: credentials.key,
      cert: credentials.cert,
      ca: [credentials.ca],
    });
  }

  /** Stops listening and cuts every connection. */
  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const s of this.#sockets) s.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  async #accept(socket: tls.TLSSocket): Promise<void> {
    socket.setNoDelay(true);
    let header: Uint8Array;
    let held: HeldSocket;
    try {
      ({ prefix: header, held } = await readPrefix(socket, headerLength, 10_000));
    } catch (err) {
      this.#opts.logger?.warn(
        `mesh: a peer connection from ${socket.remoteAddress} failed: ${(err as Error).message}`,
      );
      socket.destroy();
      return;
    }
    try {
      JSON.parse(new TextDecoder().decode(header.subarray(6)));
    } catch {
      socket.destroy();
      return;
    }
    if (header[3] === KIND_DISCOVER) {
      const ports = await this.#opts.discover().catch(() => ({}));
      const json = new TextEncoder().encode(JSON.stringify({ ports }));
      const out = new Uint8Array(4 + json.length);
      new DataView(out.buffer).setUint32(0, json.length);
      out.set(json, 4);
      socket.end(out);
      return;
    }
    if (header[3] === KIND_TRUNK) {
      socket.write(new Uint8Array([STATUS_OK]));
      new Trunk(socketTransport(held), {
        authorize: (addr, port) => this.#opts.authorize(addr, port),
      });
      return;
    }
    // Anything else (kinds this version does not know) is refused.
    socket.end(new Uint8Array([STATUS_REFUSED]));
  }
}
