/**
 * The agent of a node: runs the tasks assigned to it, one {@linkcode Executor} each, and reports
 * how they are doing. It follows the state level-triggered: whenever its assignments change it
 * compares what should run with what runs, and acts (SwarmKit's agent worker).
 *
 * - A task assigned here is prepared (up to ready) at once; it starts only when its desired state
 *   is running (a restart delay or a stop-first update keeps it at ready), and is stopped when its
 *   desired state goes past running. The agent never takes a task beyond its desired state.
 * - Status reports are batched: every change waiting when a flush starts goes out in one
 *   proposal, so a burst of starts is a few log entries, not hundreds (DESIGN.md contract 6).
 * - After the agent itself restarted, tasks the log says run here but that have no executor are
 *   reported failed ("the node restarted"), and a process they left behind is killed; the
 *   orchestrator then restarts them under their policy.
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

  #queueReconcile(): void {
    if (this.#reconcileQueued || this.#stopped) return;
    this.#reconcileQueued = true;
    queueMicrotask(() => {
      this.#reconcileQueued = false;
      if (!this.#stopped) void this.#reconcile();
    });
  }

  async #reconcile(): Promise<void> {
    const assignments = this.#opts.session.assignments();
    const first = this.#firstPass;
    this.#firstPass = false;
    const wanted = new Set<string>();
    for (const { task, executorTask } of assignments) {
      wanted.add(task.id);
      const run = this.#running.get(task.id);
      const observed = task.status.state;
      if (run === undefined) {
        if (isTerminalTaskState(observed)) continue;
        if (task.desiredState > TaskState.running) {
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
        if (first && observed >= TaskState.accepted) {
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
      if (task.desiredState > TaskState.running) {
        if (!run.stopping) {
          run.stopping = true;
          void run.executor.stop().catch((err) =>
            this.#opts.logger?.error(`agent: stopping task ${task.id} failed: ${err}`)
          );
        }
      } else if (task.desiredState === TaskState.running && !run.started) {
        this.#startWhenReady(task.id, run);
      }
    }
    // Tasks no longer assigned here (removed from the state): stop and forget them.
    for (const [id, run] of this.#running) {
      if (wanted.has(id)) continue;
      this.#running.delete(id);
      void run.executor.remove().catch(() => {});
    }
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
    return this.#manager.onApplied(() => listener());
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
