/**
 * The dispatcher: the manager's side of every agent session, and the door through which nodes
 * join (SwarmKit's `manager/dispatcher` and the CA server's `IssueNodeCertificate`), on the
 * cluster port. The protocol is in `agent_protocol.ts`.
 *
 * - **Sessions** are authenticated by node certificates (mutual TLS against the swarm's root):
 *   the node id is the certificate's CN, its role the OU. A node no longer in the state (removed)
 *   is refused, and an open session of a node that gets removed is closed.
 * - **Heartbeats** are kept in memory only (DESIGN.md contract 6). A node that misses three
 *   periods (`dispatcher.heartbeatPeriod`, 5 s by default) is marked down with one
 *   `NodeStatusChanged`, and one that opens a session is marked ready. When the dispatcher starts,
 *   every node not already down gets a longer grace to come back (six periods, as SwarmKit's after
 *   a leader change, and at least an agent's longest backoff).
 * - **Assignments**: each node gets its tasks (status assigned or later) with their specs and
 *   only the secrets and configs those tasks use; the full set when its session opens, then
 *   changes, coalesced over a few milliseconds of applied entries.
 * - **Status reports** from every agent are gathered and proposed at most every 100 ms, as few
 *   bounded batches; a report the fold refuses (the task moved on meanwhile) is dropped and the
 *   rest proposed again, as `LocalSession.report` does. An agent may only report on tasks
 *   assigned to its own node. It is answered once its reports are committed or dropped.
 * - **Joins**: a client without a certificate is shown the root CA (it checks the digest its
 *   token pins), then sends the token and a CSR. The token is compared in constant time with the
 *   swarm's current worker token (a rotated token is refused at once); the node is registered
 *   (`NodeRegistered` by `user:swarm.join`) and gets its certificate.
 * - **Renewals**: an agent sends a CSR over its session and gets a certificate for its current
 *   role, valid for the swarm's `caConfig.nodeCertExpiry`.
 *
 * - **Leadership**: with several managers, only the Raft leader's dispatcher keeps sessions and
 *   heartbeats (DESIGN.md contract 6: leader-only). A follower's dispatcher refuses a session
 *   with `not_leader` naming the leader's address, and the agent goes there. Followers' own
 *   commands and proposals arrive as `forward` requests (`leader_link.ts`) from manager
 *   certificates; managers' own liveness comes from Raft, not from heartbeats.
 * - **Logs of other managers**: a manager that cannot reach a task's node itself asks another
 *   (`manager_logs.ts`) with `logs` requests on a manager-certificate connection; they are
 *   served with `taskLogs` (this manager's own agent, or a session it holds) by a
 *   {@linkcode LogStreamServer}, with the flow control of an agent's streams.
 * - **Manager joins**: the manager token registers a manager with a new Raft id; the new node then
 *   asks the leader (a `forward` `addMember`) to add it to the Raft group as a learner.
 *
 * @module
 */
import * as tls from "node:tls";
import type * as net from "node:net";
import { z } from "zod";
import { MAX_BATCH_EVENTS, type ShoalEvent, TaskState, type TaskStatus } from "../events/schema.ts";
import type { Manager } from "../actors/manager.ts";
import { BatchRejectedError } from "../actors/manager.ts";
import type { FileObjectRecord } from "../actors/state.ts";
import type { Logger } from "../actors/runtime.ts";
import { equalData } from "../actors/equal.ts";
import { newId } from "../events/ids.ts";
import {
  certificatePublicKey,
  CSRError,
  issueWithSwarmCA,
  joinTokenMatches,
  type NodeIdentity,
  type RotatingRootCA,
  signingCA,
  trustBundle,
  verifyNodeCertificate,
} from "./ca.ts";
import type { Command } from "../actors/commands.ts";
import { errorToWire } from "./leader_link.ts";
import { taskAddressing } from "../actors/agent/task_addressing.ts";
import { MeshMapFeed } from "./mesh/feed.ts";
import {
  type AssignmentsMessage,
  derToPem,
  type ErrorCode,
  ForwardRequest,
  FrameConnection,
  Hello,
  JoinRequest,
  type LogsRequest,
  type ManagerMessage,
  PROTOCOL_VERSION,
  SessionMessage,
  splitHostPort,
  type TrustInfo,
  type WireFile,
  type WireTask,
} from "./agent_protocol.ts";
import { LogRelay } from "./log_relay.ts";
import { LogStreamServer } from "./log_stream_server.ts";
import type { TaskLogOptions, TaskLogSource } from "./task_logs.ts";
import type { LogLine } from "../actors/agent/log_capture.ts";

/** Options of a {@linkcode Dispatcher}. */
export interface DispatcherOptions {
  manager: Manager;
  /** This manager's own node: its agent runs in process, not through the dispatcher. */
  nodeId: string;
  /** `host:port` to listen on (port 0 picks a free one). */
  listenAddr: string;
  /** `host:port` other nodes reach this port at; defaults to the listen address. */
  advertiseAddr?: string;
  /** This manager's key and certificate (PEM); the CA is the swarm's root from the state. */
  credentials: { key: string; cert: string };
  logger?: Logger;
  /** Wall clock, ms. */
  clock?: () => number;
  /** Shortest time between two proposals of status reports, ms (default 100). */
  reportIntervalMs?: number;
  /** How long a joining client may take to send its request, ms (default 10 s). */
  joinTimeoutMs?: number;
  /** Whether this manager leads at start (default true: a single manager always does). */
  leading?: boolean;
  /** The leader's cluster address, for `not_leader` answers. */
  leaderAddr?: () => string | undefined;
  /** The Raft group, for manager joins and departures (absent: a single-manager log). */
  raft?: RaftMembership;
  /**
   * Reads tasks' output for other managers' `logs` requests: it must not pass a request on to
   * a third manager (absent: such requests fail).
   */
  taskLogs?: TaskLogSource;
}

/** What the dispatcher may do to the Raft group (on the leader). */
export interface RaftMembership {
  /** Adds `raftId` at `raftAddr` as a learner (or updates its address); returns the members. */
  addMember(raftId: number, raftAddr: string): Promise<{ peers: [number, string][] }>;
  /** Takes `raftId` out of the group. */
  removeMember(raftId: number): Promise<void>;
}

/** How long assignment changes are gathered before they go out, ms. */
const ASSIGNMENT_COALESCE_MS = 5;
/** Heartbeats a node may miss before it is marked down (SwarmKit's grace multiplier). */
const MISSED_HEARTBEATS = 3;
/**
 * How long a node the dispatcher has not heard from since it started (a manager restart) or
 * since it joined has to open its session: twice the normal grace, as SwarmKit's
 * `gracePeriodMultiplierUnknown`, and at least an agent's longest reconnection backoff (8 s) plus
 * a period, so that agents waiting out their backoff are not all declared down (which would move
 * every task of the swarm) when a short heartbeat period is configured.
 */
function unknownGraceMs(period: number): number {
  return Math.max(2 * MISSED_HEARTBEATS * period, 8_000 + period);
}

/** The answer to a join, or why it was refused. */
class Refusal extends Error {
  constructor(readonly code: ErrorCode, message: string, readonly leader?: string) {
    super(message);
  }
}

/** One connection that presented a certificate of this swarm. */
class AgentConnection {
  readonly conn: FrameConnection;
  readonly identity: NodeIdentity;
  readonly addr: string;
  readonly sessionId = newId();
  established = false;
  /** Messages are handled one at a time, in order. */
  chain: Promise<void> = Promise.resolve();
  sentFull = false;
  sentTasks = new Map<string, number>();
  sentSpecs = new Set<string>();
  sentSecrets = new Map<string, number>();
  sentConfigs = new Map<string, number>();
  /** Log streams another manager asked for on this connection. */
  readonly logStreams = new LogStreamServer();

  constructor(conn: FrameConnection, identity: NodeIdentity, addr: string) {
    this.conn = conn;
    this.identity = identity;
    this.addr = addr;
  }

  get nodeId(): string {
    return this.identity.nodeId;
  }

  send(message: ManagerMessage): void {
    this.conn.send(message);
  }

  fail(code: ErrorCode, message: string, leader?: string): void {
    this.conn.sendAndEnd(
      { t: "error", code, message, ...(leader ? { leader } : {}) } satisfies ManagerMessage,
      message,
    );
  }
}

interface QueuedReports {
  session: AgentConnection;
  seq: number;
  events: ShoalEvent[];
}

/** The manager's side of agent sessions and joins. */
export class Dispatcher {
  #opts: DispatcherOptions;
  #manager: Manager;
  #clock: () => number;
  #logger: Logger | undefined;
  #server: tls.Server | undefined;
  #address = "";
  #advertise = "";
  #credentials: { key: string; cert: string };
  /** The trust bundle the server was last given. */
  #trust = "";
  #sessions = new Map<string, AgentConnection>();
  #connections = new Set<FrameConnection>();
  /** Every TCP connection, handshaken or not, so that stopping can cut them all. */
  #raw = new Set<net.Socket>();
  #expiry = new Map<string, ReturnType<typeof setTimeout>>();
  #nodeOps = new Map<string, Promise<void>>();
  #reports: QueuedReports[] = [];
  #flushTimer: ReturnType<typeof setTimeout> | undefined;
  #flushing: Promise<void> | undefined;
  #lastFlush = 0;
  #assignTimer: ReturnType<typeof setTimeout> | undefined;
  #unsubscribe: (() => void) | undefined;
  #stopped = false;
  #leading = true;
  #meshFeed: MeshMapFeed | undefined;
  /** Reads tasks' output from their nodes' agents (`service logs`), over their sessions. */
  readonly logs: LogRelay = new LogRelay((nodeId, message) => {
    const session = this.#sessions.get(nodeId);
    if (session === undefined || !session.established || session.conn.closed) return undefined;
    session.send(message);
    return session.sessionId;
  });

  /** A dispatcher for `manager`; call `start()`. */
  constructor(options: DispatcherOptions) {
    this.#opts = options;
    this.#leading = options.leading ?? true;
    this.#manager = options.manager;
    this.#clock = options.clock ?? Date.now;
    this.#logger = options.logger;
    this.#credentials = options.credentials;
  }

  /** Where it listens (`host:port`), once started. */
  get address(): string {
    return this.#address;
  }

  /** The address nodes are told to reach it at. */
  get advertiseAddr(): string {
    return this.#advertise;
  }

  /** Nodes with an open session. */
  get connectedNodes(): string[] {
    return [...this.#sessions.keys()];
  }

  /** Starts listening; resolves with the address. */
  async start(): Promise<string> {
    const cluster = this.#manager.state.cluster;
    if (cluster === undefined) throw new Error("the dispatcher needs a swarm: none is initialised");
    const { host, port } = splitHostPort(this.#opts.listenAddr);
    const server = tls.createServer({
      key: this.#credentials.key,
      cert: this.#credentials.cert,
      ca: trustBundle(cluster.rootCA),
      // Ask for a certificate, but let a joining node (which has none yet) finish the
      // handshake: what each connection may do is decided by what it presented.
      requestCert: true,
      rejectUnauthorized: false,
    }, (socket) => this.#accept(socket));
    this.#trust = trustBundle(cluster.rootCA);
    server.on("connection", (socket: net.Socket) => {
      this.#raw.add(socket);
      socket.once("close", () => this.#raw.delete(socket));
    });
    server.on("tlsClientError", (err: Error, socket: tls.TLSSocket) => {
      const ip = peerIp(socket);
      this.#logger?.warn(
        `dispatcher: refused a connection${
          ip ? ` from ${ip}` : ""
        }: TLS handshake failed (${err.message})`,
      );
      socket?.destroy();
    });
    server.on("error", (err: Error) => this.#logger?.error(`dispatcher: ${err.message}`));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.#server = server;
    const bound = (server.address() as net.AddressInfo).port;
    this.#address = `${host.includes(":") ? `[${host}]` : host}:${bound}`;
    this.#advertise = this.#opts.advertiseAddr ?? this.#address;
    const offApplied = this.#manager.onApplied(() => this.#assignmentsChanged());
    // A snapshot installed over the state (this manager fell far behind) changes it with no entry.
    const offRestored = this.#manager.onRestored(() => this.#assignmentsChanged());
    this.#unsubscribe = () => {
      offApplied();
      offRestored();
    };
    // Every node's mesh follows the map of services, tasks and addresses (node/mesh/feed.ts).
    this.#meshFeed = new MeshMapFeed({
      manager: this.#manager,
      broadcast: (m) => {
        for (const s of this.#sessions.values()) if (s.established) s.send(m);
      },
    });
    if (this.#leading) this.#armAll();
    return this.#address;
  }

  /** Whether this dispatcher serves sessions (its manager leads). */
  get leading(): boolean {
    return this.#leading;
  }

  /**
   * Starts serving sessions (this manager became the leader) or stops (it no longer leads):
   * every session is closed with `not_leader`, so its agent goes to the new leader.
   */
  setLeading(leading: boolean): void {
    if (leading === this.#leading || this.#stopped) return;
    this.#leading = leading;
    if (leading) {
      this.#armAll();
      return;
    }
    for (const t of this.#expiry.values()) clearTimeout(t);
    this.#expiry.clear();
    const leader = this.#opts.leaderAddr?.();
    for (const session of [...this.#sessions.values()]) {
      session.fail("not_leader", this.#notLeaderMessage(leader), leader);
    }
    this.#sessions.clear();
  }

  /**
   * Nodes that were up when the last leader stopped get the longer grace to reconnect. Managers
   * are not watched here: Raft says whether they are reachable (`raft_members.ts`).
   */
  #armAll(): void {
    for (const node of this.#manager.state.nodes.values()) {
      if (
        node.id !== this.#opts.nodeId && node.role !== "manager" && node.status.state !== "down"
      ) this.#arm(node.id, true);
    }
  }

  /** The node's role, for heartbeat answers: a worker promoted to manager learns it so. */
  #roleOf(nodeId: string): { role?: "worker" | "manager"; raftId?: number } {
    const node = this.#manager.state.nodes.get(nodeId);
    if (node === undefined) return {};
    const raftId = Number(node.managerStatus?.raftId);
    return node.role === "manager" && raftId > 0
      ? { role: "manager", raftId }
      : { role: node.role };
  }

  #notLeaderMessage(leader: string | undefined): string {
    return leader
      ? `this manager is not the leader: the leader is at ${leader}`
      : "this manager is not the leader, and no leader is known right now";
  }

  /** Cluster addresses of the swarm's managers, this one first. */
  #managerAddrs(): string[] {
    const out = [this.#advertise];
    for (const n of this.#manager.state.nodes.values()) {
      const addr = n.managerStatus?.addr;
      if (n.role === "manager" && addr && !out.includes(addr)) out.push(addr);
    }
    return out;
  }

  // -------------------------------------------------------------------------------------------
  // Forwarded requests (from managers that follow)

  async #forward(session: AgentConnection, raw: unknown): Promise<void> {
    const seq = Number((raw as { seq?: unknown }).seq) || 0;
    const answer = (m: ManagerMessage) => {
      if (!session.conn.closed) session.send(m);
    };
    try {
      if (session.identity.role !== "manager") {
        throw new Refusal(
          "certificate_refused",
          `node ${session.nodeId} presented a worker certificate: only managers may forward requests`,
        );
      }
      const node = this.#manager.state.nodes.get(session.nodeId);
      if (node === undefined) {
        throw new Refusal("node_removed", `node ${session.nodeId} is not a member of this swarm`);
      }
      const req = parse(ForwardRequest, raw, "forwarded request");
      if (!this.#leading) {
        const leader = this.#opts.leaderAddr?.();
        answer({
          t: "forwarded",
          seq,
          error: {
            name: "NotLeaderError",
            code: "not_leader",
            message: this.#notLeaderMessage(leader),
            ...(leader ? { leader } : {}),
          },
        });
        return;
      }
      let result: unknown;
      switch (req.op) {
        case "execute":
          result = await this.#manager.execute(req.command as unknown as Command, { by: req.by });
          break;
        case "propose":
          // The events as sent (checked above): the schema's output could differ in key order.
          result = await this.#manager.propose((raw as { events: ShoalEvent[] }).events, req.by);
          break;
        case "addMember": {
          const raft = this.#raftFor(node.managerStatus?.raftId, req.raftId, session.nodeId);
          result = await raft.addMember(req.raftId, req.raftAddr);
          this.#logger?.info(
            `dispatcher: manager ${session.nodeId} (raft ${req.raftId} at ${req.raftAddr}) added to the raft group`,
          );
          break;
        }
        case "removeMember": {
          const raft = this.#raftFor(node.managerStatus?.raftId, req.raftId, session.nodeId);
          await raft.removeMember(req.raftId);
          result = null;
          break;
        }
      }
      answer({ t: "forwarded", seq, result });
    } catch (err) {
      if (err instanceof Refusal && err.code !== "bad_request") {
        this.#logger?.warn(`dispatcher: refused a request of ${session.nodeId}: ${err.message}`);
      }
      const wire = err instanceof Refusal
        ? { name: "Refusal", code: err.code, message: err.message }
        : errorToWire(err);
      if ((err as Error)?.name === "NotLeaderError") {
        const leader = this.#opts.leaderAddr?.();
        answer({
          t: "forwarded",
          seq,
          error: { ...wire, code: "not_leader", ...(leader ? { leader } : {}) },
        });
        return;
      }
      answer({ t: "forwarded", seq, error: wire });
    }
  }

  // -------------------------------------------------------------------------------------------
  // Log requests of other managers

  #serveLogs(session: AgentConnection, message: PeerLogsMessage): void {
    if (session.identity.role !== "manager") {
      session.fail(
        "certificate_refused",
        `node ${session.nodeId} presented a worker certificate: only managers may ask a manager for tasks' logs`,
      );
      return;
    }
    if (!this.#manager.state.nodes.has(session.nodeId)) {
      session.fail("node_removed", `node ${session.nodeId} is not a member of this swarm`);
      return;
    }
    switch (message.t) {
      case "logs-ack":
        session.logStreams.ack(message.stream);
        return;
      case "logs-cancel":
        session.logStreams.cancel(message.stream);
        return;
      case "logs": {
        const source = this.#opts.taskLogs;
        const self = this.#opts.nodeId;
        const reader = source && ((taskId: string, options: TaskLogOptions) => {
          const task = this.#manager.state.tasks.get(taskId);
          if (task === undefined) {
            return failing(`task ${taskId} is not known to manager ${self}`);
          }
          return source(task, options);
        });
        void session.logStreams.serve(
          session.conn,
          message,
          reader,
          `manager ${self} does not serve tasks' logs`,
        );
        return;
      }
    }
  }

  /** The Raft group, for a manager acting on its own raft id only. */
  #raftFor(own: string | undefined, raftId: number, nodeId: string): RaftMembership {
    if (this.#opts.raft === undefined) {
      throw new Refusal(
        "unavailable",
        "this manager keeps its log without Raft (a data dir from before managers replicated): it cannot take more managers",
      );
    }
    if (own !== String(raftId)) {
      throw new Refusal(
        "bad_request",
        `node ${nodeId} asked about raft member ${raftId}, but its raft id is ${own ?? "none"}`,
      );
    }
    return this.#opts.raft;
  }

  /** Serves a renewed certificate of this manager to new connections. */
  setCredentials(credentials: { key: string; cert: string }): void {
    this.#credentials = credentials;
    const cluster = this.#manager.state.cluster;
    this.#server?.setSecureContext({
      key: credentials.key,
      cert: credentials.cert,
      ca: cluster ? trustBundle(cluster.rootCA) : undefined,
    });
    this.#trust = cluster ? trustBundle(cluster.rootCA) : "";
  }

  /**
   * What a node must trust and which root must have signed its certificate (the public key,
   * base64 DER): sent in every welcome and heartbeat, so that nodes follow a root rotation.
   */
  #caInfo(): { ca?: TrustInfo } {
    const rootCA: RotatingRootCA | undefined = this.#manager.state.cluster?.rootCA;
    if (rootCA === undefined) return {};
    return {
      ca: {
        trust: trustBundle(rootCA),
        issuerKey: certificatePublicKey(signingCA(rootCA).certPem),
      },
    };
  }

  /** A root rotation started or ended: trust what the swarm trusts now, and tell every node. */
  #rootCAChanged(): void {
    const cluster = this.#manager.state.cluster;
    if (cluster === undefined || trustBundle(cluster.rootCA) === this.#trust) return;
    this.setCredentials(this.#credentials);
    this.#logger?.info("dispatcher: the swarm's root CA changed: telling every node");
    for (const session of this.#sessions.values()) {
      if (!session.established) continue;
      session.send({
        t: "heartbeat",
        period: this.#period(),
        ...this.#roleOf(session.nodeId),
        ...this.#caInfo(),
      });
    }
  }

  /** Stops listening, closes every connection, and lets the report flush in progress finish. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#unsubscribe?.();
    this.#meshFeed?.close();
    for (const t of this.#expiry.values()) clearTimeout(t);
    this.#expiry.clear();
    clearTimeout(this.#assignTimer);
    clearTimeout(this.#flushTimer);
    for (const conn of this.#connections) conn.close("the manager is stopping");
    for (const socket of this.#raw) socket.destroy();
    this.#sessions.clear();
    const server = this.#server;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    await this.#flushing;
  }

  // -------------------------------------------------------------------------------------------
  // Connections

  #accept(socket: tls.TLSSocket): void {
    if (this.#stopped) {
      socket.destroy();
      return;
    }
    const peer = socket.getPeerCertificate();
    const ip = peerIp(socket);
    if (!peer || !peer.raw) {
      this.#acceptJoin(socket, ip);
      return;
    }
    if (!socket.authorized) {
      const why = `its certificate is not signed by this swarm's root CA (${
        String(socket.authorizationError)
      })`;
      this.#logger?.warn(`dispatcher: refused a connection from ${ip}: ${why}`);
      this.#track(socket, () => {}).sendAndEnd(
        { t: "error", code: "certificate_refused", message: `refused: ${why}` },
        why,
      );
      return;
    }
    let session: AgentConnection | undefined;
    const pending: unknown[] = [];
    const conn = this.#track(socket, (message) => {
      if (session) this.#enqueue(session, message);
      else pending.push(message);
    }, (why) => {
      if (session) this.#closed(session, why);
    });
    const cluster = this.#manager.state.cluster!;
    verifyNodeCertificate({
      rootCA: { certPem: trustBundle(cluster.rootCA) },
      certPem: derToPem(new Uint8Array(peer.raw)),
      now: this.#clock(),
    }).then((identity) => {
      session = new AgentConnection(conn, identity, ip);
      for (const m of pending.splice(0)) this.#enqueue(session, m);
      if (conn.closed) this.#closed(session, "the connection closed");
    }, (err) => {
      this.#logger?.warn(`dispatcher: refused a connection from ${ip}: ${err.message}`);
      conn.sendAndEnd(
        { t: "error", code: "certificate_refused", message: err.message },
        err.message,
      );
    });
  }

  #track(
    socket: net.Socket,
    onMessage: (message: unknown) => void,
    onClose?: (why: string) => void,
  ): FrameConnection {
    const conn: FrameConnection = new FrameConnection(socket, {
      onMessage,
      onClose: (why) => {
        this.#connections.delete(conn);
        onClose?.(why);
      },
    });
    this.#connections.add(conn);
    return conn;
  }

  #enqueue(session: AgentConnection, message: unknown): void {
    if ((message as { t?: unknown } | null)?.t === "forward") {
      // Forwarded requests run concurrently: they are independent commands of another manager.
      void this.#forward(session, message);
      return;
    }
    if (!session.established && isLogsMessage(message)) {
      this.#serveLogs(session, message);
      return;
    }
    session.chain = session.chain.then(() => this.#handle(session, message)).catch((err) => {
      if (err instanceof Refusal) {
        this.#logger?.warn(
          `dispatcher: ended the session of node ${session.nodeId} (${session.addr}): ${err.message}`,
        );
        session.fail(err.code, err.message, err.leader);
      } else {
        this.#logger?.error(
          `dispatcher: session of node ${session.nodeId}: ${(err as Error).message}`,
        );
        session.conn.close((err as Error).message);
      }
    });
  }

  #closed(session: AgentConnection, why: string): void {
    session.logStreams.cancelAll();
    this.logs.sessionClosed(session.sessionId, why);
    if (this.#sessions.get(session.nodeId) === session) {
      this.#sessions.delete(session.nodeId);
      this.#logger?.info(`dispatcher: session of node ${session.nodeId} ended: ${why}`);
    }
  }

  async #handle(session: AgentConnection, raw: unknown): Promise<void> {
    if (session.conn.closed || this.#stopped) return;
    if (!session.established) {
      const hello = parse(Hello, raw, "hello");
      await this.#open(session, hello);
      return;
    }
    const message = parse(SessionMessage, raw, "message");
    switch (message.t) {
      case "heartbeat":
        this.#arm(session.nodeId);
        session.send({
          t: "heartbeat",
          period: this.#period(),
          ...this.#roleOf(session.nodeId),
          ...this.#caInfo(),
        });
        return;
      case "report":
        this.#queueReports(session, message.seq, message.reports);
        return;
      case "renew":
        session.send(await this.#renew(session, message.seq, message.csrPem));
        return;
      case "down":
        await this.#down(session, message.seq, message.leaving);
        return;
      case "log":
        this.logs.receive(session.sessionId, message);
        return;
    }
  }

  async #open(session: AgentConnection, hello: Hello): Promise<void> {
    if (!this.#leading) {
      const leader = this.#opts.leaderAddr?.();
      throw new Refusal("not_leader", this.#notLeaderMessage(leader), leader);
    }
    if (hello.v !== PROTOCOL_VERSION) {
      throw new Refusal(
        "bad_request",
        `protocol version ${hello.v} is not supported (this manager speaks ${PROTOCOL_VERSION})`,
      );
    }
    const { nodeId, role } = session.identity;
    const node = this.#manager.state.nodes.get(nodeId);
    if (node === undefined) {
      throw new Refusal(
        "node_removed",
        `node ${nodeId} is not a member of this swarm: it was removed, and its certificate no longer opens a session (join the swarm again with "shoal swarm join")`,
      );
    }
    if (nodeId === this.#opts.nodeId) {
      throw new Refusal(
        "certificate_refused",
        `node ${nodeId} is this manager, whose agent runs in its own process`,
      );
    }
    if (role === "manager" && node.role !== "manager") {
      throw new Refusal(
        "certificate_refused",
        `node ${nodeId} presented a manager certificate, but it is a worker`,
      );
    }
    const old = this.#sessions.get(nodeId);
    if (old !== undefined && old !== session) {
      old.fail("session_replaced", `a new session of node ${nodeId} replaced this one`);
    }
    this.#sessions.set(nodeId, session);
    session.established = true;
    this.#arm(nodeId);
    const addr = hostOnly(hello.addr) || session.addr;
    await this.#nodeOp(nodeId, async () => {
      const n = this.#manager.state.nodes.get(nodeId);
      if (n === undefined) return;
      const events: ShoalEvent[] = [];
      const by = "dispatcher";
      if (!equalData(n.description, hello.description)) {
        events.push({
          type: "NodeDescriptionUpdated",
          v: 1,
          data: { id: nodeId, description: hello.description },
          meta: { by, reason: "the agent described the node differently" },
        });
      }
      if (n.status.state !== "ready" || n.status.addr !== addr || n.status.message !== "") {
        events.push({
          type: "NodeStatusChanged",
          v: 1,
          data: { id: nodeId, status: { state: "ready", message: "", addr } },
          meta: { by, reason: `agent session opened from ${session.addr}` },
        });
      }
      if (events.length > 0) await this.#manager.propose(events, by);
    });
    if (session.conn.closed) return;
    this.#logger?.info(`dispatcher: node ${nodeId} (${session.addr}) opened a session`);
    session.send({
      t: "welcome",
      nodeId,
      sessionId: session.sessionId,
      period: this.#period(),
      addr,
      managers: this.#managerAddrs(),
      ...this.#caInfo(),
    });
    this.#sendAssignments(session);
    if (this.#meshFeed) session.send(this.#meshFeed.full());
  }

  async #renew(session: AgentConnection, seq: number, csrPem: string): Promise<ManagerMessage> {
    const state = this.#manager.state;
    const node = state.nodes.get(session.nodeId);
    const cluster = state.cluster!;
    if (node === undefined) {
      throw new Refusal("node_removed", `node ${session.nodeId} was removed from the swarm`);
    }
    try {
      const issued = await issueWithSwarmCA(cluster.rootCA, {
        csrPem,
        nodeId: node.id,
        role: node.role,
        clusterId: cluster.id,
        now: this.#clock(),
        expiryMs: cluster.spec.caConfig.nodeCertExpiry,
      });
      this.#logger?.info(
        `dispatcher: renewed the certificate of node ${node.id} (valid until ${
          new Date(issued.notAfter).toISOString()
        })`,
      );
      return { t: "reply", seq, certPem: issued.certPem };
    } catch (err) {
      if (!(err instanceof CSRError)) throw err;
      return { t: "reply", seq, error: err.message };
    }
  }

  async #down(session: AgentConnection, seq: number, leaving: boolean): Promise<void> {
    const nodeId = session.nodeId;
    clearTimeout(this.#expiry.get(nodeId));
    this.#expiry.delete(nodeId);
    if (this.#sessions.get(nodeId) === session) this.#sessions.delete(nodeId);
    await this.#drainReports(); // its last reports first
    await this.#nodeOp(nodeId, async () => {
      const node = this.#manager.state.nodes.get(nodeId);
      if (node === undefined) return;
      const message = leaving ? "node left the swarm" : "node shut down";
      const by = leaving ? "user:swarm.leave" : `agent:${nodeId}`;
      await this.#manager.propose([{
        type: "NodeStatusChanged",
        v: 1,
        data: { id: nodeId, status: { state: "down", message, addr: node.status.addr } },
        meta: { by, reason: leaving ? "the node left the swarm" : "the node process stopped" },
      }], by);
    });
    this.#logger?.info(
      `dispatcher: node ${nodeId} ${leaving ? "left the swarm" : "shut down"}: marked down`,
    );
    session.conn.sendAndEnd({ t: "reply", seq } satisfies ManagerMessage, "node down");
  }

  // -------------------------------------------------------------------------------------------
  // Heartbeats

  #period(): number {
    return this.#manager.state.cluster?.spec.dispatcher.heartbeatPeriod ?? 5_000;
  }

  /**
   * (Re)starts the countdown after which the node is marked down: three periods, or the longer
   * grace of a node not heard from yet (`unknown`).
   */
  #arm(nodeId: string, unknown = false): void {
    if (this.#stopped) return;
    clearTimeout(this.#expiry.get(nodeId));
    const period = this.#period();
    const ms = unknown ? unknownGraceMs(period) : MISSED_HEARTBEATS * period;
    this.#expiry.set(nodeId, setTimeout(() => this.#expire(nodeId, ms), ms));
  }

  #expire(nodeId: string, ms: number): void {
    this.#expiry.delete(nodeId);
    const session = this.#sessions.get(nodeId);
    if (session) {
      this.#sessions.delete(nodeId);
      session.fail("heartbeat_timeout", `no heartbeat in ${ms} ms: session closed`);
    }
    void this.#nodeOp(nodeId, async () => {
      if (this.#sessions.has(nodeId)) return; // it came back meanwhile
      const node = this.#manager.state.nodes.get(nodeId);
      if (node === undefined || node.status.state === "down") return;
      const message = node.status.state === "unknown"
        ? "heartbeat failure for node in 'unknown' state"
        : "heartbeat failure";
      this.#logger?.warn(`dispatcher: node ${nodeId}: ${message}: marking it down`);
      await this.#manager.propose([{
        type: "NodeStatusChanged",
        v: 1,
        data: { id: nodeId, status: { state: "down", message, addr: node.status.addr } },
        meta: { by: "dispatcher", reason: `no heartbeat from the node in ${ms} ms` },
      }], "dispatcher");
    }).catch((err) => this.#logger?.error(`dispatcher: marking ${nodeId} down: ${err.message}`));
  }

  /** Runs status changes of one node one after another, so they land in the order decided. */
  #nodeOp(nodeId: string, fn: () => Promise<void>): Promise<void> {
    const prev = this.#nodeOps.get(nodeId) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(fn);
    this.#nodeOps.set(nodeId, next);
    const cleanup = () => {
      if (this.#nodeOps.get(nodeId) === next) this.#nodeOps.delete(nodeId);
    };
    next.then(cleanup, cleanup);
    return next;
  }

  // -------------------------------------------------------------------------------------------
  // Status reports

  #queueReports(
    session: AgentConnection,
    seq: number,
    reports: { taskId: string; status: TaskStatus }[],
  ): void {
    const state = this.#manager.state;
    const by = `agent:${session.nodeId}`;
    const events: ShoalEvent[] = [];
    for (const r of reports) {
      const task = state.tasks.get(r.taskId);
      if (task !== undefined && task.nodeId !== session.nodeId) {
        this.#logger?.warn(
          `dispatcher: node ${session.nodeId} reported on task ${r.taskId}, which is not assigned to it: ignored`,
        );
        continue;
      }
      events.push({
        type: "TaskStatusReported",
        v: 1,
        data: { id: r.taskId, status: r.status },
        meta: { by, reason: r.status.message || "status report" },
      });
    }
    this.#reports.push({ session, seq, events });
    this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    if (this.#flushTimer !== undefined || this.#flushing !== undefined || this.#stopped) return;
    const interval = this.#opts.reportIntervalMs ?? 100;
    const wait = Math.max(0, this.#lastFlush + interval - this.#clock());
    this.#flushTimer = setTimeout(() => this.#startFlush(), wait);
  }

  #startFlush(): void {
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    this.#flushing = this.#flush().finally(() => {
      this.#flushing = undefined;
      if (this.#reports.length > 0) this.#scheduleFlush();
    });
  }

  /** Proposes every report received so far, now (a node going down reports first). */
  async #drainReports(): Promise<void> {
    while (this.#flushing !== undefined || this.#reports.length > 0) {
      if (this.#flushing === undefined) this.#startFlush();
      await this.#flushing;
    }
  }

  async #flush(): Promise<void> {
    this.#lastFlush = this.#clock();
    const items = this.#reports.splice(0);
    const events = items.flatMap((i) => i.events);
    try {
      for (let i = 0; i < events.length; i += MAX_BATCH_EVENTS) {
        await this.#proposeDroppingStale(events.slice(i, i + MAX_BATCH_EVENTS));
      }
    } catch (err) {
      // The log failed (the manager is stopping): the agents resend on their next session.
      this.#logger?.error(`dispatcher: proposing status reports failed: ${(err as Error).message}`);
      for (const item of items) item.session.conn.close("status reports could not be committed");
      return;
    }
    for (const item of items) item.session.send({ t: "reply", seq: item.seq });
  }

  /** Proposes `events` as one batch; a refused event is dropped and the rest proposed again. */
  async #proposeDroppingStale(events: ShoalEvent[]): Promise<void> {
    while (events.length > 0) {
      try {
        await this.#manager.propose(events, "dispatcher");
        return;
      } catch (err) {
        if (!(err instanceof BatchRejectedError)) throw err;
        const bad = err.rejection.event;
        events = events.filter((_, i) => i !== bad);
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Assignments

  #assignmentsChanged(): void {
    if (this.#assignTimer !== undefined || this.#stopped) return;
    this.#assignTimer = setTimeout(() => {
      this.#assignTimer = undefined;
      this.#rootCAChanged();
      for (const session of [...this.#sessions.values()]) {
        if (!this.#manager.state.nodes.has(session.nodeId)) {
          this.#sessions.delete(session.nodeId);
          clearTimeout(this.#expiry.get(session.nodeId));
          this.#expiry.delete(session.nodeId);
          this.#logger?.warn(`dispatcher: node ${session.nodeId} was removed: session closed`);
          session.fail("node_removed", `node ${session.nodeId} was removed from the swarm`);
          continue;
        }
        try {
          this.#sendAssignments(session);
        } catch (err) {
          this.#logger?.error(`dispatcher: assignments of node ${session.nodeId}: ${err}`);
        }
      }
    }, ASSIGNMENT_COALESCE_MS);
  }

  /** Sends what changed in the node's assignments since the last message (all, the first time). */
  #sendAssignments(session: AgentConnection): void {
    if (session.conn.closed) return;
    const state = this.#manager.state;
    const tasks: WireTask[] = [];
    const specs: AssignmentsMessage["specs"] = [];
    const seen = new Set<string>();
    const keys = new Set<string>();
    const secrets = new Map<string, FileObjectRecord>();
    const configs = new Map<string, FileObjectRecord>();
    for (const task of state.tasksOn(session.nodeId)) {
      if (task.status.state < TaskState.assigned) continue;
      seen.add(task.id);
      const spec = state.taskSpec(task);
      const specKey = `${task.serviceId}@${task.specVersion}`;
      keys.add(specKey);
      for (const ref of spec.secrets) {
        const rec = state.secrets.get(ref.id);
        if (rec) secrets.set(rec.id, rec);
      }
      for (const ref of spec.configs) {
        const rec = state.configs.get(ref.id);
        if (rec) configs.set(rec.id, rec);
      }
      if (session.sentTasks.get(task.id) === task.version) continue;
      session.sentTasks.set(task.id, task.version);
      const serviceName = state.services.get(task.serviceId)?.spec.name ?? task.serviceId;
      tasks.push({ task, serviceName, specKey, addressing: taskAddressing(state, task) });
      if (!session.sentSpecs.has(specKey)) {
        session.sentSpecs.add(specKey);
        specs.push({ key: specKey, spec });
      }
    }
    const removedTasks = [...session.sentTasks.keys()].filter((id) => !seen.has(id));
    for (const id of removedTasks) session.sentTasks.delete(id);
    for (const key of session.sentSpecs) if (!keys.has(key)) session.sentSpecs.delete(key);
    const files = (want: Map<string, FileObjectRecord>, sent: Map<string, number>) => {
      const out: WireFile[] = [];
      for (const [id, rec] of want) {
        if (sent.get(id) === rec.version) continue;
        sent.set(id, rec.version);
        out.push({ id, data: decodeBase64(rec.spec.data) });
      }
      const removed = [...sent.keys()].filter((id) => !want.has(id));
      for (const id of removed) sent.delete(id);
      return { out, removed };
    };
    const s = files(secrets, session.sentSecrets);
    const c = files(configs, session.sentConfigs);
    const full = !session.sentFull;
    const changed = tasks.length + removedTasks.length + s.out.length + s.removed.length +
        c.out.length + c.removed.length > 0;
    if (!full && !changed) return;
    session.sentFull = true;
    session.send({
      t: "assignments",
      full,
      tasks,
      specs,
      secrets: s.out,
      configs: c.out,
      removedTasks,
      removedSecrets: s.removed,
      removedConfigs: c.removed,
    });
  }

  // -------------------------------------------------------------------------------------------
  // Joins

  #acceptJoin(socket: tls.TLSSocket, ip: string): void {
    const cluster = this.#manager.state.cluster!;
    let handled = false;
    const conn = this.#track(socket, (message) => {
      if (handled) return;
      handled = true;
      clearTimeout(timer);
      this.#join(message, ip).then((reply) => {
        conn.sendAndEnd(reply, "joined");
      }, (err) => {
        const refusal = err instanceof Refusal
          ? err
          : new Refusal("unavailable", `the join failed: ${(err as Error).message}`);
        this.#logger?.warn(`dispatcher: refused a join from ${ip}: ${refusal.message}`);
        conn.sendAndEnd(
          { t: "error", code: refusal.code, message: refusal.message } satisfies ManagerMessage,
          refusal.message,
        );
      });
    });
    const timer = setTimeout(
      () => conn.close("no join request in time"),
      this.#opts.joinTimeoutMs ?? 10_000,
    );
    socket.once("close", () => clearTimeout(timer));
    // The root the tokens pin; during a rotation, with the cross-signed new root that links this
    // manager's renewed certificate to it.
    const chainPem = signingCA(cluster.rootCA).chainPem;
    conn.send({
      t: "ca",
      certPem: cluster.rootCA.certPem,
      clusterId: cluster.id,
      ...(chainPem ? { chainPem } : {}),
    });
  }

  async #join(raw: unknown, ip: string): Promise<ManagerMessage> {
    const req = parse(JoinRequest, raw, "join request");
    if (req.v !== PROTOCOL_VERSION) {
      throw new Refusal(
        "bad_request",
        `protocol version ${req.v} is not supported (this manager speaks ${PROTOCOL_VERSION})`,
      );
    }
    const cluster = this.#manager.state.cluster;
    if (cluster === undefined || this.#stopped) {
      throw new Refusal("unavailable", "this manager is not serving a swarm");
    }
    // Both comparisons run, so the time taken does not say which token came close.
    const worker = joinTokenMatches(req.token, cluster.joinTokens.worker);
    const manager = joinTokenMatches(req.token, cluster.joinTokens.manager);
    if (manager && this.#opts.raft === undefined) {
      throw new Refusal(
        "manager_join_unsupported",
        "this is the manager join token, but this manager keeps its log without Raft (a data dir from before managers replicated): it cannot take more managers. Join as a worker with the token from 'shoal swarm join-token worker'",
      );
    }
    if (!worker && !manager) {
      throw new Refusal(
        "invalid_token",
        "A valid join token is necessary to join this cluster: the token is not this swarm's current worker or manager token (it may have been rotated; get the current one with 'shoal swarm join-token worker')",
      );
    }
    const role = manager ? "manager" : "worker";
    const nodeId = newId();
    let certPem: string;
    try {
      certPem = (await issueWithSwarmCA(cluster.rootCA, {
        csrPem: req.csrPem,
        nodeId,
        role,
        clusterId: cluster.id,
        now: this.#clock(),
        expiryMs: cluster.spec.caConfig.nodeCertExpiry,
      })).certPem;
    } catch (err) {
      if (err instanceof CSRError) throw new Refusal("bad_request", err.message);
      throw err;
    }
    const addr = hostOnly(req.addr) || ip;
    const by = "user:swarm.join";
    // A manager's raft id: random, so that concurrent joins through different managers cannot
    // pick the same one (and below 2^31, as ids travel as msgpack integers).
    const raftId = role === "manager" ? randomRaftId(this.#manager.state) : undefined;
    const events: ShoalEvent[] = [{
      type: "NodeRegistered",
      v: 1,
      data: {
        id: nodeId,
        description: req.description,
        spec: { name: "", labels: {}, desiredRole: role, availability: "active" },
        role,
        addr,
      },
      meta: { by, reason: `node ${req.description.hostname} (${ip}) joined as a ${role}` },
    }];
    if (raftId !== undefined) {
      events.push({
        type: "NodeManagerStatusChanged",
        v: 1,
        data: {
          id: nodeId,
          managerStatus: {
            raftId: String(raftId),
            addr: "",
            leader: false,
            reachability: "unknown",
          },
        },
        meta: { by, reason: `raft id ${raftId} for the new manager` },
      });
    }
    await this.#manager.propose(events, by);
    this.#logger?.info(`dispatcher: node ${nodeId} (${ip}) joined the swarm as a ${role}`);
    // A worker has a while to open its session, or it is marked down.
    if (role === "worker" && this.#leading) this.#arm(nodeId, true);
    return {
      t: "joined",
      nodeId,
      role,
      clusterId: cluster.id,
      certPem,
      caPem: trustBundle(cluster.rootCA),
      managers: this.#managerAddrs(),
      addr,
      ...(raftId !== undefined ? { raftId } : {}),
    };
  }
}

function parse<T extends z.ZodType>(schema: T, raw: unknown, what: string): z.infer<T> {
  const r = schema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new Refusal(
      "bad_request",
      `invalid ${what}: ${issue.path.join(".") || "(root)"}: ${issue.message}`,
    );
  }
  return r.data;
}

/** A raft id no manager of the swarm has. */
function randomRaftId(state: Manager["state"]): number {
  const taken = new Set<string>();
  for (const n of state.nodes.values()) if (n.managerStatus) taken.add(n.managerStatus.raftId);
  for (;;) {
    const id = 2 + (crypto.getRandomValues(new Uint32Array(1))[0] % 0x7ffffffd);
    if (!taken.has(String(id))) return id;
  }
}

/** The peer's IP, without the IPv4-mapped prefix. */
function peerIp(socket: net.Socket | undefined): string {
  return (socket?.remoteAddress ?? "").replace(/^::ffff:/, "");
}

/** The host of `host:port` (or the address as is when it has no port). */
function hostOnly(addr: string): string {
  if (addr === "") return "";
  const m = /^\[(.*)\](?::\d+)?$/.exec(addr) ?? /^([^:]*)(?::\d+)?$/.exec(addr);
  return m ? m[1] : addr;
}

function decodeBase64(data: string): Uint8Array {
  const bin = atob(data);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

type PeerLogsMessage =
  | LogsRequest
  | { t: "logs-ack"; stream: number }
  | { t: "logs-cancel"; stream: number };

/** A `logs`, `logs-ack` or `logs-cancel` frame of another manager, with a valid stream id. */
function isLogsMessage(message: unknown): message is PeerLogsMessage {
  const m = message as { t?: unknown; stream?: unknown } | null;
  return (m?.t === "logs" || m?.t === "logs-ack" || m?.t === "logs-cancel") &&
    Number.isSafeInteger(m.stream) && (m.stream as number) >= 0;
}

// deno-lint-ignore require-yield
async function* failing(message: string): AsyncGenerator<LogLine> {
  throw new Error(message);
}
