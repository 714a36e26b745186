/**
 * The wire protocol between agents and the dispatcher, on the manager's cluster port (Shoal's
 * default 4377: Docker's 2377, 7946 and 4789 may belong to a real Docker on the same host).
 *
 * **Transport.** One TLS connection per agent (`node:tls`). The server asks every client for a
 * certificate (`requestCert`) but lets a client without one finish the handshake, because a
 * joining node has no certificate yet:
 * - a client **with** a certificate signed by the swarm's root opens an agent session; its node
 *   id is the certificate's CN and its role the OU; a certificate of another CA is refused;
 * - a client **without** a certificate may only join: the server shows it the root CA, the client
 *   checks it against the digest pinned in its token, then sends the token and a CSR.
 *
 * **Frames.** A 4-byte big-endian length, then one msgpack map (msgpackr, plain maps: each frame
 * decodes on its own, as the Raft transport's) whose `t` names the message. Every message a
 * manager receives is validated with the zod schemas below before anything acts on it; a bad
 * frame closes the connection.
 *
 * **Messages** (→ manager, ← agent):
 * ```
 * joining client, no certificate        agent with its node certificate
 * ← ca {certPem, clusterId, chainPem?}   → hello {v, description, addr}
 * → join {v, token, csrPem,              ← welcome {nodeId, sessionId, period, addr, managers, ca}
 *          description, addr}            ← assignments {full, tasks, specs, secrets, configs, removed…}
 * ← joined {nodeId, role, clusterId,     → heartbeat               ← heartbeat {period, role, ca}
 *           certPem, caPem, managers}    → report {seq, reports}   ← reply {seq}
 *   or ← error {code, message}           → renew {seq, csrPem}     ← reply {seq, certPem}
 *                                        → down {seq, leaving}     ← reply {seq}
 *                                        ← logs {stream, taskId, tail, since, follow}
 *                                        → log {stream, lines, end, error}
 *                                        ← logs-ack {stream}   ← logs-cancel {stream}
 *                                        ← error {code, message} (then the manager closes)
 * ```
 * `ca` ({@linkcode TrustInfo}) says which roots to trust and which root must have signed the
 * node's certificate: the dispatcher sends it in every welcome and heartbeat, and at once when a
 * root rotation starts or ends, and the agent renews when its certificate is another root's.
 *
 * Assignments are the node's tasks (status assigned or later, history included, as SwarmKit's),
 * each with its service name and the key of its task spec; the specs, secrets and configs they
 * use travel once per session and version. `full` replaces everything the agent knew (the first
 * set of a session); otherwise the message is a change: updated items and removed ids.
 *
 * @module
 */
import type * as net from "node:net";
import * as tls from "node:tls";
import { Packr, Unpackr } from "msgpackr";
import { z } from "zod";
import { NodeDescription, ShoalEvent, type TaskSpec, TaskStatus } from "../events/schema.ts";
import { COMMAND_KINDS } from "../actors/commands.ts";
import type { TaskRecord } from "../actors/state.ts";
import type { TaskAddressing } from "../actors/agent/task_addressing.ts";
import type { Credentials } from "./identity.ts";

/** Version of this protocol, in `hello` and `join`. */
export const PROTOCOL_VERSION = 1;
/** Shoal's default cluster port (the dispatcher and joins): Docker's 2377 plus 2000. */
export const DEFAULT_CLUSTER_PORT = 4377;
/** Largest frame either side accepts (secrets are at most 500 KiB each, as Docker's). */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024;
/** The DNS name every manager certificate carries: what agents check as the server name. */
export const MANAGER_SERVERNAME = "swarm-manager";

// ---------------------------------------------------------------------------------------------
// Messages to the manager (validated there)

const Seq = z.number().int().nonnegative();

/** Most lines an agent puts in one `log` frame. */
export const LOG_CHUNK_LINES = 500;
/** Frames of one log stream an agent may send before the manager acknowledges the first. */
export const LOG_WINDOW_CHUNKS = 8;

/** A joining node's request: the token, a CSR for its new key, and what it is. */
export const JoinRequest = z.object({
  t: z.literal("join"),
  v: z.number().int(),
  token: z.string().max(200),
  csrPem: z.string().max(16 * 1024),
  description: NodeDescription,
  /** The address the node says it is reachable at, or "" (the manager then uses the peer's). */
  addr: z.string().max(300).default(""),
});
/** A joining node's request. */
export type JoinRequest = z.infer<typeof JoinRequest>;

/** The first message of an agent session. */
export const Hello = z.object({
  t: z.literal("hello"),
  v: z.number().int(),
  description: NodeDescription,
  addr: z.string().max(300).default(""),
});
/** The first message of an agent session. */
export type Hello = z.infer<typeof Hello>;

/** A status report: every change since the agent's last flush, in order. */
export const ReportRequest = z.object({
  t: z.literal("report"),
  seq: Seq,
  reports: z.array(z.object({ taskId: z.string().max(64), status: TaskStatus })).max(10_000),
});

/**
 * Lines of a task's output the manager asked for (`logs`), in order, at most
 * {@linkcode LOG_CHUNK_LINES} a frame; `end` closes the stream (`error` says why it failed).
 */
export const LogChunk = z.object({
  t: z.literal("log"),
  stream: Seq,
  lines: z.array(z.object({
    time: z.number(),
    stream: z.enum(["stdout", "stderr"]),
    text: z.string().max(16 * 1024),
  })).max(LOG_CHUNK_LINES),
  end: z.boolean().optional(),
  error: z.string().max(4096).optional(),
});
/** Lines of a task's output, or the end of them. */
export type LogChunk = z.infer<typeof LogChunk>;

/** Messages an agent sends once its session is open. */
export const SessionMessage = z.discriminatedUnion("t", [
  z.object({ t: z.literal("heartbeat") }),
  ReportRequest,
  LogChunk,
  z.object({ t: z.literal("renew"), seq: Seq, csrPem: z.string().max(16 * 1024) }),
  z.object({ t: z.literal("down"), seq: Seq, leaving: z.boolean() }),
]);
/** Messages an agent sends once its session is open. */
export type SessionMessage = z.infer<typeof SessionMessage>;

/**
 * A request from a manager that follows to the leader (`leader_link.ts`): carry out a command,
 * propose events, add this manager to the Raft group, or take it out. Only manager
 * certificates may send these; they need no session.
 */
export const ForwardRequest = z.discriminatedUnion("op", [
  z.object({
    t: z.literal("forward"),
    seq: Seq,
    op: z.literal("execute"),
    // The command's kind is checked here; its fields by the command's own decide step, which
    // rejects what it cannot carry out (as for a command of this node's API).
    command: z.looseObject({ kind: z.enum(COMMAND_KINDS) }),
    by: z.string().max(200),
  }),
  z.object({
    t: z.literal("forward"),
    seq: Seq,
    op: z.literal("propose"),
    // Whole events, checked against the schema: a malformed event must not reach the log,
    // where every manager's fold would meet it.
    events: z.array(ShoalEvent).max(100_000),
    by: z.string().max(200),
  }),
  z.object({
    t: z.literal("forward"),
    seq: Seq,
    op: z.literal("addMember"),
    raftId: z.number().int().positive(),
    raftAddr: z.string().max(300),
  }),
  z.object({
    t: z.literal("forward"),
    seq: Seq,
    op: z.literal("removeMember"),
    raftId: z.number().int().positive(),
  }),
]);
/** A request from a following manager to the leader. */
export type ForwardRequest = z.infer<typeof ForwardRequest>;

/** How an error travels back to a forwarding manager. */
export interface WireError {
  /** The error's class (`EventRejected`, `BatchRejectedError`, ...). */
  readonly name: string;
  /** Its stable code, when it has one (`not_leader`, `not_found`, ...). */
  readonly code?: string;
  readonly message: string;
  /** The fold's rejection, for `BatchRejectedError`. */
  readonly rejection?: unknown;
  /** For `not_leader`: the leader's cluster address, when known. */
  readonly leader?: string;
}

// ---------------------------------------------------------------------------------------------
// Messages to the agent

/** One task assigned to the node. */
export interface WireTask {
  readonly task: TaskRecord;
  readonly serviceName: string;
  /** Key of its spec in the session's specs (`serviceId@specVersion`). */
  readonly specKey: string;
  /**
   * Its address and the services it can reach (`taskAddressing`, actors/agent/task_addressing.ts);
   * absent from older managers: the agent then uses the task's own main address only.
   */
  readonly addressing?: TaskAddressing;
}

/** A secret's or config's bytes, at a version. */
export interface WireFile {
  readonly id: string;
  readonly data: Uint8Array;
}

/** The node's assignments, in full or as a change. */
export interface AssignmentsMessage {
  readonly t: "assignments";
  /** True: this replaces everything the agent knew. */
  readonly full: boolean;
  readonly tasks: WireTask[];
  readonly specs: { key: string; spec: TaskSpec }[];
  readonly secrets: WireFile[];
  readonly configs: WireFile[];
  readonly removedTasks: string[];
  readonly removedSecrets: string[];
  readonly removedConfigs: string[];
}

/**
 * The manager asks for a task's output: the last `tail` lines (all when absent), from `since` (ms
 * since the epoch), then, with `follow`, new lines until the task's output ends. The agent answers
 * with `log` frames; the manager acknowledges each (`logs-ack`) once it has passed it on, and
 * `logs-cancel` ends the stream early.
 */
export interface LogsRequest {
  readonly t: "logs";
  readonly stream: number;
  readonly taskId: string;
  readonly tail?: number;
  readonly since?: number;
  readonly follow: boolean;
}

/**
 * The mesh map (`node/mesh/mesh_map.ts`): what every node's mesh needs of the whole swarm (nodes'
 * addresses, services' ports and VIPs, serving tasks' addresses), which a worker's assignments do
 * not carry. Sent in full when a session opens and again whenever it changes; the agent checks it
 * with `MeshMapSchema` before use.
 */
export interface MeshMapMessage {
  readonly t: "mesh";
  readonly map: unknown;
}

/** Everything the manager sends. */
export type ManagerMessage =
  | LogsRequest
  | MeshMapMessage
  | { t: "logs-ack"; stream: number }
  | { t: "logs-cancel"; stream: number }
  | {
    t: "ca";
    certPem: string;
    clusterId: string;
    /** During a root rotation: the new root cross-signed by `certPem` (see `ca.ts`). */
    chainPem?: string;
  }
  | {
    t: "joined";
    nodeId: string;
    role: "worker" | "manager";
    clusterId: string;
    certPem: string;
    caPem: string;
    managers: string[];
    addr: string;
    /** A manager's raft id. */
    raftId?: number;
  }
  | {
    t: "welcome";
    nodeId: string;
    sessionId: string;
    /** Heartbeat period, ms. */
    period: number;
    /** The node's address as the manager records it. */
    addr: string;
    managers: string[];
    /** The roots to trust and the key of the root that signs now (absent: older managers). */
    ca?: TrustInfo;
  }
  | AssignmentsMessage
  | {
    t: "heartbeat";
    period: number;
    /** The node's role now: a worker told `manager` (with its raft id) was promoted. */
    role?: "worker" | "manager";
    raftId?: number;
    /** The roots to trust and the key of the root that signs now (absent: older managers). */
    ca?: TrustInfo;
  }
  | { t: "reply"; seq: number; certPem?: string; error?: string }
  | { t: "forwarded"; seq: number; result?: unknown; error?: WireError }
  | { t: "error"; code: ErrorCode; message: string; leader?: string };

/**
 * What a node must trust (`trust`, PEM roots) and the public key (base64 DER) of the root that
 * must have signed its certificate: a node whose certificate another root signed renews it at
 * once. This is how nodes follow a root rotation (`swarm ca --rotate`).
 */
export interface TrustInfo {
  readonly trust: string;
  readonly issuerKey: string;
}

/** Why a manager refused or ended a connection. */
export type ErrorCode =
  /** The join token is not the swarm's current one. */
  | "invalid_token"
  /** The token is the manager token: joining as a manager needs Raft (not built yet). */
  | "manager_join_unsupported"
  /** The node was removed from the swarm: its certificate no longer opens a session. */
  | "node_removed"
  /** The certificate is not one of this swarm's, or does not fit the node. */
  | "certificate_refused"
  /** A newer session of the same node replaced this one. */
  | "session_replaced"
  /** No heartbeat within three periods. */
  | "heartbeat_timeout"
  /** A message that is not valid here. */
  | "bad_request"
  /** The manager is stopping or not a swarm manager. */
  | "unavailable"
  /** This manager does not lead: `leader` (in the message) names the one that does. */
  | "not_leader";

/** Codes after which an agent should not reconnect with the same certificate. */
export const FATAL_CODES: ReadonlySet<string> = new Set<ErrorCode>([
  "node_removed",
  "certificate_refused",
]);

/** What a manager said when it refused. */
export class RemoteError extends Error {
  /** The manager's code. */
  readonly code: string;
  /** Wraps a manager's `error` message. */
  constructor(code: string, message: string) {
    super(message);
    this.name = "RemoteError";
    this.code = code;
  }
}

// ---------------------------------------------------------------------------------------------
// Frames

const packr = new Packr({ useRecords: false, variableMapSize: true });
// copyBuffers: secret bytes must not alias (and keep alive) the frame they came in.
const unpackr = new Unpackr({ useRecords: false, copyBuffers: true, mapsAsObjects: true });

/** One frame: a 4-byte big-endian length, then the msgpack of `message`. */
export function encodeFrame(message: unknown): Uint8Array {
  const payload = packr.pack(message);
  const frame = new Uint8Array(4 + payload.length);
  new DataView(frame.buffer).setUint32(0, payload.length);
  frame.set(payload, 4);
  return frame;
}

/** Options of a {@linkcode FrameConnection}. */
export interface FrameConnectionOptions {
  /** Called with each decoded message, in order. A throw closes the connection. */
  onMessage(message: unknown): void;
  /** Called once when the connection closes, with why. */
  onClose?(why: string): void;
  maxFrameBytes?: number;
}

/** A socket that carries frames: decodes what arrives, encodes what is sent. */
export class FrameConnection {
  readonly socket: net.Socket;
  #opts: FrameConnectionOptions;
  #buffer: Uint8Array = new Uint8Array(0);
  #closed = false;

  /** Wraps a connected socket. */
  constructor(socket: net.Socket, options: FrameConnectionOptions) {
    this.socket = socket;
    this.#opts = options;
    socket.setNoDelay?.(true);
    socket.on("data", (chunk: Uint8Array) => this.#onData(chunk));
    socket.on("error", (err: Error) => this.close(err.message));
    socket.on("close", () => this.close("the connection closed"));
  }

  /** Whether the connection is closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Sends one message; false if the connection is closed. */
  send(message: unknown): boolean {
    if (this.#closed) return false;
    this.socket.write(encodeFrame(message));
    return true;
  }

  /** Sends a last message, then ends the connection once it is written. */
  sendAndEnd(message: unknown, why: string): void {
    if (this.#closed) return;
    this.socket.end(encodeFrame(message));
    // If the peer never reads, do not wait for it forever.
    const timer = setTimeout(() => this.close(why), 2_000);
    this.socket.once("close", () => clearTimeout(timer));
  }

  /** Closes the connection at once. */
  close(why: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.socket.destroy();
    this.#opts.onClose?.(why);
  }

  #onData(chunk: Uint8Array): void {
    if (this.#closed) return;
    let buf = this.#buffer.length === 0 ? chunk : concat(this.#buffer, chunk);
    let pos = 0;
    const max = this.#opts.maxFrameBytes ?? MAX_FRAME_BYTES;
    try {
      while (buf.length - pos >= 4) {
        const len = ((buf[pos] << 24) | (buf[pos + 1] << 16) | (buf[pos + 2] << 8) |
          buf[pos + 3]) >>> 0;
        if (len > max) throw new SyntaxError(`a frame of ${len} bytes is over the limit`);
        if (buf.length - pos - 4 < len) break;
        const payload = buf.subarray(pos + 4, pos + 4 + len);
        pos += 4 + len;
        const message = unpackr.unpack(payload) as unknown;
        if (typeof message !== "object" || message === null || Array.isArray(message)) {
          throw new SyntaxError("a frame must hold a map");
        }
        this.#opts.onMessage(message);
        if (this.#closed) return;
      }
    } catch (err) {
      this.close(`bad frame: ${(err as Error).message}`);
      return;
    }
    if (pos === buf.length) buf = new Uint8Array(0);
    else if (pos > 0) buf = buf.slice(pos);
    else if (buf === chunk) buf = chunk.slice();
    this.#buffer = buf;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** `host:port` split, IPv6 brackets removed. */
export function splitHostPort(addr: string): { host: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(addr);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !m[1] || port > 65535) {
    throw new RangeError(`invalid address "${addr}": expected HOST:PORT, e.g. 10.0.0.1:4377`);
  }
  return { host: m[1].replace(/^\[(.*)\]$/, "$1"), port };
}

/**
 * Opens a mutual-TLS connection to a manager's cluster port (`host:port`) with a node's
 * certificate; the manager must present a certificate of the same root naming
 * {@linkcode MANAGER_SERVERNAME}. Throws a `RangeError` for an invalid address.
 */
export function dialManager(addr: string, identity: Credentials): tls.TLSSocket {
  const { host, port } = splitHostPort(addr);
  return tls.connect({
    host,
    port,
    key: identity.key,
    cert: identity.cert,
    ca: [identity.ca],
    servername: MANAGER_SERVERNAME,
    rejectUnauthorized: true,
  });
}

/** A DER certificate (as `getPeerCertificate().raw` gives it) as PEM. */
export function derToPem(der: Uint8Array): string {
  let bin = "";
  for (const b of der) bin += String.fromCharCode(b);
  const b64 = btoa(bin).replace(/(.{64})/g, "$1\n").replace(/\n$/, "");
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}
