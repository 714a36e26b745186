/**
 * `shoal swarm init --force-new-cluster`: makes a surviving manager's Raft log the log of a new
 * one-manager group, keeping everything it holds committed (SwarmKit's and etcd's
 * force-new-cluster). Entries it holds but does not know to be committed are dropped (no
 * quorum ever acknowledged them to a client), and one committed `removeNode` entry is appended
 * for every other member, so that when the driver starts it applies them and finds itself the
 * only voter. The managers removed this way must leave (`swarm leave --force`) and join again.
 *
 * @module
 */
import { applyToConfState, decodeConfChange, encodeConfChange } from "../events/raft/confchange.ts";
import type { SqliteStorage } from "../events/raft/sqlite_storage.ts";
import type { ConfState, Entry, NodeId } from "../events/raft/types.ts";

/** What {@linkcode forceNewCluster} did. */
export interface ForcedCluster {
  /** The members removed. */
  readonly removed: NodeId[];
  /** Entries dropped because they were not known to be committed. */
  readonly dropped: number;
}

/**
 * Rewrites `storage` (not yet opened by a driver) so that `self` is the group's only voter;
 * see the module documentation.
 */
export function forceNewCluster(storage: SqliteStorage, self: NodeId): ForcedCluster {
  const hard = storage.hardState();
  const applied = storage.appliedState();
  // The configuration as of the commit index: the applied one, plus conf changes committed since.
  let conf: ConfState = applied.confState;
  const from = Math.max(applied.index + 1, storage.firstIndex());
  for (let i = from; i <= hard.commit; i += 256) {
    const hi = Math.min(hard.commit + 1, i + 256);
    for (const e of storage.entries(i, hi, Number.MAX_SAFE_INTEGER)) {
      if (e.type === "confChange") conf = applyToConfState(conf, decodeConfChange(e.data));
    }
  }
  if (!conf.voters.includes(self) && !conf.learners.includes(self)) {
    throw new Error(
      `raft member ${self} is not in this log's configuration (voters ${
        conf.voters.join(", ")
      }): it cannot take the swarm over`,
    );
  }
  const others = [...conf.voters, ...conf.learners].filter((id) => id !== self);
  const dropped = storage.lastIndex() - hard.commit;
  const term = storage.term(hard.commit);
  const changes = [
    ...others.map((id) => ({ type: "removeNode" as const, nodeId: id })),
    // A learner that takes over is made a voter first.
    ...(conf.voters.includes(self) ? [] : [{ type: "addNode" as const, nodeId: self }]),
  ];
  const entries: Entry[] = changes.map((cc, i) => ({
    index: hard.commit + 1 + i,
    term,
    type: "confChange",
    data: encodeConfChange(cc),
  }));
  storage.saveReady({
    hardState: { term: hard.term, vote: hard.vote, commit: hard.commit + entries.length },
    entries,
    mustSync: true,
  });
  return { removed: others, dropped: Math.max(0, dropped) };
}
