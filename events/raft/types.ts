/**
 * The data the Raft core consumes and produces: log entries, persistent and volatile state,
 * snapshots, messages and the {@linkcode Ready} handed to the application.
 *
 * Message type names are etcd-io/raft's, verbatim, so transcripts read the same.
 *
 * @module
 */

/** Node ids are positive integers; {@linkcode None} (0) means "no node". */
export type NodeId = number;

/** The absent node: no leader, no vote. */
export const None = 0;

/** What an entry carries: an opaque batch, or an encoded {@linkcode ConfChange}. */
export type EntryType = "normal" | "confChange";

/**
 * One log entry. A normal entry's `data` is an opaque batch; an empty normal entry is the no-op a
 * new leader appends. Entries are shared between the log, messages and Readys: never mutate one.
 */
export interface Entry {
  /** Term of the leader that created the entry. */
  readonly term: number;
  /** Position in the log, from 1. */
  readonly index: number;
  /** How to read `data`. */
  readonly type: EntryType;
  /** The payload. */
  readonly data: Uint8Array;
}

/** State that must be on stable storage before any message of the same Ready is sent. */
export interface HardState {
  /** The latest term this node has seen. */
  readonly term: number;
  /** Whom this node voted for in `term` ({@linkcode None} if nobody). */
  readonly vote: NodeId;
  /** Highest index known to be committed. */
  readonly commit: number;
}

/** What a node is doing in its current term. */
export type Role = "follower" | "preCandidate" | "candidate" | "leader";

/** Volatile state, useful to the application (who leads) but never persisted. */
export interface SoftState {
  /** The leader this node follows ({@linkcode None} if unknown). */
  readonly lead: NodeId;
  /** This node's role. */
  readonly role: Role;
}

/** A cluster configuration: who votes, who only replicates. Ids are sorted ascending. */
export interface ConfState {
  /** Nodes whose acknowledgement counts towards quorums. */
  readonly voters: readonly NodeId[];
  /** Non-voting members: they receive the log but neither vote nor count for commit. */
  readonly learners: readonly NodeId[];
}

/** A single-server membership change, proposed as a `confChange` entry. */
export interface ConfChange {
  /**
   * `addNode` adds a voter or promotes a learner; `addLearner` adds a learner or demotes a
   * voter; `removeNode` removes a voter or a learner.
   */
  readonly type: "addNode" | "addLearner" | "removeNode";
  /** The node concerned. */
  readonly nodeId: NodeId;
  /** Opaque application data (for example the new node's address). */
  readonly context?: Uint8Array;
}

/** Where a snapshot stands in the log. */
export interface SnapshotMetadata {
  /** Index of the last entry the snapshot covers (0: the empty snapshot). */
  readonly index: number;
  /** Term of that entry. */
  readonly term: number;
  /** The configuration in force at `index`. */
  readonly confState: ConfState;
}

/** The application's state at some index, replacing every entry up to it. */
export interface Snapshot {
  /** Position and configuration. */
  readonly metadata: SnapshotMetadata;
  /** The application's state, opaque to Raft. */
  readonly data: Uint8Array;
}

/** The answer to a ReadIndex request: reading at `index` or later is linearizable. */
export interface ReadState {
  /** The commit index when the leader confirmed its leadership. */
  readonly index: number;
  /** The request's context, as given to `readIndex`. */
  readonly context: Uint8Array;
}

/** Fields every message has. Local messages have term 0. */
export interface MessageBase {
  /** Sender. */
  readonly from: NodeId;
  /** Recipient. */
  readonly to: NodeId;
  /** Sender's term (0 for local messages and for forwarded MsgReadIndex). */
  readonly term: number;
}

// Local messages: made by the node for itself, never sent over the wire.

/** Start an election (election timeout, or `campaign()`). */
export interface MsgHup extends MessageBase {
  /** Discriminant. */
  readonly type: "MsgHup";
}
/** Leader: time to send heartbeats. */
export interface MsgBeat extends MessageBase {
  /** Discriminant. */
  readonly type: "MsgBeat";
}
/** Propose entries (at the leader; followers drop proposals). */
export interface MsgProp extends MessageBase {
  /** Discriminant. */
  readonly type: "MsgProp";
  /** Entries to append; term and index are assigned by the leader. */
  readonly entries: readonly Entry[];
}
/** The application reports how sending a snapshot to `from` went. */
export interface MsgSnapStatus extends MessageBase {
  /** Discriminant. */
  readonly type: "MsgSnapStatus";
  /** True when the snapshot could not be delivered. */
  readonly reject: boolean;
}
/** The application reports that `from` could not be reached. */
export interface MsgUnreachable extends MessageBase {
  /** Discriminant. */
  readonly type: "MsgUnreachable";
}
/** Leader: time to check that a quorum is still active. */
export interface MsgCheckQuorum extends MessageBase {
  /** Discriminant. */
  readonly type: "MsgCheckQuorum";
}

// Peer messages: sent between nodes.

/** Append entries after (`index`, `logTerm`); also carries the leader's commit index. */
export interface MsgApp extends MessageBase {
  /** Discriminant. */
  readonly type: "MsgApp";
  /** Index of the entry just before `entries`. */
  readonly index: number;
  /** Term of the entry at `index`. */
  readonly logTerm: number;
  /** Entries to append (possibly none: a probe or a commit update). */
  readonly entries: readonly Entry[];
  /** The leader's commit index. */
  readonly commit: number;
}
/** Answer to MsgApp or MsgSnap. */
export interface MsgAppResp extends MessageBase {
  /** Discriminant. */
  readonly type: "MsgAppResp";
  /** Accepted: the follower's log matches up to here. Rejected: the MsgApp's `index`. */
  readonly index: number;
  /** The follower's log does not contain (`index`, `logTerm`) of the MsgApp. */
  readonly reject: boolean;
  /** On reject: the largest index that might match (fast back-off). */
  readonly rejectHint: number;
  /** On reject: the term of the follower's entry at `rejectHint` (0 if unknown). */
  readonly logTerm: number;
}
/** Request a vote for `term`; (`index`, `logTerm`) is the candidate's last entry. */
export interface MsgVote extends MessageBase {
  /** Discriminant. */
  readonly type: "MsgVote";
  /** Index of the candidate's last entry. */
  readonly index: number;
  /** Term of the candidate's last entry. */
  readonly logTerm: number;
  /** A leadership transfer: voters ignore their leader lease. */
  readonly transfer?: boolean;
}
/** Answer to MsgVote. */
export interface MsgVoteResp extends MessageBase {
  /** Discriminant. */
  readonly type: "MsgVoteResp";
  /** Vote refused. */
  readonly reject: boolean;
}
/** Would you vote for me in `term`? Changes nobody's term or vote. */
export interface MsgPreVote extends MessageBase {
  /** Discriminant. */
  readonly type: "MsgPreVote";
  /** Index of the candidate's last entry. */
  readonly index: number;
  /** Term of the candidate's last entry. */
  readonly logTerm: number;
  /** Unused for pre-votes (transfers skip pre-vote); kept symmetrical with MsgVote. */
  readonly transfer?: boolean;
}
/** Answer to MsgPreVote. */
export interface MsgPreVoteResp extends MessageBase {
  /** Discriminant. */
  readonly type: "MsgPreVoteResp";
  /** Pre-vote refused. */
  readonly reject: boolean;
}
/** Leader's heartbeat; `context` is set when it confirms leadership for ReadIndex. */
export interface MsgHeartbeat extends MessageBase {
  /** Discriminant. */
  readonly type: "MsgHeartbeat";
  /** min(follower's match, leader's commit): safe for the follower to commit. */
  readonly commit: number;
  /** The ReadIndex request being confirmed, if any. */
  readonly context?: Uint8Array;
}
/** Answer to MsgHeartbeat, echoing its context. */
export interface MsgHeartbeatResp extends MessageBase {
  /** Discriminant. */
  readonly type: "MsgHeartbeatResp";
  /** The heartbeat's context. */
  readonly context?: Uint8Array;
}
/** Install a snapshot (the follower is behind the leader's first index). */
export interface MsgSnap extends MessageBase {
  /** Discriminant. */
  readonly type: "MsgSnap";
  /** The snapshot. */
  readonly snapshot: Snapshot;
}
/** Leadership transfer: the recipient is caught up and should campaign at once. */
export interface MsgTimeoutNow extends MessageBase {
  /** Discriminant. */
  readonly type: "MsgTimeoutNow";
}
/** Transfer leadership to `from` (forwarded by followers to the leader). */
export interface MsgTransferLeader extends MessageBase {
  /** Discriminant. */
  readonly type: "MsgTransferLeader";
}
/** ReadIndex request (forwarded by followers to the leader). */
export interface MsgReadIndex extends MessageBase {
  /** Discriminant. */
  readonly type: "MsgReadIndex";
  /** Identifies the request; must be unique among pending requests. */
  readonly context: Uint8Array;
}
/** The leader's answer to a forwarded ReadIndex request. */
export interface MsgReadIndexResp extends MessageBase {
  /** Discriminant. */
  readonly type: "MsgReadIndexResp";
  /** The read index. */
  readonly index: number;
  /** The request's context. */
  readonly context: Uint8Array;
}

/** Messages a node makes for itself; `RawNode.step` refuses them. */
export type LocalMessage =
  | MsgHup
  | MsgBeat
  | MsgProp
  | MsgSnapStatus
  | MsgUnreachable
  | MsgCheckQuorum;

/** Messages exchanged between nodes. */
export type PeerMessage =
  | MsgApp
  | MsgAppResp
  | MsgVote
  | MsgVoteResp
  | MsgPreVote
  | MsgPreVoteResp
  | MsgHeartbeat
  | MsgHeartbeatResp
  | MsgSnap
  | MsgTimeoutNow
  | MsgTransferLeader
  | MsgReadIndex
  | MsgReadIndexResp;

/** Every message the state machine steps. */
export type Message = LocalMessage | PeerMessage;

/** The `type` of a message. */
export type MessageType = Message["type"];

const LOCAL_TYPES: ReadonlySet<MessageType> = new Set<LocalMessage["type"]>([
  "MsgHup",
  "MsgBeat",
  "MsgProp",
  "MsgSnapStatus",
  "MsgUnreachable",
  "MsgCheckQuorum",
]);

const RESPONSE_TYPES: ReadonlySet<MessageType> = new Set<MessageType>([
  "MsgAppResp",
  "MsgVoteResp",
  "MsgPreVoteResp",
  "MsgHeartbeatResp",
  "MsgUnreachable",
  "MsgSnapStatus",
]);

/** Whether `m` is local (never sent over the wire). */
export function isLocalMessage(m: Message): m is LocalMessage {
  return LOCAL_TYPES.has(m.type);
}

/** Whether `m` answers another message (its sender must be a known peer). */
export function isResponseMessage(m: Message): boolean {
  return RESPONSE_TYPES.has(m.type);
}

/**
 * Everything the application must act on, in this order (etcd's classic contract, which Shoal
 * implements):
 *
 * 1. persist `snapshot`, `entries` and `hardState` (one transaction; fsync when `mustSync`);
 * 2. only then send `messages` (votes and append acknowledgements promise persisted state);
 * 3. apply `snapshot`, then `committedEntries` (calling `applyConfChange` for conf changes);
 * 4. call `advance()`.
 */
export interface Ready {
  /** Set when the leader or role changed. */
  readonly softState?: SoftState;
  /** Set when term, vote or commit changed: persist it. */
  readonly hardState?: HardState;
  /** Entries to append to stable storage (replacing any conflicting tail). */
  readonly entries: readonly Entry[];
  /** A snapshot to persist and apply. */
  readonly snapshot?: Snapshot;
  /** Committed entries to apply, in order (possibly also in `entries`: persist first). */
  readonly committedEntries: readonly Entry[];
  /** Messages to send once the above is persisted. */
  readonly messages: readonly PeerMessage[];
  /** Completed ReadIndex requests. */
  readonly readStates: readonly ReadState[];
  /** Whether persisting this Ready needs an fsync (term, vote, entries or snapshot changed). */
  readonly mustSync: boolean;
}

/** An injected logger (etcd's logger.go); the core never writes anywhere itself. */
export interface Logger {
  /** Chatter useful when tracing. */
  debug(message: string): void;
  /** Routine transitions (elections, leadership). */
  info(message: string): void;
  /** Something odd the core recovered from. */
  warn(message: string): void;
  /** A broken invariant the core refused to act on. */
  error(message: string): void;
}

/** A logger that discards everything: the default. */
export const discardLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};

/** The empty hard state of a fresh node. */
export const emptyHardState: HardState = { term: 0, vote: None, commit: 0 };

/** Whether `s` is the empty snapshot (index 0). */
export function isEmptySnapshot(s: Snapshot | undefined): boolean {
  return s === undefined || s.metadata.index === 0;
}

/** Whether two hard states are equal. */
export function hardStateEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}
