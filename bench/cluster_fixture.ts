/**
 * A large cluster built through the fold, for benchmarks: N nodes, and services whose tasks are
 * all created, allocated, assigned and running, as they would be after a real scale-up.
 *
 * @module
 */
import { type Batch, type ShoalEvent, TaskState } from "../events/schema.ts";
import { applyBatch, ClusterState } from "../actors/state.ts";
import { ev } from "../tests/_harness/events.ts";
import { SeededRandom } from "../tests/_harness/cluster_history.ts";

/** Options of the fixture. */
export interface FixtureOptions {
  nodes: number;
  tasks: number;
  services: number;
  seed?: number;
}

/** Builds the batches of a cluster whose tasks all run, and calls `sink` with each in order. */
export function buildRunningCluster(
  opts: FixtureOptions,
  sink: (batch: Batch, index: number) => void,
): void {
  const rnd = new SeededRandom(opts.seed ?? 7);
  let index = 0;
  let at = 1_700_000_000_000;
  const emit = (events: ShoalEvent[]) => {
    for (let i = 0; i < events.length; i += 100) {
      sink({ at: at += 3, by: events[i].meta.by, events: events.slice(i, i + 100) }, ++index);
    }
  };
  const nodeIds = Array.from({ length: opts.nodes }, () => rnd.id());
  emit([
    ev.clusterCreated(rnd.id()),
    ...nodeIds.map((id, i) => ev.nodeRegistered(id, `node-${i}`)),
  ]);
  emit(nodeIds.map((id) => ({
    type: "NodeStatusChanged" as const,
    v: 1 as const,
    data: { id, status: { state: "ready" as const, message: "", addr: "10.0.0.1" } },
    meta: { by: "dispatcher", reason: "session started" },
  })));
  const perService = Math.ceil(opts.tasks / opts.services);
  let made = 0;
  for (let s = 0; s < opts.services && made < opts.tasks; s++) {
    const svcId = rnd.id();
    const count = Math.min(perService, opts.tasks - made);
    emit([ev.serviceCreated(svcId, `svc-${s}`, count)]);
    const specVersion = index;
    const taskIds = Array.from({ length: count }, () => rnd.id());
    emit(taskIds.map((id, i) => ev.taskCreated(id, svcId, specVersion, i + 1)));
    emit(taskIds.map((id) => ev.taskAllocated(id)));
    const placed = taskIds.map((id, i) => [id, nodeIds[(made + i) % nodeIds.length]] as const);
    emit(placed.map(([id, node]) => ev.taskAssigned(id, node)));
    for (const state of [TaskState.accepted, TaskState.running] as const) {
      emit(placed.map(([id, node]): ShoalEvent => ({
        type: "TaskStatusReported",
        v: 1,
        data: {
          id,
          status: {
            state,
            timestamp: at,
            message: state === TaskState.running ? "started" : "accepted",
            err: "",
          },
        },
        meta: { by: `agent:${node}`, reason: "task progressed" },
      })));
    }
    made += count;
  }
}

/** The state of `buildRunningCluster`, folded. */
export function runningClusterState(opts: FixtureOptions): ClusterState {
  const state = new ClusterState();
  buildRunningCluster(opts, (batch, index) => {
    const r = applyBatch(state, batch, index);
    if (!r.applied) throw new Error(`fixture batch ${index} rejected: ${r.rejection.reason}`);
  });
  return state;
}
