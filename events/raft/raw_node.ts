/**
 * {@linkcode RawNode}: the public face of the Raft core, modelled on etcd-io/raft's RawNode.
 * Synchronous and single-threaded: the driver feeds it ticks, messages and proposals, and acts
 * on each {@linkcode Ready} (see its documentation for the order) before calling `advance()`.
 *
 * @module
 */
import { encodeConfChange } from "./confchange.ts";
import { StepLocalMsgError, StepPeerNotFoundError } from "./errors.ts";
import type { ProgressState } from "./progress.ts";
import { type Config, Raft } from "./raft.ts";
import {
  type ConfChange,
  type ConfState,
  type HardState,
  hardStateEqual,
  isLocalMessage,
  isResponseMessage,
  type Message,
  type NodeId,
  type PeerMessage,
  type Ready,
  type SoftState,
} from "./types.ts";

/** The leader's view of one member, as reported by {@linkcode RawNode.status}. */
export interface ProgressStatus {
  /** Highest index known to match. */
  readonly match: number;
  /** Next index to send. */
  readonly next: number;
  /** Replication state. */
  readonly state: ProgressState;
  /** Heard from within the current election timeout. */
  readonly recentActive: boolean;
  /** A learner. */
  readonly isLearner: boolean;
  /** Sending to it is paused. */
  readonly paused: boolean;
  /** Appends in flight. */
  readonly inflight: number;
}

/** A snapshot of a node's state, for operators and tests. */
export interface Status {
  /** This node. */
  readonly id: NodeId;
  /** Term, vote, commit. */
  readonly hardState: HardState;
  /** Leader and role. */
  readonly softState: SoftState;
  /** Last applied index. */
  readonly applied: number;
  /** Leadership transfer target, or 0. */
  readonly leadTransferee: NodeId;
  /** The configuration. */
  readonly config: ConfState;
  /** Every member's progress: filled on the leader only. */
  readonly progress: ReadonlyMap<NodeId, ProgressStatus>;
}

/** What `advance()` acknowledges: what the last Ready handed out. */
interface Outstanding {
  readonly lastEntry?: { readonly index: number; readonly term: number };
  readonly snapshotIndex?: number;
  readonly appliedIndex?: number;
}

/** A Raft node without threads or I/O (etcd's RawNode). */
export class RawNode {
  #raft: Raft;
  #prevSoftState: SoftState;
  #prevHardState: HardState;
  #outstanding: Outstanding | undefined;

  /** A node configured by `config`, restarting from whatever `config.storage` holds. */
  constructor(config: Config) {
    this.#raft = new Raft(config);
    this.#prevSoftState = this.#raft.softState();
    this.#prevHardState = this.#raft.hardState();
  }

  /** This node's id. */
  get id(): NodeId {
    return this.#raft.id;
  }

  /** Advances logical time by one tick (the driver's clock decides how long a tick is). */
  tick(): void {
    this.#raft.tick();
  }

  /** Campaigns for leadership now (with a pre-vote first when enabled). */
  campaign(): void {
    this.#raft.step({ type: "MsgHup", from: this.id, to: this.id, term: 0 });
  }

  /**
   * Proposes `data` (an encoded batch) as one normal entry. Only the leader accepts proposals:
   * elsewhere this throws `ProposalDroppedError`, as it does during a leadership
   * transfer. Acceptance is no promise: the entry commits only if it shows up in a Ready's
   * `committedEntries`.
   */
  propose(data: Uint8Array): void {
    this.#raft.step({
      type: "MsgProp",
      from: this.id,
      to: this.id,
      term: 0,
      entries: [{ term: 0, index: 0, type: "normal", data }],
    });
  }

  /**
   * Proposes a membership change. Throws `ProposalDroppedError` where `propose` would,
   * while another change is unapplied, and for a change that would leave no voters.
   */
  proposeConfChange(cc: ConfChange): void {
    this.#raft.step({
      type: "MsgProp",
      from: this.id,
      to: this.id,
      term: 0,
      entries: [{ term: 0, index: 0, type: "confChange", data: encodeConfChange(cc) }],
    });
  }

  /**
   * Applies a committed conf change: call it when applying its entry (decode the entry's data
   * with `decodeConfChange`). Returns the new configuration, to store with snapshots.
   */
  applyConfChange(cc: ConfChange): ConfState {
    return this.#raft.applyConfChange(cc);
  }

  /**
   * Steps a message received from a peer. Throws {@linkcode StepLocalMsgError} for a local
   * message type and {@linkcode StepPeerNotFoundError} for a response from a non-member.
   */
  step(m: PeerMessage): void {
    // Messages come off the wire: check at run time what the type already says.
    const msg = m as Message;
    if (isLocalMessage(msg)) throw new StepLocalMsgError(msg.type);
    if (isResponseMessage(m) && !this.#raft.trk.progress.has(m.from)) {
      throw new StepPeerNotFoundError(m.from);
    }
    this.#raft.step(m);
  }

  /** Transfers leadership to `transferee` (at the leader, or forwarded to it). */
  transferLeader(transferee: NodeId): void {
    this.#raft.step({ type: "MsgTransferLeader", from: transferee, to: this.id, term: 0 });
  }

  /**
   * Requests a linearizable read point. The answer arrives in a later Ready's `readStates`
   * with the same `context` (which must be unique among pending requests): once the applied
   * index reaches its `index`, local reads see every write committed before the request.
   * Dropped silently when there is no leader; retry on a timeout.
   */
  readIndex(context: Uint8Array): void {
    this.#raft.step({ type: "MsgReadIndex", from: this.id, to: this.id, term: 0, context });
  }

  /** Reports that `id` could not be reached (the leader stops streaming to it). */
  reportUnreachable(id: NodeId): void {
    this.#raft.step({ type: "MsgUnreachable", from: id, to: this.id, term: 0 });
  }

  /**
   * Reports whether sending a snapshot to `id` finished or failed. The driver must report
   * every MsgSnap it was given: until it does, the leader sends that follower nothing more.
   */
  reportSnapshot(id: NodeId, status: "finish" | "failure"): void {
    this.#raft.step({
      type: "MsgSnapStatus",
      from: id,
      to: this.id,
      term: 0,
      reject: status === "failure",
    });
  }

  /**
   * Whether `ready()` would return something to do. It may turn true while a Ready is being
   * handled; take the next one only after `advance()`.
   */
  hasReady(): boolean {
    const r = this.#raft;
    const soft = r.softState();
    if (soft.lead !== this.#prevSoftState.lead || soft.role !== this.#prevSoftState.role) {
      return true;
    }
    if (!hardStateEqual(r.hardState(), this.#prevHardState)) return true;
    return r.raftLog.nextUnstableSnapshot() !== undefined ||
      r.msgs.length > 0 ||
      r.raftLog.hasNextUnstableEntries() ||
      r.raftLog.hasNextCommittedEntries() ||
      r.readStates.length > 0;
  }

  /**
   * What to persist, send and apply now. Call `advance()` once it is handled, before the next
   * `ready()`; in between the node may still be ticked and stepped.
   */
  ready(): Ready {
    if (this.#outstanding !== undefined) {
      throw new Error("Cannot take a Ready before advance() acknowledged the previous one");
    }
    const r = this.#raft;
    const log = r.raftLog;
    const entries = log.nextUnstableEntries();
    const snapshot = log.nextUnstableSnapshot();
    const committedEntries = log.nextCommittedEntries();
    const soft = r.softState();
    const hard = r.hardState();
    const softChanged = soft.lead !== this.#prevSoftState.lead ||
      soft.role !== this.#prevSoftState.role;
    const hardChanged = !hardStateEqual(hard, this.#prevHardState);
    const mustSync = entries.length > 0 || snapshot !== undefined ||
      hard.term !== this.#prevHardState.term || hard.vote !== this.#prevHardState.vote;
    const rd: Ready = {
      ...(softChanged ? { softState: soft } : {}),
      ...(hardChanged ? { hardState: hard } : {}),
      entries,
      ...(snapshot ? { snapshot } : {}),
      committedEntries,
      messages: r.msgs,
      readStates: r.readStates,
      mustSync,
    };
    // Accept the Ready: what it hands out is not handed out again.
    r.msgs = [];
    r.readStates = [];
    log.acceptUnstable();
    const last = entries.at(-1);
    const applied = committedEntries.at(-1)?.index;
    if (applied !== undefined) log.acceptApplying(applied);
    if (softChanged) this.#prevSoftState = soft;
    if (hardChanged) this.#prevHardState = hard;
    this.#outstanding = {
      ...(last ? { lastEntry: { index: last.index, term: last.term } } : {}),
      ...(snapshot ? { snapshotIndex: snapshot.metadata.index } : {}),
      ...(applied !== undefined ? { appliedIndex: applied } : {}),
    };
    return rd;
  }

  /**
   * Acknowledges the last Ready: its snapshot and entries are persisted, its committed entries
   * applied. Only now does the leader count its own log towards commit.
   */
  advance(): void {
    const done = this.#outstanding;
    if (done === undefined) throw new Error("Cannot advance() without a Ready");
    this.#outstanding = undefined;
    const r = this.#raft;
    if (done.snapshotIndex !== undefined) r.stableSnapTo(done.snapshotIndex);
    if (done.lastEntry) r.stableTo(done.lastEntry.index, done.lastEntry.term);
    if (done.appliedIndex !== undefined) r.appliedTo(done.appliedIndex);
  }

  /** The node's state, with every member's progress when it leads. */
  status(): Status {
    const r = this.#raft;
    const progress = new Map<NodeId, ProgressStatus>();
    if (r.role === "leader") {
      for (const id of r.trk.ids()) {
        const pr = r.trk.progress.get(id)!;
        progress.set(id, {
          match: pr.match,
          next: pr.next,
          state: pr.state,
          recentActive: pr.recentActive,
          isLearner: pr.isLearner,
          paused: pr.isPaused(),
          inflight: pr.inflights.count,
        });
      }
    }
    return {
      id: r.id,
      hardState: r.hardState(),
      softState: r.softState(),
      applied: r.raftLog.applied,
      leadTransferee: r.leadTransferee,
      config: r.trk.confState(),
      progress,
    };
  }
}
