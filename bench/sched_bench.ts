/**
 * `deno task bench sched`: the scheduler at SwarmKit's benchmark shapes
 * (`BenchmarkScheduler100kNodes1kTasks`, `...1kNodes100kTasks`,
 * `BenchmarkSchedulerConstraints5kNodes100kTasks`): pending tasks of one service placed onto ready
 * nodes, as the Manager does it: the scheduler's `reconcile` returns at most 500 events, the batch
 * is folded with `applyBatch`, and again until nothing is left. Only that loop is timed (building
 * the nodes and the pending tasks is not). In the constraint shape every third node carries the
 * label the service asks for, as SwarmKit's benchmark gives every third node the network plugin.
 *
 * Goals: SwarmKit's published figures after its scheduler work (moby/swarmkit#1550): 100k tasks
 * onto 1k nodes in 6.16 s, 1k tasks onto 100k nodes in 0.31 s.
 *
 * @module
 */
import { type Batch, type ShoalEvent, TaskState } from "../events/schema.ts";
import { applyBatch, ClusterState } from "../actors/state.ts";
import { createScheduler } from "../actors/projections/scheduler/decide.ts";
import { ev, meta, nodeDescription, serviceSpec } from "../tests/_harness/events.ts";
import { type BenchRow, report } from "./report.ts";

interface Shape {
  name: string;
  nodes: number;
  tasks: number;
  /** Only every third node satisfies the service's constraint. */
  constraint: boolean;
  goalMs: number;
}

const SHAPES: Shape[] = [
  { name: "100k_tasks_1k_nodes", nodes: 1_000, tasks: 100_000, constraint: false, goalMs: 6_000 },
  { name: "1k_tasks_100k_nodes", nodes: 100_000, tasks: 1_000, constraint: false, goalMs: 300 },
  {
    name: "100k_tasks_5k_nodes_constraint",
    nodes: 5_000,
    tasks: 100_000,
    constraint: true,
    goalMs: 6_000,
  },
];

/** A folded state with `nodes` ready nodes and `tasks` pending tasks of one service. */
function pendingCluster(shape: Shape): ClusterState {
  const state = new ClusterState();
  let at = 1_700_000_000_000;
  const fold = (events: ShoalEvent[]) => {
    for (let i = 0; i < events.length; i += 500) {
      const batch: Batch = { at: at += 1, by: "bench", events: events.slice(i, i + 500) };
      const r = applyBatch(state, batch, state.index + 1);
      if (!r.applied) throw new Error(`setup batch rejected: ${r.rejection.reason}`);
    }
  };
  const pad = (n: number) => n.toString(36).padStart(8, "0");
  const nodeIds = Array.from({ length: shape.nodes }, (_, i) => `node${pad(i)}`);
  fold([ev.clusterCreated()]);
  fold(nodeIds.map((id, i): ShoalEvent => ({
    type: "NodeRegistered",
    v: 1,
    data: {
      id,
      description: nodeDescription(`host-${i}`),
      spec: {
        name: "",
        labels: shape.constraint && i % 3 === 0 ? { net: "overlay" } : {},
        desiredRole: "worker",
        availability: "active",
      },
      role: "worker",
      addr: "10.0.0.1",
    },
    meta: meta("user:swarm.join"),
  })));
  fold(nodeIds.map((id): ShoalEvent => ({
    type: "NodeStatusChanged",
    v: 1,
    data: { id, status: { state: "ready", message: "", addr: "10.0.0.1" } },
    meta: meta("dispatcher"),
  })));
  const task = {
    runtime: { kind: "process", command: "/bin/sleep" },
    placement: { constraints: shape.constraint ? ["node.labels.net==overlay"] : [] },
  };
  fold([{
    type: "ServiceCreated",
    v: 1,
    data: { id: "svc", spec: serviceSpec("svc", shape.tasks, { task }) },
    meta: meta("user:service.create"),
  }]);
  const version = state.services.get("svc")!.specVersion;
  const taskIds = Array.from({ length: shape.tasks }, (_, i) => `task${pad(i)}`);
  fold(taskIds.map((id, i) => ev.taskCreated(id, "svc", version, i + 1)));
  fold(taskIds.map((id) => ev.taskAllocated(id)));
  return state;
}

interface Run {
  ms: number;
  calls: number;
  events: number;
  spread: { min: number; max: number; nodes: number };
}

/** Schedules every pending task, batch by batch, folding each; times only that. */
function schedule(state: ClusterState): Run {
  const scheduler = createScheduler();
  let calls = 0;
  let events = 0;
  const t0 = performance.now();
  for (;;) {
    const out = scheduler.reconcile(state, { now: 0, newId: () => "unused", cause: state.index });
    calls++;
    if (out.length === 0) break;
    events += out.length;
    const r = applyBatch(
      state,
      { at: 1_800_000_000_000, by: "scheduler", events: out },
      state.index + 1,
    );
    if (!r.applied) throw new Error(`scheduler batch rejected: ${r.rejection.reason}`);
  }
  const ms = performance.now() - t0;
  const perNode = new Map<string, number>();
  for (const id of state.tasksByState.get(TaskState.assigned)) {
    const node = state.tasks.get(id)!.nodeId;
    perNode.set(node, (perNode.get(node) ?? 0) + 1);
  }
  const counts = [...perNode.values()];
  return {
    ms,
    calls,
    events,
    spread: { min: Math.min(...counts), max: Math.max(...counts), nodes: counts.length },
  };
}

/** Runs the benchmark and returns its JSON result. */
export async function runSchedBench(opts: { json: boolean }): Promise<Record<string, unknown>> {
  const rows: BenchRow[] = [];
  const extra: Record<string, unknown> = {};
  for (const shape of SHAPES) {
    const state = pendingCluster(shape);
    const run = schedule(state);
    const assigned = state.tasksByState.get(TaskState.assigned).size;
    if (assigned !== shape.tasks) {
      throw new Error(`${shape.name}: ${assigned} of ${shape.tasks} tasks assigned`);
    }
    const eligible = shape.constraint ? Math.ceil(shape.nodes / 3) : shape.nodes;
    const used = Math.min(eligible, shape.tasks);
    if (run.spread.nodes !== used || run.spread.max - run.spread.min > 1) {
      throw new Error(`${shape.name}: tasks not spread evenly: ${JSON.stringify(run.spread)}`);
    }
    rows.push({
      metric: `${shape.name}_ms`,
      value: Math.round(run.ms),
      unit: "ms",
      goal: `≤ ${shape.goalMs}`,
      ok: run.ms <= shape.goalMs,
    });
    rows.push({ metric: `${shape.name}_batches`, value: run.calls - 1, unit: "batches" });
    rows.push({
      metric: `${shape.name}_tasks_per_s`,
      value: Math.round(shape.tasks / (run.ms / 1000)),
      unit: "tasks/s",
    });
    extra[`${shape.name}_spread`] = run.spread;
    // Let the state go before building the next one.
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  return report("sched", rows, { json: opts.json, extra });
}

if (import.meta.main) await runSchedBench({ json: Deno.args.includes("--json") });
