/**
 * {@linkcode ClusterStateMachine}: a manager's {@linkcode ClusterState} as the Raft driver's state
 * machine, so that the Raft log is snapshotted and compacted without a second copy of the fold.
 *
 * The manager folds the log itself, following `log.entries()` a little behind the driver, so this
 * state machine lags the driver: its `apply` does nothing and it tells the driver, with
 * `appliedSeq()`, which entry its state includes (the state's `index`: log indexes are the
 * driver's `seq`). The driver then snapshots at the Raft index that state stands for, and
 * compacts only behind it (`StateMachine` in `events/raft/driver.ts`). The snapshot's bytes are
 * `actors/snapshot.ts`'s; the driver's envelope around them keeps the seq and the members.
 *
 * `restore` (a restart from a snapshot, or a snapshot sent by the leader to a member too far
 * behind) replaces the state **in place**: everything that holds the manager's `state` sees the
 * snapshot's. The manager hears of it through {@linkcode ClusterStateMachine.onRestore} and goes
 * on folding from the entry after the snapshot.
 *
 * @module
 */
import type { CommittedEntry, StateMachine } from "../events/raft/driver.ts";
import { ClusterState } from "./state.ts";
import { restoreInto, snapshot } from "./snapshot.ts";

/** The Raft state machine over a manager's state: see the module documentation. */
export class ClusterStateMachine implements StateMachine {
  /** The state the manager folds into (the same object for ever). */
  readonly state: ClusterState;
  #listeners = new Set<(index: number) => void>();
  #restores = 0;

  /** A state machine over `state` (an empty one by default). */
  constructor(state: ClusterState = new ClusterState()) {
    this.state = state;
  }

  /** Nothing: the manager folds every entry itself, following the log. */
  apply(_entry: CommittedEntry): void {}

  /** Log index (the driver's seq) of the last entry folded into the state. */
  appliedSeq(): number {
    return this.state.index;
  }

  /** The state, as `actors/snapshot.ts` encodes it. */
  snapshot(): Uint8Array {
    return snapshot(this.state);
  }

  /**
   * Replaces the state with the snapshot's, in place, then tells the listeners. Throws (and the
   * driver stops) on bytes that are not a snapshot of `actors/snapshot.ts`.
   */
  restore(data: Uint8Array): void {
    restoreInto(this.state, data);
    this.#restores++;
    for (const listener of [...this.#listeners]) listener(this.state.index);
  }

  /** How many snapshots were restored. */
  get restores(): number {
    return this.#restores;
  }

  /**
   * Calls `listener` with the state's new index after each restore; returns a function that
   * unsubscribes. Listeners run inside the driver's loop: they must not throw.
   */
  onRestore(listener: (index: number) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
