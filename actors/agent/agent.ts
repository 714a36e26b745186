/**
 * The agent of a node: runs the tasks assigned to it, one {@linkcode Executor} each, and reports
 * how they are doing. It follows the state level-triggered: whenever its assignments change it
 * compares what should run with what runs, and acts (SwarmKit's agent worker).
 *
 * - A task assigned here is prepared (up to ready) at once; it starts only when its desired state
 *   is running, or complete for a job's task (a restart delay or a stop-first update keeps it at
 *   ready), and is stopped when its desired state goes past that (shutdown, remove). The agent
 *   never takes a task beyond its desired state.
 * - Status reports are batched: every change waiting when a flush starts goes out in one
 *   proposal, so a burst of starts is a few log entries, not hundreds (DESIGN.md contract 6).
 * - After the agent itself restarted, its first pass looks at the tasks the log says run here
 *   but that have no executor. A task whose program is still there and can be taken over is
 *   **adopted** (`adopt`: the Docker executor takes over the task's container, found by its
 *   labels, whether it still runs or ended meanwhile, and reports how it is doing); then
 *   `afterFirstPass` removes whatever was left that nobody adopted (containers of tasks that were
 *   removed or moved while the agent was away). A task that cannot be adopted is reported failed
 *   ("the node restarted") after `reapLeftover` killed what it left behind, and the orchestrator
 *   restarts it under its policy. Process tasks are never adopted: a process that is not the
 *   agent's child cannot be waited for, so its exit code, which decides between complete and
 *   failed (a job's completion), would be lost; the process executor's pid file lets
 *   `reapLeftover` kill it instead (process.ts, `reapLeftoverProcess`).
 *
 * The agent talks to the managers through an {@linkcode AgentSession}: in one process that is
 * the manager itself ({@linkcode LocalSession}); across machines it is the dispatcher protocol.
 *
 * @module
 */
import {
  isTerminalTaskState,
  MAX_BATCH_EVENTS,
  type ShoalEvent,
  TaskState,
  type TaskStatus,
} from "../../events/schema.ts";
import type { ClusterState, TaskRecord } from "../state.ts";
import { BatchRejectedError, type Manager } from "../manager.ts";
import type { Executor, ExecutorTask } from "./executor.ts";
import type { Logger } from "../runtime.ts";
import { taskAddressing } from "./task_addressing.ts";

/** One task this node should run, with all it needs. */
export interface Assignment {
  readonly task: TaskRecord;
  readonly executorTask: ExecutorTask;
}

/** A status change of a task, to report. */
export interface StatusReport {
  readonly taskId: string;
  readonly status: TaskStatus;
}

/** The agent's link to the managers. */
export interface AgentSession {
  /** The node's assignments now. */
  assignments(): Assignment[];
  /** Calls `listener` when the assignments may have changed; returns an unsubscribe function. */
  onChange(listener: () => void): () => void;
  /** Sends status reports (in order); resolves once they are committed, or dropped as stale. */
  report(reports: StatusReport[]): Promise<void>;
}

/** Makes an executor for a task's runtime. */
export type ExecutorFactory = (
  task: ExecutorTask,
  onStatus: (status: TaskStatus) => void,
) => Executor;

/** Options of an {@linkcode Agent}. */
export interface AgentOptions {
  nodeId: string;
  session: AgentSession;
  executors: ExecutorFactory;
  /** Kills what a task left running before this agent started (the process executor's pid file). */
  reapLeftover?: (taskId: string) => Promise<void>;
  /**
   * On the first pass only: takes over what an earlier run of the agent left of a task that
   * should still run here, returning its executor (already following the program), or undefined
   * when there is nothing to take over.
   */
  adopt?: (
    task: ExecutorTask,
    onStatus: (status: TaskStatus) => void,
  ) => Promise<Executor | undefined>;
  /** After the first pass, with the tasks adopted: cleans up what nobody adopted. */
  afterFirstPass?: (adopted: ReadonlySet<string>) => Promise<void>;
  logger?: Logger;
}

interface Running {
  executor: Executor;
  started: boolean;
  stopping: boolean;
}

/** Runs this node's tasks. */
export class Agent {
  #opts: AgentOptions;
  #running = new Map<string, Running>();
  #pending: StatusReport[] = [];
  #flushing: Promise<void> | undefined;
  #unsubscribe: (() => void) | undefined;
  #reconcileQueued = false;
  #reconciling = false;
  /** Tasks reported lost after a restart, not yet gone from the assignments. */
  #lost = new Set<string>();
  #reconcileAgain = false;
  #stopped = false;
  #firstPass = true;

  /** An agent for one node; call `start()`. */
  constructor(options: AgentOptions) {
    this.#opts = options;
  }

  /** Starts following the node's assignments. */
  start(): void {
    this.#unsubscribe = this.#opts.session.onChange(() => this.#queueReconcile());
    this.#queueReconcile();
  }

  /** Tasks with a live executor here. */
  get runningTasks(): string[] {
    return [...this.#running.keys()];
  }

  /** The executor of a task running here (for logs). */
  executor(taskId: string): Executor | undefined {
    return this.#running.get(taskId)?.executor;
  }

  /**
   * Stops following assignments and stops every task's program (within its grace period),
   * without reporting: the node is going away, and the managers will mark it down.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#unsubscribe?.();
    await Promise.all([...this.#running.values()].map((r) => r.executor.stop().catch(() => {})));
    await this.#flushing;
  }

  /**
   * Runs a reconcile pass soon. Passes never overlap: one asked for while another runs (which
   * may wait on an executor or on Docker) runs after it, so no task is launched twice.
   */
  #queueReconcile(): void {
    if (this.#stopped) return;
    if (this.#reconciling) {
      this.#reconcileAgain = true;
      return;
    }
    if (this.#reconcileQueued) return;
    this.#reconcileQueued = true;
    queueMicrotask(async () => {
      this.#reconcileQueued = false;
      if (this.#stopped) return;
      this.#reconciling = true;
      try {
        await this.#reconcile();
      } catch (err) {
        this.#opts.logger?.error(`agent: reconciling failed: ${err}`);
      } finally {
        this.#reconciling = false;
      }
      if (this.#reconcileAgain) {
        this.#reconcileAgain = false;
        this.#queueReconcile();
      }
    });
  }

  async #reconcile(): Promise<void> {
    const assignments = this.#opts.session.assignments();
    const first = this.#firstPass;
    this.#firstPass = false;
    if (first) await this.#adoptLeftovers(assignments);
    const wanted = new Set<string>();
    for (const { task, executorTask } of assignments) {
      wanted.add(task.id);
      const run = this.#running.get(task.id);
      const observed = task.status.state;
      if (run === undefined) {
        if (isTerminalTaskState(observed)) continue;
        if (task.desiredState > TaskState.complete) {
          // Never started here (or lost with a restart): it is simply shut down.
          await this.#opts.reapLeftover?.(task.id);
          this.#enqueue(task.id, {
            state: TaskState.shutdown,
            timestamp: Date.now(),
            message: "shutdown",
            err: "",
          });
          continue;
        }
        if (observed >= TaskState.accepted) {
          // Past accepted, yet this agent never ran it: an earlier agent did, and what it left
          // could not be adopted. Reported once (the report may take a while to commit).
          if (this.#lost.has(task.id)) continue;
          this.#lost.add(task.id);
          await this.#opts.reapLeftover?.(task.id);
          this.#enqueue(task.id, {
            state: TaskState.failed,
            timestamp: Date.now(),
            message: "agent restarted",
            err: "task: the node restarted and its process was lost",
          });
          continue;
        }
        this.#launch(task, executorTask);
        continue;
      }
      if (task.desiredState > TaskState.complete) {
        if (!run.stopping) {
          run.stopping = true;
          void run.executor.stop().catch((err) =>
            this.#opts.logger?.error(`agent: stopping task ${task.id} failed: ${err}`)
          );
        }
      } else if (shouldRun(task) && !run.started) {
        this.#startWhenReady(task.id, run);
      }
    }
    // Tasks no longer assigned here (removed from the state): stop and forget them.
    for (const id of this.#lost) if (!wanted.has(id)) this.#lost.delete(id);
    for (const [id, run] of this.#running) {
      if (wanted.has(id)) continue;
      this.#running.delete(id);
      void run.executor.remove().catch(() => {});
    }
  }

  /**
   * The first pass after a start: adopts what an earlier agent left of the tasks that should
   * still run here, then lets `afterFirstPass` clean up the rest, before anything new starts
   * (a new container must not meet an old one of the same name).
   */
  async #adoptLeftovers(assignments: readonly Assignment[]): Promise<void> {
    const adopted = new Set<string>();
    for (const { task, executorTask } of assignments) {
      const observed = task.status.state;
      if (observed < TaskState.accepted || isTerminalTaskState(observed)) continue;
      if (await this.#adopt(task, executorTask)) adopted.add(task.id);
    }
    await this.#opts.afterFirstPass?.(adopted).catch((err) =>
      this.#opts.logger?.error(`agent: cleaning up after restart failed: ${err}`)
    );
  }

  /** Takes over what an earlier agent left of a task; returns whether it did. */
  async #adopt(task: TaskRecord, executorTask: ExecutorTask): Promise<boolean> {
    if (this.#opts.adopt === undefined || !shouldRun(task)) return false;
    let executor: Executor | undefined;
    try {
      executor = await this.#opts.adopt(executorTask, (status) => this.#enqueue(task.id, status));
    } catch (err) {
      this.#opts.logger?.error(`agent: adopting task ${task.id} failed: ${err}`);
      return false;
    }
    if (executor === undefined) return false;
    const run: Running = {
      executor,
      started: executor.status.state >= TaskState.starting,
      stopping: false,
    };
    this.#running.set(task.id, run);
    this.#opts.logger?.info(`agent: adopted task ${task.id} (${executor.status.message})`);
    // The pass that adopted it goes on to start it (if it was only created) or stop it.
    executor.wait().then(() => this.#finished(task.id), () => this.#finished(task.id));
    return true;
  }

  #launch(task: TaskRecord, executorTask: ExecutorTask): void {
    const run: Running = {
      executor: this.#opts.executors(executorTask, (status) => this.#enqueue(task.id, status)),
      started: false,
      stopping: false,
    };
    this.#running.set(task.id, run);
    run.executor.prepare(executorTask).then(() => {
      this.#queueReconcile(); // start it now if it should run
    }).catch((err) => this.#opts.logger?.error(`agent: preparing task ${task.id} failed: ${err}`));
    run.executor.wait().then(
      () => this.#finished(task.id),
      () => this.#finished(task.id),
    );
  }

  #startWhenReady(taskId: string, run: Running): void {
    if (run.executor.status.state !== TaskState.ready) return;
    run.started = true;
    run.executor.start().catch((err) =>
      this.#opts.logger?.error(`agent: starting task ${taskId} failed: ${err}`)
    );
  }

  /** A task's program ended: keep the executor (for logs) until the task leaves the node. */
  #finished(_taskId: string): void {
    this.#queueReconcile();
  }

  #enqueue(taskId: string, status: TaskStatus): void {
    this.#pending.push({ taskId, status });
    if (this.#flushing === undefined) this.#flushing = this.#flush();
  }

  async #flush(): Promise<void> {
    // Let the statuses of one burst gather first.
    await new Promise((resolve) => setTimeout(resolve, 0));
    while (this.#pending.length > 0) {
      // One proposal is one batch: at most MAX_BATCH_EVENTS reports.
      const batch = this.#pending.splice(0, MAX_BATCH_EVENTS);
      try {
        await this.#opts.session.report(batch);
      } catch (err) {
        this.#opts.logger?.error(`agent: reporting ${batch.length} statuses failed: ${err}`);
      }
    }
    this.#flushing = undefined;
  }
}

/** Whether a task is asked to run: desired running, or complete for a job's task. */
function shouldRun(task: TaskRecord): boolean {
  return task.desiredState === TaskState.running || task.desiredState === TaskState.complete;
}

/**
 * An {@linkcode AgentSession} for an agent in the manager's own process: assignments come from
 * the manager's state, reports go straight into its log.
 */
export class LocalSession implements AgentSession {
  #manager: Manager;
  #nodeId: string;

  /** A session for `nodeId` on `manager`. */
  constructor(manager: Manager, nodeId: string) {
    this.#manager = manager;
    this.#nodeId = nodeId;
  }

  /** See {@linkcode AgentSession.assignments}. */
  assignments(): Assignment[] {
    return assignmentsFor(this.#manager.state, this.#nodeId);
  }

  /** See {@linkcode AgentSession.onChange}. */
  onChange(listener: () => void): () => void {
    const offApplied = this.#manager.onApplied(() => listener());
    // A snapshot installed over the state changes everything at once, with no entry.
    const offRestored = this.#manager.onRestored(() => listener());
    return () => {
      offApplied();
      offRestored();
    };
  }

  /**
   * Proposes the reports as one batch. A report the fold refuses (a task that moved on meanwhile)
   * is dropped and the rest proposed again.
   */
  async report(reports: StatusReport[]): Promise<void> {
    let events: ShoalEvent[] = reports.map((r) => ({
      type: "TaskStatusReported",
      v: 1,
      data: { id: r.taskId, status: r.status },
      meta: { by: `agent:${this.#nodeId}`, reason: r.status.message || "status report" },
    }));
    const by = `agent:${this.#nodeId}`;
    while (events.length > 0) {
      try {
        await this.#manager.propose(events, by);
        return;
      } catch (err) {
        if (!(err instanceof BatchRejectedError)) throw err;
        const bad = err.rejection.event;
        events = events.filter((_, i) => i !== bad);
      }
    }
  }
}

/** The tasks assigned to a node, with their specs and the secrets and configs they use. */
export function assignmentsFor(state: ClusterState, nodeId: string): Assignment[] {
  const out: Assignment[] = [];
  for (const task of state.tasksOn(nodeId)) {
    if (task.status.state < TaskState.assigned) continue;
    const spec = state.taskSpec(task);
    const service = state.services.get(task.serviceId);
    const secretData = new Map<string, Uint8Array>();
    for (const ref of spec.secrets) {
      const rec = state.secrets.get(ref.id);
      if (rec) secretData.set(ref.id, decodeBase64(rec.spec.data));
    }
    const configData = new Map<string, Uint8Array>();
    for (const ref of spec.configs) {
      const rec = state.configs.get(ref.id);
      if (rec) configData.set(ref.id, decodeBase64(rec.spec.data));
    }
    out.push({
      task,
      executorTask: {
        id: task.id,
        serviceId: task.serviceId,
        serviceName: service?.spec.name ?? task.serviceId,
        slot: task.slot,
        nodeId,
        spec,
        secretData,
        configData,
        addressing: taskAddressing(state, task),
      },
    });
  }
  return out;
}

function decodeBase64(data: string): Uint8Array {
  const bin = atob(data);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
