/**
 * An {@linkcode AgentSession} over the network: the agent of a worker talks to the manager's
 * dispatcher (`node/dispatcher.ts`) on its cluster port, with mutual TLS and the frames of
 * `node/agent_protocol.ts`.
 *
 * - **Reconnects** whenever the connection drops or the manager goes silent (nothing heard for
 *   three heartbeat periods), with SwarmKit's backoff: 100 ms growing to 8 s (`2 × previous +
 *   100 ms`), each wait a random fraction of it so that many agents do not all come back at once.
 *   Managers are tried in turn.
 * - **Keeps the last assignments** while disconnected, so the agent keeps its tasks running; a
 *   new session starts with the full set, which replaces them, and the agent's level-triggered
 *   reconcile does the rest (it stops what is no longer assigned, starts what is new).
 * - **Reports are never lost to a disconnection**: each waits in an outbox until the manager
 *   answers that it is committed (or dropped as stale), and is sent again on the next session.
 *   `report()` resolves then, so the agent's flushes follow the manager's pace.
 * - **Refusal** (the node was removed, its certificate is not accepted) ends the session for
 *   good: `onRefused` is called and nothing reconnects.
 * - **Logs**: the manager may ask for a task's output (`service logs`); once the worker has
 *   called `serveLogs`, the lines go back in `log` frames of at most `LOG_CHUNK_LINES`, sent as
 *   soon as the reader pauses, with no more than `LOG_WINDOW_CHUNKS` frames unacknowledged
 *   (`node/log_stream_server.ts`, which managers use too).
 *
 * @module
 */
import * as tls from "node:tls";
import type { NodeDescription, TaskSpec } from "../../events/schema.ts";
import type { Logger } from "../runtime.ts";
import type { AgentSession, Assignment, StatusReport } from "./agent.ts";
import type { LogLine, LogReadOptions } from "./log_capture.ts";
import {
  type AssignmentsMessage,
  dialManager,
  FATAL_CODES,
  FrameConnection,
  type ManagerMessage,
  PROTOCOL_VERSION,
  RemoteError,
  type TrustInfo,
  type WireTask,
} from "../../node/agent_protocol.ts";
import { LogStreamServer } from "../../node/log_stream_server.ts";
import { mainAddress } from "./task_addressing.ts";

/** TLS material of the node, PEM. */
export interface SessionCredentials {
  key: string;
  cert: string;
  /** The swarm's root CA: the manager's certificate must chain to it. */
  ca: string;
}

/** Options of a {@linkcode RemoteSession}. */
export interface RemoteSessionOptions {
  /** Managers' cluster addresses (`host:port`), tried in turn. */
  managers: string[];
  /** The node's current key, certificate and root CA (read at every connection). */
  credentials: () => SessionCredentials;
  /** What the node is, sent when a session opens. */
  description: () => NodeDescription;
  /** The address the node says it is reachable at ("" lets the manager use the peer's). */
  addr?: string;
  logger?: Logger;
  /** First reconnection backoff, ms (default 100, SwarmKit's). */
  initialBackoffMs?: number;
  /** Longest reconnection backoff, ms (default 8,000, SwarmKit's). */
  maxBackoffMs?: number;
  /** How long a connection may take to open, ms (default 10 s). */
  connectTimeoutMs?: number;
  /** Random source in [0, 1) for the backoff jitter. */
  random?: () => number;
  /** Called once if a manager refuses this node for good; the session is then closed. */
  onRefused?: (error: RemoteError) => void;
  /** Called each time a session opens. */
  onSession?: (info: SessionInfo) => void;
  /**
   * Called with what the manager says the node must trust and which root must have signed its
   * certificate (every welcome and heartbeat): a root rotation, when they differ from the node's.
   */
  onTrust?: (info: TrustInfo) => void;
  /** Called when the manager says this node is now a manager (`node promote`), with its raft id. */
  onPromoted?: (raftId: number) => void;
}

/** What the manager said when the session opened. */
export interface SessionInfo {
  nodeId: string;
  sessionId: string;
  /** The node's address as the manager records it. */
  addr: string;
  /** Heartbeat period, ms. */
  period: number;
  managers: string[];
  /** The manager this session is with (`host:port`). */
  manager: string;
}

interface Outgoing {
  seq: number;
  reports: StatusReport[];
  resolve: () => void;
}

/** Reads the output of a task of this node (see `node/task_logs.ts`). */
export type TaskLogReader = (taskId: string, options: LogReadOptions) => AsyncIterable<LogLine>;

interface Request {
  resolve: (reply: Extract<ManagerMessage, { t: "reply" }>) => void;
  reject: (err: Error) => void;
}

/** The agent's session with the managers, over the network. */
export class RemoteSession implements AgentSession {
  #opts: RemoteSessionOptions;
  #tasks = new Map<string, WireTask>();
  #specs = new Map<string, TaskSpec>();
  #secrets = new Map<string, Uint8Array>();
  #configs = new Map<string, Uint8Array>();
  #assignments: Assignment[] = [];
  #listeners = new Set<() => void>();
  #meshMap: unknown = undefined;
  #meshListeners = new Set<() => void>();
  #outbox: Outgoing[] = [];
  #requests = new Map<number, Request>();
  #seq = 0;
  #conn: FrameConnection | undefined;
  #connected = false;
  #backoff = 0;
  #managerIndex = 0;
  /** The leader a manager that does not lead pointed to: tried next. */
  #redirect: string | undefined;
  /** Managers learnt from welcomes, beyond the configured ones. */
  #learnt: string[] = [];
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  #heartbeatTimer: ReturnType<typeof setTimeout> | undefined;
  #lastHeard = 0;
  #period = 5_000;
  #closed = false;
  #draining = false;
  #started = false;
  #info: SessionInfo | undefined;
  #ready = Promise.withResolvers<void>();
  #gotFull = false;
  #lastError = "";
  #connectWaiters: PromiseWithResolvers<void>[] = [];
  #logReader: TaskLogReader | undefined;
  #logStreams = new LogStreamServer();

  /** A session; call `start()` to connect. */
  constructor(options: RemoteSessionOptions) {
    this.#opts = options;
    this.#ready.promise.catch(() => {});
  }

  /** Starts connecting (and reconnecting) to the managers. */
  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    this.#connect();
  }

  /** Resolves once the first full set of assignments has arrived; rejects if refused or closed. */
  get ready(): Promise<void> {
    return this.#ready.promise;
  }

  /** Whether a session is open now. */
  get connected(): boolean {
    return this.#connected;
  }

  /** The current session, if one is open. */
  get info(): SessionInfo | undefined {
    return this.#connected ? this.#info : undefined;
  }

  /** The last session's details (kept while disconnected). */
  get lastInfo(): SessionInfo | undefined {
    return this.#info;
  }

  /** Ids of the secrets and configs this node holds now (only those its tasks use). */
  get heldFiles(): { secrets: string[]; configs: string[] } {
    return { secrets: [...this.#secrets.keys()], configs: [...this.#configs.keys()] };
  }

  /** Why the last connection ended or failed ("" if none did). */
  get lastError(): string {
    return this.#lastError;
  }

  /** See {@linkcode AgentSession.assignments}: the last set known, also while disconnected. */
  assignments(): Assignment[] {
    return this.#assignments;
  }

  /** The last mesh map a manager sent (not yet validated: `node/mesh` checks it), if any. */
  get meshMap(): unknown {
    return this.#meshMap;
  }

  /** Calls `listener` whenever a manager sends a mesh map; returns a function that stops it. */
  onMeshMap(listener: () => void): () => void {
    this.#meshListeners.add(listener);
    return () => this.#meshListeners.delete(listener);
  }

  /** See {@linkcode AgentSession.onChange}. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * See {@linkcode AgentSession.report}: resolves once the manager has committed the reports (or
   * dropped them as stale), however many reconnections that takes. After `close()`, or while
   * draining without a session, reports are dropped.
   */
  report(reports: StatusReport[]): Promise<void> {
    if (this.#closed || (this.#draining && !this.#connected) || reports.length === 0) {
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const item = { seq: ++this.#seq, reports, resolve };
      this.#outbox.push(item);
      if (this.#connected) this.#sendReport(item);
    });
  }

  /** Resolves when a session is open (at once if one is); rejects if the session is closed. */
  whenConnected(): Promise<void> {
    if (this.#connected) return Promise.resolve();
    if (this.#closed) return Promise.reject(new Error("the session was closed"));
    const w = Promise.withResolvers<void>();
    this.#connectWaiters.push(w);
    return w.promise;
  }

  /** Serves the manager's requests for tasks' output with `reader` (until then they fail). */
  serveLogs(reader: TaskLogReader): void {
    this.#logReader = reader;
  }

  /** Log streams being sent now (for tests and diagnostics). */
  get openLogStreams(): number {
    return this.#logStreams.openStreams;
  }

  /** Asks the manager for a certificate for the key of `csrPem`; resolves with it (PEM). */
  async renewCertificate(csrPem: string): Promise<string> {
    const reply = await this.#request((seq) => ({ t: "renew", seq, csrPem }));
    if (reply.error !== undefined) throw new Error(reply.error);
    if (typeof reply.certPem !== "string") throw new Error("the manager sent no certificate");
    return reply.certPem;
  }

  /**
   * Tells the manager this node is going down (`leaving`: it leaves the swarm); resolves once the
   * manager has marked it down. The manager then ends the session; nothing reconnects after.
   */
  async markDown(leaving: boolean): Promise<void> {
    this.#draining = true;
    await this.#request((seq) => ({ t: "down", seq, leaving }));
    this.close();
  }

  /** Drops the current connection and dials again at once (to present a renewed certificate). */
  reconnect(): void {
    if (this.#closed) return;
    this.#backoff = 0;
    if (this.#conn && !this.#conn.closed) this.#conn.close("reconnecting with new credentials");
    else {
      clearTimeout(this.#reconnectTimer);
      this.#reconnectTimer = undefined;
      this.#connect();
    }
  }

  /**
   * From now on, reports that cannot be delivered at once are dropped (the node is stopping and
   * the manager will mark it down); those waiting for a session are dropped now if there is none.
   */
  drain(): void {
    this.#draining = true;
    if (!this.#connected) this.#dropOutbox();
  }

  /** Closes the session for good. Reports waiting are dropped. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#reconnectTimer);
    clearTimeout(this.#heartbeatTimer);
    this.#conn?.close("the session was closed");
    this.#dropOutbox();
    for (const r of this.#requests.values()) r.reject(new Error("the session was closed"));
    this.#requests.clear();
    for (const w of this.#connectWaiters.splice(0)) w.reject(new Error("the session was closed"));
    this.#ready.reject(new Error(this.#lastError || "the session was closed"));
  }

  // -------------------------------------------------------------------------------------------

  #connect(): void {
    if (this.#closed) return;
    const managers = [
      ...this.#opts.managers,
      ...this.#learnt.filter((m) => !this.#opts.managers.includes(m)),
    ];
    const manager = this.#redirect ?? managers[this.#managerIndex % managers.length];
    this.#redirect = undefined;
    let socket: tls.TLSSocket;
    try {
      socket = dialManager(manager, this.#opts.credentials());
    } catch (err) {
      this.#failed(`cannot connect to ${manager}: ${(err as Error).message}`);
      return;
    }
    let refusal: RemoteError | undefined;
    const conn: FrameConnection = new FrameConnection(socket, {
      onMessage: (message) => {
        const m = message as ManagerMessage;
        if (m.t === "error") {
          refusal = new RemoteError(String(m.code), String(m.message));
          if (m.code === "not_leader" && typeof m.leader === "string") this.#redirect = m.leader;
          return;
        }
        this.#onMessage(conn, manager, m);
      },
      onClose: (why) => {
        if (this.#conn === conn) this.#conn = undefined;
        this.#disconnected(refusal, refusal ? refusal.message : `${manager}: ${why}`);
      },
    });
    this.#conn = conn;
    const timeout = setTimeout(
      () => conn.close("connection timed out"),
      this.#opts.connectTimeoutMs ?? 10_000,
    );
    socket.once("close", () => clearTimeout(timeout));
    socket.once("secureConnect", () => {
      clearTimeout(timeout);
      this.#lastHeard = Date.now();
      conn.send({
        t: "hello",
        v: PROTOCOL_VERSION,
        description: this.#opts.description(),
        addr: this.#opts.addr ?? "",
      });
    });
  }

  #onMessage(conn: FrameConnection, manager: string, m: ManagerMessage): void {
    if (conn !== this.#conn) return;
    this.#lastHeard = Date.now();
    switch (m.t) {
      case "welcome": {
        this.#connected = true;
        this.#backoff = 0;
        this.#period = m.period;
        this.#lastError = "";
        this.#info = {
          nodeId: m.nodeId,
          sessionId: m.sessionId,
          addr: m.addr,
          period: m.period,
          managers: m.managers,
          manager,
        };
        this.#learnt = m.managers.filter((a) => typeof a === "string" && a !== "");
        this.#opts.logger?.info(`agent: session ${m.sessionId} opened with ${manager}`);
        this.#scheduleHeartbeat();
        for (const item of this.#outbox) this.#sendReport(item);
        for (const w of this.#connectWaiters.splice(0)) w.resolve();
        this.#opts.onSession?.(this.#info);
        if (m.ca) this.#opts.onTrust?.(m.ca);
        return;
      }
      case "assignments":
        this.#apply(m);
        return;
      case "mesh":
        this.#meshMap = m.map;
        for (const listener of this.#meshListeners) {
          try {
            listener();
          } catch (err) {
            this.#opts.logger?.error(`agent: a mesh map listener failed: ${err}`);
          }
        }
        return;
      case "heartbeat":
        this.#period = m.period;
        if (m.role === "manager" && m.raftId !== undefined) this.#opts.onPromoted?.(m.raftId);
        if (m.ca) this.#opts.onTrust?.(m.ca);
        return;
      case "logs":
        void this.#logStreams.serve(
          conn,
          m,
          this.#logReader,
          "this node's agent is not running yet",
        );
        return;
      case "logs-ack":
        this.#logStreams.ack(m.stream);
        return;
      case "logs-cancel":
        this.#logStreams.cancel(m.stream);
        return;
      case "reply": {
        const i = this.#outbox.findIndex((o) => o.seq === m.seq);
        if (i >= 0) {
          const [item] = this.#outbox.splice(i, 1);
          item.resolve();
          return;
        }
        const request = this.#requests.get(m.seq);
        if (request) {
          this.#requests.delete(m.seq);
          request.resolve(m);
        }
        return;
      }
      default:
        return;
    }
  }

  #apply(m: AssignmentsMessage): void {
    if (m.full) {
      this.#tasks.clear();
      this.#specs.clear();
      this.#secrets.clear();
      this.#configs.clear();
    }
    for (const { key, spec } of m.specs) this.#specs.set(key, spec);
    for (const t of m.tasks) this.#tasks.set(t.task.id, t);
    for (const id of m.removedTasks) this.#tasks.delete(id);
    for (const f of m.secrets) this.#secrets.set(f.id, f.data);
    for (const id of m.removedSecrets) this.#secrets.delete(id);
    for (const f of m.configs) this.#configs.set(f.id, f.data);
    for (const id of m.removedConfigs) this.#configs.delete(id);
    const used = new Set<string>();
    const out: Assignment[] = [];
    const nodeId = this.#info?.nodeId ?? "";
    for (const { task, serviceName, specKey, addressing } of this.#tasks.values()) {
      used.add(specKey);
      const spec = this.#specs.get(specKey);
      if (spec === undefined) {
        this.#opts.logger?.error(`agent: task ${task.id} came without its spec ${specKey}`);
        continue;
      }
      const pick = (refs: readonly { id: string }[], from: Map<string, Uint8Array>) => {
        const data = new Map<string, Uint8Array>();
        for (const ref of refs) {
          const bytes = from.get(ref.id);
          if (bytes !== undefined) data.set(ref.id, bytes);
        }
        return data;
      };
      out.push({
        task,
        executorTask: {
          id: task.id,
          serviceId: task.serviceId,
          serviceName,
          addressing: addressing ?? { addr: mainAddress(task), services: {} },
          slot: task.slot,
          nodeId,
          spec,
          secretData: pick(spec.secrets, this.#secrets),
          configData: pick(spec.configs, this.#configs),
        },
      });
    }
    for (const key of this.#specs.keys()) if (!used.has(key)) this.#specs.delete(key);
    this.#assignments = out;
    if (m.full && !this.#gotFull) {
      this.#gotFull = true;
      this.#ready.resolve();
    }
    for (const listener of this.#listeners) {
      try {
        listener();
      } catch (err) {
        this.#opts.logger?.error(`agent: an assignments listener failed: ${err}`);
      }
    }
  }

  #sendReport(item: Outgoing): void {
    this.#conn?.send({
      t: "report",
      seq: item.seq,
      reports: item.reports.map((r) => ({ taskId: r.taskId, status: r.status })),
    });
  }

  #request(
    make: (seq: number) => Record<string, unknown>,
  ): Promise<Extract<ManagerMessage, { t: "reply" }>> {
    if (!this.#connected || this.#conn === undefined) {
      return Promise.reject(
        new Error(`not connected to a manager${this.#lastError ? ` (${this.#lastError})` : ""}`),
      );
    }
    const seq = ++this.#seq;
    const { promise, resolve, reject } = Promise.withResolvers<
      Extract<ManagerMessage, { t: "reply" }>
    >();
    this.#requests.set(seq, { resolve, reject });
    this.#conn.send(make(seq));
    return promise;
  }

  #scheduleHeartbeat(): void {
    clearTimeout(this.#heartbeatTimer);
    this.#heartbeatTimer = setTimeout(() => {
      const conn = this.#conn;
      if (!this.#connected || conn === undefined) return;
      if (Date.now() - this.#lastHeard > 3 * this.#period) {
        conn.close(`the manager sent nothing for ${3 * this.#period} ms`);
        return;
      }
      conn.send({ t: "heartbeat" });
      this.#scheduleHeartbeat();
    }, this.#period);
  }

  #disconnected(refusal: RemoteError | undefined, why: string): void {
    const wasConnected = this.#connected;
    this.#connected = false;
    clearTimeout(this.#heartbeatTimer);
    this.#lastError = why;
    for (const r of this.#requests.values()) {
      r.reject(new Error(`the connection to the manager was lost: ${why}`));
    }
    this.#logStreams.cancelAll();
    this.#requests.clear();
    if (this.#closed) return;
    if (wasConnected) this.#opts.logger?.warn(`agent: session lost: ${why}`);
    if (this.#draining) this.#dropOutbox();
    if (refusal?.code === "not_leader") {
      // Not a failure: go to the leader it named (or the next manager) at once.
      this.#opts.logger?.info(`agent: ${why}`);
      clearTimeout(this.#reconnectTimer);
      if (this.#redirect === undefined) this.#managerIndex++;
      this.#reconnectTimer = setTimeout(() => {
        this.#reconnectTimer = undefined;
        this.#connect();
      }, this.#redirect === undefined ? 200 : 10);
      return;
    }
    if (refusal !== undefined && FATAL_CODES.has(refusal.code)) {
      this.#opts.logger?.error(`agent: the manager refused this node: ${refusal.message}`);
      this.close();
      this.#opts.onRefused?.(refusal);
      return;
    }
    this.#failed(why);
  }

  /** Schedules the next attempt after SwarmKit's backoff, on the next manager. */
  #failed(why: string): void {
    this.#lastError = why;
    if (this.#closed) return;
    const initial = this.#opts.initialBackoffMs ?? 100;
    const max = this.#opts.maxBackoffMs ?? 8_000;
    this.#backoff = Math.min(initial + 2 * this.#backoff, max);
    this.#managerIndex++;
    const delay = Math.floor((this.#opts.random ?? Math.random)() * this.#backoff);
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      this.#connect();
    }, delay);
  }

  #dropOutbox(): void {
    for (const item of this.#outbox.splice(0)) item.resolve();
  }
}
