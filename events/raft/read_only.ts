/**
 * ReadIndex bookkeeping (Raft thesis §6.4): the leader records its commit index for each read
 * request, confirms it is still leader with a round of heartbeats carrying the request's
 * context, and releases the request once a majority answered.
 *
 * @module
 */
import type { MsgReadIndex, NodeId } from "./types.ts";

/** A read request waiting for a quorum of heartbeat acknowledgements. */
export interface ReadIndexStatus {
  /** The request. */
  readonly req: MsgReadIndex;
  /** The leader's commit index when it received the request. */
  readonly index: number;
  /** Who acknowledged a heartbeat carrying this request's context. */
  readonly acks: Set<NodeId>;
}

/** The key of a context: its bytes as hex. */
export function contextKey(context: Uint8Array): string {
  let s = "";
  for (const b of context) s += b.toString(16).padStart(2, "0");
  return s;
}

/** Pending ReadIndex requests, in arrival order. */
export class ReadOnly {
  #pending = new Map<string, ReadIndexStatus>();
  #queue: string[] = [];

  /** Records request `req`, to be answered with `index` once confirmed. Duplicates are ignored. */
  addRequest(index: number, req: MsgReadIndex): void {
    const key = contextKey(req.context);
    if (this.#pending.has(key)) return;
    this.#pending.set(key, { req, index, acks: new Set() });
    this.#queue.push(key);
  }

  /** Records `id`'s acknowledgement of `context`; returns who acknowledged so far. */
  recvAck(id: NodeId, context: Uint8Array): ReadonlySet<NodeId> | undefined {
    const status = this.#pending.get(contextKey(context));
    if (!status) return undefined;
    status.acks.add(id);
    return status.acks;
  }

  /**
   * Releases the request with `context` and every request queued before it (a quorum that
   * confirms a later heartbeat confirms the earlier ones too).
   */
  advance(context: Uint8Array): ReadIndexStatus[] {
    const key = contextKey(context);
    const at = this.#queue.indexOf(key);
    if (at < 0) return [];
    const released = this.#queue.splice(0, at + 1);
    return released.map((k) => {
      const status = this.#pending.get(k)!;
      this.#pending.delete(k);
      return status;
    });
  }

  /** The context of the newest pending request, to piggyback on heartbeats. */
  lastPendingRequestContext(): Uint8Array | undefined {
    const key = this.#queue.at(-1);
    return key === undefined ? undefined : this.#pending.get(key)!.req.context;
  }

  /** How many requests are pending. */
  get pendingCount(): number {
    return this.#queue.length;
  }
}
