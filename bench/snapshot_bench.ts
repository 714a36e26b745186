/**
 * `deno task bench snapshot`: snapshot and restore of a state with 100,000 running tasks on 1,000
 * nodes. Goals: at most 500 ms each way, at most 15 MB.
 *
 * Then the same state as the Raft driver's state machine (`actors/state_machine.ts`), on SQLite
 * with `synchronous: full`: the longest stall of the event loop while the driver takes a
 * snapshot (encode, envelope, one SQLite row; it runs inside the driver's loop), the time to
 * restore it into a state that holds one as big (what a member that receives InstallSnapshot
 * does), and the time a manager takes to start from it (a restart).
 *
 * @module
 */
import { restore, restoreInto, snapshot } from "../actors/snapshot.ts";
import type { ClusterState } from "../actors/state.ts";
import { ClusterStateMachine } from "../actors/state_machine.ts";
import { RaftDriver } from "../events/raft/driver.ts";
import { SqliteStorage } from "../events/raft/sqlite_storage.ts";
import { runningClusterState } from "./cluster_fixture.ts";
import { type BenchRow, median, report } from "./report.ts";

/** Runs the benchmark and returns its JSON result. */
export async function runSnapshotBench(
  options: { json: boolean; tasks?: number; nodes?: number },
) {
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
  const raft = await raftFigures(state);
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
    ...raft,
  ], { json: options.json, extra: { runs: 5 } });
}

/** The Raft path: see the module documentation. Leaves `state` as it found it. */
async function raftFigures(state: ClusterState): Promise<BenchRow[]> {
  const dir = await Deno.makeTempDir({ prefix: "shoal-snapshot-bench-" });
  const index = state.index;
  const pauses: number[] = [];
  const restarts: number[] = [];
  let driver: RaftDriver | undefined;
  try {
    for (let run = 0; run < 3; run++) {
      const path = `${dir}/raft-${run}.db`;
      // The state machine stands for no entry yet (its state is the fixture's), so the first
      // snapshot due is of the whole state, at the first raft index.
      state.index = 0;
      driver = await RaftDriver.start({
        id: 1,
        clusterId: "snapshot-bench",
        storage: new SqliteStorage({ path, confState: { voters: [1], learners: [] } }),
        stateMachine: new ClusterStateMachine(state),
        snapshotEntries: 8,
        keepEntries: 0,
      });
      await driver.waitForLeader();
      let longest = 0;
      let last = performance.now();
      const sampler = setInterval(() => {
        const now = performance.now();
        longest = Math.max(longest, now - last);
        last = now;
      }, 1);
      for (let i = 0; i < 10 && driver.status().snapshotIndex === 0; i++) {
        await driver.propose(new Uint8Array([i + 1]));
      }
      await new Promise((r) => setTimeout(r, 20));
      clearInterval(sampler);
      if (driver.status().snapshotIndex === 0) throw new Error("the driver took no snapshot");
      pauses.push(longest);
      await driver.stop();
      driver = undefined;
      const t = performance.now();
      const fold = new ClusterStateMachine();
      driver = await RaftDriver.start({
        id: 1,
        clusterId: "snapshot-bench",
        storage: new SqliteStorage({ path }),
        stateMachine: fold,
      });
      restarts.push(performance.now() - t);
      if (fold.state.tasks.size !== state.tasks.size) throw new Error("restart lost tasks");
      await driver.stop();
      driver = undefined;
    }
  } finally {
    state.index = index;
    await driver?.stop();
    await Deno.remove(dir, { recursive: true });
  }
  // InstallSnapshot on a member whose state is as big: every row out, every row in.
  const bytes = snapshot(state);
  const target = restore(bytes);
  const into: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    restoreInto(target, bytes);
    into.push(performance.now() - t);
  }
  return [
    { metric: "raft_snapshot_pause_ms", value: median(pauses), unit: "ms" },
    { metric: "restore_into_ms", value: median(into), unit: "ms" },
    { metric: "raft_restart_ms", value: median(restarts), unit: "ms" },
  ];
}
