/**
 * `deno task bench snapshot`: snapshot and restore of a state with 100,000 running tasks on 1,000
 * nodes. Goals: at most 500 ms each way, at most 15 MB.
 *
 * @module
 */
import { restore, snapshot } from "../actors/snapshot.ts";
import { runningClusterState } from "./cluster_fixture.ts";
import { median, report } from "./report.ts";

/** Runs the benchmark and returns its JSON result. */
export function runSnapshotBench(options: { json: boolean; tasks?: number; nodes?: number }) {
  const tasks = options.tasks ?? 100_000;
  const nodes = options.nodes ?? 1_000;
  const state = runningClusterState({ nodes, tasks, services: 100 });
  const save: number[] = [];
  const load: number[] = [];
  let bytes = 0;
  for (let i = 0; i < 5; i++) {
    let t = performance.now();
    const snap = snapshot(state);
    save.push(performance.now() - t);
    bytes = snap.length;
    t = performance.now();
    const back = restore(snap);
    load.push(performance.now() - t);
    if (back.tasks.size !== tasks || back.nodes.size !== nodes) {
      throw new Error("restored state differs from the snapshot's");
    }
  }
  const mb = bytes / 1e6;
  return report("snapshot", [
    { metric: "tasks", value: tasks, unit: "" },
    { metric: "nodes", value: nodes, unit: "" },
    {
      metric: "snapshot_ms",
      value: median(save),
      unit: "ms",
      goal: "≤ 500",
      ok: median(save) <= 500,
    },
    {
      metric: "restore_ms",
      value: median(load),
      unit: "ms",
      goal: "≤ 500",
      ok: median(load) <= 500,
    },
    { metric: "restore_first_ms", value: load[0], unit: "ms" },
    { metric: "size_mb", value: Number(mb.toFixed(2)), unit: "MB", goal: "≤ 15", ok: mb <= 15 },
  ], { json: options.json, extra: { runs: 5 } });
}
