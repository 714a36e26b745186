/**
 * Majority arithmetic, as pure functions over a set of voters (etcd's quorum package, for a
 * single, non-joint configuration).
 *
 * @module
 */
import type { NodeId } from "./types.ts";

/** The outcome of an election so far. */
export type VoteResult = "won" | "lost" | "pending";

/** How many voters make a majority of `n`. */
export function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}

/**
 * The largest index that a majority of `voters` has acknowledged: the majority-th largest of
 * their match indexes (a voter missing from `matchIndexes` counts as 0). An empty
 * configuration commits nothing.
 */
export function committedIndex(
  voters: Iterable<NodeId>,
  matchIndexes: ReadonlyMap<NodeId, number>,
): number {
  const acked: number[] = [];
  for (const id of voters) acked.push(matchIndexes.get(id) ?? 0);
  if (acked.length === 0) return 0;
  acked.sort((a, b) => b - a);
  return acked[majority(acked.length) - 1];
}

/**
 * Whether `votes` (true: granted, false: refused, missing: not yet answered) already decide an
 * election among `voters`. Votes of non-voters are ignored. An empty configuration never wins.
 */
export function voteResult(
  voters: Iterable<NodeId>,
  votes: ReadonlyMap<NodeId, boolean>,
): VoteResult {
  let n = 0;
  let granted = 0;
  let missing = 0;
  for (const id of voters) {
    n++;
    const v = votes.get(id);
    if (v === undefined) missing++;
    else if (v) granted++;
  }
  if (n === 0) return "lost";
  const q = majority(n);
  if (granted >= q) return "won";
  if (granted + missing >= q) return "pending";
  return "lost";
}
