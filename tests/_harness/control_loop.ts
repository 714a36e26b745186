/**
 * The control loop in a test tube: a state folded from real batches, the real projections
 * (orchestrator, allocator, scheduler), and fake agents that move assigned tasks along the
 * way real agents would, with a virtual clock. `settle()` runs everything until nothing changes.
 *
 * @module
 */
import {
  type Batch,
  isTerminalTaskState,
  type ShoalEvent,
  TaskState,
  type TaskStateValue,
} from "../../events/schema.ts";
import { applyBatch, ClusterState } from "../../actors/state.ts";
import type { Projection } from "../../actors/manager.ts";
import { orchestrator } from "../../actors/projections/orchestrator/decide.ts";
import { createScheduler } from "../../actors/projections/scheduler/decide.ts";
import { allocator } from "../../actors/projections/allocator/decide.ts";
import { checkInvariants } from "./invariants.ts";

/** The control loop under test. */
export class ControlLoop {
  readonly state: ClusterState = new ClusterState();
  now = 1_000_000;
  #serial = 0;
  /** Every batch applied, with its index. */
  readonly log: { index: number; batch: Batch }[] = [];
  /** Projections in SwarmKit's pipeline order. */
  projections: Projection[] = [orchestrator, allocator, createScheduler()];
  /** Nodes whose agents do nothing (a crashed or partitioned agent). */
  readonly silent = new Set<string>();

  /** Applies events as one batch; throws if the fold rejects it. */
  apply(events: ShoalEvent[], by = "test"): number {
    const batch: Batch = { at: this.now, by, events };
    const index = this.state.index + 1;
    const r = applyBatch(this.state, batch, index);
    this.log.push({ index, batch });
    if (!r.applied) throw new Error(`rejected: ${r.rejection.reason} (${r.rejection.type})`);
    checkInvariants(this.state);
    return index;
  }

  /** A fresh id. */
  newId = (): string => `t${(++this.#serial).toString(36).padStart(8, "0")}`;

  /** Runs projections and agents until nothing more happens (bounded). */
  settle(maxRounds = 200): void {
    for (let round = 0; round < maxRounds; round++) {
      let changed = false;
      for (const p of this.projections) {
        const events = p.reconcile(this.state, {
          now: this.now,
          newId: this.newId,
          cause: this.state.index,
        });
        if (events.length > 0) {
          this.apply(events, p.name);
          changed = true;
        }
      }
      const reports = this.agentReports();
      if (reports.length > 0) {
        this.apply(reports, "dispatcher");
        changed = true;
      }
      if (!changed) return;
    }
    throw new Error(`control loop did not settle in ${maxRounds} rounds`);
  }

  /** Moves the clock forward and settles (restart and update delays come due). */
  advance(ms: number): void {
    this.now += ms;
    this.settle();
  }

  /** The reports fake agents would send now. */
  agentReports(): ShoalEvent[] {
    const out: ShoalEvent[] = [];
    for (const t of this.state.tasks.values()) {
      if (t.status.state < TaskState.assigned || isTerminalTaskState(t.status.state)) continue;
      if (this.silent.has(t.nodeId)) continue;
      const node = this.state.nodes.get(t.nodeId);
      if (node === undefined || node.status.state !== "ready") continue;
      let to: TaskStateValue | undefined;
      // Desired complete (a job's task) runs like running; a test ends it with `exit`.
      if (t.desiredState > TaskState.complete) to = TaskState.shutdown;
      else if (t.status.state < t.desiredState) {
        to = t.desiredState === TaskState.ready ? TaskState.ready : TaskState.running;
      }
      if (to === undefined || to === t.status.state) continue;
      out.push(this.report(t.id, to, to === TaskState.shutdown ? "shutdown" : "started"));
    }
    return out;
  }

  /** A status report from a task's agent. */
  report(id: string, state: TaskStateValue, message: string, exitCode?: number): ShoalEvent {
    const t = this.state.tasks.get(id)!;
    return {
      type: "TaskStatusReported",
      v: 1,
      data: {
        id,
        status: {
          state,
          timestamp: this.now,
          message,
          err: exitCode ? `task: non-zero exit (${exitCode})` : "",
          ...(exitCode !== undefined ? { exitCode } : {}),
        },
      },
      meta: { by: `agent:${t.nodeId}`, reason: message, expect: t.version },
    };
  }

  /** Makes a running task exit with a code (0: complete, else failed). */
  exit(id: string, code: number): void {
    this.apply([
      this.report(
        id,
        code === 0 ? TaskState.complete : TaskState.failed,
        code === 0 ? "finished" : "failed",
        code,
      ),
    ]);
  }

  /** Live tasks of a service by name. */
  tasks(service: string) {
    const svc = this.state.serviceByName(service)!;
    return [...this.state.tasksOf(svc.id)];
  }

  /** Running tasks of a service. */
  running(service: string) {
    return this.tasks(service).filter((t) =>
      t.status.state === TaskState.running && t.desiredState === TaskState.running
    );
  }
}
