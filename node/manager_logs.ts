/**
 * {@linkcode ManagerLogLink}: how a manager reads the output of a task it cannot reach itself,
 * by asking another manager over its cluster port (mutual TLS, this manager's certificate). The
 * request and answers are those of an agent session (`logs`, `log`, `logs-ack`, `logs-cancel`),
 * with the same flow control: the link is a {@linkcode LogRelay} whose "sessions" are
 * connections to managers.
 *
 * Which manager: the one whose own agent runs the task (a manager node's `managerStatus.addr`),
 * or, for a worker's task, the leader, which holds the workers' sessions. The manager asked
 * serves the request from its own agent or its own sessions only, never by asking a third
 * manager (`dispatcher.ts`), so a request makes at most one hop and cannot loop.
 *
 * @module
 */
import type { LogLine } from "../actors/agent/log_capture.ts";
import type { ClusterState, TaskRecord } from "../actors/state.ts";
import type { Logger } from "../actors/runtime.ts";
import { dialManager, FrameConnection, LogChunk, type ManagerMessage } from "./agent_protocol.ts";
import type { Credentials } from "./identity.ts";
import { LogRelay, NodeLogsUnavailable } from "./log_relay.ts";
import type { TaskLogOptions } from "./task_logs.ts";

/** Options of a {@linkcode ManagerLogLink}. */
export interface ManagerLogLinkOptions {
  /** This manager's node. */
  nodeId: string;
  /** The state this manager has applied (where tasks' nodes and managers' addresses are). */
  state(): ClusterState | undefined;
  /** The leader's cluster address; undefined when this manager leads or knows no leader. */
  leaderAddr(): string | undefined;
  /** This manager's key and certificate, and the swarm's root. */
  credentials(): Credentials;
  logger?: Logger;
}

interface Peer {
  readonly id: string;
  readonly addr: string;
  readonly conn: FrameConnection;
  /** Tells this connection's streams from those of an earlier one to the same manager. */
  readonly serial: number;
  refusal: string | undefined;
}

/** See the module documentation. */
export class ManagerLogLink {
  readonly #opts: ManagerLogLinkOptions;
  /** Open connections, by manager node id. */
  readonly #peers = new Map<string, Peer>();
  /** Where each manager asked for was, by node id (set just before a read starts). */
  readonly #addrs = new Map<string, string>();
  readonly #relay: LogRelay;
  #next = 0;
  #closed = false;

  /** A link; connections open on first use. */
  constructor(options: ManagerLogLinkOptions) {
    this.#opts = options;
    this.#relay = new LogRelay((managerId, message) => this.#send(managerId, message));
  }

  /** Streams open now (for tests and diagnostics). */
  get openStreams(): number {
    return this.#relay.openStreams;
  }

  /**
   * The manager to ask for the output of `task`: the manager node running it, or the leader
   * for a worker's task; undefined when there is none to ask (it is this manager).
   */
  managerFor(task: TaskRecord): { id: string; addr: string } | undefined {
    const state = this.#opts.state();
    const node = task.nodeId ? state?.nodes.get(task.nodeId) : undefined;
    if (node?.role === "manager" && node.managerStatus?.addr) {
      if (node.id === this.#opts.nodeId) return undefined;
      return { id: node.id, addr: node.managerStatus.addr };
    }
    const leader = this.#opts.leaderAddr();
    if (leader === undefined) return undefined;
    for (const n of state?.nodes.values() ?? []) {
      if (n.managerStatus?.addr === leader) {
        return n.id === this.#opts.nodeId ? undefined : { id: n.id, addr: leader };
      }
    }
    return { id: `the leader at ${leader}`, addr: leader };
  }

  /**
   * Reads the output of `task` through the manager {@linkcode managerFor} names. Throws
   * {@linkcode NodeLogsUnavailable} when there is none, when it cannot be reached, or when
   * it fails before the output ends.
   */
  async *read(task: TaskRecord, options: TaskLogOptions): AsyncGenerator<LogLine> {
    const target = this.managerFor(task);
    if (target === undefined || !task.nodeId) {
      throw new NodeLogsUnavailable(
        task.nodeId
          ? `node ${task.nodeId} cannot be reached from manager ${this.#opts.nodeId}, and no other manager can be asked for it (no leader is known): the logs of task ${task.id} cannot be read`
          : `task ${task.id} has no node yet: it has no logs`,
      );
    }
    this.#addrs.set(target.id, target.addr);
    const { tail, since, follow, signal } = options;
    try {
      yield* this.#relay.read(target.id, { taskId: task.id, tail, since, follow }, signal);
    } catch (err) {
      if (!(err instanceof NodeLogsUnavailable)) throw err;
      throw new NodeLogsUnavailable(
        `asking manager ${target.id} (${target.addr}) for the logs of task ${task.id} on node ${task.nodeId}: ${err.message}`,
      );
    }
  }

  /** Closes every connection; reads in flight fail. */
  close(): void {
    this.#closed = true;
    for (const peer of this.#peers.values()) peer.conn.close("the manager is stopping");
    this.#peers.clear();
  }

  #send(managerId: string, message: ManagerMessage): string | undefined {
    if (this.#closed) return undefined;
    let peer = this.#peers.get(managerId);
    const addr = this.#addrs.get(managerId);
    if (peer === undefined || peer.conn.closed || (addr !== undefined && peer.addr !== addr)) {
      if (message.t !== "logs" || addr === undefined) return undefined;
      peer?.conn.close("the manager moved");
      peer = this.#connect(managerId, addr);
    }
    if (!peer.conn.send(message)) return undefined;
    return this.#sessionOf(peer);
  }

  #connect(managerId: string, addr: string): Peer {
    const creds = this.#opts.credentials();
    const socket = dialManager(addr, creds);
    const timer = setTimeout(() => peer.conn.close("connection timed out"), 5_000);
    socket.once("secureConnect", () => clearTimeout(timer));
    const peer: Peer = {
      id: managerId,
      addr,
      serial: ++this.#next,
      refusal: undefined,
      conn: new FrameConnection(socket, {
        onMessage: (raw) => {
          const m = raw as { t?: unknown; message?: unknown };
          if (m?.t === "error") {
            peer.refusal = String(m.message);
            return;
          }
          if (m?.t !== "log") return;
          const chunk = LogChunk.safeParse(raw);
          if (!chunk.success) {
            peer.conn.close(`manager ${managerId} sent a malformed log frame`);
            return;
          }
          this.#relay.receive(this.#sessionOf(peer), chunk.data);
        },
        onClose: (why) => {
          clearTimeout(timer);
          const reason = peer.refusal ?? why;
          this.#relay.sessionClosed(this.#sessionOf(peer), `manager ${managerId}: ${reason}`);
          if (this.#peers.get(managerId) === peer) this.#peers.delete(managerId);
          this.#opts.logger?.info(
            `manager logs: the connection to manager ${managerId} (${addr}) closed: ${reason}`,
          );
        },
      }),
    };
    this.#peers.set(managerId, peer);
    return peer;
  }

  /** The relay's session id of a connection: each connection has its own. */
  #sessionOf(peer: Peer): string {
    return `${peer.id}#${peer.serial}`;
  }
}
