/**
 * A simulation worker: runs the seeds it is sent and posts back their results.
 *
 * @module
 */
import { runFoldSeed } from "./fold_sim.ts";

const scope = self as unknown as Worker;
scope.onmessage = (e: MessageEvent<{ seeds: number[]; steps: number }>) => {
  scope.postMessage(e.data.seeds.map((seed) => runFoldSeed(seed, e.data.steps)));
};
