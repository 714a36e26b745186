/**
 * A simulation worker: runs the seeds it is sent (the fold's simulation and the control loop's)
 * and posts back their results.
 *
 * @module
 */
import { runFoldSeed } from "./fold_sim.ts";
import { runControlSeed } from "./control_sim.ts";

const scope = self as unknown as Worker;
scope.onmessage = (e: MessageEvent<{ seeds: number[]; steps: number }>) => {
  scope.postMessage(e.data.seeds.map((seed) => {
    const fold = runFoldSeed(seed, e.data.steps);
    const control = runControlSeed(seed, Math.ceil(e.data.steps / 2));
    return {
      ...fold,
      violation: fold.violation ?? (control.violation && `control loop: ${control.violation}`),
    };
  }));
};
