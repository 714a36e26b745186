/**
 * What the leader knows of each follower: its {@linkcode Progress} (how far its log matches and
 * how to send it more), flow control by {@linkcode Inflights}, and the
 * {@linkcode ProgressTracker} holding the configuration, the progress of every member and the
 * votes of an election.
 *
 * A follower's progress is in one of three states:
 *
 * - `probe`: the leader does not know where the follower's log matches. It sends at most one
 *   append per heartbeat interval and backs off on rejection.
 * - `replicate`: the logs match up to `match`. The leader streams appends optimistically
 *   (advancing `next` as it sends), bounded by the in-flight window.
 * - `snapshot`: the follower needs entries the leader compacted. The leader sends a snapshot
 *   and waits for it to be applied (or reported failed) before probing again.
 *
 * @module
 */
import { committedIndex, type VoteResult, voteResult } from "./quorum.ts";
import type { ConfState, NodeId } from "./types.ts";

/** A follower's replication state. */
export type ProgressState = "probe" | "replicate" | "snapshot";

/**
 * A bounded window of appends sent but not yet acknowledged, each remembered by its last index.
 * When it is full, the leader stops sending to that follower.
 */
export class Inflights {
  /** Maximum number of appends in flight. */
  readonly size: number;
  /** Maximum payload bytes in flight. */
  readonly maxBytes: number;
  #buffer: number[] = [];
  #bytes: number[] = [];
  #start = 0;
  #count = 0;
  #totalBytes = 0;

  /** A window of `size` appends and `maxBytes` bytes (unlimited by default). */
  constructor(size: number, maxBytes = Number.POSITIVE_INFINITY) {
    this.size = size;
    this.maxBytes = maxBytes;
  }

  /** Appends in flight. */
  get count(): number {
    return this.#count;
  }

  /** Payload bytes in flight. */
  get bytes(): number {
    return this.#totalBytes;
  }

  /** Records an append whose last entry is `index`, carrying `bytes` bytes. */
  add(index: number, bytes: number): void {
    if (this.full()) throw new Error("Cannot add to a full Inflights window");
    const at = (this.#start + this.#count) % this.size;
    // The ring grows lazily so a large window costs nothing until used.
    if (at >= this.#buffer.length) {
      this.#buffer.push(index);
      this.#bytes.push(bytes);
    } else {
      this.#buffer[at] = index;
      this.#bytes[at] = bytes;
    }
    this.#count++;
    this.#totalBytes += bytes;
  }

  /** Frees every append whose last index is `<= to` (acknowledged). */
  freeLE(to: number): void {
    while (this.#count > 0 && this.#buffer[this.#start] <= to) {
      this.#totalBytes -= this.#bytes[this.#start];
      this.#start = (this.#start + 1) % this.size;
      this.#count--;
    }
    if (this.#count === 0) this.#start = 0;
  }

  /** Whether no more appends may be sent. */
  full(): boolean {
    return this.#count === this.size || this.#totalBytes >= this.maxBytes;
  }

  /** Forgets everything in flight. */
  reset(): void {
    this.#start = 0;
    this.#count = 0;
    this.#totalBytes = 0;
  }
}

/** The leader's view of one follower (or of itself). */
export class Progress {
  /** Highest index known to match the leader's log. */
  match = 0;
  /** Index of the next entry to send. */
  next: number;
  /** Replication state; change it only through the `become*` methods. */
  state: ProgressState = "probe";
  /** In `snapshot` state: the index of the snapshot being sent. */
  pendingSnapshot = 0;
  /** Heard from within the current election timeout (check-quorum). */
  recentActive = false;
  /**
   * Sending is paused: in `probe`, until a response or heartbeat response (one probe at a
   * time); in `replicate`, while the in-flight window is full.
   */
  msgAppFlowPaused = false;
  /** Appends in flight, in `replicate` state. */
  readonly inflights: Inflights;
  /** A learner: replicated to, but neither votes nor counts for commit. */
  isLearner: boolean;

  /** Progress of a member whose next entry to send is `next`. */
  constructor(next: number, inflights: Inflights, isLearner = false) {
    this.next = next;
    this.inflights = inflights;
    this.isLearner = isLearner;
  }

  #resetState(state: ProgressState): void {
    this.msgAppFlowPaused = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  /** Back to probing from just after `match` (or after the snapshot just applied). */
  becomeProbe(): void {
    if (this.state === "snapshot") {
      const pending = this.pendingSnapshot;
      this.#resetState("probe");
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.#resetState("probe");
      this.next = this.match + 1;
    }
  }

  /** The logs match up to `match`: stream from there. */
  becomeReplicate(): void {
    this.#resetState("replicate");
    this.next = this.match + 1;
  }

  /** Sending snapshot `index`. */
  becomeSnapshot(index: number): void {
    this.#resetState("snapshot");
    this.pendingSnapshot = index;
  }

  /** Records an append of `entries` entries and `bytes` bytes just sent. */
  sentEntries(entries: number, bytes: number): void {
    switch (this.state) {
      case "replicate":
        if (entries > 0) {
          this.next += entries;
          this.inflights.add(this.next - 1, bytes);
        }
        this.msgAppFlowPaused = this.inflights.full();
        break;
      case "probe":
        // Every append in probe state is a probe: wait for its answer (or a heartbeat's).
        this.msgAppFlowPaused = true;
        break;
      case "snapshot":
        throw new Error("Cannot send entries to a follower in snapshot state");
    }
  }

  /**
   * The follower acknowledged index `n`. Returns whether `match` moved (a stale
   * acknowledgement changes nothing).
   */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.msgAppFlowPaused = false;
    }
    this.next = Math.max(this.next, n + 1);
    return updated;
  }

  /**
   * The follower rejected an append after index `rejected`; `matchHint` is where its log might
   * match. Returns false when the rejection is stale (answers an older append).
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === "replicate") {
      // Appends are pipelined, so only a rejection above match is news.
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    // In probe state only the latest probe (at next - 1) counts.
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.msgAppFlowPaused = false;
    return true;
  }

  /** Whether the leader must not send this follower appends now. */
  isPaused(): boolean {
    switch (this.state) {
      case "probe":
      case "replicate":
        return this.msgAppFlowPaused;
      case "snapshot":
        return true;
    }
  }

  /** One line for logs and status. */
  toString(): string {
    let s = `${this.state} match=${this.match} next=${this.next}`;
    if (this.isLearner) s += " learner";
    if (this.isPaused()) s += " paused";
    if (this.pendingSnapshot > 0) s += ` pendingSnap=${this.pendingSnapshot}`;
    if (!this.recentActive) s += " inactive";
    if (this.inflights.count > 0) s += ` inflight=${this.inflights.count}`;
    return s;
  }
}

/** Configuration, per-member progress and election votes. */
export class ProgressTracker {
  /** Members whose acknowledgements count. */
  voters: Set<NodeId> = new Set();
  /** Non-voting members. */
  learners: Set<NodeId> = new Set();
  /** Progress of every member, voter or learner (the leader's own included). */
  progress: Map<NodeId, Progress> = new Map();
  /** Votes received in the current election. */
  votes: Map<NodeId, boolean> = new Map();
  /** In-flight window size of every member. */
  readonly maxInflight: number;
  /** In-flight window bytes of every member. */
  readonly maxInflightBytes: number;

  /** An empty tracker. */
  constructor(maxInflight: number, maxInflightBytes = Number.POSITIVE_INFINITY) {
    this.maxInflight = maxInflight;
    this.maxInflightBytes = maxInflightBytes;
  }

  /** A fresh progress (next = `next`) for a member. */
  newProgress(next: number, isLearner: boolean): Progress {
    return new Progress(next, new Inflights(this.maxInflight, this.maxInflightBytes), isLearner);
  }

  /** Every member, sorted: iteration order is part of determinism. */
  ids(): NodeId[] {
    return [...this.progress.keys()].sort((a, b) => a - b);
  }

  /** The configuration, ids sorted. */
  confState(): ConfState {
    return {
      voters: [...this.voters].sort((a, b) => a - b),
      learners: [...this.learners].sort((a, b) => a - b),
    };
  }

  /** Whether the configuration is exactly one voter. */
  isSingleton(): boolean {
    return this.voters.size === 1;
  }

  /** The largest index acknowledged by a majority of voters. */
  committed(): number {
    const match = new Map<NodeId, number>();
    for (const id of this.voters) match.set(id, this.progress.get(id)?.match ?? 0);
    return committedIndex(this.voters, match);
  }

  /** Whether a majority of voters was recently active (check-quorum). */
  quorumActive(): boolean {
    const active = new Map<NodeId, boolean>();
    for (const id of this.voters) active.set(id, this.progress.get(id)?.recentActive ?? false);
    return voteResult(this.voters, active) === "won";
  }

  /** Records `id`'s vote; only its first vote in an election counts. */
  recordVote(id: NodeId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted);
  }

  /** Votes granted and refused so far, and what they decide. */
  tallyVotes(): { granted: number; rejected: number; result: VoteResult } {
    let granted = 0;
    let rejected = 0;
    for (const id of this.voters) {
      const v = this.votes.get(id);
      if (v === true) granted++;
      else if (v === false) rejected++;
    }
    return { granted, rejected, result: voteResult(this.voters, this.votes) };
  }

  /** Starts a new election. */
  resetVotes(): void {
    this.votes = new Map();
  }
}
