/**
 * {@linkcode RemoteLeaderLink}: how a manager that follows has the leader do what only the leader
 * may (DESIGN.md: one writer, the Raft leader). Commands and proposals made on a follower (by
 * its API, its own agent, its dispatcher) travel to the leader's cluster port over mutual TLS
 * with this manager's certificate; the leader decides them against its state, proposes, and
 * answers with the index, which the follower waits to apply before it answers in turn (so a
 * client reads its own writes on whichever manager it asked).
 *
 * Retries are safe only when the leader cannot have acted: a request is sent again (to the
 * leader named in the refusal, or to the next manager) when the connection could not be made
 * or the manager answered `not_leader`. A connection lost after the request went out is an
 * error saying the outcome is unknown, never a silent second try.
 *
 * @module
 */
import type { Command } from "../actors/commands.ts";
import {
  BatchRejectedError,
  type CommandResult,
  type LeaderLink,
  LeaderUnavailableError,
} from "../actors/manager.ts";
import type { Rejection } from "../actors/state.ts";
import { EventRejected, type RejectionCode } from "../actors/entities/rejection.ts";
import type { Logger } from "../actors/runtime.ts";
import type { ShoalEvent } from "../events/schema.ts";
import {
  dialManager,
  FrameConnection,
  type ManagerMessage,
  type WireError,
} from "./agent_protocol.ts";
import type { Credentials } from "./identity.ts";

/** Options of a {@linkcode RemoteLeaderLink}. */
export interface RemoteLeaderLinkOptions {
  /** Whether this node leads now. */
  isLeader(): boolean;
  /** The leader's cluster address (`host:port`), when this node knows it. */
  leaderAddr(): string | undefined;
  /** Managers to try when no leader is known (the addresses a join or node.json gave). */
  fallback(): string[];
  /** Resolves when the leader this node knows of may have changed (or after `ms`). */
  leaderChanged(ms: number): Promise<void>;
  /** This manager's key and certificate, and the swarm's root. */
  credentials(): Credentials;
  logger?: Logger;
  /** How long one call may wait for a leader, ms (default 7 s). */
  timeoutMs?: number;
}

/** What the leader answers to `addMember`: the Raft group's members and their addresses. */
export interface MemberAdded {
  readonly peers: [number, string][];
}

type Pending = {
  resolve: (m: Extract<ManagerMessage, { t: "forwarded" }>) => void;
  reject: (err: Error) => void;
};

class Link {
  readonly conn: FrameConnection;
  readonly ready: Promise<void>;
  readonly pending = new Map<number, Pending>();
  seq = 0;
  refusal: string | undefined;

  constructor(readonly addr: string, creds: Credentials, onClose: () => void) {
    const socket = dialManager(addr, creds);
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.ready = promise;
    promise.catch(() => {});
    const timer = setTimeout(() => this.conn.close("connection timed out"), 5_000);
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      resolve();
    });
    this.conn = new FrameConnection(socket, {
      onMessage: (raw) => {
        const m = raw as ManagerMessage;
        if (m.t === "error") {
          this.refusal = m.message;
          return;
        }
        if (m.t !== "forwarded") return;
        const p = this.pending.get(m.seq);
        if (p === undefined) return;
        this.pending.delete(m.seq);
        p.resolve(m);
      },
      onClose: (why) => {
        clearTimeout(timer);
        const reason = this.refusal ?? why;
        reject(new Error(reason));
        for (const p of this.pending.values()) {
          p.reject(
            new LeaderUnavailableError(
              `the connection to the leader at ${addr} was lost (${reason}) before it answered: the request may or may not have been carried out`,
            ),
          );
        }
        this.pending.clear();
        onClose();
      },
    });
  }
}

/** See the module documentation. */
export class RemoteLeaderLink implements LeaderLink {
  #opts: RemoteLeaderLinkOptions;
  #links = new Map<string, Link>();
  #closed = false;
  #next = 0;

  /** A link; connections open on first use. */
  constructor(options: RemoteLeaderLinkOptions) {
    this.#opts = options;
  }

  /** See {@linkcode LeaderLink.isLeader}. */
  isLeader(): boolean {
    return this.#opts.isLeader();
  }

  /** See {@linkcode LeaderLink.execute}. */
  async execute(command: Command, by: string): Promise<CommandResult> {
    return await this.#call({ op: "execute", command, by }) as CommandResult;
  }

  /** See {@linkcode LeaderLink.propose}. */
  async propose(events: ShoalEvent[], by: string): Promise<number> {
    return await this.#call({ op: "propose", events, by }) as number;
  }

  /** Asks the leader to add this manager to the Raft group as a learner (or update its address). */
  async addMember(raftId: number, raftAddr: string): Promise<MemberAdded> {
    return await this.#call({ op: "addMember", raftId, raftAddr }) as MemberAdded;
  }

  /** Asks the leader to take raft member `raftId` out of the group. */
  async removeMember(raftId: number): Promise<void> {
    await this.#call({ op: "removeMember", raftId });
  }

  /** Closes every connection; calls in flight fail. */
  close(): void {
    this.#closed = true;
    for (const link of this.#links.values()) link.conn.close("the manager is stopping");
    this.#links.clear();
  }

  async #call(request: Record<string, unknown>): Promise<unknown> {
    const deadline = Date.now() + (this.#opts.timeoutMs ?? 7_000);
    let redirect: string | undefined;
    let lastError = "";
    for (;;) {
      if (this.#closed) throw new LeaderUnavailableError("this manager is stopping");
      const addr = redirect ?? this.#opts.leaderAddr() ?? this.#fallback();
      redirect = undefined;
      if (addr === undefined) {
        if (Date.now() > deadline) throw new LeaderUnavailableError(lastError);
        await this.#opts.leaderChanged(Math.min(500, Math.max(0, deadline - Date.now())));
        continue;
      }
      let link: Link;
      try {
        link = this.#link(addr);
        await link.ready;
      } catch (err) {
        lastError = `${addr}: ${(err as Error).message}`;
        if (Date.now() > deadline) throw new LeaderUnavailableError(lastError);
        await this.#opts.leaderChanged(200);
        continue;
      }
      const seq = ++link.seq;
      const reply = await new Promise<Extract<ManagerMessage, { t: "forwarded" }>>(
        (resolve, reject) => {
          link.pending.set(seq, { resolve, reject });
          if (!link.conn.send({ t: "forward", seq, ...request })) {
            link.pending.delete(seq);
            reject(new LeaderUnavailableError(`the connection to ${addr} is closed`));
          }
        },
      );
      if (reply.error === undefined) return reply.result;
      if (reply.error.code === "not_leader") {
        lastError = reply.error.message;
        if (Date.now() > deadline) throw new LeaderUnavailableError(lastError);
        redirect = reply.error.leader && reply.error.leader !== addr
          ? reply.error.leader
          : undefined;
        if (redirect === undefined) await this.#opts.leaderChanged(200);
        continue;
      }
      throw errorFromWire(reply.error);
    }
  }

  #fallback(): string | undefined {
    const all = this.#opts.fallback();
    if (all.length === 0) return undefined;
    return all[this.#next++ % all.length];
  }

  #link(addr: string): Link {
    let link = this.#links.get(addr);
    if (link === undefined || link.conn.closed) {
      const created: Link = new Link(addr, this.#opts.credentials(), () => {
        if (this.#links.get(addr) === created) this.#links.delete(addr);
      });
      link = created;
      this.#links.set(addr, link);
    }
    return link;
  }
}

/** The error an answer stands for, rebuilt as the class the leader threw where it matters. */
export function errorFromWire(e: WireError): Error {
  if (e.name === "BatchRejectedError" && e.rejection !== undefined) {
    return new BatchRejectedError(e.rejection as Rejection);
  }
  if (e.name === "EventRejected" || e.name === "BatchRejectedError") {
    return new EventRejected((e.code ?? "invalid_argument") as RejectionCode, e.message);
  }
  if (e.name === "LeaderUnavailableError") return new LeaderUnavailableError(e.message);
  const err = new Error(e.message);
  err.name = e.name;
  return err;
}

/** An error as it travels to a forwarding manager. */
export function errorToWire(err: unknown): WireError {
  const e = err instanceof Error ? err : new Error(String(err));
  const code = (e as { code?: unknown }).code;
  return {
    name: e.name,
    message: e.message,
    ...(typeof code === "string" ? { code } : {}),
    ...(e instanceof BatchRejectedError ? { rejection: e.rejection } : {}),
  };
}
