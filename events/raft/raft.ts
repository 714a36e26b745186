/**
 * The Raft state machine (internal; applications use `RawNode`). Pure and synchronous: it
 * changes only when stepped a message or ticked, and its output piles up in `msgs`,
 * `readStates` and the log's unstable tail until `RawNode.ready()` collects it.
 *
 * Each role has a step function (`stepLeader`, `stepCandidate`, `stepFollower`) and a tick
 * function; `become*` swaps them, as in etcd-io/raft. Role functions live outside the class, so
 * the state they share is public here; `RawNode` keeps its `Raft` private.
 *
 * Persistence contract (etcd's classic one): every message in a Ready leaves only after that
 * Ready's entries, hard state and snapshot are persisted. So a vote or an append
 * acknowledgement always speaks for durable state. The leader counts its own log towards
 * commit only once persisted: `RawNode.advance()` reports it through {@linkcode Raft.stableTo}.
 *
 * @module
 */
import { applyToConfState, checkConfChange, decodeConfChange } from "./confchange.ts";
import {
  CompactedError,
  ProposalDroppedError,
  SnapshotTemporarilyUnavailableError,
} from "./errors.ts";
import { RaftLog } from "./log.ts";
import { type Progress, ProgressTracker } from "./progress.ts";
import { voteResult } from "./quorum.ts";
import { ReadOnly } from "./read_only.ts";
import type { Storage } from "./storage.ts";
import {
  type ConfChange,
  type ConfState,
  discardLogger,
  type Entry,
  type HardState,
  isEmptySnapshot,
  type Logger,
  type Message,
  type MsgPreVote,
  type MsgReadIndex,
  type MsgVote,
  type NodeId,
  None,
  type PeerMessage,
  type ReadState,
  type Role,
  type Snapshot,
  type SoftState,
} from "./types.ts";
import { entriesSize, noLimit } from "./util.ts";

/** How a {@linkcode RawNode} is built. Only `id`, `storage` and `random` are required. */
export interface Config {
  /** This node's id: a positive integer. */
  id: NodeId;
  /**
   * Ticks without hearing from a leader before a follower campaigns; the actual timeout is
   * randomised in `[electionTick, 2 * electionTick)`. Default 10.
   */
  electionTick?: number;
  /** Ticks between a leader's heartbeats. Default 1; must be less than `electionTick`. */
  heartbeatTick?: number;
  /** Stable storage, read by the core and written by the application. */
  storage: Storage;
  /**
   * The last index the application applied before a restart (default 0); committed entries
   * after it are handed out again. `storage.initialState().confState` must be as of this index.
   */
  applied?: number;
  /** Payload bytes per append message (at least one entry is always sent). Default 1 MiB. */
  maxSizePerMsg?: number;
  /** Payload bytes of committed entries per Ready. Default unlimited. */
  maxCommittedSizePerReady?: number;
  /** Appends in flight per follower in replicate state. Default 256. */
  maxInflightMsgs?: number;
  /** Payload bytes in flight per follower. Default unlimited. */
  maxInflightBytes?: number;
  /**
   * A leader steps down when it has not heard from a quorum within an election timeout, and
   * followers that hear from a leader ignore vote requests for as long (a lease). Default true.
   */
  checkQuorum?: boolean;
  /**
   * Campaign first without raising the term, and only if a quorum would vote: a node
   * rejoining from a partition cannot disrupt the cluster. Default true.
   */
  preVote?: boolean;
  /** The only randomness: a seeded source of numbers in `[0, 1)`. */
  random: () => number;
  /** Where the core reports what it does. Default: nowhere. */
  logger?: Logger;
}

/** A {@linkcode Config} with every default filled in. */
export type ValidConfig = Required<Config>;

/** Checks `config` and fills in the defaults; throws a RangeError naming the bad field. */
export function validateConfig(config: Config): ValidConfig {
  const c: ValidConfig = {
    electionTick: 10,
    heartbeatTick: 1,
    applied: 0,
    maxSizePerMsg: 1024 * 1024,
    maxCommittedSizePerReady: noLimit,
    maxInflightMsgs: 256,
    maxInflightBytes: noLimit,
    checkQuorum: true,
    preVote: true,
    logger: discardLogger,
    ...dropUndefined(config),
  } as ValidConfig;
  const positive = (name: keyof Config, v: number) => {
    if (!(Number.isSafeInteger(v) && v > 0)) {
      throw new RangeError(`Invalid raft config: ${name} must be a positive integer, got ${v}`);
    }
  };
  positive("id", c.id);
  positive("heartbeatTick", c.heartbeatTick);
  positive("electionTick", c.electionTick);
  positive("maxInflightMsgs", c.maxInflightMsgs);
  if (c.electionTick <= c.heartbeatTick) {
    throw new RangeError(
      `Invalid raft config: electionTick (${c.electionTick}) must exceed heartbeatTick (${c.heartbeatTick})`,
    );
  }
  for (const name of ["maxSizePerMsg", "maxCommittedSizePerReady", "maxInflightBytes"] as const) {
    if (!(c[name] >= 0)) {
      throw new RangeError(`Invalid raft config: ${name} must not be negative, got ${c[name]}`);
    }
  }
  if (!(Number.isSafeInteger(c.applied) && c.applied >= 0)) {
    throw new RangeError(`Invalid raft config: applied must be a non-negative integer`);
  }
  if (typeof c.random !== "function") {
    throw new RangeError("Invalid raft config: random must be a function (a seeded source)");
  }
  if (c.storage === undefined) throw new RangeError("Invalid raft config: storage is required");
  return c;
}

function dropUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Why a node campaigns. */
export type CampaignType = "preElection" | "election" | "transfer";

/** A message as the state machine writes it: `from` and `term` default to its own. */
type Draft<M> = M extends unknown ? Omit<M, "from" | "term"> & { from?: NodeId; term?: number }
  : never;

type StepFn = (r: Raft, m: Message) => void;

/** The Raft state machine of one node. */
export class Raft {
  /** This node. */
  readonly id: NodeId;
  /** Current term. */
  term = 0;
  /** Whom this node voted for in `term`. */
  vote: NodeId = None;
  /** The leader of `term`, if known. */
  lead: NodeId = None;
  /** Current role. */
  role: Role = "follower";
  /** Whether this node is a learner in the current configuration. */
  isLearner = false;
  /** The log. */
  readonly raftLog: RaftLog;
  /** Configuration, progress of members, votes. */
  trk: ProgressTracker;
  /** Outgoing messages, to be sent after the Ready that carries them is persisted. */
  msgs: PeerMessage[] = [];
  /** Completed ReadIndex requests. */
  readStates: ReadState[] = [];
  /** The node leadership is being transferred to, if any. */
  leadTransferee: NodeId = None;
  /** Index of the latest conf change the leader appended; only one may be unapplied. */
  pendingConfIndex = 0;
  /** Pending ReadIndex requests awaiting heartbeat acknowledgements. */
  readOnly: ReadOnly = new ReadOnly();
  /** ReadIndex requests received before the leader committed an entry of its term. */
  pendingReadIndexMessages: MsgReadIndex[] = [];
  /** Ticks since the last election timeout reset (leader: since the last quorum check). */
  electionElapsed = 0;
  /** Leader: ticks since the last heartbeat. */
  heartbeatElapsed = 0;
  /** This term's election timeout, in `[electionTimeout, 2 * electionTimeout)`. */
  randomizedElectionTimeout = 0;
  /** Base election timeout, in ticks. */
  readonly electionTimeout: number;
  /** Heartbeat interval, in ticks. */
  readonly heartbeatTimeout: number;
  /** See {@linkcode Config.checkQuorum}. */
  readonly checkQuorum: boolean;
  /** See {@linkcode Config.preVote}. */
  readonly preVote: boolean;
  /** See {@linkcode Config.maxSizePerMsg}. */
  readonly maxMsgSize: number;
  /** Where to report. */
  readonly logger: Logger;
  readonly #random: () => number;
  #tick: () => void = () => {};
  #step: StepFn = stepFollower;

  /** A follower at the persisted term, with no leader, configured from `config.storage`. */
  constructor(config: Config) {
    const c = validateConfig(config);
    this.id = c.id;
    this.electionTimeout = c.electionTick;
    this.heartbeatTimeout = c.heartbeatTick;
    this.checkQuorum = c.checkQuorum;
    this.preVote = c.preVote;
    this.maxMsgSize = c.maxSizePerMsg;
    this.logger = c.logger;
    this.#random = c.random;
    this.raftLog = new RaftLog(c.storage, c.logger, c.maxCommittedSizePerReady);
    this.trk = new ProgressTracker(c.maxInflightMsgs, c.maxInflightBytes);
    const { hardState, confState } = c.storage.initialState();
    this.#setConfig(confState);
    if (hardState.term !== 0 || hardState.vote !== None || hardState.commit !== 0) {
      this.#loadState(hardState);
    }
    if (c.applied > 0) this.raftLog.appliedTo(c.applied);
    this.becomeFollower(this.term, None);
    this.logger.info(
      `newRaft ${this.id} [peers: [${this.trk.confState().voters}], term: ${this.term}, ` +
        `commit: ${this.raftLog.committed}, applied: ${this.raftLog.applied}, ` +
        `lastindex: ${this.raftLog.lastIndex()}, lastterm: ${this.raftLog.lastTerm()}]`,
    );
  }

  /** Volatile state. */
  softState(): SoftState {
    return { lead: this.lead, role: this.role };
  }

  /** State to persist. */
  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.raftLog.committed };
  }

  /** Drains the outgoing messages (tests). */
  readMessages(): PeerMessage[] {
    const msgs = this.msgs;
    this.msgs = [];
    return msgs;
  }

  /** Advances logical time by one tick. */
  tick(): void {
    this.#tick();
  }

  /** Whether this node may campaign: a voter with no snapshot pending. */
  promotable(): boolean {
    const pr = this.trk.progress.get(this.id);
    return pr !== undefined && !pr.isLearner && !this.raftLog.hasNextOrInProgressSnapshot();
  }

  /** Whether the randomised election timeout has elapsed. */
  pastElectionTimeout(): boolean {
    return this.electionElapsed >= this.randomizedElectionTimeout;
  }

  // ------------------------------------------------------------------------------------------
  // Sending

  /** Queues `m`, filling in `from` (this node) and `term` (the current one). */
  send(m: Draft<PeerMessage>): void {
    const isVote = m.type === "MsgVote" || m.type === "MsgVoteResp" ||
      m.type === "MsgPreVote" || m.type === "MsgPreVoteResp";
    // Vote messages name their term explicitly: pre-votes are for a future term, and grants
    // echo the candidate's term.
    if (isVote && !m.term) throw new Error(`${m.type} must be sent with a term`);
    const full = { ...m, from: m.from ?? this.id, term: m.term ?? this.term } as PeerMessage;
    this.msgs.push(full);
  }

  /** Sends `to` an append from its `next`, or an empty probe/commit update. */
  sendAppend(to: NodeId): void {
    this.maybeSendAppend(to, true);
  }

  /**
   * Sends `to` the entries from its `next` (a snapshot if they were compacted). With
   * `sendIfEmpty` false, sends nothing when there are no entries. Returns whether it sent.
   */
  maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.trk.progress.get(to);
    if (pr === undefined || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    let prevTerm: number;
    let entries: Entry[];
    try {
      prevTerm = this.raftLog.term(prevIndex);
      // A follower whose in-flight window is full gets an empty append: it still carries the
      // commit index and prompts an answer that frees the window (a heartbeat response unpauses
      // the flow, and the appends in flight may all have been lost). Adding entries to a full
      // window would be an error.
      entries = pr.state === "replicate" && pr.inflights.full()
        ? []
        : this.raftLog.entries(pr.next, this.maxMsgSize);
    } catch (e) {
      if (e instanceof CompactedError) return this.#maybeSendSnapshot(to, pr);
      throw e;
    }
    if (entries.length === 0 && !sendIfEmpty) return false;
    this.send({
      type: "MsgApp",
      to,
      index: prevIndex,
      logTerm: prevTerm,
      entries,
      commit: this.raftLog.committed,
    });
    pr.sentEntries(entries.length, entriesSize(entries));
    return true;
  }

  #maybeSendSnapshot(to: NodeId, pr: Progress): boolean {
    if (!pr.recentActive) {
      this.logger.debug(`${this.id} ignored sending snapshot to ${to}: not recently active`);
      return false;
    }
    let snapshot: Snapshot;
    try {
      snapshot = this.raftLog.snapshot();
    } catch (e) {
      if (e instanceof SnapshotTemporarilyUnavailableError) {
        this.logger.debug(`${this.id} failed to send snapshot to ${to}: temporarily unavailable`);
        return false;
      }
      throw e;
    }
    if (isEmptySnapshot(snapshot)) throw new Error("Need a non-empty snapshot to send");
    const { index, term } = snapshot.metadata;
    this.logger.debug(
      `${this.id} [firstindex: ${this.raftLog.firstIndex()}, commit: ${this.raftLog.committed}] ` +
        `sent snapshot[index: ${index}, term: ${term}] to ${to} [${pr}]`,
    );
    pr.becomeSnapshot(index);
    this.send({ type: "MsgSnap", to, snapshot });
    return true;
  }

  /** Heartbeat to `to`; `context` confirms a ReadIndex request. */
  sendHeartbeat(to: NodeId, context?: Uint8Array): void {
    // Never let a follower commit past what it is known to hold.
    const commit = Math.min(this.trk.progress.get(to)!.match, this.raftLog.committed);
    this.send(
      context === undefined
        ? { type: "MsgHeartbeat", to, commit }
        : { type: "MsgHeartbeat", to, commit, context },
    );
  }

  /** Appends (or probes) to every other member. */
  bcastAppend(): void {
    for (const id of this.trk.ids()) if (id !== this.id) this.sendAppend(id);
  }

  /** Heartbeats to every other member, carrying the newest pending ReadIndex context. */
  bcastHeartbeat(): void {
    this.bcastHeartbeatWithContext(this.readOnly.lastPendingRequestContext());
  }

  /** Heartbeats to every other member with `context`. */
  bcastHeartbeatWithContext(context: Uint8Array | undefined): void {
    for (const id of this.trk.ids()) if (id !== this.id) this.sendHeartbeat(id, context);
  }

  /** Tells `to` to campaign now (leadership transfer). */
  sendTimeoutNow(to: NodeId): void {
    this.send({ type: "MsgTimeoutNow", to });
  }

  // ------------------------------------------------------------------------------------------
  // Persistence and application feedback (from RawNode.advance)

  /** The application persisted entries up to (`index`, `term`). */
  stableTo(index: number, term: number): void {
    this.raftLog.stableTo(index, term);
    if (this.role !== "leader") return;
    // The leader's own acknowledgement: its log counts towards commit once durable.
    const pr = this.trk.progress.get(this.id);
    if (pr && pr.maybeUpdate(this.raftLog.stableLastIndex()) && this.maybeCommit()) {
      this.releasePendingReadIndexMessages();
      this.bcastAppend();
    }
  }

  /** The application persisted and applied the snapshot at `index`. */
  stableSnapTo(index: number): void {
    this.raftLog.stableSnapTo(index);
    this.raftLog.appliedTo(index);
  }

  /** The application applied the entries up to `index`. */
  appliedTo(index: number): void {
    this.raftLog.appliedTo(index);
  }

  /** Commits what a quorum acknowledged, if of the current term. */
  maybeCommit(): boolean {
    return this.raftLog.maybeCommit(this.trk.committed(), this.term);
  }

  // ------------------------------------------------------------------------------------------
  // Role transitions

  /** Follows `lead` (or nobody) at `term`. */
  becomeFollower(term: number, lead: NodeId): void {
    this.#step = stepFollower;
    this.#reset(term);
    this.#tick = this.#tickElection;
    this.lead = lead;
    this.role = "follower";
    this.logger.info(`${this.id} became follower at term ${this.term}`);
  }

  /** Starts an election for the next term, voting for itself. */
  becomeCandidate(): void {
    if (this.role === "leader") throw new Error("Invalid transition [leader -> candidate]");
    this.#step = stepCandidate;
    this.#reset(this.term + 1);
    this.#tick = this.#tickElection;
    this.vote = this.id;
    this.role = "candidate";
    this.logger.info(`${this.id} became candidate at term ${this.term}`);
  }

  /** Starts a pre-election: term, vote and log are left alone. */
  becomePreCandidate(): void {
    if (this.role === "leader") throw new Error("Invalid transition [leader -> pre-candidate]");
    this.#step = stepCandidate;
    this.trk.resetVotes();
    this.#tick = this.#tickElection;
    this.lead = None;
    this.role = "preCandidate";
    this.logger.info(`${this.id} became pre-candidate at term ${this.term}`);
  }

  /** Leads the current term, appending an empty entry to commit what earlier terms left. */
  becomeLeader(): void {
    if (this.role === "follower") throw new Error("Invalid transition [follower -> leader]");
    this.#step = stepLeader;
    this.#reset(this.term);
    this.#tick = this.#tickHeartbeat;
    this.lead = this.id;
    this.role = "leader";
    const self = this.trk.progress.get(this.id)!;
    self.becomeReplicate();
    self.recentActive = true;
    // Any conf change in the log may be unapplied: conservatively treat the last one as pending.
    this.pendingConfIndex = this.raftLog.lastIndex();
    this.appendEntry([{ term: 0, index: 0, type: "normal", data: new Uint8Array() }]);
    this.logger.info(`${this.id} became leader at term ${this.term}`);
  }

  #reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = None;
    }
    this.lead = None;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.#resetRandomizedElectionTimeout();
    this.abortLeaderTransfer();
    this.trk.resetVotes();
    const next = this.raftLog.lastIndex() + 1;
    for (const [id, old] of this.trk.progress) {
      const pr = this.trk.newProgress(next, old.isLearner);
      if (id === this.id) pr.match = this.raftLog.stableLastIndex();
      this.trk.progress.set(id, pr);
    }
    this.pendingConfIndex = 0;
    this.readOnly = new ReadOnly();
    this.pendingReadIndexMessages = [];
  }

  #resetRandomizedElectionTimeout(): void {
    const r = Math.min(Math.floor(this.#random() * this.electionTimeout), this.electionTimeout - 1);
    this.randomizedElectionTimeout = this.electionTimeout + Math.max(0, r);
  }

  /** Gives up a leadership transfer. */
  abortLeaderTransfer(): void {
    this.leadTransferee = None;
  }

  #tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.pastElectionTimeout()) {
      this.electionElapsed = 0;
      this.step({ type: "MsgHup", from: this.id, to: this.id, term: 0 });
    }
  }

  #tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.electionTimeout) {
      this.electionElapsed = 0;
      if (this.checkQuorum) {
        this.step({ type: "MsgCheckQuorum", from: this.id, to: this.id, term: 0 });
      }
      // A transfer that did not finish within an election timeout is abandoned.
      if (this.role === "leader" && this.leadTransferee !== None) this.abortLeaderTransfer();
    }
    if (this.role !== "leader") return;
    if (this.heartbeatElapsed >= this.heartbeatTimeout) {
      this.heartbeatElapsed = 0;
      this.step({ type: "MsgBeat", from: this.id, to: this.id, term: 0 });
    }
  }

  /** Appends `entries` at the end of the log in the current term. */
  appendEntry(entries: readonly Entry[]): void {
    const last = this.raftLog.lastIndex();
    this.raftLog.append(
      entries.map((e, i) => ({ ...e, term: this.term, index: last + 1 + i })),
    );
  }

  // ------------------------------------------------------------------------------------------
  // Elections

  /** Starts an election of type `t` if this node may campaign. */
  hup(t: CampaignType): void {
    if (this.role === "leader") {
      this.logger.debug(`${this.id} ignoring MsgHup because already leader`);
      return;
    }
    if (!this.promotable()) {
      this.logger.warn(`${this.id} is unpromotable and can not campaign`);
      return;
    }
    if (this.#hasUnappliedConfChanges()) {
      this.logger.warn(
        `${this.id} cannot campaign at term ${this.term}: there are unapplied conf changes`,
      );
      return;
    }
    this.logger.info(`${this.id} is starting a new election at term ${this.term}`);
    this.campaign(t);
  }

  #hasUnappliedConfChanges(): boolean {
    const { applied, committed } = this.raftLog;
    if (applied >= committed) return false;
    return this.raftLog.slice(applied + 1, committed + 1, noLimit).some((e) =>
      e.type === "confChange"
    );
  }

  /** Campaigns: a pre-election, a real election, or one forced by a leadership transfer. */
  campaign(t: CampaignType): void {
    if (!this.promotable()) {
      this.logger.warn(`${this.id} is unpromotable; campaign() should have been called`);
      return;
    }
    let voteType: "MsgVote" | "MsgPreVote";
    let term: number;
    if (t === "preElection") {
      this.becomePreCandidate();
      voteType = "MsgPreVote";
      // Pre-votes ask about the next term without moving to it.
      term = this.term + 1;
    } else {
      this.becomeCandidate();
      voteType = "MsgVote";
      term = this.term;
    }
    const respType = voteType === "MsgVote" ? "MsgVoteResp" : "MsgPreVoteResp";
    if (this.poll(this.id, respType, true) === "won") {
      // A single-voter configuration wins on its own vote.
      if (t === "preElection") this.campaign("election");
      else this.becomeLeader();
      return;
    }
    const index = this.raftLog.lastIndex();
    const logTerm = this.raftLog.lastTerm();
    for (const id of [...this.trk.voters].sort((a, b) => a - b)) {
      if (id === this.id) continue;
      this.logger.info(
        `${this.id} [logterm: ${logTerm}, index: ${index}] sent ${voteType} request to ${id} ` +
          `at term ${this.term}`,
      );
      this.send(
        t === "transfer"
          ? { type: voteType, to: id, term, index, logTerm, transfer: true }
          : { type: voteType, to: id, term, index, logTerm },
      );
    }
  }

  /** Counts a vote (or pre-vote) answer; returns the election's state. */
  poll(id: NodeId, type: string, granted: boolean): "won" | "lost" | "pending" {
    this.logger.info(
      `${this.id} received ${type} ${granted ? "" : "rejection "}from ${id} at term ${this.term}`,
    );
    this.trk.recordVote(id, granted);
    return this.trk.tallyVotes().result;
  }

  #handleVoteRequest(m: MsgVote | MsgPreVote): void {
    // We may vote again for whom we voted; for anyone if we have neither voted nor follow a
    // leader this term; and pre-vote for anyone asking about a later term.
    const canVote = this.vote === m.from ||
      (this.vote === None && this.lead === None) ||
      (m.type === "MsgPreVote" && m.term > this.term);
    const respType = m.type === "MsgVote" ? "MsgVoteResp" : "MsgPreVoteResp";
    const last = `[logterm: ${this.raftLog.lastTerm()}, index: ${this.raftLog.lastIndex()}, ` +
      `vote: ${this.vote}]`;
    if (canVote && this.raftLog.isUpToDate(m.index, m.logTerm)) {
      this.logger.info(
        `${this.id} ${last} cast ${m.type} for ${m.from} ` +
          `[logterm: ${m.logTerm}, index: ${m.index}] at term ${this.term}`,
      );
      // Grants carry the candidate's term, so a pre-candidate sees its own future term.
      this.send({ type: respType, to: m.from, term: m.term, reject: false });
      if (m.type === "MsgVote") {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.logger.info(
        `${this.id} ${last} rejected ${m.type} from ${m.from} ` +
          `[logterm: ${m.logTerm}, index: ${m.index}] at term ${this.term}`,
      );
      this.send({ type: respType, to: m.from, term: this.term, reject: true });
    }
  }

  // ------------------------------------------------------------------------------------------
  // Stepping

  /**
   * Steps one message: first the term rules common to every role, then the role's step
   * function. Throws {@linkcode ProposalDroppedError} for a proposal this node cannot take.
   */
  step(m: Message): void {
    if (m.term === 0) {
      // A local message, or a forwarded MsgReadIndex: no term rules apply.
    } else if (m.term > this.term) {
      if (m.type === "MsgVote" || m.type === "MsgPreVote") {
        const force = m.transfer === true;
        const inLease = this.checkQuorum && this.lead !== None &&
          this.electionElapsed < this.electionTimeout;
        if (!force && inLease) {
          // We heard from a leader within the minimum election timeout: a disruptive
          // candidate (say, one rejoining from a partition) must not depose it.
          this.logger.info(
            `${this.id} [term: ${this.term}] ignored ${m.type} from ${m.from} at term ` +
              `${m.term}: lease is not expired (remaining ticks: ` +
              `${this.electionTimeout - this.electionElapsed})`,
          );
          return;
        }
      }
      if (m.type === "MsgPreVote") {
        // A pre-vote never changes our term.
      } else if (m.type === "MsgPreVoteResp" && !m.reject) {
        // A granted pre-vote carries the term we asked about; we move to it once we win.
      } else {
        this.logger.info(
          `${this.id} [term: ${this.term}] received a ${m.type} message with higher term ` +
            `from ${m.from} [term: ${m.term}]`,
        );
        const fromLeader = m.type === "MsgApp" || m.type === "MsgHeartbeat" ||
          m.type === "MsgSnap";
        this.becomeFollower(m.term, fromLeader ? m.from : None);
      }
    } else if (m.term < this.term) {
      if (
        (this.checkQuorum || this.preVote) && (m.type === "MsgHeartbeat" || m.type === "MsgApp")
      ) {
        // A stale leader (say, partitioned away) must learn the new term, or with check-quorum
        // or pre-vote it would never step down and this node could never be elected.
        this.send({
          type: "MsgAppResp",
          to: m.from,
          index: 0,
          reject: false,
          rejectHint: 0,
          logTerm: 0,
        });
      } else if (m.type === "MsgPreVote") {
        this.send({ type: "MsgPreVoteResp", to: m.from, term: this.term, reject: true });
      } else {
        this.logger.debug(
          `${this.id} [term: ${this.term}] ignored a ${m.type} message with lower term ` +
            `from ${m.from} [term: ${m.term}]`,
        );
      }
      return;
    }
    switch (m.type) {
      case "MsgHup":
        this.hup(this.preVote ? "preElection" : "election");
        break;
      case "MsgVote":
      case "MsgPreVote":
        this.#handleVoteRequest(m);
        break;
      default:
        this.#step(this, m);
    }
  }

  /** Follower side of MsgApp. */
  handleAppendEntries(m: Extract<Message, { type: "MsgApp" }>): void {
    if (m.index < this.raftLog.committed) {
      // Everything up to our commit index matches (committed entries never change).
      this.send({
        type: "MsgAppResp",
        to: m.from,
        index: this.raftLog.committed,
        reject: false,
        rejectHint: 0,
        logTerm: 0,
      });
      return;
    }
    const lastNew = this.raftLog.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastNew !== undefined) {
      this.send({
        type: "MsgAppResp",
        to: m.from,
        index: lastNew,
        reject: false,
        rejectHint: 0,
        logTerm: 0,
      });
      return;
    }
    // Reject, hinting at the largest index that could match: at most our last index, and with
    // a term no greater than the leader's entry at m.index (so it can skip whole terms).
    const [hintIndex, hintTerm] = this.raftLog.findConflictByTerm(
      Math.min(m.index, this.raftLog.lastIndex()),
      m.logTerm,
    );
    this.logger.debug(
      `${this.id} [logterm: ${this.raftLog.termOrZero(m.index)}, index: ${m.index}] rejected ` +
        `MsgApp [logterm: ${m.logTerm}, index: ${m.index}] from ${m.from}`,
    );
    this.send({
      type: "MsgAppResp",
      to: m.from,
      index: m.index,
      reject: true,
      rejectHint: hintIndex,
      logTerm: hintTerm,
    });
  }

  /** Follower side of MsgHeartbeat. */
  handleHeartbeat(m: Extract<Message, { type: "MsgHeartbeat" }>): void {
    this.raftLog.commitTo(m.commit);
    this.send(
      m.context === undefined
        ? { type: "MsgHeartbeatResp", to: m.from }
        : { type: "MsgHeartbeatResp", to: m.from, context: m.context },
    );
  }

  /** Follower side of MsgSnap. */
  handleSnapshot(m: Extract<Message, { type: "MsgSnap" }>): void {
    const { index, term } = m.snapshot.metadata;
    const ack = (at: number) =>
      this.send({
        type: "MsgAppResp",
        to: m.from,
        index: at,
        reject: false,
        rejectHint: 0,
        logTerm: 0,
      });
    if (this.restore(m.snapshot)) {
      this.logger.info(
        `${this.id} [commit: ${this.raftLog.committed}] restored snapshot [index: ${index}, term: ${term}]`,
      );
      ack(this.raftLog.lastIndex());
    } else {
      this.logger.info(
        `${this.id} [commit: ${this.raftLog.committed}] ignored snapshot [index: ${index}, term: ${term}]`,
      );
      ack(this.raftLog.committed);
    }
  }

  /**
   * Replaces the log and configuration with snapshot `s`, unless the log already covers it.
   * Returns whether it did.
   */
  restore(s: Snapshot): boolean {
    const { index, term, confState } = s.metadata;
    if (index <= this.raftLog.committed) return false;
    if (this.role !== "follower") {
      // Only a follower gets snapshots from the leader of its term; be defensive anyway.
      this.logger.warn(
        `${this.id} attempted to restore snapshot as ${this.role}; should never happen`,
      );
      this.becomeFollower(this.term + 1, None);
      return false;
    }
    if (!confState.voters.includes(this.id) && !confState.learners.includes(this.id)) {
      this.logger.warn(`${this.id} attempted to restore snapshot but it is not in the ConfState`);
      return false;
    }
    if (this.raftLog.matchTerm(index, term)) {
      // The log already has the snapshot's last entry: fast-forward the commit instead.
      this.raftLog.commitTo(index);
      return false;
    }
    this.raftLog.restore(s);
    this.trk.progress = new Map();
    this.#setConfig(confState);
    return true;
  }

  // ------------------------------------------------------------------------------------------
  // Configuration

  /** Applies a committed conf change; returns the new configuration. */
  applyConfChange(cc: ConfChange): ConfState {
    const cs = applyToConfState(this.trk.confState(), cc);
    this.#setConfig(cs);
    const pr = this.trk.progress.get(this.id);
    if ((pr === undefined || this.isLearner) && this.role === "leader") {
      // Removed or demoted: a leader that does not vote must step down.
      this.becomeFollower(this.term, None);
      return cs;
    }
    if (this.role !== "leader" || cs.voters.length === 0) return cs;
    // The quorum changed: something may now be committed, and new members need the log.
    if (this.maybeCommit()) {
      this.releasePendingReadIndexMessages();
      this.bcastAppend();
    } else {
      for (const id of this.trk.ids()) if (id !== this.id) this.maybeSendAppend(id, false);
    }
    if (this.leadTransferee !== None && !this.trk.voters.has(this.leadTransferee)) {
      this.abortLeaderTransfer();
    }
    return cs;
  }

  #setConfig(cs: ConfState): void {
    const next = this.raftLog.lastIndex() + 1;
    const learners = new Set(cs.learners);
    const progress = new Map<NodeId, Progress>();
    for (const id of [...cs.voters, ...cs.learners]) {
      let pr = this.trk.progress.get(id);
      if (pr === undefined) {
        pr = this.trk.newProgress(next, learners.has(id));
        // A new member counts as active, or check-quorum could depose the leader before the
        // member had a chance to answer.
        pr.recentActive = true;
      }
      pr.isLearner = learners.has(id);
      progress.set(id, pr);
    }
    this.trk.voters = new Set(cs.voters);
    this.trk.learners = learners;
    this.trk.progress = progress;
    this.isLearner = learners.has(this.id);
  }

  #loadState(hs: HardState): void {
    if (hs.commit < this.raftLog.committed || hs.commit > this.raftLog.lastIndex()) {
      throw new Error(
        `${this.id} state.commit ${hs.commit} is out of range ` +
          `[${this.raftLog.committed}, ${this.raftLog.lastIndex()}]`,
      );
    }
    this.raftLog.committed = hs.commit;
    this.term = hs.term;
    this.vote = hs.vote;
  }

  // ------------------------------------------------------------------------------------------
  // ReadIndex

  /** Whether the entry at the commit index is of the current term. */
  committedEntryInCurrentTerm(): boolean {
    return this.raftLog.termOrZero(this.raftLog.committed) === this.term;
  }

  /** Answers `req` with `index`: locally, or by message to the follower that forwarded it. */
  responseToReadIndexReq(req: MsgReadIndex, index: number): void {
    if (req.from === None || req.from === this.id) {
      this.readStates.push({ index, context: req.context });
      return;
    }
    this.send({ type: "MsgReadIndexResp", to: req.from, index, context: req.context });
  }

  /** Leader: records a read at the commit index and confirms leadership with heartbeats. */
  sendMsgReadIndexResponse(m: MsgReadIndex): void {
    if (this.trk.isSingleton()) {
      this.responseToReadIndexReq(m, this.raftLog.committed);
      return;
    }
    this.readOnly.addRequest(this.raftLog.committed, m);
    this.readOnly.recvAck(this.id, m.context);
    this.bcastHeartbeatWithContext(m.context);
  }

  /** Answers reads that waited for the leader's first commit in its term. */
  releasePendingReadIndexMessages(): void {
    if (this.pendingReadIndexMessages.length === 0) return;
    if (!this.committedEntryInCurrentTerm()) return;
    const pending = this.pendingReadIndexMessages;
    this.pendingReadIndexMessages = [];
    for (const m of pending) this.sendMsgReadIndexResponse(m);
  }
}

// ---------------------------------------------------------------------------------------------
// Role step functions

function stepLeader(r: Raft, m: Message): void {
  // Messages that need no progress of the sender.
  switch (m.type) {
    case "MsgBeat":
      r.bcastHeartbeat();
      return;
    case "MsgCheckQuorum":
      if (!r.trk.quorumActive()) {
        r.logger.warn(`${r.id} stepped down to follower since quorum is not active`);
        r.becomeFollower(r.term, None);
      }
      // Every member must prove itself active again during the next election timeout.
      for (const [id, pr] of r.trk.progress) if (id !== r.id) pr.recentActive = false;
      return;
    case "MsgProp":
      stepLeaderProposal(r, m);
      return;
    case "MsgReadIndex":
      if (r.trk.isSingleton()) {
        r.responseToReadIndexReq(m, r.raftLog.committed);
      } else if (!r.committedEntryInCurrentTerm()) {
        // Until an entry of its term commits, a new leader does not know the commit index:
        // hold the read.
        r.pendingReadIndexMessages.push(m);
      } else {
        r.sendMsgReadIndexResponse(m);
      }
      return;
  }

  const pr = r.trk.progress.get(m.from);
  if (pr === undefined) {
    r.logger.debug(`${r.id} no progress available for ${m.from}`);
    return;
  }
  switch (m.type) {
    case "MsgAppResp": {
      pr.recentActive = true;
      if (m.reject) {
        r.logger.debug(
          `${r.id} received MsgAppResp(rejected, hint: (index ${m.rejectHint}, term ${m.logTerm})) ` +
            `from ${m.from} for index ${m.index}`,
        );
        let nextProbe = m.rejectHint;
        if (m.logTerm > 0) {
          // Skip every entry of ours whose term cannot match the follower's hint.
          nextProbe = r.raftLog.findConflictByTerm(m.rejectHint, m.logTerm)[0];
        }
        if (pr.maybeDecrTo(m.index, nextProbe)) {
          if (pr.state === "replicate") pr.becomeProbe();
          r.sendAppend(m.from);
        }
        return;
      }
      const wasPaused = pr.isPaused();
      if (pr.maybeUpdate(m.index) || (pr.match === m.index && pr.state === "probe")) {
        if (pr.state === "probe") {
          pr.becomeReplicate();
        } else if (pr.state === "snapshot" && pr.match + 1 >= r.raftLog.firstIndex()) {
          // The follower caught up past our first index (the snapshot did it, or appends):
          // resume replication.
          pr.becomeProbe();
          pr.becomeReplicate();
        } else if (pr.state === "replicate") {
          pr.inflights.freeLE(m.index);
        }
        if (r.maybeCommit()) {
          r.releasePendingReadIndexMessages();
          r.bcastAppend();
        } else if (wasPaused) {
          // The follower was paused and may now receive more.
          r.sendAppend(m.from);
        }
        // Pipeline: fill the in-flight window.
        while (r.maybeSendAppend(m.from, false)) { /* keep sending */ }
        if (m.from === r.leadTransferee && pr.match === r.raftLog.lastIndex()) {
          r.logger.info(`${r.id} sent MsgTimeoutNow to ${m.from} after received MsgAppResp`);
          r.sendTimeoutNow(m.from);
        }
      }
      return;
    }
    case "MsgHeartbeatResp": {
      pr.recentActive = true;
      pr.msgAppFlowPaused = false;
      if (pr.match < r.raftLog.lastIndex() || pr.state === "probe") r.sendAppend(m.from);
      if (m.context === undefined) return;
      const acks = r.readOnly.recvAck(m.from, m.context);
      if (acks === undefined) return;
      // Leadership is confirmed once a majority of voters answered this round.
      if (!quorumAcked(r, acks)) return;
      for (const rs of r.readOnly.advance(m.context)) r.responseToReadIndexReq(rs.req, rs.index);
      return;
    }
    case "MsgSnapStatus":
      if (pr.state !== "snapshot") return;
      if (m.reject) {
        // The snapshot did not arrive: forget it, and probe (which will send a new one).
        pr.pendingSnapshot = 0;
      }
      pr.becomeProbe();
      // Wait for a heartbeat response before probing: the follower may still be applying.
      pr.msgAppFlowPaused = true;
      return;
    case "MsgUnreachable":
      // An optimistic stream to an unreachable node is wasted: probe instead.
      if (pr.state === "replicate") pr.becomeProbe();
      return;
    case "MsgTransferLeader": {
      if (pr.isLearner) {
        r.logger.debug(`${r.id} is learner. Ignored transferring leadership`);
        return;
      }
      const transferee = m.from;
      if (r.leadTransferee !== None) {
        if (r.leadTransferee === transferee) return;
        r.abortLeaderTransfer();
      }
      if (transferee === r.id) return;
      r.logger.info(`${r.id} [term ${r.term}] starts to transfer leadership to ${transferee}`);
      // The transfer must finish within one election timeout.
      r.electionElapsed = 0;
      r.leadTransferee = transferee;
      if (pr.match === r.raftLog.lastIndex()) r.sendTimeoutNow(transferee);
      else r.sendAppend(transferee);
      return;
    }
  }
}

function quorumAcked(r: Raft, acks: ReadonlySet<NodeId>): boolean {
  const votes = new Map<NodeId, boolean>();
  for (const id of acks) votes.set(id, true);
  return voteResult(r.trk.voters, votes) === "won";
}

function stepLeaderProposal(r: Raft, m: Extract<Message, { type: "MsgProp" }>): void {
  if (m.entries.length === 0) throw new Error(`${r.id} stepped an empty MsgProp`);
  if (!r.trk.progress.has(r.id)) {
    throw new ProposalDroppedError("this node was removed from the configuration");
  }
  if (r.leadTransferee !== None) {
    throw new ProposalDroppedError(`leadership is being transferred to ${r.leadTransferee}`);
  }
  let confAt = -1;
  for (let i = 0; i < m.entries.length; i++) {
    const e = m.entries[i];
    if (e.type !== "confChange") continue;
    if (confAt >= 0) throw new ProposalDroppedError("one conf change per proposal");
    if (r.pendingConfIndex > r.raftLog.applied) {
      throw new ProposalDroppedError(
        `conf change at index ${r.pendingConfIndex} is not applied yet ` +
          `(applied: ${r.raftLog.applied})`,
      );
    }
    let cc: ConfChange;
    try {
      cc = decodeConfChange(e.data);
    } catch (err) {
      throw new ProposalDroppedError(`bad conf change: ${(err as Error).message}`);
    }
    const why = checkConfChange(r.trk.confState(), cc);
    if (why !== undefined) throw new ProposalDroppedError(why);
    confAt = i;
  }
  if (confAt >= 0) r.pendingConfIndex = r.raftLog.lastIndex() + confAt + 1;
  r.appendEntry(m.entries);
  r.bcastAppend();
}

function stepCandidate(r: Raft, m: Message): void {
  // A pre-candidate counts only pre-vote answers, a candidate only vote answers: a late answer
  // from the other phase must not count.
  const myVoteResp = r.role === "preCandidate" ? "MsgPreVoteResp" : "MsgVoteResp";
  switch (m.type) {
    case "MsgProp":
      throw new ProposalDroppedError(`${r.id} is a ${r.role} at term ${r.term}: no leader`);
    case "MsgApp":
      r.becomeFollower(m.term, m.from);
      r.handleAppendEntries(m);
      return;
    case "MsgHeartbeat":
      r.becomeFollower(m.term, m.from);
      r.handleHeartbeat(m);
      return;
    case "MsgSnap":
      r.becomeFollower(m.term, m.from);
      r.handleSnapshot(m);
      return;
    case "MsgVoteResp":
    case "MsgPreVoteResp": {
      if (m.type !== myVoteResp) return;
      const result = r.poll(m.from, m.type, !m.reject);
      if (result === "won") {
        if (r.role === "preCandidate") {
          r.campaign("election");
        } else {
          r.becomeLeader();
          r.bcastAppend();
        }
      } else if (result === "lost") {
        // A pre-candidate or candidate that lost returns to follower at its current term.
        r.becomeFollower(r.term, None);
      }
      return;
    }
    case "MsgTimeoutNow":
      r.logger.debug(
        `${r.id} [term ${r.term} state ${r.role}] ignored MsgTimeoutNow from ${m.from}`,
      );
      return;
    default:
      return;
  }
}

function stepFollower(r: Raft, m: Message): void {
  switch (m.type) {
    case "MsgProp":
      // Shoal's driver routes proposals to the leader itself; followers never forward them.
      throw new ProposalDroppedError(
        r.lead === None
          ? `${r.id} has no leader at term ${r.term}`
          : `${r.id} is not the leader (leader: ${r.lead})`,
      );
    case "MsgApp":
      r.electionElapsed = 0;
      r.lead = m.from;
      r.handleAppendEntries(m);
      return;
    case "MsgHeartbeat":
      r.electionElapsed = 0;
      r.lead = m.from;
      r.handleHeartbeat(m);
      return;
    case "MsgSnap":
      r.electionElapsed = 0;
      r.lead = m.from;
      r.handleSnapshot(m);
      return;
    case "MsgTransferLeader":
      if (r.lead === None) {
        r.logger.info(`${r.id} no leader at term ${r.term}; dropping leader transfer msg`);
        return;
      }
      r.send({ type: "MsgTransferLeader", from: m.from, to: r.lead });
      return;
    case "MsgTimeoutNow":
      r.logger.info(
        `${r.id} [term ${r.term}] received MsgTimeoutNow from ${m.from} and starts an election ` +
          `to get leadership`,
      );
      // A transfer skips pre-vote: the leader asked for it, so this is no partitioned node.
      r.hup("transfer");
      return;
    case "MsgReadIndex":
      if (r.lead === None) {
        r.logger.info(`${r.id} no leader at term ${r.term}; dropping index reading msg`);
        return;
      }
      r.send({
        type: "MsgReadIndex",
        from: m.from === None ? r.id : m.from,
        to: r.lead,
        term: 0,
        context: m.context,
      });
      return;
    case "MsgReadIndexResp":
      r.readStates.push({ index: m.index, context: m.context });
      return;
    default:
      return;
  }
}
