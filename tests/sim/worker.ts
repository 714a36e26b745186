/**
 * A simulation worker: runs the seeds it is sent (the fold's simulation, the control loop's and
 * the Raft core's) and posts back their results.
 *
 * @module
 */
import { runFoldSeed, type SeedResult } from "./fold_sim.ts";
import { runControlSeed } from "./control_sim.ts";
import { runRaftSeed } from "./raft_sim.ts";

/** What a worker is asked to run. */
export interface Job {
  seeds: number[];
  /** Entries of the fold's simulation (the control loop runs half as many steps). */
  steps: number;
  /** Ticks of the Raft simulation's faulty phase. */
  raftTicks: number;
}

/** One seed's results across the three simulations. */
export interface WorkerResult extends SeedResult {
  /** Events the Raft simulation ran. */
  raftEvents: number;
  /** Proposals it acknowledged. */
  raftAcked: number;
}

const scope = self as unknown as Worker;
scope.onmessage = (e: MessageEvent<Job>) => {
  const { seeds, steps, raftTicks } = e.data;
  scope.postMessage(seeds.map((seed): WorkerResult => {
    const fold = runFoldSeed(seed, steps);
    const control = runControlSeed(seed, Math.ceil(steps / 2));
    const raft = runRaftSeed(seed, { ticks: raftTicks });
    // Every simulation's violation: one must not hide another.
    const violations = [
      fold.violation,
      control.violation && `control loop: ${control.violation}`,
      raft.violation && `raft: ${raft.violation}`,
    ].filter((v) => v !== undefined);
    return {
      ...fold,
      violation: violations.length > 0 ? violations.join("; ") : undefined,
      raftEvents: raft.events,
      raftAcked: raft.acked,
    };
  }));
};
