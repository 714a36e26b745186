/**
 * The Raft core's errors, one class per condition (etcd's sentinel errors).
 *
 * @module
 */

/** The requested index is older than the first one storage still holds. */
export class CompactedError extends Error {
  /** `index` is the index asked for. */
  constructor(readonly index: number) {
    super(`Cannot read index ${index}: it was compacted`);
    this.name = "CompactedError";
  }
}

/** The requested index is beyond the last one storage holds. */
export class UnavailableError extends Error {
  /** `index` is the index asked for. */
  constructor(readonly index: number) {
    super(`Cannot read index ${index}: it is not in the log yet`);
    this.name = "UnavailableError";
  }
}

/** A snapshot is not newer than the one storage already holds. */
export class SnapOutOfDateError extends Error {
  /** `index` is the refused snapshot's index, `current` the stored one's. */
  constructor(readonly index: number, readonly current: number) {
    super(`Cannot use snapshot at index ${index}: storage already has one at ${current}`);
    this.name = "SnapOutOfDateError";
  }
}

/** Storage cannot produce a snapshot right now; the leader will try again later. */
export class SnapshotTemporarilyUnavailableError extends Error {
  /** No arguments. */
  constructor() {
    super("Cannot send a snapshot: none is available yet");
    this.name = "SnapshotTemporarilyUnavailableError";
  }
}

/** A proposal was refused: not the leader, a transfer in progress, or a conf change pending. */
export class ProposalDroppedError extends Error {
  /** `reason` says why. */
  constructor(readonly reason: string) {
    super(`Proposal dropped: ${reason}`);
    this.name = "ProposalDroppedError";
  }
}

/** `RawNode.step` was given a local message (MsgHup, MsgProp, ...), which peers never send. */
export class StepLocalMsgError extends Error {
  /** `type` is the message type. */
  constructor(readonly type: string) {
    super(`Cannot step a local message from a peer: ${type}`);
    this.name = "StepLocalMsgError";
  }
}

/** `RawNode.step` was given a response from a node that is not in the configuration. */
export class StepPeerNotFoundError extends Error {
  /** `from` is the unknown sender. */
  constructor(readonly from: number) {
    super(`Cannot step a response from node ${from}: it is not in the configuration`);
    this.name = "StepPeerNotFoundError";
  }
}
